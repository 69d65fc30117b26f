import Foundation
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// What a node holds for an app (the JSON reply of `slipway node status`). Read-only: it
/// takes no lock and changes nothing.
public struct NodeStatus: Codable, Sendable {
    /// One landed (or journaled) release.
    public struct Release: Codable, Sendable {
        public var version: String
        public var landed: Bool
        public var current: Bool
        public var previous: Bool
        public var receivedAt: Double?
        public var archiveSHA256: String?
        public var origin: NodeState.Origin?

    package init(version: String, landed: Bool, current: Bool, previous: Bool, receivedAt: Double? = nil, archiveSHA256: String? = nil, origin: NodeState.Origin? = nil) {
            self.version = version
            self.landed = landed
            self.current = current
            self.previous = previous
            self.receivedAt = receivedAt
            self.archiveSHA256 = archiveSHA256
            self.origin = origin
        }
    }

    /// A file in `incoming/`: a partial or complete upload, to resume from its size.
    public struct IncomingFile: Codable, Sendable {
        public var name: String
        public var bytes: UInt64

        package init(name: String, bytes: UInt64) {
            self.name = name
            self.bytes = bytes
        }
    }

    /// An activation waiting for `slipway node confirm` (from `confirm.json`).
    public struct PendingConfirmation: Codable, Sendable {
        public var version: String
        /// Where the node switches back to (nil: it removes current).
        public var previous: String?
        /// Seconds since 1970.
        public var deadline: Double
        /// The `--confirm-timeout` given, in seconds.
        public var timeout: Double
        /// The deadline has passed and no watcher has switched back yet (the node rebooted):
        /// the next mutating command switches back first.
        public var expired: Bool

        package init(version: String, previous: String? = nil, deadline: Double, timeout: Double, expired: Bool) {
            self.version = version
            self.previous = previous
            self.deadline = deadline
            self.timeout = timeout
            self.expired = expired
        }
    }

    /// Free space where the node lands a new version (for `deploy --plan`, which compares it
    /// with the release's size).
    public struct Space: Codable, Sendable, Equatable {
        /// Bytes a new version may use.
        public var availableBytes: UInt64
        /// Where: "the file system of PATH", "ZFS dataset D", "thin pool VG/POOL", "volume group VG".
        public var location: String

        package init(availableBytes: UInt64, location: String) {
            self.availableBytes = availableBytes
            self.location = location
        }
    }

    public var app: String
    public var root: String
    public var backend: BackendKind
    public var current: String?
    public var previous: String?
    /// In landing order (journal), then any the journal does not know.
    public var releases: [Release]
    /// The last switches, newest last.
    public var activations: [NodeState.Activation]
    /// Leftovers of an interrupted command that the next mutating command will remove.
    public var leftovers: [String]
    /// Who holds the lock now, if anyone.
    public var lockHolder: String?
    public var schroot: String?
    /// Uploads in `incoming/`, so the controller knows where to resume.
    public var incoming: [IncomingFile]
    /// The activation waiting for confirmation, if any.
    public var confirmation: PendingConfirmation?
    /// What this node demands of a release's signature (nil from nodes older than this
    /// field: they check at apply only).
    public var signaturePolicy: NodeSignature.Policy?
    /// Free space for a new version (nil from older nodes, or when the node cannot tell).
    public var space: Space?

    /// Whether `version` is landed here (complete, verified).
    public func hasLanded(_ version: String) -> Bool { releases.contains { $0.version == version && $0.landed } }

    /// The node protocol of the slipway that replied (`NodeWire.version`; nil: version 1).
    public var protocolVersion: Int? = NodeWire.version

    package init(app: String, root: String, backend: BackendKind, current: String? = nil, previous: String? = nil, releases: [Release], activations: [NodeState.Activation], leftovers: [String], lockHolder: String? = nil, schroot: String? = nil, incoming: [IncomingFile], confirmation: PendingConfirmation? = nil, signaturePolicy: NodeSignature.Policy? = nil, space: Space? = nil) {
        self.app = app
        self.root = root
        self.backend = backend
        self.current = current
        self.previous = previous
        self.releases = releases
        self.activations = activations
        self.leftovers = leftovers
        self.lockHolder = lockHolder
        self.schroot = schroot
        self.incoming = incoming
        self.confirmation = confirmation
        self.signaturePolicy = signaturePolicy
        self.space = space
    }
}
