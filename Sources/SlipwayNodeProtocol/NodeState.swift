import Foundation
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The node's journal for one app (`state.json`): which releases it holds, in the order they
/// landed, and every switch between them. Releases are ordered by this journal, never by
/// file times. Written whole through a temporary file, fsync and rename, so a crash leaves
/// the old journal or the new one; recovery reconciles it with what the backend holds.
public struct NodeState: Codable, Sendable, Equatable {
    /// How a release reached the node.
    public struct Origin: Codable, Sendable, Equatable {
        /// `full`, `delta`, or `recovered` (found landed by recovery after a crash between the
        /// commit and the journal write).
        public var kind: OriginKind
        /// The base version of a delta.
        public var base: String?

        public init(kind: OriginKind, base: String? = nil) {
            self.kind = kind
            self.base = base
        }
        public static let full = Origin(kind: .full)
        public static func delta(from base: String) -> Origin { Origin(kind: .delta, base: base) }
        public static let recovered = Origin(kind: .recovered)
    }

    /// One landed release.
    public struct Release: Codable, Sendable, Equatable {
        public var version: String
        /// Seconds since 1970 when it landed.
        public var receivedAt: Double
        /// The SHA-256 of the full release archive (from its manifest).
        public var archiveSHA256: String?
        public var origin: Origin

        public init(version: String, receivedAt: Double, archiveSHA256: String?, origin: Origin) {
            self.version = version
            self.receivedAt = receivedAt
            self.archiveSHA256 = archiveSHA256
            self.origin = origin
        }
    }

    /// One switch of `current` (activate or rollback) and how it ended.
    public struct Activation: Codable, Sendable, Equatable {
        public var kind: SwitchKind
        public var from: String?
        public var to: String
        /// Seconds since 1970.
        public var at: Double
        /// `activated`, `rolled-back` (health failed, switched back to `from`), or `failed`
        /// (a hook failed before the switch; nothing changed).
        public var result: SwitchResult
        public var detail: String?

        public init(kind: SwitchKind, from: String?, to: String, at: Double, result: SwitchResult, detail: String? = nil) {
            self.kind = kind
            self.from = from
            self.to = to
            self.at = at
            self.result = result
            self.detail = detail
        }

        public var succeeded: Bool { result == .activated }
    }

    public var formatVersion: Int = 1
    public var app: String
    /// Landed releases, oldest first.
    public var releases: [Release]
    /// Every switch, oldest first (the last 200 are kept).
    public var activations: [Activation]

    package static let historyLimit = 200

    public init(app: String, releases: [Release] = [], activations: [Activation] = []) {
        self.app = app
        self.releases = releases
        self.activations = activations
    }
}
