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
    var name: String { get }

    /// Creates an empty staging tree for `version` and returns the path to extract into.
    func createStaging(version: String, layout: NodeLayout) throws -> String

    /// Creates a staging tree for `version` as the backend's cheap copy of the landed
    /// version `base` (reflink copy, snapshot, clone) and returns its path.
    func createStaging(version: String, from base: String, layout: NodeLayout) throws -> String

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

    /// The schroot chroot.d settings that expose `version` (type and its keys), when the
    /// node enables schroot.
    func schrootSettings(version: String, layout: NodeLayout) throws -> [(key: String, value: String)]

    /// Whether `createStaging(version:from:)` yields a copy of contents that cannot have
    /// changed since the base was verified (a snapshot of a read-only subvolume, a clone of
    /// an immutable snapshot). Then a delta apply hashes only what the delta wrote; a plain
    /// directory copy of a writable base is hashed whole.
    var stagedCopyIsImmutableBase: Bool { get }

    /// `createStaging` told the release's size (its tar size), for backends that make a
    /// volume of a size per version (lvm).
    func createStaging(version: String, layout: NodeLayout, releaseBytes: UInt64) throws -> String
    func createStaging(version: String, from base: String, layout: NodeLayout, releaseBytes: UInt64) throws -> String

    /// A clearer error for an apply that failed because of the backend's storage (a full
    /// thin pool), or nil to keep the error as it is.
    func explainFailure(_ error: any Error, version: String, layout: NodeLayout) -> (any Error)?
}

extension NodeBackend {
    public var stagedCopyIsImmutableBase: Bool { false }
    public func createStaging(version: String, layout: NodeLayout, releaseBytes: UInt64) throws -> String {
        try createStaging(version: version, layout: layout)
    }
    public func createStaging(version: String, from base: String, layout: NodeLayout, releaseBytes: UInt64) throws -> String {
        try createStaging(version: version, from: base, layout: layout)
    }
    public func explainFailure(_ error: any Error, version: String, layout: NodeLayout) -> (any Error)? { nil }
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
