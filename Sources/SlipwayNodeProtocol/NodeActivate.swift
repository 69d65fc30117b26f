import Foundation
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Switches `current` to a landed version (docs/node.md "Crash safety", activate):
/// lock → recover → landed? → pre-activate hook → `current.new` → rename over `current` →
/// fsync → schroot file the same way → reload hook (start on the first activation) →
/// health check with retries. A failed reload or health check switches back, reloads the old
/// version, journals `rolled-back` and fails saying "rolled back to X". Every switch is
/// journaled. Hooks run as `sh -c` outside the release with SLIPWAY_APP, SLIPWAY_VERSION,
/// SLIPWAY_PREVIOUS and SLIPWAY_RELEASE set. With a confirmation request the switch is a
/// dead man's switch (see `NodeConfirm`); any successful switch clears an older pending
/// confirmation.
public enum NodeActivate {
    /// What a switch did (the JSON reply of activate and rollback).
    public struct Result: Codable, Sendable {
        public var app: String
        /// `activate` or `rollback`.
        public var kind: SwitchKind
        public var version: String
        public var previous: String?
        /// `activated`, or `already-current`.
        public var outcome: SwitchOutcome
        /// Hooks that ran, in order (`pre_activate`, `start`, `reload`, `health`).
        public var ran: [String]
        public var seconds: Double
        public var recovered: [String]
        /// With `--confirm-timeout`: seconds since 1970 by which `node confirm` must come, or
        /// the node switches back (for `already-current`, the deadline still pending, if any).
        public var confirmDeadline: Double?

        /// The node protocol of the slipway that replied (`NodeWire.version`; nil: version 1).
        public var protocolVersion: Int? = NodeWire.version

        package init(app: String, kind: SwitchKind, version: String, previous: String? = nil, outcome: SwitchOutcome, ran: [String], seconds: Double, recovered: [String], confirmDeadline: Double? = nil) {
            self.app = app
            self.kind = kind
            self.version = version
            self.previous = previous
            self.outcome = outcome
            self.ran = ran
            self.seconds = seconds
            self.recovered = recovered
            self.confirmDeadline = confirmDeadline
        }
    }
}
