import Foundation
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The wire side of `slipway node apply`: its reply. The verb is in SlipwayNode.
public enum NodeApply {
    /// What apply did (the JSON reply of `slipway node apply`).
    public struct Result: Codable, Sendable {
        public var app: String
        public var version: String
        /// `landed`, or `already-landed` when the node had the version.
        public var outcome: ApplyOutcome
        /// `full` or `delta`.
        public var origin: OriginKind
        public var base: String?
        /// `verified`, `unchecked` (signed, no trusted key configured), `absent` (unsigned, no
        /// trusted key) or `unsigned-allowed` (unsigned, `allow_unsigned`): see `NodeSignature`.
        public var signature: SignatureStatus
        public var entries: Int
        public var seconds: Double
        public var recovered: [String]

        /// The node protocol of the slipway that replied (`NodeWire.version`; nil: version 1).
        public var protocolVersion: Int? = NodeWire.version

        package init(app: String, version: String, outcome: ApplyOutcome, origin: OriginKind, base: String? = nil, signature: SignatureStatus, entries: Int, seconds: Double, recovered: [String]) {
            self.app = app
            self.version = version
            self.outcome = outcome
            self.origin = origin
            self.base = base
            self.signature = signature
            self.entries = entries
            self.seconds = seconds
            self.recovered = recovered
        }
    }
}
