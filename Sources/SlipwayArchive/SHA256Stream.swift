import Crypto
import SlipwaySystem

/// Incremental SHA-256 with a hex result.
struct SHA256Stream {
    private var hasher = SHA256()
    mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }
    func hex() -> String { FileHasher.hex(hasher.finalize()) }
}
