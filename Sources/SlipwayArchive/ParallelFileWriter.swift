import CArchive
import Foundation
import Glibc

/// Writes small regular files of an extraction on worker threads, so that the file system's
/// per-file calls (create, write, chown, chmod, times, close) of several files are in flight
/// at once. On a FUSE file system (zfs-fuse) each of those calls is a round trip to the
/// daemon, which serves several at a time; on a kernel file system such as ext4 they are
/// CPU work and gain nothing (docs/node.md).
///
/// The reading thread keeps everything that decides what is created: it checks the entry,
/// creates its parent directories, hashes its bytes and hands over a copy of them with a
/// descriptor of the parent (its own `dup`, so the creator's directory cache may close its
/// one). A worker only creates the file in that directory with `O_EXCL | O_NOFOLLOW`, as
/// the reading thread would have. Queued bytes are bounded (`byteLimit`): the reader waits
/// when they are exceeded. The first error stops the workers from creating anything more and
/// is thrown by the next `submit` or `drain`.
final class ParallelFileWriter: @unchecked Sendable {
    /// A file to create: `segments` place `data`'s bytes at their offsets (a sparse entry's
    /// holes stay holes), and the file is extended to the header's size.
    struct Job: Sendable {
        var parentFD: Int32
        var name: [UInt8]
        var header: TarHeader
        var data: [UInt8]
        var segments: [Segment]
    }

    struct Segment: Sendable {
        var offset: Int64
        var start: Int
        var count: Int
    }

    /// Files up to this size go to the workers; larger ones are written by the reader.
    static let largestQueuedFile: UInt64 = 1 << 20

    private let restoreOwners: Bool
    private let byteLimit: Int
    private let condition = NSCondition()
    private var queue: [Job] = []
    private var head = 0
    private var queuedBytes = 0
    private var writing = 0
    private var stopping = false
    private var failure: (any Error)?
    private var running = 0

    init(workers: Int, restoreOwners: Bool, byteLimit: Int = 16 << 20) {
        self.restoreOwners = restoreOwners
        self.byteLimit = byteLimit
        running = workers
        for _ in 0..<workers {
            let thread = Thread { [self] in work() }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Queues a file (taking ownership of `job.parentFD`); waits while too many bytes are
    /// queued. Throws the first worker error instead of queueing.
    func submit(_ job: Job) throws {
        condition.lock()
        while failure == nil && queuedBytes > 0 && queuedBytes + job.data.count > byteLimit { condition.wait() }
        if let failure {
            condition.unlock()
            close(job.parentFD)
            throw failure
        }
        queue.append(job)
        queuedBytes += job.data.count
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until every queued file exists; throws the first worker error.
    func drain() throws {
        condition.lock()
        defer { condition.unlock() }
        while failure == nil && (head < queue.count || writing > 0) { condition.wait() }
        if let failure { throw failure }
        queue.removeAll(keepingCapacity: true)
        head = 0
    }

    /// Drops what is queued, waits for the files being written, and ends the workers. After
    /// it nothing more is created in the tree. Called on success (after `drain`) and on
    /// failure alike; the workers hold the writer until then.
    func stop() {
        condition.lock()
        stopping = true
        for job in queue[head...] { close(job.parentFD) }
        queue.removeAll()
        head = 0
        queuedBytes = 0
        condition.broadcast()
        while running > 0 { condition.wait() }
        condition.unlock()
    }

    private func work() {
        condition.lock()
        while true {
            while head == queue.count && !stopping { condition.wait() }
            if stopping { break }
            let job = queue[head]
            queue[head].data = []  // the job's copy is the last one: freed once written
            head += 1
            if head >= 1024 && head * 2 >= queue.count {
                queue.removeFirst(head)
                head = 0
            }
            writing += 1
            let skip = failure != nil
            condition.unlock()

            var error: (any Error)?
            if !skip {
                do { try Self.write(job, restoreOwners: restoreOwners) } catch let thrown { error = thrown }
            }
            close(job.parentFD)

            condition.lock()
            writing -= 1
            queuedBytes -= job.data.count
            if let error, failure == nil { failure = error }
            condition.broadcast()
        }
        running -= 1
        condition.broadcast()
        condition.unlock()
    }

    private static func write(_ job: Job, restoreOwners: Bool) throws {
        try PosixPath.withCString(job.name) { name in
            try EntryMetadata.createFile(parentFD: job.parentFD, name: name, job.header, restoreOwners: restoreOwners) { body in
                try job.data.withUnsafeBytes { bytes in
                    for segment in job.segments {
                        try body(UnsafeRawBufferPointer(rebasing: bytes[segment.start..<(segment.start + segment.count)]), segment.offset)
                    }
                }
            }
        }
    }
}

/// Writing an entry's bytes and metadata through an open descriptor: shared by the reading
/// thread and the workers.
enum EntryMetadata {
    /// Creates the regular file `name` in `parentFD` (`O_EXCL | O_NOFOLLOW`: never over an
    /// existing entry, never through a symlink), writes each chunk `fill` hands it at its
    /// offset, extends it to the header's size (a sparse entry's trailing hole) and sets its
    /// metadata.
    static func createFile(parentFD: Int32, name: UnsafePointer<CChar>, _ header: TarHeader, restoreOwners: Bool,
                           fill: ((UnsafeRawBufferPointer, Int64) throws -> Void) throws -> Void) throws {
        let fd = openat(parentFD, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        try check(fd, "create", header)
        defer { close(fd) }
        var end: Int64 = 0
        try fill { chunk, offset in
            try write(fd: fd, chunk, at: offset, header)
            end = offset + Int64(chunk.count)
        }
        if end < Int64(header.size) { try check(ftruncate(fd, off_t(header.size)), "truncate", header) }
        try apply(fd: fd, header, restoreOwners: restoreOwners)
    }

    /// All of `chunk` at `offset`.
    private static func write(fd: Int32, _ chunk: UnsafeRawBufferPointer, at offset: Int64, _ header: TarHeader) throws {
        var written = 0
        while written < chunk.count {
            let n = pwrite(fd, chunk.baseAddress! + written, chunk.count - written, off_t(offset) + written)
            if n < 0, errno == EINTR { continue }
            try check(n < 0 ? -1 : 0, "write", header)
            written += n
        }
    }

    /// Owner first (chown clears setuid bits and capabilities), then mode, xattrs, times.
    static func apply(fd: Int32, _ header: TarHeader, restoreOwners: Bool) throws {
        if restoreOwners { try check(fchown(fd, header.uid, header.gid), "chown", header) }
        try check(fchmod(fd, mode_t(header.mode)), "chmod", header)
        for (name, value) in header.xattrs {
            let status = value.withUnsafeBytes { fsetxattr(fd, name, $0.baseAddress, $0.count, 0) }
            try check(status, "set xattr \(name) on", header)
        }
        try check(futimens(fd, times(header)), "set times of", header)
    }

    /// Access and modification time both set to the entry's mtime.
    static func times(_ header: TarHeader) -> [timespec] {
        let time = timespec(tv_sec: time_t(header.mtime), tv_nsec: header.mtimeNanoseconds)
        return [time, time]
    }

    static func check(_ status: Int32, _ operation: String, _ header: TarHeader) throws {
        if status < 0 { throw ArchiveError.system(operation: operation, path: header.storedName, errno: errno) }
    }
}
