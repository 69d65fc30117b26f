import Crypto
import Foundation
import SlipwayArchive
import SlipwaySystem

/// The provenance of a built release (docs/sbom.md): an in-toto Statement v1 whose predicate
/// is SLSA provenance v1, in a DSSE envelope signed with the release key. Stored as
/// `provenance.intoto.json`; its digest is in the signed manifest.
public enum Provenance {
    public static let fileName = "provenance.intoto.json"
    public static let mediaType = "application/vnd.in-toto+json"
    public static let payloadType = "application/vnd.in-toto+json"
    public static let statementType = "https://in-toto.io/Statement/v1"
    public static let predicateType = "https://slsa.dev/provenance/v1"
    /// What a slipway recipe build is; documented in docs/sbom.md.
    public static let buildType = "urn:slipway:build-type:recipe:v1"

    public struct Digest: Codable, Equatable, Sendable {
        public var sha256: String
        public init(sha256: String) { self.sha256 = sha256 }
    }

    /// A subject or a resolved dependency (SLSA's ResourceDescriptor).
    public struct Resource: Codable, Equatable, Sendable {
        public var name: String?
        public var uri: String?
        public var digest: Digest?
        public init(name: String? = nil, uri: String? = nil, digest: Digest? = nil) {
            self.name = name
            self.uri = uri
            self.digest = digest
        }
    }

    /// What the build was given and what it resolved.
    public struct Inputs: Sendable {
        /// The recipe file's name and SHA-256.
        public var recipe: Resource
        /// `base-cache-key`: the base cache key (suite, variant, includes, mirrors, the
        /// mirror's Release date), when the base is Debian.
        public var baseKey: String?
        public var baseDescription: String?
        public var sourceDateEpoch: Int64
        /// Files the recipe reads: `[[files]]` and `[app]` sources, requirements, wheels.
        public var resolved: [Resource]
        public var architecture: String

        public init(recipe: Resource, baseKey: String?, baseDescription: String?, sourceDateEpoch: Int64, resolved: [Resource], architecture: String) {
            self.recipe = recipe
            self.baseKey = baseKey
            self.baseDescription = baseDescription
            self.sourceDateEpoch = sourceDateEpoch
            self.resolved = resolved
            self.architecture = architecture
        }
    }

    struct Statement: Codable {
        struct Predicate: Codable {
            struct BuildDefinition: Codable {
                struct External: Codable { var recipe: Resource; var sourceDateEpoch: Int64 }
                struct Internal: Codable { var slipwayVersion: String; var architecture: String; var baseCacheKey: String?; var base: String? }
                var buildType: String
                var externalParameters: External
                var internalParameters: Internal
                var resolvedDependencies: [Resource]
            }
            struct RunDetails: Codable {
                struct Builder: Codable { var id: String; var version: [String: String] }
                var builder: Builder
            }
            var buildDefinition: BuildDefinition
            var runDetails: RunDetails
        }
        var _type: String
        var subject: [Resource]
        var predicateType: String
        var predicate: Predicate
    }

    /// The statement's bytes (sorted keys, so a rebuild gives the same ones).
    public static func statement(subjects: [Resource], inputs: Inputs) throws -> Data {
        let statement = Statement(
            _type: statementType, subject: subjects, predicateType: predicateType,
            predicate: .init(
                buildDefinition: .init(
                    buildType: buildType,
                    externalParameters: .init(recipe: inputs.recipe, sourceDateEpoch: inputs.sourceDateEpoch),
                    internalParameters: .init(slipwayVersion: SlipwayVersion.string, architecture: inputs.architecture,
                                              baseCacheKey: inputs.baseKey, base: inputs.baseDescription),
                    resolvedDependencies: inputs.resolved),
                runDetails: .init(builder: .init(id: "urn:slipway:builder", version: ["slipway": SlipwayVersion.string]))))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(statement)
    }

    /// The subjects a statement names (none when it does not decode).
    public static func subjects(of statement: Data) -> [Resource] {
        struct Subjects: Decodable { var subject: [Resource] }
        return (try? JSONDecoder().decode(Subjects.self, from: statement))?.subject ?? []
    }

    /// A DSSE envelope.
    public struct Envelope: Codable, Equatable, Sendable {
        public struct Signature: Codable, Equatable, Sendable {
            public var keyid: String
            /// Base64 of the Ed25519 signature over the PAE.
            public var sig: String
        }
        public var payloadType: String
        /// Base64 of the statement.
        public var payload: String
        public var signatures: [Signature]
    }

    /// DSSE's pre-authentication encoding: `DSSEv1 <len type> <type> <len body> <body>`.
    public static func pae(type: String, body: Data) -> Data {
        var data = Data("DSSEv1 \(type.utf8.count) \(type) \(body.count) ".utf8)
        data.append(body)
        return data
    }

    /// Signs `statement` into an envelope's bytes.
    public static func envelope(_ statement: Data, key: ReleaseSigningKey) throws -> Data {
        let signature = try ReleaseSigning.sign(pae(type: payloadType, body: statement), with: key)
        let envelope = Envelope(payloadType: payloadType, payload: statement.base64EncodedString(),
                                signatures: [.init(keyid: key.keyID, sig: signature.base64EncodedString())])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return try encoder.encode(envelope) + Data("\n".utf8)
    }

    /// Checks an envelope's signature by `publicKey` and returns the statement's bytes.
    public static func verify(_ envelope: Data, publicKey: ReleasePublicKey, source: String) throws -> Data {
        guard let decoded = try? JSONDecoder().decode(Envelope.self, from: envelope),
              decoded.payloadType == payloadType, let statement = Data(base64Encoded: decoded.payload) else {
            throw ReleaseError.manifestMalformed(path: source, detail: "not a DSSE envelope of an in-toto statement")
        }
        for signature in decoded.signatures where signature.keyid == publicKey.keyID {
            guard let raw = Data(base64Encoded: signature.sig) else { continue }
            try ReleaseSigning.verify(pae(type: payloadType, body: statement), signature: raw, publicKey: publicKey, source: source)
            return statement
        }
        throw ReleaseError.signatureMismatch(path: source, keyID: publicKey.keyID)
    }

    /// `Resource`s for the regular files at or below `path` (a file or a directory), with
    /// their paths relative to `base` in `name`.
    public static func resources(path: String, name: String) throws -> [Resource] {
        var info = stat()
        guard stat(path, &info) == 0 else { throw ReleaseError.system(operation: "stat", path: path, errno: errno) }
        if (info.st_mode & S_IFMT) != S_IFDIR {
            let hash = try FileHasher.sha256(path: path)
            return [Resource(name: name, digest: Digest(sha256: hash.hex))]
        }
        var result: [Resource] = []
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        for child in names.sorted() {
            result += try resources(path: path + "/" + child, name: name + "/" + child)
        }
        return result
    }
}
