import Foundation
import SlipwayArchive

/// A decoder for the manifest's `entries` array, the bulk of every manifest (28 MB for the
/// 146,686 entries of a whole /usr), several times faster than `JSONDecoder`, which spends
/// most of a big delta apply decoding the two manifests (docs/engineering.md, "Bigger trees").
///
/// It only ever answers for documents that `JSONDecoder` decodes to the very same manifest:
/// anything it does not expect (an unknown or repeated key, a number that is not plain
/// digits, a base64 path, an escape it does not know, a control character, bytes that are
/// not UTF-8, whitespace anywhere but between tokens) makes it give up with nil, and the
/// caller decodes with `JSONDecoder`, whose verdict and error text stand. The other top-level
/// members (small) are decoded by `JSONDecoder` from a copy of the document with an empty
/// `entries`. The fuzz target `manifest` checks both decoders agree on every input it tries.
enum ManifestFastDecoder {
    static func decode(_ data: Data) -> ReleaseManifest? {
        data.withUnsafeBytes { raw -> ReleaseManifest? in
            guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
            var parser = JSONScanner(bytes: UnsafeBufferPointer(start: base, count: raw.count))
            guard let (rest, entries) = parser.document() else { return nil }
            guard var manifest = try? JSONDecoder().decode(ReleaseManifest.self, from: rest) else { return nil }
            manifest.entries = entries
            return manifest
        }
    }
}

/// The manifest-specific reading; the scanning itself is `JSONScanner`'s.
extension JSONScanner {
    /// The top-level object: its members other than `entries` copied into a document of
    /// their own (with `"entries":[]`), and the entries.
    mutating func document() -> (rest: Data, entries: [EntryRecord])? {
        guard take(Self.openBrace) else { return nil }
        var rest = Data("{".utf8)
        var entries: [EntryRecord]?
        var keys = Set<[UInt8]>()
        if !take(Self.closeBrace) {
            while true {
                skipSpace()
                let keyStart = at
                guard let key = string(), keys.insert(key).inserted, take(Self.colon) else { return nil }
                let keyEnd = at
                if key == Array("entries".utf8) {
                    guard let parsed = entryArray() else { return nil }
                    entries = parsed
                } else {
                    skipSpace()
                    let valueStart = at
                    guard skipValue(depth: 0) else { return nil }
                    rest.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[keyStart..<keyEnd]))
                    rest.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[valueStart..<at]))
                    rest.append(Self.comma)
                }
                if take(Self.comma) { continue }
                guard take(Self.closeBrace) else { return nil }
                break
            }
        }
        skipSpace()
        guard at == bytes.count, let entries else { return nil }
        rest.append(contentsOf: Array(#""entries":[]}"#.utf8))
        return (rest, entries)
    }

    mutating func entryArray() -> [EntryRecord]? {
        guard take(Self.openBracket) else { return nil }
        var entries: [EntryRecord] = []
        if take(Self.closeBracket) { return entries }
        while true {
            guard let entry = entry() else { return nil }
            entries.append(entry)
            if take(Self.comma) { continue }
            guard take(Self.closeBracket) else { return nil }
            return entries
        }
    }

    /// The fields of an entry, by their first byte and length (the keys `EntryRecord`'s
    /// synthesized Codable uses).
    enum Field: Int { case path, kind, mode, uid, gid, size, sha256, linkTarget, xattrs, deviceMajor, deviceMinor }
    static let fields: [[UInt8]: Field] = [
        Array("path".utf8): .path, Array("kind".utf8): .kind, Array("mode".utf8): .mode, Array("uid".utf8): .uid,
        Array("gid".utf8): .gid, Array("size".utf8): .size, Array("sha256".utf8): .sha256, Array("linkTarget".utf8): .linkTarget,
        Array("xattrs".utf8): .xattrs, Array("deviceMajor".utf8): .deviceMajor, Array("deviceMinor".utf8): .deviceMinor,
    ]

    mutating func entry() -> EntryRecord? {
        guard take(Self.openBrace) else { return nil }
        var seen = 0
        var path: [UInt8]?, kind: EntryRecord.Kind?, mode: UInt32?, uid: UInt32?, gid: UInt32?, size: UInt64?
        var sha256: String?, linkTarget: [UInt8]?, xattrs: [String]?, major: UInt32?, minor: UInt32?
        if !take(Self.closeBrace) {
            while true {
                skipSpace()
                guard let key = string(), let field = Self.fields[key], seen & (1 << field.rawValue) == 0, take(Self.colon) else { return nil }
                seen |= 1 << field.rawValue
                skipSpace()
                // null is nil for the optional fields, as JSONDecoder has it.
                let isNull = literal("null")
                switch field {
                case .path: guard !isNull, let value = pathValue() else { return nil }; path = value
                case .kind:
                    guard !isNull, let value = string(), let text = String(validating: value, as: UTF8.self),
                          let parsed = EntryRecord.Kind(rawValue: text) else { return nil }
                    kind = parsed
                case .mode: guard !isNull, let value = number(max: UInt64(UInt32.max)) else { return nil }; mode = UInt32(value)
                case .uid: guard !isNull, let value = number(max: UInt64(UInt32.max)) else { return nil }; uid = UInt32(value)
                case .gid: guard !isNull, let value = number(max: UInt64(UInt32.max)) else { return nil }; gid = UInt32(value)
                case .size: guard !isNull, let value = number(max: UInt64.max) else { return nil }; size = value
                case .sha256:
                    if !isNull {
                        guard let value = string(), let text = String(validating: value, as: UTF8.self) else { return nil }
                        sha256 = text
                    }
                case .linkTarget: if !isNull { guard let value = pathValue() else { return nil }; linkTarget = value }
                case .xattrs: if !isNull { guard let value = stringArray() else { return nil }; xattrs = value }
                case .deviceMajor: if !isNull { guard let value = number(max: UInt64(UInt32.max)) else { return nil }; major = UInt32(value) }
                case .deviceMinor: if !isNull { guard let value = number(max: UInt64(UInt32.max)) else { return nil }; minor = UInt32(value) }
                }
                if take(Self.comma) { continue }
                guard take(Self.closeBrace) else { return nil }
                break
            }
        }
        guard let path, let kind, let mode, let uid, let gid, let size else { return nil }
        return EntryRecord(path: ArchivePath(bytes: path), kind: kind, mode: mode, uid: uid, gid: gid, size: size, sha256: sha256,
                           linkTarget: linkTarget.map { ArchivePath(bytes: $0) }, xattrs: xattrs, deviceMajor: major, deviceMinor: minor)
    }

    /// An `ArchivePath`: a string, or `{"base64":"…"}` for bytes that are not UTF-8.
    mutating func pathValue() -> [UInt8]? {
        guard at < bytes.count else { return nil }
        if bytes[at] == Self.quote { return string() }
        guard take(Self.openBrace) else { return nil }
        skipSpace()
        guard string() == Array("base64".utf8), take(Self.colon) else { return nil }
        skipSpace()
        guard let encoded = string(), let text = String(validating: encoded, as: UTF8.self),
              let data = Data(base64Encoded: text), take(Self.closeBrace) else { return nil }
        return Array(data)
    }



    mutating func stringArray() -> [String]? {
        guard take(Self.openBracket) else { return nil }
        var values: [String] = []
        if take(Self.closeBracket) { return values }
        while true {
            skipSpace()
            guard let value = string(), let text = String(validating: value, as: UTF8.self) else { return nil }
            values.append(text)
            if take(Self.comma) { continue }
            guard take(Self.closeBracket) else { return nil }
            return values
        }
    }
}
