import Crypto
import Glibc
import SlipwaySystem

/// The archive file being written: counts and hashes every byte on its way to disk.
final class ArchiveOutputFile {
    let fd: Int32
    let path: String
    private(set) var size: UInt64 = 0
    private var hasher = SHA256()

    /// Creates `path` exclusively (it is a fresh temporary name).
    init(path: String) throws {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ArchiveError.system(operation: "create", path: path, errno: errno) }
        self.path = path
    }

    deinit { close(fd) }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        hasher.update(bufferPointer: bytes)
        let failure = writeFully(fd, bytes)
        if failure != 0 { throw ArchiveError.system(operation: "write", path: path, errno: failure) }
        size += UInt64(bytes.count)
    }

    /// Flushes the file to disk and returns its SHA-256.
    func finish() throws -> String {
        guard fsync(fd) == 0 else { throw ArchiveError.system(operation: "fsync", path: path, errno: errno) }
        return FileHasher.hex(hasher.finalize())
    }
}

/// Compresses the tar stream on its way to the archive file.
protocol StreamCompressor: AnyObject {
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// Flushes the end of the stream.
    func finish() throws
}

/// No compression: a plain tar.
final class PassthroughCompressor: StreamCompressor {
    let output: ArchiveOutputFile
    init(output: ArchiveOutputFile) { self.output = output }
    func write(_ bytes: UnsafeRawBufferPointer) throws { try output.write(bytes) }
    func finish() throws {}
}
