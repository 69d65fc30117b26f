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
            var parser = Parser(bytes: UnsafeBufferPointer(start: base, count: raw.count))
            guard let (rest, entries) = parser.document() else { return nil }
            guard var manifest = try? JSONDecoder().decode(ReleaseManifest.self, from: rest) else { return nil }
            manifest.entries = entries
            return manifest
        }
    }

    struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var at = 0

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        static let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\"), colon = UInt8(ascii: ":"), comma = UInt8(ascii: ",")
        static let openBrace = UInt8(ascii: "{"), closeBrace = UInt8(ascii: "}"), openBracket = UInt8(ascii: "["), closeBracket = UInt8(ascii: "]")

        mutating func skipSpace() {
            while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x0A || bytes[at] == 0x0D || bytes[at] == 0x09 { at += 1 }
        }

        mutating func take(_ byte: UInt8) -> Bool {
            skipSpace()
            guard at < bytes.count, bytes[at] == byte else { return false }
            at += 1
            return true
        }

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

        mutating func literal(_ word: StaticString) -> Bool {
            let count = word.utf8CodeUnitCount
            guard at + count <= bytes.count else { return false }
            for index in 0..<count where bytes[at + index] != word.utf8Start[index] { return false }
            at += count
            return true
        }

        /// Plain decimal digits, no sign, fraction, exponent or leading zero, at most `max`.
        mutating func number(max: UInt64) -> UInt64? {
            let start = at
            var value: UInt64 = 0
            while at < bytes.count, bytes[at] >= 0x30, bytes[at] <= 0x39 {
                let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times.addingReportingOverflow(UInt64(bytes[at] - 0x30))
                guard !overflow1, !overflow2 else { return nil }
                value = sum
                at += 1
            }
            guard at > start, at - start == 1 || bytes[start] != 0x30, value <= max else { return nil }
            // A fraction or an exponent is JSONDecoder's to judge.
            if at < bytes.count, bytes[at] == UInt8(ascii: ".") || bytes[at] == UInt8(ascii: "e") || bytes[at] == UInt8(ascii: "E") { return nil }
            return value
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

        /// A JSON string's UTF-8 bytes (escapes resolved); nil for anything JSONDecoder might
        /// judge differently (bytes that are not UTF-8, a raw control character, a lone
        /// surrogate, an unknown escape).
        mutating func string() -> [UInt8]? {
            guard at < bytes.count, bytes[at] == Self.quote else { return nil }
            at += 1
            let start = at
            // The common case: no escape.
            while at < bytes.count, bytes[at] != Self.quote, bytes[at] != Self.backslash, bytes[at] >= 0x20 { at += 1 }
            guard at < bytes.count, bytes[at] >= 0x20 else { return nil }
            var out = Array(UnsafeBufferPointer(rebasing: bytes[start..<at]))
            while bytes[at] != Self.quote {
                if bytes[at] == Self.backslash {
                    at += 1
                    guard at < bytes.count else { return nil }
                    switch bytes[at] {
                    case Self.quote, Self.backslash, UInt8(ascii: "/"): out.append(bytes[at])
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        guard var scalar = hex4(at + 1) else { return nil }
                        at += 4
                        if scalar >= 0xD800, scalar < 0xDC00 {
                            // A high surrogate must be followed by an escaped low one.
                            guard at + 6 < bytes.count, bytes[at + 1] == Self.backslash, bytes[at + 2] == UInt8(ascii: "u"),
                                  let low = hex4(at + 3), low >= 0xDC00, low < 0xE000 else { return nil }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                            at += 6
                        } else if scalar >= 0xDC00, scalar < 0xE000 {
                            return nil
                        }
                        guard let unicode = Unicode.Scalar(scalar) else { return nil }
                        out.append(contentsOf: Array(String(Character(unicode)).utf8))
                    default: return nil
                    }
                    at += 1
                } else {
                    guard bytes[at] >= 0x20 else { return nil }
                    out.append(bytes[at])
                    at += 1
                }
                guard at < bytes.count else { return nil }
            }
            at += 1
            guard out.allSatisfy({ $0 < 0x80 }) || String(validating: out, as: UTF8.self) != nil else { return nil }
            return out
        }

        func hex4(_ from: Int) -> UInt32? {
            guard from + 4 <= bytes.count else { return nil }
            var value: UInt32 = 0
            for index in from..<from + 4 {
                let byte = bytes[index]
                let digit: UInt32
                switch byte {
                case 0x30...0x39: digit = UInt32(byte - 0x30)
                case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
                case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
                default: return nil
                }
                value = value << 4 | digit
            }
            return value
        }

        /// Moves past one JSON value without decoding it (JSONDecoder judges it later);
        /// nil-safe on truncated input.
        mutating func skipValue(depth: Int) -> Bool {
            guard depth < 64 else { return false }
            skipSpace()
            guard at < bytes.count else { return false }
            switch bytes[at] {
            case Self.quote: return string() != nil
            case Self.openBrace, Self.openBracket:
                let close = bytes[at] == Self.openBrace ? Self.closeBrace : Self.closeBracket
                let isObject = close == Self.closeBrace
                at += 1
                if take(close) { return true }
                while true {
                    if isObject {
                        skipSpace()
                        guard string() != nil, take(Self.colon) else { return false }
                    }
                    guard skipValue(depth: depth + 1) else { return false }
                    if take(Self.comma) { continue }
                    return take(close)
                }
            default:
                // A number, true, false or null: up to the next delimiter.
                let start = at
                while at < bytes.count, ![Self.comma, Self.closeBrace, Self.closeBracket, 0x20, 0x0A, 0x0D, 0x09].contains(bytes[at]) { at += 1 }
                return at > start
            }
        }
    }
}
