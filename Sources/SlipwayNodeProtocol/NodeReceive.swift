import Foundation
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The wire side of `slipway node receive` and `node fetch`: their reply. The verbs are in
/// SlipwayNode.
public enum NodeReceive {
    /// The reply of `slipway node receive`.
    public struct Result: Codable, Sendable {
        public var path: String
        /// Bytes read from the input in this call.
        public var received: UInt64
        /// Bytes in the file now.
        public var bytes: UInt64
        /// Whether the file reached `size` (or no size was given).
        public var complete: Bool
        public var sha256: String?

        /// The node protocol of the slipway that replied (`NodeWire.version`; nil: version 1).
        public var protocolVersion: Int? = NodeWire.version

        package init(path: String, received: UInt64, bytes: UInt64, complete: Bool, sha256: String? = nil) {
            self.path = path
            self.received = received
            self.bytes = bytes
            self.complete = complete
            self.sha256 = sha256
        }
    }
}
