import Foundation
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The node's signature policy (docs/security.md): listing trusted keys means a release must
/// carry a signature that verifies with one of them; `allow_unsigned` is the explicit opt-out
/// and warns on every use; without trusted keys nothing can be checked. Apply checks an
/// upload, activate and rollback check the landed copy again against the policy in force
/// now, so a version landed under weaker settings never becomes current unchecked.
public enum NodeSignature {
    /// Outcomes of a check, as the JSON replies spell them.
    public static let verified = SignatureStatus.verified
    /// Signed, but the node lists no trusted key.
    public static let unchecked = SignatureStatus.unchecked
    /// Unsigned, and the node lists no trusted key.
    public static let absent = SignatureStatus.absent
    /// Unsigned, accepted because of `allow_unsigned`.
    public static let allowedUnsigned = SignatureStatus.unsignedAllowed

    /// What the node demands, for `node status` (the controller checks it before sending).
    public struct Policy: Codable, Sendable, Equatable {
        /// A release must carry a signature that verifies with one of `trustedKeys`.
        public var required: Bool
        /// `allow_unsigned` is set.
        public var allowUnsigned: Bool
        /// The trusted public keys (raw Ed25519, base64), so the controller can tell before
        /// sending whether this node will accept a signature.
        public var trustedKeys: [String]
        public var trustedKeyIDs: [String]

        package init(required: Bool, allowUnsigned: Bool, trustedKeys: [String], trustedKeyIDs: [String]) {
            self.required = required
            self.allowUnsigned = allowUnsigned
            self.trustedKeys = trustedKeys
            self.trustedKeyIDs = trustedKeyIDs
        }
    }

    /// Whether a release with `manifestBytes` and `signature` (the raw signature bytes, nil
    /// when unsigned) would pass `policy`; nil when it would, else why not. The controller's
    /// check before it sends anything.
    public static func refusal(of policy: Policy, manifestBytes: Data, signature: Data?) -> String? {
        guard policy.required else { return nil }
        guard let signature else {
            return "the release is unsigned and the node requires signed releases (keys \(policy.trustedKeyIDs.joined(separator: ", ")))"
        }
        for encoded in policy.trustedKeys {
            guard let raw = Data(base64Encoded: encoded) else { continue }
            let key = ReleasePublicKey(rawRepresentation: raw)
            if (try? ReleaseSigning.verify(manifestBytes, signature: signature, publicKey: key)) != nil { return nil }
        }
        return "the release's signature does not verify with any key the node trusts (\(policy.trustedKeyIDs.joined(separator: ", ")))"
    }
}
