import Glibc
import SlipwaySystem

/// The archive file being read, in large chunks, with progress.
final class ArchiveInputFile {
    let fd: Int32
    let path: String
    let size: UInt64
    private(set) var atEnd = false
    private(set) var bytesRead: UInt64 = 0
    private let buffer: UnsafeMutableRawBufferPointer
    private let progress: (any ArchiveProgress)?

    init(path: String, progress: (any ArchiveProgress)?) throws {
        // O_NONBLOCK: opening a fifo must not wait for a writer before it is refused.
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw ArchiveError.system(operation: "open", path: path, errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let code = errno
            close(fd)
            throw ArchiveError.system(operation: "stat", path: path, errno: code)
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw ArchiveError.notAnArchiveFile(path: path, kind: Self.kindName(st.st_mode))
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        self.path = path
        self.size = UInt64(st.st_size)
        self.progress = progress
        buffer = .allocate(byteCount: 1 << 20, alignment: 16)
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
    }

    deinit {
        close(fd)
        buffer.deallocate()
    }

    /// What a file that is not a regular file is, for messages.
    static func kindName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a directory"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFIFO: "a fifo"
        case S_IFSOCK: "a socket"
        default: "a special file"
        }
    }

    /// The first bytes of the file, without moving the read position.
    func magic() throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 8)
        let n = pread(fd, &bytes, bytes.count, 0)
        guard n >= 0 else { throw ArchiveError.system(operation: "read", path: path, errno: errno) }
        return Array(bytes[0..<n])
    }

    /// The next chunk; empty at the end. Valid until the next call.
    func read() throws -> UnsafeRawBufferPointer {
        if atEnd { return UnsafeRawBufferPointer(start: nil, count: 0) }
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw ArchiveError.system(operation: "read", path: path, errno: errno)
            }
            if n == 0 { atEnd = true }
            bytesRead += UInt64(n)
            progress?.advance(to: bytesRead)
            return UnsafeRawBufferPointer(rebasing: buffer[0..<n])
        }
    }
}

/// Produces the decompressed tar stream chunk by chunk. A returned chunk stays valid until
/// the call after next (two buffers alternate), so the reader can look back one chunk.
protocol StreamDecompressor: AnyObject {
    /// The next chunk of the tar stream, nil at its end. Throws on corrupt, truncated or
    /// trailing data.
    func next() throws -> UnsafeRawBufferPointer?
}

/// Two buffers used in turn, so the previous chunk handed out stays readable.
final class AlternatingBuffers {
    private let buffers: [UnsafeMutableRawBufferPointer]
    private var index = 0

    init(size: Int) {
        buffers = [.allocate(byteCount: size, alignment: 16), .allocate(byteCount: size, alignment: 16)]
    }

    deinit { buffers.forEach { $0.deallocate() } }

    /// The buffer to fill now (the other one holds the previous chunk).
    func swap() -> UnsafeMutableRawBufferPointer {
        index ^= 1
        return buffers[index]
    }
}

/// A plain tar: the file's bytes are the stream.
final class PassthroughDecompressor: StreamDecompressor {
    private let input: ArchiveInputFile
    private let buffers = AlternatingBuffers(size: 1 << 20)

    init(input: ArchiveInputFile) { self.input = input }

    func next() throws -> UnsafeRawBufferPointer? {
        let chunk = try input.read()
        if chunk.count == 0 { return nil }
        let target = buffers.swap()
        target.copyMemory(from: chunk)
        return UnsafeRawBufferPointer(rebasing: target[0..<chunk.count])
    }
}
