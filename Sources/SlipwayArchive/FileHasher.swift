import Crypto
import Foundation
import SlipwaySystem

/// Streams a file through SHA-256 without loading it whole.
public enum FileHasher {
    /// The lowercase hex SHA-256 and the size of the file at `path`.
    public static func sha256(path: String) throws -> (hex: String, size: UInt64) {
        try sha256(path, display: path, flags: 0)
    }

    /// The same for a raw C path; `flags` adds open(2) flags such as `O_NOFOLLOW`.
    package static func sha256(_ path: UnsafePointer<CChar>, display: String, flags: Int32) throws -> (hex: String, size: UInt64) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | flags)
        guard fd >= 0 else { throw ArchiveError.system(operation: "open", path: display, errno: errno) }
        defer { close(fd) }
        var hasher = SHA256()
        var size: UInt64 = 0
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer.baseAddress, chunk)
            if n < 0 {
                if errno == EINTR { continue }
                throw ArchiveError.system(operation: "read", path: display, errno: errno)
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            size += UInt64(n)
        }
        return (hex(hasher.finalize()), size)
    }

    /// Lowercase hex of a digest.
    public static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for byte in digest {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
