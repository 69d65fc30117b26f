import Foundation
import SlipwaySystem

/// A path inside an archive or a tree, kept as raw bytes: a rootfs may hold names that are
/// not valid UTF-8, and they must survive every round trip unchanged.
///
/// In JSON it is a plain string when the bytes are valid UTF-8, else `{"base64": "…"}`.
public struct ArchivePath: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(_ string: String) { self.bytes = Array(string.utf8) }

    /// The path as text; bytes that are not UTF-8 are shown escaped (`\xNN`), for messages only.
    public var description: String {
        if let s = String(validating: bytes, as: UTF8.self) { return s }
        var out = ""
        var i = 0
        while i < bytes.count {
            // Decode the longest valid UTF-8 run, escape the rest byte by byte.
            var j = i
            while j < bytes.count, bytes[j] < 0x80 { j += 1 }
            if j > i { out += String(decoding: bytes[i..<j], as: UTF8.self); i = j; continue }
            out += String(format: "\\x%02X", bytes[i])
            i += 1
        }
        return out
    }

    /// Bytewise order, the order entries are written in.
    public static func < (lhs: ArchivePath, rhs: ArchivePath) -> Bool {
        lhs.bytes.withUnsafeBytes { l in
            rhs.bytes.withUnsafeBytes { r in
                let common = min(l.count, r.count)
                let order = common == 0 ? 0 : memcmp(l.baseAddress!, r.baseAddress!, common)
                return order < 0 || (order == 0 && l.count < r.count)
            }
        }
    }

    /// The bytes hashed as one block: the synthesized hash combines them one at a time, and
    /// a node's tree check hashes every path of a 10k-entry release several times.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(bytes.count)
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    /// The path components, split on `/`, empty components dropped.
    public var components: [ArraySlice<UInt8>] {
        bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true)
    }

    public func appending(_ name: [UInt8]) -> ArchivePath {
        if bytes.isEmpty { return ArchivePath(bytes: name) }
        return ArchivePath(bytes: bytes + [UInt8(ascii: "/")] + name)
    }

    /// Calls `body` with the path as a NUL-terminated C string.
    public func withCString<R>(_ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        var copy = bytes.map { CChar(bitPattern: $0) }
        copy.append(0)
        return try copy.withUnsafeBufferPointer { try body($0.baseAddress!) }
    }

    private enum Keys: String, CodingKey { case base64 }

    public init(from decoder: Decoder) throws {
        if let single = try? decoder.singleValueContainer(), let s = try? single.decode(String.self) {
            bytes = Array(s.utf8)
            return
        }
        let keyed = try decoder.container(keyedBy: Keys.self)
        let encoded = try keyed.decode(String.self, forKey: .base64)
        guard let data = Data(base64Encoded: encoded) else {
            throw DecodingError.dataCorruptedError(forKey: .base64, in: keyed, debugDescription: "not base64")
        }
        bytes = Array(data)
    }

    public func encode(to encoder: Encoder) throws {
        if let s = String(validating: bytes, as: UTF8.self) {
            var single = encoder.singleValueContainer()
            try single.encode(s)
        } else {
            var keyed = encoder.container(keyedBy: Keys.self)
            try keyed.encode(Data(bytes).base64EncodedString(), forKey: .base64)
        }
    }
}
