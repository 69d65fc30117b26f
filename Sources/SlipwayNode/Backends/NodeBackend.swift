import Foundation
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem
/// Where the versions of one app live on a node, and how a new one is made and committed.
/// Every backend exposes a landed version as the directory `releases/<version>` (a plain
/// directory, or the mountpoint of a subvolume, dataset or logical volume); the switch is
/// always the same rename of the `current` symlink, done by the node, not the backend.
///
/// Staging is the backend's place for a version being landed (`releases/.partial-<version>`
/// or its equivalent). It is never visible as `releases/<version>` until `commit`, so a crash
/// at any instant leaves either nothing or a complete, committed version.
public protocol NodeBackend: Sendable {
    /// `dir`, `btrfs`, `zfs` or `lvm`.
    var kind: BackendKind { get }

    /// Creates the staging tree of `request.version` and returns the path to extract into:
    /// empty, or (with `request.base`) the backend's cheap copy of that landed version
    /// (reflink copy, snapshot, clone). `request.releaseBytes` (the release's tar size) is
    /// for backends that make a volume of a size per version (lvm).
    func createStaging(_ request: StagingRequest, layout: NodeLayout) throws -> String

    /// Makes the staged tree the landed `releases/<version>` (rename, read-only snapshot,
    /// `@landed` snapshot …), durably.
    func commit(version: String, layout: NodeLayout) throws

    /// Removes a landed version (prune). Never called for the current or previous version.
    func remove(version: String, layout: NodeLayout) throws

    /// Removes every leftover of an interrupted apply (staging trees, half-made volumes).
    /// Called at the start of every mutating command; must be idempotent.
    func recover(layout: NodeLayout) throws

    /// The versions this backend holds as landed (for status and consistency checks).
    func landedVersions(layout: NodeLayout) throws -> [String]

    /// `recover`, then `landedVersions`: what recovery at the start of every mutating command
    /// calls. A backend whose listing is a command of its own (lvm: `lvs`) answers both from
    /// one listing, since recovery never adds or removes a landed version.
    func recoverListingLanded(layout: NodeLayout) throws -> [String]

    /// The schroot chroot.d settings that expose `version` (type and its keys), when the
    /// node enables schroot.
    func schrootSettings(version: String, layout: NodeLayout) throws -> [(key: String, value: String)]

    /// Whether `createStaging` of a base yields a copy of contents that cannot have
    /// changed since the base was verified (a snapshot of a read-only subvolume, a clone of
    /// an immutable snapshot). Then a delta apply hashes only what the delta wrote; a plain
    /// directory copy of a writable base is hashed whole.
    var stagedCopyIsImmutableBase: Bool { get }

    /// Whether apply makes the staging tree while it hashes the archive, rather than after:
    /// for a backend whose staging costs commands of their own (a new LV and its mkfs, a
    /// snapshot). What was made is removed when the hash does not match, so nothing stays
    /// of a release that failed its check; the signature and names are checked before.
    var stagesWhileHashing: Bool { get }

    /// Worker threads that create a full apply's small files (0: the extracting thread
    /// creates every file): for a file system whose every call is a round trip to a daemon
    /// (zfs-fuse), where several files in flight at once shorten the apply. On a kernel file
    /// system the calls are CPU work, and more threads gain nothing on two cores.
    var extractWriters: Int { get }

    /// A clearer error for an apply that failed because of the backend's storage (a full
    /// thin pool), or nil to keep the error as it is.
    func explainFailure(_ error: any Error, version: String, layout: NodeLayout) -> (any Error)?

    /// Free space for a new version, for `deploy --plan`; nil when the backend cannot tell.
    /// Read-only.
    func availableSpace(layout: NodeLayout) -> NodeStatus.Space?
}

extension NodeBackend {
    /// The backend's name, for messages.
    public var name: String { kind.rawValue }
    public var stagedCopyIsImmutableBase: Bool { false }
    public var stagesWhileHashing: Bool { false }
    public var extractWriters: Int { 0 }
    public func recoverListingLanded(layout: NodeLayout) throws -> [String] {
        try recover(layout: layout)
        return try landedVersions(layout: layout)
    }
    public func explainFailure(_ error: any Error, version: String, layout: NodeLayout) -> (any Error)? { nil }

    /// The file system that holds `releases/` (or its nearest existing parent: a node that
    /// has not landed the app yet).
    public func availableSpace(layout: NodeLayout) -> NodeStatus.Space? {
        NodeBackendSpace.fileSystem(holding: layout.releases)
    }
}

enum NodeBackendSpace {
    /// `statvfs` of `path` or its nearest existing parent: the bytes an unprivileged writer
    /// may use (`f_bavail`; root may use the reserved blocks too, a margin kept).
    static func fileSystem(holding path: String) -> NodeStatus.Space? {
        var probe = path
        while true {
            var info = statvfs()
            if statvfs(probe, &info) == 0 {
                return NodeStatus.Space(availableBytes: UInt64(info.f_bavail) * UInt64(info.f_frsize), location: "the file system of \(probe)")
            }
            guard errno == ENOENT, probe != "/", !probe.isEmpty else { return nil }
            probe = (probe as NSString).deletingLastPathComponent
            if probe.isEmpty { probe = "/" }
        }
    }
}

/// What `NodeBackend.createStaging` makes: `version`, empty or as a copy of the landed `base`.
public struct StagingRequest: Sendable, Equatable {
    public var version: String
    public var base: String?
    /// The release's tar size (0: unknown), for backends that size a volume per version.
    public var releaseBytes: UInt64

    public static func empty(_ version: String, releaseBytes: UInt64 = 0) -> StagingRequest {
        StagingRequest(version: version, base: nil, releaseBytes: releaseBytes)
    }

    public static func copy(_ version: String, of base: String, releaseBytes: UInt64 = 0) -> StagingRequest {
        StagingRequest(version: version, base: base, releaseBytes: releaseBytes)
    }
}

/// The node's directory layout for one app (docs/node.md "Layout").
public struct NodeLayout: Sendable, Equatable {
    /// `/var/lib/slipway` by default; per node in a test farm.
    public var root: String
    public var app: String

    public init(root: String, app: String) {
        self.root = root
        self.app = app
    }

    public var appDirectory: String { "\(root)/\(app)" }
    public var releases: String { "\(appDirectory)/releases" }
    public func release(_ version: String) -> String { "\(releases)/\(version)" }
    /// Where a dir-like backend stages a version.
    public func partial(_ version: String) -> String { "\(releases)/.partial-\(version)" }
    public var current: String { "\(appDirectory)/current" }
    public var currentNew: String { "\(appDirectory)/current.new" }
    public var shared: String { "\(appDirectory)/shared" }
    public var incoming: String { "\(appDirectory)/incoming" }
    public var stateFile: String { "\(appDirectory)/state.json" }
    public var lockFile: String { "\(appDirectory)/lock" }
    /// The schroot chroot.d file of this app.
    public func schrootFile(in directory: String = "/etc/schroot/chroot.d") -> String { "\(directory)/slipway-\(app)" }
}
