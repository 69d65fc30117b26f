import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The per-app lock: an flock on `<app>/lock`, so one mutating command runs per app at a
/// time. The file records who holds it (pid, command, since); a second command waits up to
/// its timeout and then fails naming the holder. A killed holder's flock is released by the
/// kernel, so a stale file never blocks anyone.
public final class NodeLock {
    /// Who holds a lock, as recorded in the lock file.
    public struct Holder: Codable, Sendable {
        public var pid: Int32
        public var command: String
        /// Seconds since 1970.
        public var since: Double

        public var description: String {
            let date = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: since))
            return "pid \(pid), `\(command)`, since \(date)"
        }
    }

    private var fd: Int32
    public let path: String

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { release() }

    /// Takes the lock of `layout`'s app, waiting up to `timeout` seconds.
    public static func acquire(_ layout: NodeLayout, command: String, timeout: Double) throws -> NodeLock {
        try NodeFiles.makeDirectories(layout.appDirectory)
        let path = layout.lockFile
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw NodeError.system(operation: "open the lock", path: path, errno: errno) }
        let start = NodeFiles.now()
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            guard code == EWOULDBLOCK else {
                close(fd)
                throw NodeError.system(operation: "lock", path: path, errno: code)
            }
            let waited = NodeFiles.now() - start
            if waited >= timeout {
                let holder = readHolder(fd: fd)
                close(fd)
                throw NodeError.locked(path: path, holder: holder?.description ?? "holder unknown", waitedSeconds: waited)
            }
            usleep(20_000)
        }
        let holder = Holder(pid: getpid(), command: command, since: NodeFiles.now())
        if let data = try? JSONEncoder().encode(holder) {
            _ = ftruncate(fd, 0)
            _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        }
        return NodeLock(fd: fd, path: path)
    }

    /// Runs `body` holding the lock.
    public static func with<T>(_ layout: NodeLayout, command: String, timeout: Double, _ body: () throws -> T) throws -> T {
        let lock = try acquire(layout, command: command, timeout: timeout)
        defer { lock.release() }
        return try body()
    }

    /// Who holds the lock of `layout`'s app now, or nil when it is free.
    public static func currentHolder(_ layout: NodeLayout) -> Holder? {
        let fd = open(layout.lockFile, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        return readHolder(fd: fd)
    }

    private static func readHolder(fd: Int32) -> Holder? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return try? JSONDecoder().decode(Holder.self, from: Data(buffer[0..<n]))
    }

    public func release() {
        guard fd >= 0 else { return }
        // The record stays: it is only read while the flock is held by someone.
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }
}
