import Crypto
import Foundation
import SlipwayArchive
import SlipwaySystem

/// An Ed25519 public key that releases are verified against (a `FILE.pub`).
public struct ReleasePublicKey: Sendable, Equatable {
    /// The 32 raw key bytes.
    public var rawRepresentation: Data
    /// First 16 hex digits of the key's SHA-256; names the key in messages.
    public var keyID: String { ReleaseSigning.keyID(of: rawRepresentation) }

    public init(rawRepresentation: Data) { self.rawRepresentation = rawRepresentation }
}

/// An Ed25519 private key that signs manifests.
public struct ReleaseSigningKey: Sendable {
    // Kept as raw bytes: swift-crypto's key type is not Sendable.
    private let raw: Data

    var key: Curve25519.Signing.PrivateKey {
        // The bytes were validated when the key was made; this cannot fail.
        get throws { try Curve25519.Signing.PrivateKey(rawRepresentation: raw) }
    }

    public var publicKey: ReleasePublicKey {
        ReleasePublicKey(rawRepresentation: (try? key.publicKey.rawRepresentation) ?? Data())
    }
    public var keyID: String { publicKey.keyID }

    init(key: Curve25519.Signing.PrivateKey) { self.raw = key.rawRepresentation }
}

/// Ed25519 signing of manifests and the text key files.
///
/// Private key file: `slipway-ed25519-private <base64 of 32 bytes>\n`, mode 0600.
/// Public key file (`FILE.pub`): `slipway-ed25519-public <base64 of 32 bytes>\n`.
/// Signature file (`manifest.sig`): base64 of the 64-byte signature and a newline.
public enum ReleaseSigning {
    static let privatePrefix = "slipway-ed25519-private"
    static let publicPrefix = "slipway-ed25519-public"

    /// What `keygen` wrote.
    public struct GeneratedKey: Sendable {
        public var privateKeyPath: String
        public var publicKeyPath: String
        public var keyID: String
    }

    /// The public key file that goes with a private key file.
    public static func publicKeyPath(forPrivateKey path: String) -> String { path + ".pub" }

    /// Creates a new key pair at `path` (mode 0600) and `path.pub`. Never overwrites: when either
    /// file exists it fails and leaves both as they were.
    @discardableResult
    public static func generateKey(at path: String) throws -> GeneratedKey {
        let publicPath = publicKeyPath(forPrivateKey: path)
        for existing in [path, publicPath] where access(existing, F_OK) == 0 {
            throw ReleaseError.keyExists(path: existing)
        }
        let key = Curve25519.Signing.PrivateKey()
        let privateText = "\(privatePrefix) \(key.rawRepresentation.base64EncodedString())\n"
        let publicText = "\(publicPrefix) \(key.publicKey.rawRepresentation.base64EncodedString())\n"
        try createExclusive(path, contents: Data(privateText.utf8), mode: 0o600)
        do {
            try createExclusive(publicPath, contents: Data(publicText.utf8), mode: 0o644)
        } catch {
            unlink(path)
            throw error
        }
        return GeneratedKey(privateKeyPath: path, publicKeyPath: publicPath, keyID: keyID(of: key.publicKey.rawRepresentation))
    }

    /// Loads a private key file.
    public static func loadSigningKey(path: String) throws -> ReleaseSigningKey {
        let raw = try parseKeyFile(path, expecting: privatePrefix, other: publicPrefix,
                                   wrongKindHint: "it is a public key; --sign-key takes the private key file (without .pub)")
        do {
            return ReleaseSigningKey(key: try Curve25519.Signing.PrivateKey(rawRepresentation: raw))
        } catch {
            throw ReleaseError.keyMalformed(path: path, detail: "not a valid Ed25519 private key")
        }
    }

    /// Loads a public key file.
    public static func loadPublicKey(path: String) throws -> ReleasePublicKey {
        let raw = try parseKeyFile(path, expecting: publicPrefix, other: privatePrefix,
                                   wrongKindHint: "it is a private key; --trust takes the public key file (FILE.pub), keep the private key off the nodes")
        guard (try? Curve25519.Signing.PublicKey(rawRepresentation: raw)) != nil else {
            throw ReleaseError.keyMalformed(path: path, detail: "not a valid Ed25519 public key")
        }
        return ReleasePublicKey(rawRepresentation: raw)
    }

    /// The Ed25519 signature of the manifest bytes.
    public static func sign(_ manifest: Data, with key: ReleaseSigningKey) throws -> Data {
        try key.key.signature(for: manifest)
    }

    /// Checks `signature` over the manifest bytes; `source` names the signature file in errors.
    public static func verify(_ manifest: Data, signature: Data, publicKey: ReleasePublicKey, source: String = "manifest.sig") throws {
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey.rawRepresentation),
              key.isValidSignature(signature, for: manifest)
        else {
            throw ReleaseError.signatureMismatch(path: source, keyID: publicKey.keyID)
        }
    }

    /// The bytes of a signature file.
    public static func signatureFile(_ signature: Data) -> Data {
        Data((signature.base64EncodedString() + "\n").utf8)
    }

    /// The signature held by a signature file's bytes.
    public static func parseSignatureFile(_ contents: Data, source: String = "manifest.sig") throws -> Data {
        let text = String(decoding: contents, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let signature = Data(base64Encoded: text), signature.count == 64 else {
            throw ReleaseError.signatureMalformed(path: source)
        }
        return signature
    }

    /// First 16 hex digits of the SHA-256 of a raw public key.
    public static func keyID(of rawPublicKey: Data) -> String {
        String(FileHasher.hex(SHA256.hash(data: rawPublicKey)).prefix(16))
    }

    private static func parseKeyFile(_ path: String, expecting prefix: String, other: String, wrongKindHint: String) throws -> Data {
        let data: Data
        do {
            data = try readFile(path)
        } catch let ReleaseError.system(_, _, code) {
            throw ReleaseError.keyUnreadable(path: path, errno: code)
        }
        guard data.count < 4096, let text = String(validating: data, as: UTF8.self) else {
            throw ReleaseError.keyMalformed(path: path, detail: "not a slipway key file (made by slipway keygen)")
        }
        let fields = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ", omittingEmptySubsequences: true)
        if fields.first.map(String.init) == other {
            throw ReleaseError.keyMalformed(path: path, detail: wrongKindHint)
        }
        guard fields.count == 2, fields[0] == prefix else {
            throw ReleaseError.keyMalformed(path: path, detail: "not a slipway key file (expected a line '\(prefix) <base64>', as written by slipway keygen)")
        }
        guard let raw = Data(base64Encoded: String(fields[1])), raw.count == 32 else {
            throw ReleaseError.keyMalformed(path: path, detail: "the key is not base64 of 32 bytes; the file is damaged")
        }
        return raw
    }

    private static func createExclusive(_ path: String, contents: Data, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else {
            if errno == EEXIST { throw ReleaseError.keyExists(path: path) }
            throw ReleaseError.system(operation: "create", path: path, errno: errno)
        }
        do {
            // The umask may have narrowed the mode; the public key must stay readable and the
            // private key must be exactly 0600 whatever the umask.
            guard fchmod(fd, mode) == 0 else { throw ReleaseError.system(operation: "chmod", path: path, errno: errno) }
            try writeAll(fd, contents, path: path)
            guard fsync(fd) == 0 else { throw ReleaseError.system(operation: "fsync", path: path, errno: errno) }
            close(fd)
        } catch {
            close(fd)
            unlink(path)
            throw error
        }
    }
}

/// Writes all of `data` to `fd`.
package func writeAll(_ fd: Int32, _ data: Data, path: String) throws {
    let failure = data.withUnsafeBytes { writeFully(fd, $0) }
    if failure != 0 { throw ReleaseError.system(operation: "write", path: path, errno: failure) }
}
