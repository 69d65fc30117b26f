import Foundation

/// The node protocol (docs/architecture.md "The node protocol"): the controller runs
/// `slipway node <verb> … --json` over ssh and reads one JSON document on stdout. A reply
/// carries `protocolVersion`; a failure is `{"error":{"code":…,"message":…},"protocolVersion":…}`
/// on stdout (the human `slipway: error:` line still goes to stderr), and the controller
/// decides by the code, never by the message's words.
public enum NodeWire {
    /// This slipway's protocol version. 2: error envelopes with codes and a version in
    /// every reply (replies without one come from a version-1 node).
    public static let version = 2

    /// What the controller says of a node whose slipway speaks an older protocol.
    public static func olderNode(_ found: Int?) -> String {
        "the node's slipway speaks node protocol \(found.map(String.init) ?? "1"), this controller \(version); " +
            "install this slipway on the node (copy this binary to its slipway path, or remove it there and push again: the controller installs it when missing)"
    }
}

/// Why a node verb failed, as the controller acts on it. Unknown codes (from a newer node)
/// decode as `.other`.
public enum NodeErrorCode: String, WireWord, CaseIterable {
    case system
    case noSpace = "no-space"
    case locked
    case settings
    case backendUnavailable = "backend-unavailable"
    case archiveMismatch = "archive-mismatch"
    case signature
    case versionNotLanded = "version-not-landed"
    case baseMissing = "base-missing"
    case deltaInvalid = "delta-invalid"
    case treeMismatch = "tree-mismatch"
    case noPreviousVersion = "no-previous-version"
    case hookFailed = "hook-failed"
    /// The new version did not take over (reload or health failed); the node put the
    /// version it had back (or removed current when there was none).
    case rolledBack = "rolled-back"
    case invalidArgument = "invalid-argument"
    case badOffset = "bad-offset"
    case toolMissing = "tool-missing"
    case fetchFailed = "fetch-failed"
    case fetchMismatch = "fetch-mismatch"
    /// The activation was not confirmed in time; the node switched itself back.
    case confirmationExpired = "confirmation-expired"
    case frontUnavailable = "front-unavailable"
    case journalUnwritable = "journal-unwritable"
    case nothingToConfirm = "nothing-to-confirm"
    /// A damaged or refused archive or release.
    case release
    case other

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        self = NodeErrorCode(rawValue: text) ?? .other
    }

    /// The node is no longer on the version it was asked to switch to, by its own doing:
    /// the controller files it as rolled back, not as a failure to clean up after.
    public var nodeSwitchedBack: Bool { self == .rolledBack || self == .confirmationExpired }
}

/// The reply of a failed node verb under `--json`.
public struct NodeErrorReply: Codable, Sendable, Equatable {
    public struct Body: Codable, Sendable, Equatable {
        public var code: NodeErrorCode
        public var message: String
    }

    public var error: Body
    public var protocolVersion: Int?

    public init(code: NodeErrorCode, message: String) {
        error = Body(code: code, message: message)
        protocolVersion = NodeWire.version
    }
}
