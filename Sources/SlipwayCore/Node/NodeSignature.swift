import Foundation

/// The node's signature policy (docs/security.md): listing trusted keys means a release must
/// carry a signature that verifies with one of them; `allow_unsigned` is the explicit opt-out
/// and warns on every use; without trusted keys nothing can be checked. Apply checks an
/// upload, activate and rollback check the landed copy again against the policy in force
/// now, so a version landed under weaker settings never becomes current unchecked.
public enum NodeSignature {
    /// Outcomes of a check, as the JSON replies spell them.
    public static let verified = "verified"
    /// Signed, but the node lists no trusted key.
    public static let unchecked = "unchecked"
    /// Unsigned, and the node lists no trusted key.
    public static let absent = "absent"
    /// Unsigned, accepted because of `allow_unsigned`.
    public static let allowedUnsigned = "unsigned-allowed"

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
    }

    public static func policy(_ settings: NodeSettings) throws -> Policy {
        let keys = try settings.loadTrustedKeys()
        return Policy(required: settings.signatureRequired, allowUnsigned: settings.allowUnsigned,
                      trustedKeys: keys.map { $0.rawRepresentation.base64EncodedString() }, trustedKeyIDs: keys.map(\.keyID))
    }

    /// Checks `manifestBytes` and the signature file at `signaturePath` (nil or missing:
    /// unsigned) against the settings; returns the outcome or throws `NodeError.signature`.
    /// `what` names the release in messages.
    public static func check(_ manifestBytes: Data, signaturePath: String?, what: String, context: NodeContext) throws -> String {
        let settings = context.settings
        let keys = try settings.loadTrustedKeys()
        let given = signaturePath.flatMap { NodeFiles.exists($0) ? $0 : nil }
        guard let path = given else {
            if settings.signatureRequired {
                let why = settings.requireSignature ? "require_signature" : "trusted_keys"
                throw NodeError.signature(path: signaturePath ?? "\(what) (no signature)",
                                          detail: "\(what) is unsigned and this node requires signed releases (\(why) in \(settings.source); keys \(keys.map(\.keyID).joined(separator: ", "))); sign it with `slipway pack --sign-key` or `slipway build --sign-key`")
            }
            if settings.allowUnsigned {
                context.log("warning: \(what) is unsigned; accepted only because allow_unsigned is set in \(settings.source)")
                return allowedUnsigned
            }
            return absent
        }
        if keys.isEmpty { return unchecked }
        let signature: Data
        do {
            signature = try ReleaseSigning.parseSignatureFile(try NodeFiles.read(path), source: path)
        } catch {
            throw NodeError.signature(path: path, detail: "the signature of \(what) is damaged (\(Output.message(for: error)))")
        }
        for key in keys where (try? ReleaseSigning.verify(manifestBytes, signature: signature, publicKey: key, source: path)) != nil {
            return verified
        }
        throw NodeError.signature(path: path, detail: "the signature of \(what) does not verify with any trusted key (\(keys.map(\.keyID).joined(separator: ", ")))")
    }

    /// Checks a landed version's stored manifest and signature against the policy in force.
    static func checkLanded(_ version: String, layout: NodeLayout, context: NodeContext) throws -> String {
        let bytes = try NodeFiles.read(layout.manifest(version))
        return try check(bytes, signaturePath: layout.signature(version), what: "\(layout.app)@\(version)", context: context)
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
