import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The `btrfs` backend: every version is its own subvolume `releases/<version>`, made
/// read-only when it lands. A delta starts as a writable snapshot of its base, which costs
/// no copy. Staging is the subvolume `releases/.partial-<version>`; commit syncs it, sets it
/// read-only and renames it into place, so a visible `releases/<version>` is always complete
/// and read-only.
///
/// Settings (node.toml `[btrfs]`, see docs/backends.md):
/// - `mount` (or `btrfs_mount`): optional; the btrfs mount that holds `releases/`. When given, slipway
///   checks that it is btrfs and that `releases/` lies under it.
/// - `schroot_type`: `btrfs-snapshot` (default: each schroot session runs in its own
///   throw-away snapshot of the version) or `directory` (sessions run in the read-only
///   version itself).
public struct BtrfsBackend: NodeBackend {
    public var kind: BackendKind { .btrfs }
    /// Landed subvolumes are read-only, so a snapshot of one holds verified contents.
    public var stagedCopyIsImmutableBase: Bool { true }
    public var mount: String?
    public var schrootType: String
    /// The node context's runner (makeBackend passes it).
    let runner: CommandRunner
    /// btrfs commands are metadata operations; a minute means the filesystem is stuck.
    static let timeout: Duration = .seconds(120)

    /// The `[btrfs]` table of node.toml; unknown keys are errors.
    public init(settings: [String: String], runner: CommandRunner = CommandRunner()) throws {
        self.runner = runner
        for key in settings.keys where !["mount", "btrfs_mount", "schroot_type"].contains(key) {
            throw BtrfsBackendError.badSetting(key: key, value: settings[key] ?? "",
                                               expected: "one of mount (or btrfs_mount) and schroot_type")
        }
        mount = (settings["mount"] ?? settings["btrfs_mount"]).flatMap { $0.isEmpty ? nil : $0 }
        schrootType = settings["schroot_type"] ?? "btrfs-snapshot"
        guard ["btrfs-snapshot", "directory"].contains(schrootType) else {
            throw BtrfsBackendError.badSetting(key: "schroot_type", value: schrootType, expected: "btrfs-snapshot or directory")
        }
    }

    public func createStaging(_ request: StagingRequest, layout: NodeLayout) throws -> String {
        guard let base = request.base else { return try createEmptyStaging(version: request.version, layout: layout) }
        return try createStagingCopy(version: request.version, from: base, layout: layout)
    }

    func createEmptyStaging(version: String, layout: NodeLayout) throws -> String {
        let staging = try prepareStaging(version: version, layout: layout)
        try btrfs(["subvolume", "create", staging])
        return staging
    }

    func createStagingCopy(version: String, from base: String, layout: NodeLayout) throws -> String {
        let source = layout.release(base)
        guard BtrfsBackend.isSubvolume(source) else {
            throw BtrfsBackendError.notLanded(version: base, path: source)
        }
        let staging = try prepareStaging(version: version, layout: layout)
        // A snapshot of a read-only subvolume is writable unless -r is given.
        try btrfs(["subvolume", "snapshot", source, staging])
        return staging
    }

    public func commit(version: String, layout: NodeLayout) throws {
        let staging = layout.partial(version)
        let target = layout.release(version)
        guard BtrfsBackend.isSubvolume(staging) else {
            throw BtrfsBackendError.noStaging(version: version, path: staging)
        }
        try btrfs(["filesystem", "sync", staging])
        // Read-only before the rename: whatever is visible as releases/<version> is final.
        try btrfs(["property", "set", "-ts", staging, "ro", "true"])
        guard rename(staging, target) == 0 else {
            throw BtrfsBackendError.system(operation: "rename \(staging) to \(target)", errno: errno)
        }
        try NodeFiles.fsyncDirectory(layout.releases)
    }

    public func remove(version: String, layout: NodeLayout) throws {
        let path = layout.release(version)
        guard BtrfsBackend.isSubvolume(path) else {
            if !BtrfsBackend.exists(path) { return }
            throw BtrfsBackendError.notASubvolume(path: path)
        }
        try deleteSubvolume(path)
        try NodeFiles.fsyncDirectory(layout.releases)
    }

    public func recover(layout: NodeLayout) throws {
        let leftovers = try BtrfsBackend.entries(layout.releases).filter { $0.hasPrefix(".partial-") }
        guard !leftovers.isEmpty else { return }
        let onBtrfs = try filesystemType(layout.releases) == "btrfs"
        for name in leftovers {
            let path = "\(layout.releases)/\(name)"
            if onBtrfs, BtrfsBackend.isSubvolume(path) {
                try deleteSubvolume(path)
            } else {
                // Not ours as a subvolume (a crash before `subvolume create` cannot leave
                // one, but another tool might): a plain directory goes as a directory.
                try runner.run(Command(["rm", "-rf", "--one-file-system", path], timeout: Self.timeout))
            }
        }
        try NodeFiles.fsyncDirectory(layout.releases)
    }

    public func landedVersions(layout: NodeLayout) throws -> [String] {
        guard BtrfsBackend.exists(layout.releases), try filesystemType(layout.releases) == "btrfs" else { return [] }
        return try BtrfsBackend.entries(layout.releases)
            .filter { !$0.hasPrefix(".") && BtrfsBackend.isSubvolume("\(layout.releases)/\($0)") }
            .sorted()
    }

    public func schrootSettings(version: String, layout: NodeLayout) throws -> [(key: String, value: String)] {
        let release = layout.release(version)
        switch schrootType {
        case "directory":
            // A landed version is read-only and schroot's setup writes into the chroot
            // (/etc/debian_chroot): an overlay per session takes those writes.
            return [("type", "directory"), ("directory", release), ("union-type", "overlay")]
        case "btrfs-snapshot":
            // schroot snapshots the source into this directory per session; it must be on the
            // same btrfs filesystem, and releases/ is.
            let sessions = "\(layout.releases)/.schroot-sessions"
            if !BtrfsBackend.exists(sessions), mkdir(sessions, 0o700) != 0, errno != EEXIST {
                throw BtrfsBackendError.system(operation: "mkdir \(sessions)", errno: errno)
            }
            return [("type", "btrfs-snapshot"), ("btrfs-source-subvolume", release),
                    ("btrfs-snapshot-directory", sessions)]
        default:
            throw BtrfsBackendError.badSetting(key: "schroot_type", value: schrootType,
                                               expected: "btrfs-snapshot or directory")
        }
    }

    // MARK: - Helpers

    /// Checks the version name and the filesystem, makes releases/ and clears a stale
    /// staging subvolume of the same version.
    private func prepareStaging(version: String, layout: NodeLayout) throws -> String {
        guard BtrfsBackend.isValidVersion(version) else { throw BtrfsBackendError.badVersion(version) }
        try FileManager.default.createDirectory(atPath: layout.releases, withIntermediateDirectories: true)
        try checkFilesystem(layout.releases)
        let target = layout.release(version)
        if BtrfsBackend.exists(target) { throw BtrfsBackendError.alreadyLanded(version: version, path: target) }
        let staging = layout.partial(version)
        if BtrfsBackend.isSubvolume(staging) { try deleteSubvolume(staging) }
        return staging
    }

    func checkFilesystem(_ releases: String) throws {
        if let mount {
            guard try filesystemType(mount) == "btrfs" else {
                throw BtrfsBackendError.notBtrfs(path: mount, setting: "btrfs_mount")
            }
            let prefix = mount.hasSuffix("/") ? mount : mount + "/"
            guard releases.hasPrefix(prefix) || releases == mount else {
                throw BtrfsBackendError.outsideMount(releases: releases, mount: mount)
            }
        }
        guard try filesystemType(releases) == "btrfs" else {
            throw BtrfsBackendError.notBtrfs(path: releases, setting: nil)
        }
    }

    private func deleteSubvolume(_ path: String) throws {
        // A read-only subvolume is deleted by root as is; clearing ro first also lets a
        // non-root owner with user_subvol_rm_allowed delete it.
        _ = try? runner.runAllowingFailure(Command(["btrfs", "property", "set", "-ts", path, "ro", "false"], timeout: Self.timeout))
        try btrfs(["subvolume", "delete", path])
    }

    private func btrfs(_ arguments: [String]) throws {
        do {
            try runner.run(Command(["btrfs"] + arguments, timeout: Self.timeout))
        } catch let error as CommandError {
            throw BtrfsBackendError.command(error)
        }
    }

    /// The type of the filesystem holding `path` (or its nearest existing parent): "btrfs",
    /// or another name ("ext2/ext3", "tmpfs", "0x…" …); nil when nothing exists. statfs(2), not
    /// `stat -f`: every switch lists the landed versions, and a process per look cost more
    /// than the switch itself.
    func filesystemType(_ path: String) throws -> String? {
        var probe = path
        while !BtrfsBackend.exists(probe) {
            guard let slash = probe.lastIndex(of: "/"), slash != probe.startIndex else { return nil }
            probe = String(probe[..<slash])
        }
        guard let magic = NodeFiles.fileSystemMagic(probe) else {
            throw BtrfsBackendError.system(operation: "statfs \(probe)", errno: errno)
        }
        switch magic {
        case 0x9123_683E: return "btrfs"
        case 0xEF53: return "ext2/ext3"
        case 0x0102_1994: return "tmpfs"
        case 0x5846_5342: return "xfs"
        case 0x2FC1_2FC1: return "zfs"
        case 0x6573_5546: return "fuseblk"
        case let other: return "0x" + String(other, radix: 16)
        }
    }

    /// The root directory of a btrfs subvolume always has inode 256 (callers check the
    /// filesystem once).
    static func isSubvolume(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR && st.st_ino == 256
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// A version is one path component, usable as a file name and a dataset name.
    static func isValidVersion(_ version: String) -> Bool {
        !version.isEmpty && !version.hasPrefix(".") && !version.hasPrefix("-")
            && version.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-+:~".contains($0)) }
    }

    static func entries(_ directory: String) throws -> [String] {
        guard exists(directory) else { return [] }
        return try FileManager.default.contentsOfDirectory(atPath: directory)
    }

}

/// What went wrong in the btrfs backend, with the path and what to do about it.
public enum BtrfsBackendError: Error, CustomStringConvertible, Sendable {
    case notBtrfs(path: String, setting: String?)
    case outsideMount(releases: String, mount: String)
    case badVersion(String)
    case alreadyLanded(version: String, path: String)
    case notLanded(version: String, path: String)
    case noStaging(version: String, path: String)
    case notASubvolume(path: String)
    case badSetting(key: String, value: String, expected: String)
    case system(operation: String, errno: Int32)
    case command(CommandError)

    public var description: String {
        switch self {
        case let .notBtrfs(path, setting):
            let what = setting.map { "\($0) = \(path)" } ?? path
            return "\(what) is not on a btrfs filesystem; the btrfs backend keeps each version in a subvolume — "
                + "mount a btrfs filesystem at (or above) the app's releases/ directory, or use backend \"dir\""
        case let .outsideMount(releases, mount):
            return "\(releases) is not under btrfs_mount = \(mount); set the node root inside that mount or fix btrfs_mount"
        case let .badVersion(version):
            return "version \"\(version)\" cannot name a subvolume (letters, digits and . _ - + : ~ only, not starting with . or -)"
        case let .alreadyLanded(version, path):
            return "version \(version) is already landed at \(path); remove it (slipway node prune) before landing it again"
        case let .notLanded(version, path):
            return "base version \(version) is not a landed btrfs subvolume at \(path); apply the full release instead of a delta"
        case let .noStaging(version, path):
            return "no staging subvolume for version \(version) at \(path) to commit (was it removed by a concurrent recover?)"
        case let .notASubvolume(path):
            return "\(path) is not a btrfs subvolume; it was not landed by the btrfs backend — remove it by hand"
        case let .badSetting(key, value, expected):
            return "btrfs backend setting \(key) = \"\(value)\" is not valid; expected \(expected)"
        case let .system(operation, code):
            return "\(operation) failed: \(String(cString: strerror(code)))"
        case let .command(error):
            return "btrfs: \(error)"
        }
    }
}
