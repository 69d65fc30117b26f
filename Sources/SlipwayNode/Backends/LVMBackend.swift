import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The `lvm` backend: every version is the logical volume `<vg>/<app>-<version>` (a thin LV
/// in `thin_pool` when one is given, else a classic LV), holding an ext4 or xfs filesystem
/// mounted read-only at `releases/<version>`, with a systemd mount unit so that a reboot
/// mounts every landed version again.
///
/// Staging is the LV `<app>-<version>` tagged `slipway.staging`, mounted at
/// `releases/.partial-<version>`: a new LV with a fresh filesystem for a full release, or
/// (thin pool) a thin snapshot of the base version's LV for a delta. The tag is given by the
/// `lvcreate` that makes the LV, so no instant has an untagged LV that is not landed.
/// Commit: unmount, `lvchange --deltag slipway.staging` (one atomic LVM metadata commit:
/// the commit marker; unlike a rename it leaves device-mapper alone), write the mount unit,
/// mount read-only at `releases/<version>`. `recover` removes every staging LV of the app
/// (and its mount), and finishes the commit of an LV committed but not mounted yet. An LV
/// named `<app>-<version>-partial` is staging too: slipway staged so before 2026-12-07.
///
/// LV names may hold only `[a-zA-Z0-9+_.-]`; app and version are mapped by
/// `LVMNames` (see docs/lvm.md). Every LV slipway makes carries the tags
/// `slipway.app=<app>` and `slipway.root=<key of the node root>`, so LVs of app `web` are
/// never confused with those of `web-1`, nor one node root's with another's on the same VG.
///
/// Settings (node.toml `[lvm]`, see docs/lvm.md): `vg` (required), `thin_pool`,
/// `filesystem` (`ext4` | `xfs`), `size` (fixed) or `factor` (release size × factor),
/// `min_size`, `unit_directory`, `device_timeout`, `schroot_snapshot_options`.
public struct LVMBackend: NodeBackend {
    public var kind: BackendKind { .lvm }
    /// A thin snapshot (or a copy) of a landed LV that is only ever mounted read-only.
    public var stagedCopyIsImmutableBase: Bool { true }
    /// lvcreate, mkfs and mount (or lvcreate --snapshot) run beside the archive's hash.
    public var stagesWhileHashing: Bool { true }

    public var volumeGroup: String
    public var thinPool: String?
    public var filesystem: String
    /// A fixed size in bytes for every version's LV, or nil for `factor`.
    public var fixedSize: UInt64?
    public var factor: Double
    public var minimumSize: UInt64
    /// Where the mount units go (`/etc/systemd/system`).
    public var unitDirectory: String
    /// How long a mount unit waits at boot for its LV to appear, in seconds; 0 waits as long
    /// as it takes (`device_timeout`, default 600).
    public var deviceTimeout: Int
    /// `lvm-snapshot-options` of the schroot chroot.d file.
    public var schrootSnapshotOptions: String
    /// The node context's runner (makeBackend passes it).
    let runner: CommandRunner
    /// Recovery's `lvs`, for the staging that follows it under the same lock.
    let recoveredListing = LVMListingHandoff()
    static let timeout: Duration = .seconds(300)
    /// The staging mark of slipway before 2026-12-07 (recover still removes such LVs).
    static let partialSuffix = "-partial"
    /// The tag of an LV being landed; removing it is the commit.
    static let stagingTag = "slipway.staging"
    static let mebibyte: UInt64 = 1 << 20

    static let keys = ["vg", "volume_group", "thin_pool", "filesystem", "size", "factor", "min_size",
                       "unit_directory", "device_timeout", "schroot_snapshot_options"]

    /// The `[lvm]` table of node.toml; unknown keys are errors.
    public init(settings: [String: String], runner: CommandRunner = CommandRunner()) throws {
        self.runner = runner
        for key in settings.keys where !Self.keys.contains(key) {
            throw LVMBackendError.badSetting(key: key, value: settings[key] ?? "", expected: "one of \(Self.keys.joined(separator: ", "))")
        }
        volumeGroup = settings["vg"] ?? settings["volume_group"] ?? ""
        guard !volumeGroup.isEmpty else { throw LVMBackendError.noVolumeGroupSetting }
        guard LVMNames.isValidLVMName(volumeGroup) else {
            throw LVMBackendError.badSetting(key: "vg", value: volumeGroup, expected: "a volume group name ([a-zA-Z0-9+_.-], not starting with -)")
        }
        thinPool = settings["thin_pool"].flatMap { $0.isEmpty ? nil : $0 }
        if let pool = thinPool, !LVMNames.isValidLVMName(pool) {
            throw LVMBackendError.badSetting(key: "thin_pool", value: pool, expected: "the name of a thin pool LV in \(volumeGroup)")
        }
        filesystem = settings["filesystem"] ?? "ext4"
        guard ["ext4", "xfs"].contains(filesystem) else {
            throw LVMBackendError.badSetting(key: "filesystem", value: filesystem, expected: "ext4 or xfs")
        }
        if let size = settings["size"], settings["factor"] != nil {
            throw LVMBackendError.badSetting(key: "size", value: size, expected: "either size or factor, not both")
        }
        if let text = settings["size"] {
            guard let bytes = LVMNames.parseSize(text), bytes > 0 else {
                throw LVMBackendError.badSetting(key: "size", value: text, expected: "a size such as 512M, 2G or 1.5G")
            }
            fixedSize = bytes
        }
        if let text = settings["factor"] {
            guard let value = Double(text), value >= 1, value <= 100 else {
                throw LVMBackendError.badSetting(key: "factor", value: text, expected: "a number from 1 to 100 (the LV's size over the release's)")
            }
            factor = value
        } else {
            factor = 2
        }
        // mkfs.xfs refuses filesystems under 300 MB; ext4 needs room for its journal.
        let floor: UInt64 = filesystem == "xfs" ? 300 * Self.mebibyte : 64 * Self.mebibyte
        if let text = settings["min_size"] {
            guard let bytes = LVMNames.parseSize(text), bytes >= floor else {
                throw LVMBackendError.badSetting(key: "min_size", value: text, expected: "a size of at least \(floor / Self.mebibyte)M for \(filesystem)")
            }
            minimumSize = bytes
        } else {
            minimumSize = floor
        }
        if let fixedSize, fixedSize < floor {
            throw LVMBackendError.badSetting(key: "size", value: settings["size"] ?? "", expected: "at least \(floor / Self.mebibyte)M for \(filesystem)")
        }
        unitDirectory = settings["unit_directory"] ?? "/etc/systemd/system"
        guard unitDirectory.hasPrefix("/") else {
            throw LVMBackendError.badSetting(key: "unit_directory", value: unitDirectory, expected: "an absolute path")
        }
        if let text = settings["device_timeout"] {
            guard let seconds = Int(text), seconds >= 0 else {
                throw LVMBackendError.badSetting(key: "device_timeout", value: text, expected: "seconds (0: wait as long as the LV takes to appear)")
            }
            deviceTimeout = seconds
        } else {
            deviceTimeout = LVMMountUnit.defaultDeviceTimeout
        }
        // A thin origin needs no size; its snapshot must not skip activation. A classic
        // origin gets a copy-on-write snapshot of that size for each session.
        schrootSnapshotOptions = settings["schroot_snapshot_options"] ?? (thinPool != nil ? "--setactivationskip n" : "--size 256M")
    }

    // MARK: - Names

    func lvName(_ version: String, _ layout: NodeLayout) -> String {
        LVMNames.lvName(app: layout.app, version: version)
    }
    /// The staging LV's name before 2026-12-07.
    func legacyStagingName(_ version: String, _ layout: NodeLayout) -> String { lvName(version, layout) + Self.partialSuffix }
    func devicePath(_ lv: String) -> String { "/dev/\(volumeGroup)/\(lv)" }
    func tag(_ layout: NodeLayout) -> String { "slipway.app=\(LVMNames.escape(layout.app))" }
    /// LV names are unique per VG, so one VG serves one node root per app: the root's tag
    /// tells this root's LVs from another's (a test farm's second root on the same VG).
    func rootTag(_ layout: NodeLayout) -> String { "slipway.root=\(LVMNames.rootKey(layout.root))" }

    /// The size of a version's LV for a release of `releaseBytes` (its tar size).
    public func volumeSize(releaseBytes: UInt64) -> UInt64 {
        let wanted = fixedSize ?? UInt64((Double(releaseBytes) * factor).rounded(.up))
        let size = max(wanted, minimumSize)
        // Whole MiB; lvcreate rounds up to extents itself.
        return (size + Self.mebibyte - 1) / Self.mebibyte * Self.mebibyte
    }

    // MARK: - NodeBackend

    public func createStaging(_ request: StagingRequest, layout: NodeLayout) throws -> String {
        guard let base = request.base else {
            return try createEmptyStaging(version: request.version, layout: layout, releaseBytes: request.releaseBytes)
        }
        return try createStagingCopy(version: request.version, from: base, layout: layout, releaseBytes: request.releaseBytes)
    }

    func createEmptyStaging(version: String, layout: NodeLayout, releaseBytes: UInt64) throws -> String {
        let prepared = try prepareStaging(version: version, layout: layout)
        let size = volumeSize(releaseBytes: releaseBytes)
        let staging = lvName(version, layout)
        try checkSpace(pool: prepared.pool, newVolume: size, releaseBytes: releaseBytes)
        var arguments = ["lvcreate", "--yes", "--name", staging, "--addtag", tag(layout), "--addtag", rootTag(layout),
                         "--addtag", Self.stagingTag]
        if let pool = thinPool {
            arguments += ["--virtualsize", "\(size)b", "--thinpool", pool, volumeGroup]
        } else {
            arguments += ["--size", "\(size)b", "--wipesignatures", "y", volumeGroup]
        }
        try lvm(arguments, explainingSpace: true)
        do {
            try makeFilesystem(devicePath(staging))
            let path = try mountStaging(version: version, layout: layout)
            // mkfs.ext4 makes lost+found, which no release has (the tree check would find
            // it extra); e2fsck makes it again when it needs one.
            if rmdir(path + "/lost+found") != 0, errno != ENOENT {
                throw LVMBackendError.command(.failed(command: "rmdir \(path)/lost+found", status: errno, signal: nil, standardErrorTail: String(cString: strerror(errno))))
            }
            return path
        } catch {
            try? recover(layout: layout)
            throw error
        }
    }

    func createStagingCopy(version: String, from base: String, layout: NodeLayout, releaseBytes: UInt64) throws -> String {
        let prepared = try prepareStaging(version: version, layout: layout)
        let baseLV = lvName(base, layout)
        guard let baseVolume = prepared.volumes.first(where: { $0.name == baseLV }) else {
            throw LVMBackendError.notLanded(version: base, volume: "\(volumeGroup)/\(baseLV)")
        }
        let staging = lvName(version, layout)
        let size = volumeSize(releaseBytes: releaseBytes)
        guard thinPool != nil, baseVolume.isThin else {
            // Classic LVs have no cheap copy: a classic LVM snapshot is a copy-on-write
            // overlay that dies with its origin, so the new version gets its own LV and a
            // full copy of the base's tree.
            FileHandle.standardError.write(Data("slipway: lvm: \(volumeGroup)/\(baseLV) is not a thin LV (no thin_pool): copying the base in full for the delta\n".utf8))
            let stagingPath = try createEmptyStaging(version: version, layout: layout, releaseBytes: max(releaseBytes, baseVolume.size / 2))
            do {
                try run(["cp", "-a", "--reflink=never", layout.release(base) + "/.", stagingPath + "/"])
            } catch {
                try? recover(layout: layout)
                throw error
            }
            return stagingPath
        }
        try checkSpace(pool: prepared.pool, newVolume: nil, releaseBytes: 0)
        // A thin snapshot; --setactivationskip n so that it activates like any LV, at boot too.
        try lvm(["lvcreate", "--yes", "--snapshot", "--setactivationskip", "n", "--activate", "y", "--name", staging,
                 "--addtag", tag(layout), "--addtag", rootTag(layout), "--addtag", Self.stagingTag, "\(volumeGroup)/\(baseLV)"],
                explainingSpace: true)
        do {
            let path = try mountStaging(version: version, layout: layout)
            if size > baseVolume.size {
                // The new version needs more room than its base had: grow the snapshot and
                // its filesystem (online).
                try lvm(["lvextend", "--size", "\(size)b", "\(volumeGroup)/\(staging)"], explainingSpace: true)
                if filesystem == "xfs" {
                    try run(["xfs_growfs", path])
                } else {
                    try run(["resize2fs", devicePath(staging)])
                }
            }
            return path
        } catch {
            try? recover(layout: layout)
            throw error
        }
    }

    public func commit(version: String, layout: NodeLayout) throws {
        let staging = lvName(version, layout)
        let mountpoint = layout.partial(version)
        guard LVMMounts.isMountpoint(mountpoint) else {
            throw LVMBackendError.noStaging(version: version, volume: "\(volumeGroup)/\(staging)")
        }
        try unmount(mountpoint)
        _ = rmdir(mountpoint)
        try lvm(["lvchange", "--deltag", Self.stagingTag, "\(volumeGroup)/\(staging)"])
        try finishCommit(version: version, layout: layout, active: true)
        try? NodeFiles.fsyncDirectory(layout.releases)
    }

    /// The steps after the commit marker; `recover` repeats them for an LV committed by an
    /// apply that was killed before its mount, and for landed LVs after a reboot that did not mount them.
    private func finishCommit(version: String, layout: NodeLayout, active: Bool) throws {
        let lv = lvName(version, layout)
        if !active { try lvm(["lvchange", "--activate", "y", "--ignoreactivationskip", "\(volumeGroup)/\(lv)"]) }
        let mountpoint = layout.release(version)
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        try units.write(mountUnit(version: version, layout: layout))
        if !LVMMounts.isMountpoint(mountpoint) {
            try mountVolume(lv, at: mountpoint, readOnly: true)
        }
    }

    /// The unit that mounts a landed version at boot.
    func mountUnit(version: String, layout: NodeLayout) -> LVMMountUnit {
        let lv = lvName(version, layout)
        return LVMMountUnit(what: devicePath(lv), where: layout.release(version), type: filesystem, options: mountOptions(readOnly: true),
                            description: "slipway \(layout.app) \(version) (\(volumeGroup)/\(lv))", deviceTimeout: deviceTimeout)
    }

    public func remove(version: String, layout: NodeLayout) throws {
        let lv = lvName(version, layout)
        let mountpoint = layout.release(version)
        if LVMMounts.isMountpoint(mountpoint) { try unmount(mountpoint) }
        try units.remove(where: mountpoint)
        _ = rmdir(mountpoint)
        let result = try runner.runAllowingFailure(lvmCommand(["lvremove", "--yes", "\(volumeGroup)/\(lv)"]))
        // Gone already (a prune killed after lvremove) is what was asked for.
        if !result.succeeded && !result.standardErrorTail.contains("Failed to find logical volume") {
            throw LVMBackendError.command(.failed(command: "lvremove --yes \(volumeGroup)/\(lv)", status: result.status,
                                                  signal: result.signal, standardErrorTail: result.standardErrorTail))
        }
        try? NodeFiles.fsyncDirectory(layout.releases)
    }

    public func recover(layout: NodeLayout) throws {
        try recover(layout: layout, volumes: try listVolumes(layout))
    }

    /// Recovery removes staging LVs and finishes commits: the landed LVs are those listed
    /// before it, so one `lvs` serves both (each LVM command costs a device scan).
    /// When recovery found no staging LV it changed no LV (at most it activated and mounted
    /// landed ones), so its listing is still the VG's: the apply that follows makes its
    /// staging LV from it rather than from one more `lvs`.
    public func recoverListingLanded(layout: NodeLayout) throws -> [String] {
        let listing = try listAll()
        let volumes = appVolumes(listing.rows, layout)
        recoveredListing.put(nil)
        try recover(layout: layout, volumes: volumes)
        if !volumes.contains(where: \.isStaging) { recoveredListing.put(listing) }
        return landed(volumes)
    }

    func landed(_ volumes: [LVMVolume]) -> [String] {
        volumes.filter { !$0.isStaging }.compactMap(\.version).sorted()
    }

    private func recover(layout: NodeLayout, volumes: [LVMVolume]) throws {
        for volume in volumes {
            guard let version = volume.version else { continue }
            if volume.isStaging {
                let mountpoint = layout.partial(version)
                if LVMMounts.isMountpoint(mountpoint) { try unmount(mountpoint) }
                _ = rmdir(mountpoint)
                if volume.name == lvName(version, layout) {
                    // A staging LV has its version's name: a mount unit left for that name
                    // (none should be) must not keep it mounted or mount it at the next boot.
                    let release = layout.release(version)
                    if LVMMounts.isMountpoint(release) { try unmount(release) }
                    if units.list(under: layout.releases + "/").contains(where: { $0.where == release }) {
                        try units.remove(where: release)
                        _ = rmdir(release)
                    }
                }
                try lvm(["lvremove", "--yes", "\(volumeGroup)/\(volume.name)"])
            } else if !LVMMounts.isMountpoint(layout.release(version)) || !units.isCurrent(mountUnit(version: version, layout: layout)) {
                try finishCommit(version: version, layout: layout, active: volume.isActive)
            }
        }
        // Mountpoints of staging LVs removed elsewhere (or never made).
        for name in try BtrfsBackend.entries(layout.releases) where name.hasPrefix(".partial-") {
            let path = "\(layout.releases)/\(name)"
            if LVMMounts.isMountpoint(path) { try unmount(path) }
            if rmdir(path) != 0, errno == ENOTEMPTY || errno == EBUSY {
                throw LVMBackendError.strayStaging(path: path)
            }
        }
        // Mount units of this app's versions whose LV is gone (a prune killed after lvremove).
        let landed = Set(volumes.filter { !$0.isStaging }.compactMap(\.version).map { layout.release($0) })
        for unit in units.list(under: layout.releases + "/") where !landed.contains(unit.where) {
            try units.remove(where: unit.where)
            _ = rmdir(unit.where)
        }
    }

    public func landedVersions(layout: NodeLayout) throws -> [String] {
        landed(try listVolumes(layout))
    }

    public func schrootSettings(version: String, layout: NodeLayout) throws -> [(key: String, value: String)] {
        var settings: [(key: String, value: String)] = [
            ("type", "lvm-snapshot"),
            ("device", devicePath(lvName(version, layout))),
            ("lvm-snapshot-options", schrootSnapshotOptions),
        ]
        // Every snapshot of an xfs filesystem has its origin's UUID, which xfs refuses twice.
        if filesystem == "xfs" { settings.append(("mount-options", "-o nouuid")) }
        return settings
    }

    // MARK: - Helpers

    var units: LVMMountUnits { LVMMountUnits(directory: unitDirectory) }

    func mountOptions(readOnly: Bool) -> String {
        ([readOnly ? "ro" : "rw"] + (mountData.isEmpty ? [] : [mountData])).joined(separator: ",")
    }

    /// The file system's own mount options (mount(2)'s data): xfs refuses a second mount of
    /// a snapshot's filesystem UUID without `nouuid`.
    var mountData: String { filesystem == "xfs" ? "nouuid" : "" }

    /// Checks the names, the VG (and pool), that the version is not landed, and removes a
    /// leftover staging LV of the same version. Returns the app's volumes and the pool's use,
    /// from one `lvs` (each LVM command costs a device scan).
    private func prepareStaging(version: String, layout: NodeLayout) throws -> (volumes: [LVMVolume], pool: PoolUsage?) {
        try LVMNames.validate(app: layout.app, version: version)
        try FileManager.default.createDirectory(atPath: layout.releases, withIntermediateDirectories: true)
        var listing = try recoveredListing.take() ?? listAll()
        if let pool = thinPool, listing.pool == nil { throw LVMBackendError.noThinPool(vg: volumeGroup, pool: pool) }
        var volumes = appVolumes(listing.rows, layout)
        for name in [lvName(version, layout), legacyStagingName(version, layout)] {
            if let row = listing.rows.first(where: { $0.name == name }), !volumes.contains(where: { $0.name == name }) {
                throw LVMBackendError.foreignVolume(volume: "\(volumeGroup)/\(name)", root: layout.root,
                                                    tags: row.tags.joined(separator: ","))
            }
        }
        if volumes.contains(where: { $0.name == lvName(version, layout) && !$0.isStaging }) {
            throw LVMBackendError.alreadyLanded(version: version, volume: "\(volumeGroup)/\(lvName(version, layout))")
        }
        if volumes.contains(where: { $0.version == version && $0.isStaging }) {
            try recover(layout: layout)
            listing = try listAll()
            volumes = appVolumes(listing.rows, layout)
        }
        return (volumes, listing.pool)
    }

    private func mountStaging(version: String, layout: NodeLayout) throws -> String {
        let mountpoint = layout.partial(version)
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        try mountVolume(lvName(version, layout), at: mountpoint, readOnly: false)
        return mountpoint
    }

    /// mount(2) of an LV's file system, as mount(8) would call it for these options, without
    /// the mount(8) process: a fork and exec that cost 0.15 s each under emulation, three
    /// times per apply (docs/lvm.md).
    private func mountVolume(_ lv: String, at mountpoint: String, readOnly: Bool) throws {
        let device = Self.mountSource(devicePath(lv))
        let (status, code) = mountData.withCString { data in
            (Glibc.mount(device, mountpoint, filesystem, readOnly ? UInt(MS_RDONLY) : 0, data), errno)
        }
        guard status == 0 else {
            throw LVMBackendError.mount(operation: "mount -t \(filesystem) -o \(mountOptions(readOnly: readOnly)) \(device) \(mountpoint)", errno: code)
        }
    }

    /// The source mount(8) passes for a device: `/dev/mapper/<dm name>` for a device-mapper
    /// device (libmount's canonical form), so that /proc/mounts, findmnt and df name a landed
    /// version as they did when mount(8) mounted it; the path itself for anything else.
    static func mountSource(_ device: String) -> String {
        guard let resolved = realpath(device, nil) else { return device }
        defer { free(resolved) }
        let node = (String(cString: resolved) as NSString).lastPathComponent
        guard node.hasPrefix("dm-"),
              let name = try? String(contentsOfFile: "/sys/block/\(node)/dm/name", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines), !name.isEmpty,
              NodeFiles.exists("/dev/mapper/" + name) else { return device }
        return "/dev/mapper/" + name
    }

    /// umount(2), as `umount` without the process.
    private func unmount(_ mountpoint: String) throws {
        guard umount2(mountpoint, 0) == 0 else {
            let code = errno
            throw LVMBackendError.mount(operation: "umount \(mountpoint)", errno: code)
        }
    }

    private func makeFilesystem(_ device: String) throws {
        if filesystem == "xfs" {
            try run(["mkfs.xfs", "-q", "-f", "-K", device])
        } else {
            // -m 0: a landed version is read-only, root's reserve would only be wasted.
            // nodiscard: a fresh thin LV maps nothing, and a classic one is overwritten.
            try run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "nodiscard", device])
        }
    }

    /// Refuses to start when the VG or the thin pool certainly cannot hold the new version.
    /// `newVolume`: the size of a new classic LV; `releaseBytes`: what a full release
    /// writes into a thin LV.
    private func checkSpace(pool usage: PoolUsage?, newVolume: UInt64?, releaseBytes: UInt64) throws {
        if let pool = thinPool, let usage {
            // mkfs writes its journal and metadata: about 1/32 of the LV, at most 64 MiB more.
            let needed = releaseBytes == 0 ? 16 * Self.mebibyte : releaseBytes + min(64 * Self.mebibyte, releaseBytes / 8) + 16 * Self.mebibyte
            if usage.freeData < needed || usage.metadataPercent >= 98 {
                throw LVMBackendError.poolFull(vg: volumeGroup, pool: pool, dataPercent: usage.dataPercent,
                                               metadataPercent: usage.metadataPercent, needed: needed, free: usage.freeData, detail: nil)
            }
        } else if let newVolume {
            let free = try vgFree()
            if free < newVolume {
                throw LVMBackendError.vgFull(vg: volumeGroup, needed: newVolume, free: free, detail: nil)
            }
        }
    }

    struct PoolUsage: Sendable {
        var size: UInt64
        var dataPercent: Double
        var metadataPercent: Double
        var freeData: UInt64 { UInt64(Double(size) * max(0, 100 - dataPercent) / 100) }
    }

    func poolUsage() throws -> PoolUsage? { try listAll().pool }

    func vgFree() throws -> UInt64 {
        let text = try lvm(["vgs", "--noheadings", "--nosuffix", "--units", "b", "-o", "vg_free", volumeGroup])
        return UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    /// One row of `lvs`.
    struct Row: Sendable {
        var name: String
        var tags: [String]
        var attributes: [Character]
        var size: UInt64
        var dataPercent: Double
        var metadataPercent: Double
        var segmentType: String
    }

    /// Every LV of the VG (one `lvs`), and the thin pool's use when there is one. A missing
    /// VG is an error naming it.
    func listAll() throws -> (rows: [Row], pool: PoolUsage?) {
        let command = lvmCommand(["lvs", "--noheadings", "--nosuffix", "--units", "b", "--separator", "|",
                                  "-o", "lv_name,lv_tags,lv_attr,lv_size,data_percent,metadata_percent,segtype", volumeGroup])
        let result = try runner.runAllowingFailure(command)
        guard result.succeeded else {
            if result.standardErrorTail.contains("not found") || result.standardErrorTail.contains("Cannot process volume group") {
                throw LVMBackendError.noVolumeGroup(name: volumeGroup)
            }
            throw LVMBackendError.command(.failed(command: command.description, status: result.status, signal: result.signal,
                                                  standardErrorTail: result.standardErrorTail))
        }
        let rows = result.outputText.split(separator: "\n").compactMap { line -> Row? in
            let fields = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count >= 7 else { return nil }
            return Row(name: fields[0], tags: fields[1].split(separator: ",").map(String.init), attributes: Array(fields[2]),
                       size: UInt64(fields[3]) ?? 0, dataPercent: Double(fields[4]) ?? 0, metadataPercent: Double(fields[5]) ?? 0,
                       segmentType: fields[6])
        }
        let pool = thinPool.flatMap { name in rows.first { $0.name == name && $0.segmentType == "thin-pool" } }
            .map { PoolUsage(size: $0.size, dataPercent: $0.dataPercent, metadataPercent: $0.metadataPercent) }
        return (rows, pool)
    }

    /// The app's LVs (tagged `slipway.app=<app>` and named `<app>-…`); an app never landed
    /// has none.
    func listVolumes(_ layout: NodeLayout) throws -> [LVMVolume] { appVolumes(try listAll().rows, layout) }

    func appVolumes(_ rows: [Row], _ layout: NodeLayout) -> [LVMVolume] {
        let prefix = LVMNames.escape(layout.app) + "-"
        return rows.compactMap { row in
            guard row.name.hasPrefix(prefix), row.tags.contains(tag(layout)), row.tags.contains(rootTag(layout)) else { return nil }
            var rest = String(row.name.dropFirst(prefix.count))
            var staging = row.tags.contains(Self.stagingTag)
            if rest.hasSuffix(Self.partialSuffix) {
                rest.removeLast(Self.partialSuffix.count)
                staging = true
            }
            return LVMVolume(name: row.name, version: LVMNames.unescape(rest), isStaging: staging,
                             isActive: row.attributes.count > 4 && row.attributes[4] == "a",
                             isThin: row.attributes.first == "V", size: row.size)
        }
    }

    /// What `recoverListingLanded` listed, taken once by the staging that follows (each LVM
    /// command costs a device scan: about 0.3 s under emulation, docs/lvm.md). Every mutating
    /// command starts with recovery, which replaces it, so a listing never outlives its command.
    final class LVMListingHandoff: @unchecked Sendable {
        private let lock = NSLock()
        private var listing: (rows: [Row], pool: PoolUsage?)?

        func put(_ listing: (rows: [Row], pool: PoolUsage?)?) { lock.withLock { self.listing = listing } }

        func take() -> (rows: [Row], pool: PoolUsage?)? {
            lock.withLock {
                defer { listing = nil }
                return listing
            }
        }
    }

    /// LVM's commands, with `DM_DISABLE_UDEV=1` when no udev daemon runs (containers,
    /// initramfs-less VMs): libdevmapper then makes the /dev nodes itself instead of waiting
    /// for udev events that never come.
    func lvmCommand(_ arguments: [String]) -> Command {
        var environment: [String: String?] = ["LC_ALL": "C"]
        if !NodeFiles.exists("/run/udev/control") { environment["DM_DISABLE_UDEV"] = "1" }
        return Command(arguments, environment: environment, timeout: Self.timeout)
    }

    @discardableResult
    private func lvm(_ arguments: [String], explainingSpace: Bool = false) throws -> String {
        do {
            return try runner.run(lvmCommand(arguments)).outputText
        } catch let error as CommandError {
            if explainingSpace, case let .failed(_, _, _, tail) = error,
               tail.contains("Insufficient") || tail.contains("insufficient") || tail.contains("out of data space") || tail.contains("is full") {
                if let pool = thinPool, let usage = try? poolUsage() {
                    throw LVMBackendError.poolFull(vg: volumeGroup, pool: pool, dataPercent: usage.dataPercent,
                                                   metadataPercent: usage.metadataPercent, needed: nil, free: usage.freeData, detail: tail)
                }
                throw LVMBackendError.vgFull(vg: volumeGroup, needed: nil, free: (try? vgFree()) ?? 0, detail: tail)
            }
            throw LVMBackendError.command(error)
        }
    }

    private func run(_ arguments: [String]) throws {
        do {
            try runner.run(Command(arguments, environment: ["LC_ALL": "C"], timeout: Self.timeout))
        } catch let error as CommandError {
            throw LVMBackendError.command(error)
        }
    }

    /// An apply that failed while the thin pool (or VG) filled up failed because of that:
    /// says so, naming the pool, instead of the write error the filesystem saw.
    /// The thin pool's free data, or the volume group's free extents without a pool.
    public func availableSpace(layout: NodeLayout) -> NodeStatus.Space? {
        if let pool = thinPool {
            guard let usage = try? poolUsage() else { return nil }
            return NodeStatus.Space(availableBytes: usage.freeData, location: "thin pool \(volumeGroup)/\(pool)")
        }
        guard let free = try? vgFree() else { return nil }
        return NodeStatus.Space(availableBytes: free, location: "volume group \(volumeGroup)")
    }

    public func explainFailure(_ error: any Error, version: String, layout: NodeLayout) -> (any Error)? {
        if error is LVMBackendError { return nil }
        guard let pool = thinPool, let usage = try? poolUsage(), usage.dataPercent >= 99 || usage.metadataPercent >= 99 else { return nil }
        return LVMBackendError.poolFull(vg: volumeGroup, pool: pool, dataPercent: usage.dataPercent, metadataPercent: usage.metadataPercent,
                                        needed: nil, free: usage.freeData, detail: Output.message(for: error))
    }
}

/// One of an app's logical volumes.
struct LVMVolume: Sendable {
    var name: String
    /// The version it holds (nil when the name does not map back to one).
    var version: String?
    var isStaging: Bool
    var isActive: Bool
    var isThin: Bool
    var size: UInt64
}

/// What went wrong in the LVM backend, with the VG/LV and what to do about it.
public enum LVMBackendError: Error, CustomStringConvertible, Sendable {
    case noVolumeGroupSetting
    case noVolumeGroup(name: String)
    case noThinPool(vg: String, pool: String)
    case badName(String)
    case alreadyLanded(version: String, volume: String)
    case notLanded(version: String, volume: String)
    case noStaging(version: String, volume: String)
    case strayStaging(path: String)
    case foreignVolume(volume: String, root: String, tags: String)
    case vgFull(vg: String, needed: UInt64?, free: UInt64, detail: String?)
    case poolFull(vg: String, pool: String, dataPercent: Double, metadataPercent: Double, needed: UInt64?, free: UInt64, detail: String?)
    case badSetting(key: String, value: String, expected: String)
    case command(CommandError)
    /// mount(2) or umount(2) failed: what was asked (as the mount(8) command line) and errno.
    case mount(operation: String, errno: Int32)

    public var description: String {
        func mib(_ bytes: UInt64) -> String { "\((bytes + (1 << 20) - 1) >> 20) MiB" }
        switch self {
        case .noVolumeGroupSetting:
            return "the lvm backend needs a volume group: vg = \"vg0\" in node.toml's [lvm] table"
        case let .noVolumeGroup(name):
            return "volume group \(name) does not exist (vgs lists them); create it (pvcreate DEVICE && vgcreate \(name) DEVICE) or fix vg in node.toml's [lvm] table"
        case let .noThinPool(vg, pool):
            return "thin pool \(vg)/\(pool) does not exist or is no thin pool; create it (lvcreate --type thin-pool -L SIZE -n \(pool) \(vg)) or remove thin_pool from node.toml's [lvm] table"
        case let .badName(detail):
            return detail
        case let .alreadyLanded(version, volume):
            return "version \(version) is already landed as \(volume); remove it (slipway node prune) before landing it again"
        case let .notLanded(version, volume):
            return "base version \(version) has no landed LV \(volume); apply the full release instead of a delta"
        case let .noStaging(version, volume):
            return "no staging LV \(volume) for version \(version) to commit (was it removed by a concurrent recover?)"
        case let .strayStaging(path):
            return "\(path) is a non-empty staging directory that is no mounted LV; remove it by hand"
        case let .foreignVolume(volume, root, tags):
            return "\(volume) exists but is not this node root's (\(root)); its tags: \(tags.isEmpty ? "none" : tags). "
                + "One VG holds one root's versions of an app: give this root another vg in [lvm], or remove the LV if nothing uses it"
        case let .vgFull(vg, needed, free, detail):
            return "volume group \(vg) is full: " + (needed.map { "a new version needs \(mib($0)), " } ?? "") + "\(mib(free)) free"
                + "; the current version is untouched. Prune old versions (slipway node prune), extend the VG (vgextend), or lower size/factor in [lvm]"
                + (detail.map { "\n" + $0 } ?? "")
        case let .poolFull(vg, pool, data, metadata, needed, free, detail):
            return "thin pool \(vg)/\(pool) is full (data \(String(format: "%.1f", data)) %, metadata \(String(format: "%.1f", metadata)) %, \(mib(free)) free"
                + (needed.map { ", this version needs about \(mib($0))" } ?? "") + "); the current version is untouched. "
                + "Prune old versions (slipway node prune) or extend the pool (lvextend -L +SIZE \(vg)/\(pool))"
                + (detail.map { "\n" + $0 } ?? "")
        case let .badSetting(key, value, expected):
            return "lvm backend setting \(key) = \"\(value)\" is not valid; expected \(expected)"
        case let .command(error):
            return "lvm: \(error)"
        case let .mount(operation, code):
            return "lvm: \(operation): \(String(cString: strerror(code)))"
        }
    }
}
