import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The `zfs` backend: every version is the dataset `<zfs_dataset>/<app>/<version>`, mounted
/// read-only at `releases/<version>`, with the snapshot `@landed-<version>` taken when it
/// lands. A delta starts as a clone of its base's landed snapshot.
///
/// Staging is the version's own dataset `<zfs_dataset>/<app>/<version>`, made with the user
/// property `slipway:staging=on` and mounted at `releases/.partial-<version>`. Commit: unmount,
/// readonly=on, mountpoint `releases/<version>`, mount, snapshot `@landed-<version>`, clear
/// the property. The snapshot is the commit marker: `recover` destroys every dataset that has
/// no snapshot and the property (an unfinished landing) and clears the property of one that
/// has the snapshot. No rename: zfs-fuse could refuse one as "busy" for good after a kill
/// (docs/backends.md). Datasets of older slipways are still recovered: `partial-<version>`
/// staging datasets are destroyed, and a renamed dataset without the property and without its
/// snapshot (killed inside the old commit, its tree verified and synced) has its commit
/// finished.
///
/// The snapshot carries the version in its name because `zfs promote` moves the origin's
/// snapshots to the clone, and two snapshots both called `@landed` would collide; pruning a
/// base that a landed clone still depends on promotes the clone first, so it never fails.
///
/// Settings (node.toml `[zfs]`, see docs/backends.md):
/// - `dataset` (or `zfs_dataset`; required): the parent dataset, e.g. `tank/slipway`; made (unmounted)
///   when missing.
/// - `schroot_type`: `directory` (default; works with zfs-fuse) or `zfs-snapshot` (schroot
///   clones the landed dataset per session; needs native ZFS for `mount -t zfs`).
public struct ZFSBackend: NodeBackend {
    public var kind: BackendKind { .zfs }
    /// A clone of the base's `@landed` snapshot, which nothing can write.
    public var stagedCopyIsImmutableBase: Bool { true }
    /// zfs-fuse serves several requests at once: with 8 writers a full apply of the bench
    /// tree took 0.82× as long as with none (docs/node.md).
    public var extractWriters: Int { 8 }
    public var prefix: String
    public var schrootType: String
    /// The node context's runner (makeBackend passes it).
    let runner: CommandRunner
    static let timeout: Duration = .seconds(120)
    static let partialPrefix = "partial-"
    /// The user property that marks a version's dataset as staging until its commit.
    static let stagingProperty = "slipway:staging"

    /// The `[zfs]` table of node.toml; unknown keys are errors.
    public init(settings: [String: String], runner: CommandRunner = CommandRunner()) throws {
        self.runner = runner
        for key in settings.keys where !["dataset", "zfs_dataset", "schroot_type"].contains(key) {
            throw ZFSBackendError.badSetting(key: key, value: settings[key] ?? "",
                                             expected: "one of dataset (or zfs_dataset) and schroot_type")
        }
        var prefix = settings["dataset"] ?? settings["zfs_dataset"] ?? ""
        while prefix.hasSuffix("/") { prefix.removeLast() }
        guard !prefix.isEmpty, !prefix.hasPrefix("/") else { throw ZFSBackendError.noDataset }
        self.prefix = prefix
        schrootType = settings["schroot_type"] ?? "directory"
        guard ["directory", "zfs-snapshot"].contains(schrootType) else {
            throw ZFSBackendError.badSetting(key: "schroot_type", value: schrootType, expected: "directory or zfs-snapshot")
        }
    }

    func appDataset(_ layout: NodeLayout) -> String { "\(prefix)/\(layout.app)" }
    func dataset(_ version: String, _ layout: NodeLayout) -> String { "\(appDataset(layout))/\(version)" }
    /// The staging dataset of an older slipway (renamed to the version's dataset on commit).
    func oldStagingDataset(_ version: String, _ layout: NodeLayout) -> String {
        "\(appDataset(layout))/\(Self.partialPrefix)\(version)"
    }
    static func snapshotName(_ version: String) -> String { "landed-\(version)" }
    func landedSnapshot(_ version: String, _ layout: NodeLayout) -> String {
        "\(dataset(version, layout))@\(Self.snapshotName(version))"
    }

    public func createStaging(_ request: StagingRequest, layout: NodeLayout) throws -> String {
        guard let base = request.base else { return try createEmptyStaging(version: request.version, layout: layout) }
        return try createStagingCopy(version: request.version, from: base, layout: layout)
    }

    func createEmptyStaging(version: String, layout: NodeLayout) throws -> String {
        let staging = try prepareStaging(version: version, layout: layout, names: try names(layout))
        try zfs(["create", "-o", "\(Self.stagingProperty)=on", "-o", "mountpoint=\(layout.partial(version))", dataset(version, layout)])
        try ensureMounted(dataset(version, layout))
        return staging
    }

    func createStagingCopy(version: String, from base: String, layout: NodeLayout) throws -> String {
        let snapshot = landedSnapshot(base, layout)
        // Every check below reads this one listing: each zfs command is a round trip to the
        // ZFS daemon (zfs-fuse) or the kernel, and a delta apply is made of little else.
        let names = try names(layout)
        guard names.contains(snapshot) else { throw ZFSBackendError.notLanded(version: base, snapshot: snapshot) }
        let staging = try prepareStaging(version: version, layout: layout, names: names)
        // A clone inherits readonly from its parent dataset, not from its origin; say it anyway.
        try zfs(["clone", "-o", "\(Self.stagingProperty)=on", "-o", "mountpoint=\(layout.partial(version))", "-o", "readonly=off",
                 snapshot, dataset(version, layout)])
        try ensureMounted(dataset(version, layout))
        return staging
    }

    public func commit(version: String, layout: NodeLayout) throws {
        let target = dataset(version, layout)
        guard let entry = try listIfPresent(layout)?.first(where: { $0.name == target }), entry.staging else {
            throw ZFSBackendError.noStaging(version: version, dataset: target)
        }
        syncTree(layout.partial(version))
        try finishCommit(version: version, layout: layout)
        _ = rmdir(layout.partial(version))
        // After the snapshot: the version has landed whether or not this runs (recover
        // clears a property left behind).
        try zfs(["inherit", Self.stagingProperty, target])
        try? NodeFiles.fsyncDirectory(layout.releases)
    }

    /// Everything from the staged tree to the landed snapshot; `recover` repeats it for a
    /// dataset an older slipway renamed and was killed before its snapshot.
    private func finishCommit(version: String, layout: NodeLayout) throws {
        let target = dataset(version, layout)
        // Unmounted while its properties change: zfs-fuse remounts read-write otherwise.
        try unmount(target)
        try zfs(["set", "readonly=on", target])
        try zfs(["set", "mountpoint=\(layout.release(version))", target])
        try ensureMounted(target, readOnly: true)
        // The snapshot forces a transaction group sync, so everything above is on disk when
        // it exists.
        try zfs(["snapshot", landedSnapshot(version, layout)])
    }

    public func remove(version: String, layout: NodeLayout) throws {
        let target = dataset(version, layout)
        guard try exists(target) else { return }
        // A landed clone of one of this dataset's snapshots: promote it so that the snapshot
        // (and the blocks it shares) move to the clone and this dataset can go.
        // Each promote moves the snapshots up to the clone's origin; a clone of a later
        // snapshot needs its own promote, so repeat until nothing depends on the target.
        for _ in 0..<64 {
            guard let dependent = try list(layout).first(where: {
                $0.origin?.hasPrefix(target + "@") == true && !$0.name.contains("@")
            }) else { break }
            try zfs(["promote", dependent.name])
        }
        try unmount(target)
        try zfsRetryingBusy(["destroy", "-r", target])
        _ = rmdir(layout.release(version))
        try destroyOrphanSnapshots(layout)
        try? NodeFiles.fsyncDirectory(layout.releases)
    }

    public func recover(layout: NodeLayout) throws {
        guard let all = try listIfPresent(layout) else { return }
        let children = all.filter { !$0.name.contains("@") && $0.name.hasPrefix(appDataset(layout) + "/") }
        var changed = false
        for child in children {
            let leaf = String(child.name.dropFirst(appDataset(layout).count + 1))
            let landed = all.contains(where: { $0.name == landedSnapshot(leaf, layout) })
            if leaf.hasPrefix(Self.partialPrefix) || (child.staging && !landed) {
                // An unfinished landing (an older slipway's `partial-<version>`, or a version's
                // dataset still marked as staging): it goes, whatever it holds.
                try unmount(child.name)
                try zfsRetryingBusy(["destroy", "-r", child.name])
                _ = rmdir(layout.partial(leaf.hasPrefix(Self.partialPrefix) ? String(leaf.dropFirst(Self.partialPrefix.count)) : leaf))
                changed = true
            } else if !landed {
                try finishCommit(version: leaf, layout: layout)
                changed = true
            } else if child.staging {
                // Killed between the snapshot and clearing the mark: landed.
                try zfs(["inherit", Self.stagingProperty, child.name])
                if child.mounted == false { try ensureMounted(child.name, readOnly: true) }
                _ = rmdir(layout.partial(leaf))
                changed = true
            } else if child.mounted == false {
                // After a reboot or a zfs-fuse restart: landed datasets are always mounted.
                try ensureMounted(child.name, readOnly: true)
                changed = true
            }
        }
        // Mountpoint directories of staging datasets that were destroyed elsewhere.
        for name in try BtrfsBackend.entries(layout.releases) where name.hasPrefix(".partial-") {
            let path = "\(layout.releases)/\(name)"
            if rmdir(path) != 0, errno == ENOTEMPTY || errno == EBUSY {
                throw ZFSBackendError.strayStaging(path: path)
            }
        }
        try destroyOrphanSnapshots(layout, listing: changed ? nil : all)
    }

    public func landedVersions(layout: NodeLayout) throws -> [String] {
        guard let all = try listIfPresent(layout) else { return [] }
        let base = appDataset(layout) + "/"
        return all.compactMap { entry -> String? in
            guard entry.name.hasPrefix(base), !entry.name.contains("@") else { return nil }
            let leaf = String(entry.name.dropFirst(base.count))
            guard !leaf.hasPrefix(Self.partialPrefix), !leaf.contains("/"),
                  all.contains(where: { $0.name == landedSnapshot(leaf, layout) }) else { return nil }
            return leaf
        }.sorted()
    }

    public func schrootSettings(version: String, layout: NodeLayout) throws -> [(key: String, value: String)] {
        switch schrootType {
        case "directory":
            // A landed version is read-only and schroot's setup writes into the chroot
            // (/etc/debian_chroot): an overlay per session takes those writes.
            return [("type", "directory"), ("directory", layout.release(version)), ("union-type", "overlay")]
        case "zfs-snapshot":
            return [("type", "zfs-snapshot"), ("zfs-dataset", dataset(version, layout))]
        default:
            throw ZFSBackendError.badSetting(key: "schroot_type", value: schrootType, expected: "directory or zfs-snapshot")
        }
    }

    // MARK: - Helpers

    /// `names`: the app dataset's datasets and snapshots (`names(layout)`).
    private func prepareStaging(version: String, layout: NodeLayout, names: Set<String>) throws -> String {
        guard !prefix.isEmpty, !prefix.hasPrefix("/") else { throw ZFSBackendError.noDataset }
        guard ZFSBackend.isValidVersion(version) else { throw ZFSBackendError.badVersion(version) }
        try FileManager.default.createDirectory(atPath: layout.releases, withIntermediateDirectories: true)
        if !names.contains(appDataset(layout)) { try ensureAppDataset(layout) }
        // An unfinished landing of this version (recover, which runs first, removes those;
        // this covers a backend used on its own).
        if names.contains(dataset(version, layout)) {
            guard let entry = try listIfPresent(layout)?.first(where: { $0.name == dataset(version, layout) }), entry.staging,
                  !names.contains(landedSnapshot(version, layout)) else {
                throw ZFSBackendError.alreadyLanded(version: version, dataset: dataset(version, layout))
            }
            try unmount(entry.name)
            try zfsRetryingBusy(["destroy", "-r", entry.name])
        }
        let old = oldStagingDataset(version, layout)
        if names.contains(old) {
            try unmount(old)
            try zfsRetryingBusy(["destroy", "-r", old])
        }
        return layout.partial(version)
    }

    private func ensureAppDataset(_ layout: NodeLayout) throws {
        if try !exists(prefix) {
            let pool = String(prefix.prefix { $0 != "/" })
            guard try exists(pool) else { throw ZFSBackendError.noPool(pool: pool, dataset: prefix) }
            try zfs(["create", "-p", "-o", "mountpoint=none", prefix])
        }
        // Unmounted containers: each version sets its own mountpoint.
        if try !exists(appDataset(layout)) {
            try zfs(["create", "-o", "mountpoint=none", appDataset(layout)])
        }
    }

    struct Entry {
        var name: String
        var origin: String?
        var mounted: Bool?
        /// `slipway:staging=on`: a version's dataset that has not been committed.
        var staging = false
    }

    /// The names of the app's dataset and of every dataset and snapshot under it; empty
    /// when the app has no dataset yet.
    func names(_ layout: NodeLayout) throws -> Set<String> {
        Set((try listIfPresent(layout) ?? []).map(\.name))
    }

    /// Every dataset and snapshot under the app's dataset.
    func list(_ layout: NodeLayout) throws -> [Entry] {
        guard let entries = try listIfPresent(layout) else {
            throw ZFSBackendError.command(.failed(command: "zfs list \(appDataset(layout))", status: 1, signal: nil,
                                                  standardErrorTail: "dataset does not exist"))
        }
        return entries
    }

    /// Every dataset and snapshot under the app's dataset, or nil when it has none: one
    /// `zfs list` (each zfs command is a round trip to the ZFS daemon or the kernel).
    func listIfPresent(_ layout: NodeLayout) throws -> [Entry]? {
        let arguments = ["zfs", "list", "-H", "-t", "all", "-r", "-o", "name,origin,mounted,\(Self.stagingProperty)", appDataset(layout)]
        let result = try runner.runAllowingFailure(Command(arguments, timeout: Self.timeout))
        guard result.succeeded else {
            if result.standardErrorTail.contains("does not exist") { return nil }
            throw ZFSBackendError.command(.failed(command: arguments.joined(separator: " "), status: result.status,
                                                  signal: result.signal, standardErrorTail: result.standardErrorTail))
        }
        return result.outputText.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 3 else { return nil }
            return Entry(name: fields[0], origin: fields[1] == "-" ? nil : fields[1],
                         mounted: fields[2] == "yes" ? true : fields[2] == "no" ? false : nil,
                         staging: fields.count > 3 && fields[3] == "on")
        }
    }

    /// After a promote, the pruned version's snapshot lives on the promoted dataset; once
    /// nothing is cloned from it, it only holds space.
    /// `listing`: the app's datasets and snapshots when they are known to be current.
    private func destroyOrphanSnapshots(_ layout: NodeLayout, listing: [Entry]? = nil) throws {
        let all = try listing ?? list(layout)
        let origins = Set(all.compactMap(\.origin))
        for entry in all {
            guard let at = entry.name.firstIndex(of: "@") else { continue }
            let owner = entry.name[..<at]
            let snapshot = entry.name[entry.name.index(after: at)...]
            guard snapshot.hasPrefix("landed-"), !origins.contains(entry.name) else { continue }
            let version = snapshot.dropFirst("landed-".count)
            if owner != dataset(String(version), layout) {
                try zfs(["destroy", entry.name])
            }
        }
    }

    private func exists(_ name: String) throws -> Bool {
        let result = try runner.runAllowingFailure(Command(["zfs", "list", "-H", "-t", "all", "-o", "name", name], timeout: Self.timeout))
        if result.succeeded { return true }
        if result.standardErrorTail.contains("does not exist") { return false }
        throw ZFSBackendError.command(.failed(command: "zfs list -H -t all -o name \(name)", status: result.status,
                                              signal: result.signal, standardErrorTail: result.standardErrorTail))
    }

    /// Mounts `dataset` when it is not. zfs-fuse's plain `zfs mount` mounts read-write over
    /// readonly=on (a "temporary" off), so landed versions are mounted with `-o ro`.
    private func ensureMounted(_ dataset: String, readOnly: Bool = false) throws {
        let mounted = try zfs(["get", "-H", "-o", "value", "mounted", dataset]).trimmingCharacters(in: .whitespacesAndNewlines)
        if mounted != "yes" { try zfsRetryingBusy(["mount"] + (readOnly ? ["-o", "ro"] : []) + [dataset]) }
    }

    private func unmount(_ dataset: String) throws {
        let mounted = try zfs(["get", "-H", "-o", "value", "mounted", dataset]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard mounted == "yes" else { return }
        // FUSE lets go of the last inodes a moment after the last close; retry briefly.
        var attempt = 0
        while true {
            do {
                try zfs(["umount", dataset])
                return
            } catch {
                attempt += 1
                if attempt >= 5 { throw error }
                usleep(200_000)
            }
        }
    }

    /// `sync -f` (syncfs) on the staged tree; best effort, as FUSE may not forward it. The
    /// `@landed` snapshot then forces a transaction group sync, which makes the data durable.
    private func syncTree(_ root: String) {
        _ = try? runner.runAllowingFailure(Command(["sync", "-f", root], timeout: Self.timeout))
    }

    /// zfs-fuse lets go of an unmounted dataset a moment after `zfs umount` returns, and
    /// until then refuses rename, destroy and mount with "dataset is busy": retry those for
    /// a while. Busy for good means another mount namespace, made while the dataset was
    /// mounted, still has it (a process that unshared and kept every mount): the error then
    /// names that namespace's processes.
    private func zfsRetryingBusy(_ arguments: [String]) throws {
        let deadline = ContinuousClock.now + .seconds(15)
        var pause = 50_000 as useconds_t
        while true {
            do {
                try zfs(arguments)
                return
            } catch let error as ZFSBackendError {
                guard case .command(.failed(_, _, _, let tail)) = error, tail.contains("busy") else { throw error }
                guard ContinuousClock.now < deadline else {
                    // A mount namespace made while the dataset was mounted keeps it alive.
                    let holders = Mounts.holders(source: arguments.last ?? "")
                    guard !holders.isEmpty else { throw error }
                    throw ZFSBackendError.heldElsewhere(dataset: arguments.last ?? "", holders: holders)
                }
                usleep(pause)
                pause = min(pause * 2, 500_000)
            }
        }
    }

    /// The `available` property of the app's dataset (or of the prefix, before the first
    /// version): what a new clone or dataset may take.
    public func availableSpace(layout: NodeLayout) -> NodeStatus.Space? {
        for dataset in [appDataset(layout), prefix] {
            if let text = try? zfs(["get", "-Hp", "-o", "value", "available", dataset]),
               let bytes = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                return NodeStatus.Space(availableBytes: bytes, location: "ZFS dataset \(dataset)")
            }
        }
        return nil
    }

    @discardableResult
    private func zfs(_ arguments: [String]) throws -> String {
        do {
            return try runner.run(Command(["zfs"] + arguments, timeout: Self.timeout)).outputText
        } catch let error as CommandError {
            throw ZFSBackendError.command(error)
        }
    }

    /// Dataset name components: letters, digits and `_ - . :`, not starting with `partial-`.
    static func isValidVersion(_ version: String) -> Bool {
        !version.isEmpty && !version.hasPrefix(".") && !version.hasPrefix("-") && !version.hasPrefix(partialPrefix)
            && version.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-:".contains($0)) }
    }
}

/// What went wrong in the ZFS backend, with the dataset and what to do about it.
public enum ZFSBackendError: Error, CustomStringConvertible, Sendable {
    case noDataset
    case noPool(pool: String, dataset: String)
    case badVersion(String)
    case alreadyLanded(version: String, dataset: String)
    case notLanded(version: String, snapshot: String)
    case noStaging(version: String, dataset: String)
    case strayStaging(path: String)
    case badSetting(key: String, value: String, expected: String)
    case heldElsewhere(dataset: String, holders: [Mounts.Holder])
    case command(CommandError)

    public var description: String {
        switch self {
        case .noDataset:
            return "the zfs backend needs a dataset prefix: dataset = \"tank/slipway\" in node.toml's [zfs] table"
        case let .noPool(pool, dataset):
            return "zfs_dataset = \(dataset): pool \(pool) does not exist (zpool list shows the pools); create it or fix zfs_dataset"
        case let .badVersion(version):
            return "version \"\(version)\" cannot name a ZFS dataset (letters, digits and . _ - : only, not starting with . - or partial-)"
        case let .alreadyLanded(version, dataset):
            return "version \(version) is already landed as \(dataset); remove it (slipway node prune) before landing it again"
        case let .notLanded(version, snapshot):
            return "base version \(version) has no landed snapshot \(snapshot); apply the full release instead of a delta"
        case let .heldElsewhere(dataset, holders):
            return "zfs: \(dataset) is busy: still mounted in another mount namespace, made while it was mounted, of " +
                holders.map(\.description).joined(separator: "; ") +
                "; a process that unshares its mount namespace must not keep the mounts it copied (docs/backends.md)"
        case let .noStaging(version, dataset):
            return "no staging dataset \(dataset) for version \(version) to commit (was it removed by a concurrent recover?)"
        case let .strayStaging(path):
            return "\(path) is a non-empty staging directory that is no ZFS dataset; remove it by hand"
        case let .badSetting(key, value, expected):
            return "zfs backend setting \(key) = \"\(value)\" is not valid; expected \(expected)"
        case let .command(error):
            return "zfs: \(error)"
        }
    }
}
