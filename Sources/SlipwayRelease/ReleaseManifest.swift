import Foundation
import SlipwayArchive
import SlipwaySystem

/// The manifest of a release, stored as `manifest.json` beside the archive and signed byte
/// for byte. Its encoding is deterministic (sorted keys, no pretty printing), so the same
/// release gives the same bytes, and the same signature input, on any machine.
public struct ReleaseManifest: Codable, Equatable, Sendable {
    /// The format this code writes and the only one it reads.
    public static let currentFormatVersion = 1

    /// The archive the manifest describes.
    public struct ArchiveInfo: Codable, Equatable, Sendable {
        /// Lowercase hex SHA-256 of the compressed archive file.
        public var sha256: String
        /// Bytes of the compressed archive file.
        public var size: UInt64

        public init(sha256: String, size: UInt64) {
            self.sha256 = sha256
            self.size = size
        }
    }

    public var formatVersion: Int
    public var name: String
    public var version: String
    /// Seconds since 1970 (SOURCE_DATE_EPOCH when it was set at pack time).
    public var created: Int64
    public var compression: ArchiveCompression
    public var archive: ArchiveInfo
    /// Bytes of the uncompressed tar stream.
    public var tarSize: UInt64
    /// One record per archive entry, in archive order.
    public var entries: [EntryRecord]
    /// What the node does with this release (hooks, health check, shared dirs); from the
    /// recipe's `[service]`, absent for a plain `pack`.
    public var service: ServiceSpec?

    /// A file stored beside the archive whose bytes the signed manifest vouches for: the SBOM
    /// (`sbom.spdx.json`, `sbom.cdx.json`) and the provenance (`provenance.intoto.json`).
    /// docs/sbom.md.
    public struct Attachment: Codable, Equatable, Sendable {
        /// The file name in the release's directory.
        public var file: String
        public var mediaType: String
        public var sha256: String
        public var size: UInt64

        public init(file: String, mediaType: String, sha256: String, size: UInt64) {
            self.file = file
            self.mediaType = mediaType
            self.sha256 = sha256
            self.size = size
        }
    }

    /// Sorted by file name; absent in a release without any (older manifests, `pack` of a
    /// tree with nothing to list).
    public var attachments: [Attachment]?

    /// The attachment stored as `file`, if any.
    public func attachment(_ file: String) -> Attachment? { attachments?.first { $0.file == file } }

    public init(
        name: String, version: String, created: Int64, compression: ArchiveCompression,
        archive: ArchiveInfo, tarSize: UInt64, entries: [EntryRecord], service: ServiceSpec? = nil,
        attachments: [Attachment]? = nil,
        formatVersion: Int = ReleaseManifest.currentFormatVersion
    ) {
        self.service = service
        self.attachments = attachments
        self.formatVersion = formatVersion
        self.name = name
        self.version = version
        self.created = created
        self.compression = compression
        self.archive = archive
        self.tarSize = tarSize
        self.entries = entries
    }

    /// `NAME@VERSION`.
    public var reference: String { "\(name)@\(version)" }

    /// `created` in ISO 8601, UTC (`2023-11-14T22:13:20Z`), as the SBOM, the OCI artifact and
    /// the OCI image layout carry it.
    public var createdTimestamp: String { SBOM.timestamp(created) }

    /// The manifest's canonical bytes: the exact bytes that are written and signed.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    /// Decodes manifest bytes; `source` names the file in errors.
    public static func decode(_ data: Data, source: String = "manifest.json") throws -> ReleaseManifest {
        // The entries of a well-formed manifest, several times faster; anything unusual goes
        // to JSONDecoder below, whose verdict stands (ManifestFastDecoder).
        if let manifest = ManifestFastDecoder.decode(data), manifest.formatVersion == currentFormatVersion { return manifest }
        return try decodeWithFoundation(data, source: source)
    }

    /// `decode` by JSONDecoder alone: the reference the fast decoder is held to (the fuzz
    /// target `manifest` compares the two).
    public static func decodeWithFoundation(_ data: Data, source: String = "manifest.json") throws -> ReleaseManifest {
        struct Header: Decodable { var formatVersion: Int }
        let decoder = JSONDecoder()
        let manifest: ReleaseManifest
        do {
            // One pass over the document (a manifest of 10k entries is ~2 MB): the format
            // version is looked at alone only when the whole does not decode, so that a
            // manifest from a newer slipway is reported as such instead of as a shape error.
            manifest = try decoder.decode(ReleaseManifest.self, from: data)
        } catch {
            if let header = try? decoder.decode(Header.self, from: data), header.formatVersion != currentFormatVersion {
                throw ReleaseError.unsupportedFormatVersion(path: source, found: header.formatVersion, supported: currentFormatVersion)
            }
            throw ReleaseError.manifestMalformed(path: source, detail: describe(error))
        }
        guard manifest.formatVersion == currentFormatVersion else {
            throw ReleaseError.unsupportedFormatVersion(path: source, found: manifest.formatVersion, supported: currentFormatVersion)
        }
        return manifest
    }

    /// Reads and decodes a manifest file.
    /// A zstd-compressed manifest (as the controller sends it) is read as its plain bytes; a
    /// `ManifestPatch` needs `baseManifest`, which gives the bytes of the manifest of an
    /// app's version (the node's copy of the patch's base).
    public static func read(path: String, baseManifest: ((_ app: String, _ version: String) throws -> Data)? = nil) throws
        -> (manifest: ReleaseManifest, bytes: Data) {
        let limit = 256 << 20
        var data = try readFile(path)
        let patch: ManifestPatch.Header?
        do {
            if let (header, offset) = try ManifestPatch.header(of: data) {
                guard let baseManifest else { throw ManifestPatch.PatchError.malformed("no base manifest to apply it to") }
                data = try ManifestPatch.apply(data, frameOffset: offset, header: header, baseManifest: try baseManifest(header.app, header.base),
                                               source: path, limit: limit)
                patch = header
            } else {
                if ZstdData.isCompressed(data) { data = try ZstdData.decompress(data, source: path, limit: limit) }
                patch = nil
            }
        } catch {
            throw ReleaseError.manifestMalformed(path: path, detail: "\(error)")
        }
        let manifest = try decode(data, source: path)
        if let patch, patch.app != manifest.name {
            throw ReleaseError.manifestMalformed(path: path, detail: "a patch against \(patch.app)@\(patch.base) decoded to a manifest of \(manifest.name)")
        }
        return (manifest, data)
    }

    /// The creation time of a release packed now: SOURCE_DATE_EPOCH when set (also returned
    /// as the epoch to clamp mtimes to), else the current time.
    public static func creationTime(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> (created: Int64, sourceDateEpoch: Int64?) {
        if let value = environment["SOURCE_DATE_EPOCH"] {
            guard let epoch = Int64(value.trimmingCharacters(in: .whitespaces)), epoch >= 0 else {
                throw ReleaseError.invalidSourceDateEpoch(value)
            }
            return (epoch, epoch)
        }
        return (Int64(Date().timeIntervalSince1970), nil)
    }

    /// One short line for a decoding error: what was wrong and where.
    package static func describe(_ error: Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func at(_ path: [CodingKey]) -> String {
            path.isEmpty ? "" : " at " + path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case let .keyNotFound(key, context): return "missing field '\(key.stringValue)'\(at(context.codingPath))"
        case let .typeMismatch(_, context): return "wrong type\(at(context.codingPath)): \(context.debugDescription)"
        case let .valueNotFound(_, context): return "missing value\(at(context.codingPath))"
        case let .dataCorrupted(context):
            return context.codingPath.isEmpty ? "not JSON" : "bad value\(at(context.codingPath)): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}

/// Counts and sizes of a manifest's entries, for `inspect`.
public struct ManifestSummary: Codable, Equatable, Sendable {
    public var entries: Int
    public var files: Int
    public var directories: Int
    public var symlinks: Int
    public var hardlinks: Int
    public var characterDevices: Int
    public var blockDevices: Int
    public var fifos: Int
    /// Sum of the sizes of regular files (hardlinks counted once).
    public var fileBytes: UInt64

    public init(_ entries: [EntryRecord]) {
        self.entries = entries.count
        files = 0; directories = 0; symlinks = 0; hardlinks = 0
        characterDevices = 0; blockDevices = 0; fifos = 0; fileBytes = 0
        for entry in entries {
            switch entry.kind {
            case .file: files += 1; fileBytes += entry.size
            case .directory: directories += 1
            case .symlink: symlinks += 1
            case .hardlink: hardlinks += 1
            case .characterDevice: characterDevices += 1
            case .blockDevice: blockDevices += 1
            case .fifo: fifos += 1
            }
        }
    }

    /// The number of entries of `kind`.
    public func count(of kind: EntryRecord.Kind) -> Int {
        switch kind {
        case .file: files
        case .directory: directories
        case .symlink: symlinks
        case .hardlink: hardlinks
        case .characterDevice: characterDevices
        case .blockDevice: blockDevices
        case .fifo: fifos
        }
    }
}

extension ReleaseManifest {
    /// Counts by kind and total file bytes.
    public var summary: ManifestSummary { ManifestSummary(entries) }
}

/// Reads a whole file, mapping failures to `ReleaseError.system`.
func readFile(_ path: String) throws -> Data {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw ReleaseError.system(operation: "open", path: path, errno: errno) }
    defer { close(fd) }
    return try readFully(fd).mapError { ReleaseError.system(operation: "read", path: path, errno: $0.code) }.get()
}
