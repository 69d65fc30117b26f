import Foundation
import Glibc
import Synchronization
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The per-app lock: an flock on `<app>/lock`, so one mutating command runs per app at a
/// time. The file records who holds it (pid, command, since); a second command waits up to
/// its timeout and then fails naming the holder. A killed holder's flock is released by the
/// kernel, so a stale file never blocks anyone.
///
/// The flock dies with the holder, but the programs it was running (a `zfs rename`, an
/// `lvcreate`, `sync`, a hook) do not: they would go on changing the app's state under the
/// next holder's recovery. So a holder that can leads a process group of its own
/// (`LockProcessGroup`), which its children join, and says so in the record; the next holder
/// that finds the record of a dead holder not released ends that group's leftover
/// processes (SIGKILL, as the holder got) and waits for them before recovering
/// (docs/node.md, "Crash safety").
public final class NodeLock {
    /// Who holds a lock, as recorded in the lock file.
    public struct Holder: Codable, Sendable {
        public var pid: Int32
        public var command: String
        /// Seconds since 1970.
        public var since: Double
        /// Whether `pid` leads a process group of its own, holding only it and its children.
        public var group: Bool?
        /// Set when the holder let go of the lock itself (it was not killed holding it).
        public var released: Bool?

        public var description: String {
            let date = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: since))
            return "pid \(pid), `\(command)`, since \(date)"
        }
    }

    private var fd: Int32
    public let path: String
    private var holder: Holder

    private init(fd: Int32, path: String, holder: Holder) {
        self.fd = fd
        self.path = path
        self.holder = holder
    }

    deinit { release() }

    /// Takes the lock of `layout`'s app, waiting up to `timeout` seconds; ends the leftover
    /// processes of a holder that was killed holding it (`log` says so).
    public static func acquire(_ layout: NodeLayout, command: String, timeout: Double,
                               log: (String) -> Void = { _ in }) throws -> NodeLock {
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
        if let previous = readHolder(fd: fd), previous.group == true, previous.released != true, previous.pid != getpid() {
            let ended = LockProcessGroup.endLeftovers(of: previous.pid)
            if !ended.isEmpty {
                log("ended \(ended.count) leftover process\(ended.count == 1 ? "" : "es") (pid \(ended.map(String.init).joined(separator: ", "))) " +
                    "of pid \(previous.pid), `\(previous.command)`, which was killed holding the lock of \(layout.app)")
            }
        }
        let holder = Holder(pid: getpid(), command: command, since: NodeFiles.now(), group: LockProcessGroup.leads)
        write(holder, fd: fd)
        return NodeLock(fd: fd, path: path, holder: holder)
    }

    private static func write(_ holder: Holder, fd: Int32) {
        if let data = NodeLockHolderCodec.encode(holder) ?? (try? JSONEncoder().encode(holder)) {
            _ = ftruncate(fd, 0)
            _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        }
    }

    /// Lets this process make a process group of its own when it first takes a lock (the
    /// command line calls this; `LockProcessGroup`).
    public static func mayMakeProcessGroup() { LockProcessGroup.mayMakeGroup.store(true, ordering: .relaxed) }

    /// Runs `body` holding the lock.
    public static func with<T>(_ layout: NodeLayout, command: String, timeout: Double, log: (String) -> Void = { _ in },
                               _ body: () throws -> T) throws -> T {
        let lock = try acquire(layout, command: command, timeout: timeout, log: log)
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
        if let holder = buffer.withUnsafeBytes({ NodeLockHolderCodec.decode(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }) {
            return holder
        }
        return try? JSONDecoder().decode(Holder.self, from: Data(buffer[0..<n]))
    }

    public func release() {
        guard fd >= 0 else { return }
        // The record stays (it is only read while the flock is held by someone), marked as
        // let go: the next holder has no leftovers of this one to look for.
        holder.released = true
        Self.write(holder, fd: fd)
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }
}

/// The lock holder's process group (`NodeLock`): the node command leads one of its own, so
/// that what it started can be found by the group's id, its pid, after it was killed.
enum LockProcessGroup {
    /// Only the slipway command line makes a group of its own (`NodeLock.mayMakeProcessGroup`),
    /// never another program that runs node operations in-process (a test runner).
    static let mayMakeGroup = Atomic<Bool>(false)

    /// Whether this process leads a process group: it was started as one (a session leader
    /// as sshd runs it, a shell's job, a program's child in a group of its own), or it makes
    /// one now. A process in the foreground group of a terminal it does not lead stays there
    /// (Ctrl-C must reach it) and does not count. (A shell's job may be a pipeline whose
    /// other members share the group: a `tee` after a killed holder ends with its group.)
    /// Decided once.
    static let leads: Bool = {
        let me = getpid()
        if getpgrp() == me { return true }
        guard mayMakeGroup.load(ordering: .relaxed) else { return false }
        let tty = open("/dev/tty", O_RDONLY | O_NOCTTY | O_CLOEXEC)
        if tty >= 0 {
            defer { close(tty) }
            if tcgetpgrp(tty) == getpgrp() { return false }
        }
        return setpgid(0, 0) == 0
    }()

    /// Ends the live members of process group `leader` when `leader` itself is dead: they
    /// are what a killed holder left running. (The kernel does not give a new process the
    /// pid of a group that still has members, so when the leader's pid is free or a zombie,
    /// the group's members are its own.) Waits up to 10 s for them to be gone; returns the
    /// pids it ended.
    static func endLeftovers(of leader: pid_t) -> [pid_t] {
        guard leader > 1, state(of: leader).map({ $0 == "Z" || $0 == "X" }) ?? true else { return [] }
        let members = liveMembers(of: leader)
        guard !members.isEmpty else { return [] }
        _ = kill(-leader, SIGKILL)
        let deadline = ContinuousClock.now + .seconds(10)
        while !liveMembers(of: leader).isEmpty && ContinuousClock.now < deadline { usleep(10_000) }
        return members
    }

    /// The processes of group `group` that are not zombies, from /proc.
    static func liveMembers(of group: pid_t) -> [pid_t] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return names.compactMap { name -> pid_t? in
            guard let pid = pid_t(name), let fields = statFields(of: pid), fields.count > 2,
                  fields[2] == String(group), fields[0] != "Z", fields[0] != "X" else { return nil }
            return pid
        }.sorted()
    }

    /// The state letter of `pid` (R, S, D, Z …), nil when there is no such process.
    static func state(of pid: pid_t) -> String? { statFields(of: pid)?.first }

    /// /proc/PID/stat after the command name: state, ppid, pgrp, session, …
    private static func statFields(of pid: pid_t) -> [String]? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ").map(String.init)
    }
}

/// The lock file's record of its holder (`NodeLock.Holder`), written and read without
/// JSONEncoder and JSONDecoder, as `NodeStateFastCodec` does the journal: every mutating
/// command reads the record and writes it twice, and the two coders' first use cost more
/// than the rest of taking the lock. Writing gives what JSONEncoder would (compact, the
/// members in their declared order) but for slashes, left unescaped, which both readers
/// take; nil for what it does not write itself, and the caller uses JSONEncoder. Reading
/// gives nil for anything but that shape, and the caller decodes with JSONDecoder.
enum NodeLockHolderCodec {
    static func encode(_ holder: NodeLock.Holder) -> Data? {
        var out = NodeStateFastCodec.Writer()
        out.raw("{\"pid\":")
        out.bytes.append(contentsOf: Array(String(holder.pid).utf8))
        out.raw(",\"command\":")
        guard out.string(holder.command) else { return nil }
        out.raw(",\"since\":")
        guard out.number(holder.since) else { return nil }
        if let group = holder.group {
            out.raw(",\"group\":")
            out.raw(group ? "true" : "false")
        }
        if let released = holder.released {
            out.raw(",\"released\":")
            out.raw(released ? "true" : "false")
        }
        out.raw("}")
        return Data(out.bytes)
    }

    static func decode(_ raw: UnsafeRawBufferPointer) -> NodeLock.Holder? {
        JSONScanner.document(raw) { scanner in
            var pid: Int32?, command: String?, since: Double?, group: Bool?, released: Bool?
            func flag(_ scanner: inout JSONScanner) -> Bool? {
                if scanner.literal("true") { return true }
                if scanner.literal("false") { return false }
                return nil
            }
            let read = scanner.members(Self.key) { scanner, field in
                switch field {
                case 0: pid = scanner.number(max: UInt64(Int32.max)).map { Int32($0) }; return pid != nil
                case 1: command = scanner.text(); return command != nil
                case 2: since = scanner.double(); return since != nil
                case 3: group = flag(&scanner); return group != nil
                default: released = flag(&scanner); return released != nil
                }
            }
            guard read, let pid, let command, let since else { return nil }
            return NodeLock.Holder(pid: pid, command: command, since: since, group: group, released: released)
        }
    }

    private static func key(_ key: String) -> Int? {
        switch key { case "pid": 0; case "command": 1; case "since": 2; case "group": 3; case "released": 4; default: nil }
    }
}
