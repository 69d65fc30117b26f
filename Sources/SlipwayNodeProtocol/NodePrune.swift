import Foundation
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The wire side of `slipway node prune`: its reply. The verb is in SlipwayNode.
public enum NodePrune {
    /// What prune did, or with `dryRun` would do (the JSON reply of `slipway node prune`).
    public struct Result: Codable, Sendable {
        public var app: String
        /// Versions removed (with `dryRun`: that would be removed), oldest first.
        public var removed: [String]
        public var kept: [String]
        public var recovered: [String]
        /// Nothing was changed: `removed` is what prune would remove (`--dry-run`).
        public var dryRun: Bool?
        /// The node protocol of the slipway that replied (`NodeWire.version`).
        public var protocolVersion: Int? = NodeWire.version

        package init(app: String, removed: [String], kept: [String], recovered: [String], dryRun: Bool? = nil) {
            self.app = app
            self.removed = removed
            self.kept = kept
            self.recovered = recovered
            self.dryRun = dryRun
        }
    }
}
