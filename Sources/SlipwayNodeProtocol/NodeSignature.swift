import Foundation
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The wire side of the node's signature policy (docs/security.md): what `node status`
/// reports, and the check the controller makes before it sends anything. The checks a node
/// makes are in SlipwayNode.
public enum NodeSignature {
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
        /// `require_sbom`: a release must list an SBOM in its signed manifest and send it
        /// (absent from nodes older than the SBOM).
        public var requireSBOM: Bool?

        package init(required: Bool, allowUnsigned: Bool, trustedKeys: [String], trustedKeyIDs: [String], requireSBOM: Bool = false) {
            self.requireSBOM = requireSBOM
            self.required = required
            self.allowUnsigned = allowUnsigned
            self.trustedKeys = trustedKeys
            self.trustedKeyIDs = trustedKeyIDs
        }
    }

    /// Whether a release with `manifestBytes` and `signature` (the raw signature bytes, nil
    /// when unsigned) would pass `policy`; nil when it would, else why not. The controller's
    /// check before it sends anything.
    public static func refusal(of policy: Policy, manifest: ReleaseManifest, manifestBytes: Data, signature: Data?) -> String? {
        if policy.requireSBOM == true, manifest.attachment(SBOM.Format.spdx.fileName) == nil {
            return "the release has no SBOM and the node requires one (require_sbom); rebuild it with this slipway"
        }
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
