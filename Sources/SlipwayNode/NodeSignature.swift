import Foundation
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

extension NodeSignature {

    public static func policy(_ settings: NodeSettings) throws -> Policy {
        let keys = try settings.loadTrustedKeys()
        return Policy(required: settings.signatureRequired, allowUnsigned: settings.allowUnsigned,
                      trustedKeys: keys.map { $0.rawRepresentation.base64EncodedString() }, trustedKeyIDs: keys.map(\.keyID))
    }

    /// Checks `manifestBytes` and the signature file at `signaturePath` (nil or missing:
    /// unsigned) against the settings; returns the outcome or throws `NodeError.signature`.
    /// `what` names the release in messages.
    public static func check(_ manifestBytes: Data, signaturePath: String?, what: String, context: NodeContext) throws -> SignatureStatus {
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
                return .unsignedAllowed
            }
            return .absent
        }
        if keys.isEmpty { return .unchecked }
        let signature: Data
        do {
            signature = try ReleaseSigning.parseSignatureFile(try NodeFiles.read(path), source: path)
        } catch {
            throw NodeError.signature(path: path, detail: "the signature of \(what) is damaged (\(Output.message(for: error)))")
        }
        for key in keys where (try? ReleaseSigning.verify(manifestBytes, signature: signature, publicKey: key, source: path)) != nil {
            return .verified
        }
        throw NodeError.signature(path: path, detail: "the signature of \(what) does not verify with any trusted key (\(keys.map(\.keyID).joined(separator: ", ")))")
    }

    /// Checks a landed version's stored manifest and signature against the policy in force.
    static func checkLanded(_ version: String, layout: NodeLayout, context: NodeContext) throws -> SignatureStatus {
        let bytes = try NodeFiles.read(layout.manifest(version))
        return try check(bytes, signaturePath: layout.signature(version), what: "\(layout.app)@\(version)", context: context)
    }

}
