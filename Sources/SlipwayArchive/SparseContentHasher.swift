import Crypto
import SlipwaySystem

/// The SHA-256 of a file's content from chunks at offsets (libarchive's data blocks): a gap
/// between chunks, or before the end, is a hole and counts as zeros.
struct SparseContentHasher {
    private var hasher = SHA256()
    private var position: Int64 = 0
    private static let zeros = [UInt8](repeating: 0, count: 64 * 1024)

    mutating func update(_ chunk: UnsafeRawBufferPointer, at offset: Int64) {
        if offset > position { zeroFill(offset - position) }
        hasher.update(bufferPointer: chunk)
        position = max(position, offset + Int64(chunk.count))
    }

    /// The hex digest of a file of `size` bytes.
    mutating func finish(size: UInt64) -> String {
        if Int64(size) > position { zeroFill(Int64(size) - position) }
        return FileHasher.hex(hasher.finalize())
    }

    private mutating func zeroFill(_ count: Int64) {
        var left = count
        while left > 0 {
            let n = Int(min(left, Int64(Self.zeros.count)))
            Self.zeros.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            left -= Int64(n)
        }
        position += count
    }
}
