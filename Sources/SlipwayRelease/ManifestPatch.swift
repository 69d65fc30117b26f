import Crypto
import Foundation
import SlipwayArchive
import SlipwaySystem

/// A manifest sent as its difference from the manifest of a version the node already has.
///
/// A manifest lists every file of a release: for a tree of 12,000 files it is about 3 MB,
/// 300 kB compressed — next to a delta of a few hundred kB, most of the bytes a push sends.
/// Two versions' manifests differ in a few records, so the controller compresses the new
/// one with zstd against the base's (zstd's patch mode) and the patch is a few kB.
///
/// The file is a zstd skippable frame holding a small JSON header (app, base version, the
/// SHA-256 of the base manifest's bytes), then the zstd frame made against those bytes.
/// The reader finds the base manifest through the header, checks its hash (a node whose
/// manifest of the base differs gets a clear error, never a wrong manifest) and decodes;
/// the frame's content checksum guards the result too. See docs/fleet.md.
public enum ManifestPatch {
    public struct Header: Codable, Sendable, Equatable {
        public var app: String
        public var base: String
        public var baseSHA256: String
    }

    /// A zstd skippable frame's magic (0x184D2A50, little-endian), then its size.
    static let skippableMagic: [UInt8] = [0x50, 0x2A, 0x4D, 0x18]

    /// `manifest` as a patch against `baseManifest`, the bytes of `app`@`base`'s manifest.
    public static func make(manifest: Data, app: String, base: String, baseManifest: Data) throws -> Data {
        let header = Header(app: app, base: base, baseSHA256: FileHasher.hex(SHA256.hash(data: baseManifest)))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = try encoder.encode(header)
        var data = Data(skippableMagic)
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        data.append(try ZstdData.compress(manifest, prefix: baseManifest))
        return data
    }

    /// The header of a patch, nil when `data` is not one.
    static func header(of data: Data) throws -> (header: Header, frameOffset: Int)? {
        guard data.count >= 8, data.prefix(4).elementsEqual(skippableMagic) else { return nil }
        let length = data.dropFirst(4).prefix(4).reversed().reduce(0) { $0 << 8 | Int($1) }
        guard length <= 4096, data.count >= 8 + length else { throw PatchError.malformed("a truncated header") }
        let start = data.startIndex + 8
        guard let header = try? JSONDecoder().decode(Header.self, from: data[start..<start + length]) else {
            throw PatchError.malformed("an unreadable header")
        }
        try ReleaseStore.validate(name: header.app)
        try ReleaseStore.validate(version: header.base)
        return (header, 8 + length)
    }

    /// The manifest bytes of a patch, given the bytes of its base manifest.
    static func apply(_ data: Data, frameOffset: Int, header: Header, baseManifest: Data, source: String, limit: Int) throws -> Data {
        let actual = FileHasher.hex(SHA256.hash(data: baseManifest))
        guard actual == header.baseSHA256 else {
            throw PatchError.baseDiffers(app: header.app, base: header.base)
        }
        return try ZstdData.decompress(Data(data.dropFirst(frameOffset)), source: source, limit: limit, prefix: baseManifest)
    }

    enum PatchError: Error, CustomStringConvertible {
        case malformed(String)
        case baseDiffers(app: String, base: String)

        var description: String {
            switch self {
            case let .malformed(what): return "a manifest patch with \(what)"
            case let .baseDiffers(app, base):
                return "a manifest patch against \(app)@\(base), whose manifest here differs from the controller's (push with --full)"
            }
        }
    }
}
