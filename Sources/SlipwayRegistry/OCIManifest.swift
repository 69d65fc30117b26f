import Foundation

/// The parts of the OCI image spec (1.1) slipway writes and reads.
public struct OCIDescriptor: Codable, Sendable, Equatable {
    public var mediaType: String
    public var digest: String
    public var size: UInt64
    public var artifactType: String?
    public var data: String?
    public var annotations: [String: String]?

    public init(mediaType: String, digest: String, size: UInt64, artifactType: String? = nil, data: String? = nil,
                annotations: [String: String]? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.artifactType = artifactType
        self.data = data
        self.annotations = annotations
    }

    /// The file name a layer stands for (`org.opencontainers.image.title`).
    public var title: String? { annotations?[OCIManifest.titleAnnotation] }
}

public struct OCIManifest: Codable, Sendable {
    public var schemaVersion = 2
    public var mediaType: String? = RegistryClient.manifestMediaType
    public var artifactType: String?
    public var config: OCIDescriptor
    public var layers: [OCIDescriptor]
    public var subject: OCIDescriptor?
    public var annotations: [String: String]?

    public static let titleAnnotation = "org.opencontainers.image.title"

    /// The empty config of an artifact: `{}`.
    public static let emptyConfigBytes = Data("{}".utf8)
    public static let emptyConfig = OCIDescriptor(mediaType: "application/vnd.oci.empty.v1+json",
                                                  digest: RegistryClient.digest(emptyConfigBytes), size: 2, data: "e30=")

    public init(artifactType: String, layers: [OCIDescriptor], subject: OCIDescriptor? = nil, annotations: [String: String]?) {
        self.artifactType = artifactType
        self.config = Self.emptyConfig
        self.layers = layers
        self.subject = subject
        self.annotations = annotations
    }

    /// The bytes stored: keys sorted, so the same release always has the same digest.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}

/// An image index: what the referrers API answers, and what the `sha256-<hex>` tag holds
/// on a registry without that API.
public struct OCIIndex: Codable, Sendable {
    public var schemaVersion = 2
    public var mediaType: String? = RegistryClient.indexMediaType
    public var manifests: [OCIDescriptor]

    public init(manifests: [OCIDescriptor]) { self.manifests = manifests }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}
