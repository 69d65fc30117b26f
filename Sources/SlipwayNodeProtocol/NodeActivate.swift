import Foundation
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The wire side of `slipway node activate` and `node rollback`: their reply. The verb is
/// in SlipwayNode (NodeActivate.swift there).
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
