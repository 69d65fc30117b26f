import Crypto
import Foundation
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

extension NodeSignature {

    public static func policy(_ settings: NodeSettings) throws -> Policy {
        let keys = try settings.loadTrustedKeys()
        return Policy(required: settings.signatureRequired, allowUnsigned: settings.allowUnsigned,
                      trustedKeys: keys.map { $0.rawRepresentation.base64EncodedString() }, trustedKeyIDs: keys.map(\.keyID),
                      requireSBOM: settings.requireSBOM)
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

    /// Checks the SBOM sent with a release (`sbomPath`, nil or missing: none sent) against the
    /// digest its manifest records, and `require_sbom`. Returns the SBOM's bytes to keep.
    static func checkSBOM(_ manifest: ReleaseManifest, sbomPath: String?, what: String, context: NodeContext) throws -> Data? {
        let settings = context.settings
        let file = SBOM.Format.spdx.fileName
        guard let listed = manifest.attachment(file) else {
            if settings.requireSBOM {
                throw NodeError.signature(path: "\(what) (no SBOM)",
                                          detail: "\(what) has no SBOM in its manifest and this node requires one (require_sbom in \(settings.source)); rebuild it with a slipway that writes SBOMs (docs/sbom.md)")
            }
            return nil
        }
        guard let path = sbomPath, NodeFiles.exists(path) else {
            if settings.requireSBOM {
                throw NodeError.signature(path: "\(what) (no SBOM)",
                                          detail: "\(what) lists an SBOM but it was not sent, and this node requires one (require_sbom in \(settings.source)); push it with this slipway")
            }
            return nil
        }
        var data = try NodeFiles.read(path)
        // Over ssh it comes zstd-compressed, as the manifest does.
        if ZstdData.isCompressed(data) {
            do {
                data = try ZstdData.decompress(data, source: path, limit: 256 << 20)
            } catch {
                throw NodeError.signature(path: path, detail: "the SBOM of \(what) does not decompress (\(Output.message(for: error)))")
            }
        }
        let digest = FileHasher.hex(SHA256.hash(data: data))
        guard digest == listed.sha256, UInt64(data.count) == listed.size else {
            throw NodeError.signature(path: path, detail: "the SBOM of \(what) is not the one its manifest records (sha256 \(digest), expected \(listed.sha256))")
        }
        return data
    }

    /// Checks a landed version's stored manifest and signature against the policy in force.
    static func checkLanded(_ version: String, layout: NodeLayout, context: NodeContext) throws -> SignatureStatus {
        let bytes = try NodeFiles.read(layout.manifest(version))
        let status = try check(bytes, signaturePath: layout.signature(version), what: "\(layout.app)@\(version)", context: context)
        if context.settings.requireSBOM {
            let manifest = try ReleaseManifest.decode(bytes, source: layout.manifest(version))
            _ = try checkSBOM(manifest, sbomPath: layout.sbom(version), what: "\(layout.app)@\(version)", context: context)
        }
        return status
    }

}
