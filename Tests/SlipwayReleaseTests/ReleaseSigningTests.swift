import Foundation
import Testing
@testable import SlipwayRelease
@testable import SlipwayArchive
@testable import SlipwaySystem
@testable import SlipwayTestSupport

@Suite("Release signing")
struct ReleaseSigningTests {
    @Test("keygen, sign, verify")
    func roundTrip() throws {
        try withTemporaryDirectory { dir in
            let generated = try ReleaseSigning.generateKey(at: dir + "/key")
            #expect(generated.publicKeyPath == dir + "/key.pub")
            #expect(generated.keyID.count == 16)
            let attributes = try FileManager.default.attributesOfItem(atPath: dir + "/key")
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
            #expect(try readText(dir + "/key").hasPrefix("slipway-ed25519-private "))
            #expect(try readText(dir + "/key.pub").hasPrefix("slipway-ed25519-public "))
            #expect(try readText(dir + "/key.pub").hasSuffix("\n"))

            let key = try ReleaseSigning.loadSigningKey(path: dir + "/key")
            let publicKey = try ReleaseSigning.loadPublicKey(path: dir + "/key.pub")
            #expect(key.publicKey == publicKey)
            #expect(publicKey.keyID == generated.keyID)

            let manifest = try sampleManifest().encoded()
            let signature = try ReleaseSigning.sign(manifest, with: key)
            let file = ReleaseSigning.signatureFile(signature)
            #expect(file.last == UInt8(ascii: "\n"))
            let parsed = try ReleaseSigning.parseSignatureFile(file)
            try ReleaseSigning.verify(manifest, signature: parsed, publicKey: publicKey)
        }
    }

    @Test("a tampered manifest fails verification")
    func tampered() throws {
        try withTemporaryDirectory { dir in
            try ReleaseSigning.generateKey(at: dir + "/key")
            let key = try ReleaseSigning.loadSigningKey(path: dir + "/key")
            var manifest = try sampleManifest().encoded()
            let signature = try ReleaseSigning.sign(manifest, with: key)
            manifest[manifest.count / 2] ^= 0x01
            #expect(throws: ReleaseError.signatureMismatch(path: "manifest.sig", keyID: key.keyID)) {
                try ReleaseSigning.verify(manifest, signature: signature, publicKey: key.publicKey)
            }
        }
    }

    @Test("the wrong key fails, and the error names the key id")
    func wrongKey() throws {
        try withTemporaryDirectory { dir in
            try ReleaseSigning.generateKey(at: dir + "/a")
            try ReleaseSigning.generateKey(at: dir + "/b")
            let signer = try ReleaseSigning.loadSigningKey(path: dir + "/a")
            let other = try ReleaseSigning.loadPublicKey(path: dir + "/b.pub")
            let manifest = try sampleManifest().encoded()
            let signature = try ReleaseSigning.sign(manifest, with: signer)
            do {
                try ReleaseSigning.verify(manifest, signature: signature, publicKey: other, source: "web/1.0/manifest.sig")
                Issue.record("a signature verified under the wrong key")
            } catch {
                #expect("\(error)".contains(other.keyID))
                #expect("\(error)".contains("web/1.0/manifest.sig"))
            }
        }
    }

    @Test("keygen never overwrites a key")
    func refusesOverwrite() throws {
        try withTemporaryDirectory { dir in
            try ReleaseSigning.generateKey(at: dir + "/key")
            let before = try readText(dir + "/key")
            #expect(throws: ReleaseError.keyExists(path: dir + "/key")) { try ReleaseSigning.generateKey(at: dir + "/key") }
            #expect(try readText(dir + "/key") == before)
            // Only the .pub in the way: the private key must not be created either.
            try writeFile(dir + "/other.pub", "x")
            #expect(throws: ReleaseError.keyExists(path: dir + "/other.pub")) { try ReleaseSigning.generateKey(at: dir + "/other") }
            #expect(!FileManager.default.fileExists(atPath: dir + "/other"))
        }
    }

    @Test("malformed, swapped and missing key files are clear errors")
    func badKeyFiles() throws {
        try withTemporaryDirectory { dir in
            try ReleaseSigning.generateKey(at: dir + "/key")
            try writeFile(dir + "/garbage", "hello world\n")
            try writeFile(dir + "/short.pub", "slipway-ed25519-public AAAA\n")
            for (path, expected) in [
                (dir + "/garbage", "not a slipway key file"),
                (dir + "/short.pub", "not base64 of 32 bytes"),
                (dir + "/key", "it is a private key"),
            ] {
                do {
                    _ = try ReleaseSigning.loadPublicKey(path: path)
                    Issue.record("\(path) was accepted as a public key")
                } catch {
                    #expect("\(error)".contains(expected))
                    #expect("\(error)".contains(path))
                }
            }
            do {
                _ = try ReleaseSigning.loadSigningKey(path: dir + "/key.pub")
                Issue.record("a public key was accepted as a private key")
            } catch {
                #expect("\(error)".contains("it is a public key"))
            }
            #expect(throws: ReleaseError.keyUnreadable(path: dir + "/missing", errno: ENOENT)) {
                try ReleaseSigning.loadPublicKey(path: dir + "/missing")
            }
        }
    }

    @Test("a damaged signature file is a clear error")
    func badSignatureFile() {
        #expect(throws: ReleaseError.signatureMalformed(path: "s")) {
            try ReleaseSigning.parseSignatureFile(Data("not base64!\n".utf8), source: "s")
        }
        #expect(throws: ReleaseError.signatureMalformed(path: "s")) {
            try ReleaseSigning.parseSignatureFile(Data("AAAA\n".utf8), source: "s")
        }
    }
}
