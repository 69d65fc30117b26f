import Foundation
import Glibc
import Synchronization

/// An external program to run: argv, environment, input and output handling, timeout.
public struct Command: Sendable, CustomStringConvertible {
    /// Where the child's standard input comes from.
    public enum Input: Sendable {
        case null, inherit
        case bytes(Data)
        case file(String)
        /// An open descriptor of the caller's, handed over from its current offset; the
        /// caller keeps it (and can watch the offset move as the child reads).
        case descriptor(Int32)
    }

    /// What happens to the child's standard output.
    public enum Output: Sendable {
        case capture, inherit, discard
        case file(String)
    }

    public var arguments: [String]
    /// Extra variables on top of this process's environment (nil values remove one).
    public var environment: [String: String?]
    public var workingDirectory: String?
    public var input: Input
    public var output: Output
    /// Also copy the child's stderr to ours as it comes (it is always captured for errors).
    public var echoStandardError: Bool
    public var timeout: Duration?

    public init(
        _ arguments: [String], environment: [String: String?] = [:], workingDirectory: String? = nil,
        input: Input = .null, output: Output = .capture, echoStandardError: Bool = false, timeout: Duration? = nil
    ) {
        precondition(!arguments.isEmpty, "a command needs a program")
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.input = input
        self.output = output
        self.echoStandardError = echoStandardError
        self.timeout = timeout
    }

    /// The command line as a shell would show it, for messages.
    public var description: String {
        arguments.map { argument in
            argument.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:@,+%".contains($0) }) && !argument.isEmpty
                ? argument : "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }
}

/// What a finished command produced.
public struct CommandResult: Sendable {
    public var status: Int32
    /// The signal that ended the child, if one did.
    public var signal: Int32?
    public var standardOutput: Data
    /// The last lines of the child's stderr.
    public var standardErrorTail: String

    public var succeeded: Bool { status == 0 && signal == nil }
    public var outputText: String { String(decoding: standardOutput, as: UTF8.self) }
}

/// Errors of running external programs; each names the command, and for a failure the
/// exit status and the tail of its stderr.
public enum CommandError: Error, CustomStringConvertible, Sendable {
    case notFound(program: String)
    case spawnFailed(command: String, errno: Int32)
    case failed(command: String, status: Int32, signal: Int32?, standardErrorTail: String)
    case timedOut(command: String, seconds: Double, standardErrorTail: String)

    public var description: String {
        switch self {
        case let .notFound(program):
            return "\(program) is not installed (not found in PATH); install it (scripts/setup installs what slipway needs)"
        case let .spawnFailed(command, errno):
            return "could not start \(command): \(String(cString: strerror(errno)))"
        case let .failed(command, status, signal, tail):
            let how = signal.map { "was killed by signal \($0)" } ?? "exited with status \(status)"
            return "\(command) \(how)" + (tail.isEmpty ? "" : ":\n" + tail)
        case let .timedOut(command, seconds, tail):
            return "\(command) did not finish within \(seconds) s and was stopped" + (tail.isEmpty ? "" : ":\n" + tail)
        }
    }
}

/// The one way slipway runs external programs (ssh, mmdebstrap, btrfs, zfs, …).
public struct CommandRunner: Sendable {
    /// Lines kept from a child's stderr for error messages.
    public static let tailLines = 20
    static let spawnLock = Mutex(())

    public init() {}

    /// Runs `command` and returns its result when it exits 0; throws `CommandError.failed`
    /// otherwise.
    @discardableResult
    public func run(_ command: Command) throws -> CommandResult {
        let result = try runAllowingFailure(command)
        guard result.succeeded else {
            throw CommandError.failed(
                command: command.description, status: result.status, signal: result.signal,
                standardErrorTail: result.standardErrorTail)
        }
        return result
    }

    /// Runs `command` and returns its result whatever its exit status.
    public func runAllowingFailure(_ command: Command) throws -> CommandResult {
        let program = try Self.resolve(command.arguments[0])
        // Every descriptor slipway opens is close-on-exec from the start (O_CLOEXEC,
        // F_DUPFD_CLOEXEC) but the spawn's own pipes, marked right after pipe(2); spawning one
        // child at a time keeps another thread's child from inheriting them in between.
        var process = try Self.spawnLock.withLock { _ in try SpawnedProcess(program: program, command: command) }
        return try process.wait(command)
    }

    /// Whether `program` is found in PATH (or is an executable path).
    public static func isInstalled(_ program: String) -> Bool { (try? resolve(program)) != nil }

    /// The full path of `program`, searched in PATH when it has no slash.
    public static func resolve(_ program: String) throws -> String {
        if program.contains("/") {
            guard access(program, X_OK) == 0 else { throw CommandError.notFound(program: program) }
            return program
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"]
        for directory in directories {
            let candidate = "\(directory)/\(program)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw CommandError.notFound(program: program)
    }
}

/// A child started with posix_spawn: signals reset to their defaults (slipway ignores
/// SIGINT/SIGTERM while it cleans up; its children must not inherit that), pipes drained
/// with poll so a chatty child never blocks.
struct SpawnedProcess {
    let pid: pid_t
    var stdinFD: Int32 = -1
    var stdoutFD: Int32 = -1
    var stderrFD: Int32 = -1

    init(program: String, command: Command) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        Self.resetSignals(&attributes)

        var parentEnds: [Int32] = []
        var childEnds: [Int32] = []
        func pipePair() throws -> (read: Int32, write: Int32) {
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { throw CommandError.spawnFailed(command: command.description, errno: errno) }
            // Close-on-exec: only the dup2'd copies reach the child (pipe2 is not in Swift's
            // Glibc module; spawns are serialized, so no other spawn sees them in between).
            fds.forEach { _ = fcntl($0, F_SETFD, FD_CLOEXEC) }
            return (fds[0], fds[1])
        }
        defer { childEnds.forEach { close($0) } }

        switch command.input {
        case .null: posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        case .inherit: break
        case let .file(path): posix_spawn_file_actions_addopen(&actions, 0, path, O_RDONLY, 0)
        case let .descriptor(fd): posix_spawn_file_actions_adddup2(&actions, fd, 0)
        case .bytes:
            let pair = try pipePair()
            posix_spawn_file_actions_adddup2(&actions, pair.read, 0)
            stdinFD = pair.write
            // Non-blocking: a child that writes while we feed it must never deadlock us.
            _ = fcntl(pair.write, F_SETFL, O_NONBLOCK)
            parentEnds.append(pair.write)
            childEnds.append(pair.read)
        }
        switch command.output {
        case .inherit: break
        case .discard: posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        case let .file(path): posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        case .capture:
            let pair = try pipePair()
            posix_spawn_file_actions_adddup2(&actions, pair.write, 1)
            stdoutFD = pair.read
            parentEnds.append(pair.read)
            childEnds.append(pair.write)
        }
        let errPair = try pipePair()
        posix_spawn_file_actions_adddup2(&actions, errPair.write, 2)
        stderrFD = errPair.read
        parentEnds.append(errPair.read)
        childEnds.append(errPair.write)

        var environment = ProcessInfo.processInfo.environment
        for (key, value) in command.environment { environment[key] = value ?? nil }
        // glibc's posix_spawn has no portable chdir action: `env -C` changes directory.
        var program = program
        var arguments = [program] + command.arguments.dropFirst()
        if let directory = command.workingDirectory {
            arguments = ["env", "-C", directory] + arguments
            program = try CommandRunner.resolve("env")
        }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        Self.markDescriptorsCloseOnExec()
        var child = pid_t()
        let status = posix_spawn(&child, program, &actions, &attributes, argv, envp)
        guard status == 0 else {
            parentEnds.forEach { close($0) }
            throw CommandError.spawnFailed(command: command.description, errno: status)
        }
        pid = child
    }

    /// Descriptors this process inherited or opened without close-on-exec (test runners,
    /// sockets) must not reach children: dash, for one, refuses descriptors above 9 that
    /// mmdebstrap then redirects. glibc's closefrom action is not importable, so every
    /// descriptor above 2 is marked close-on-exec just before spawning (spawning holds the
    /// process-wide lock); the dup2'd pipe ends in the child are unaffected.
    /// Every signal at its default action and none blocked in the child (slipway ignores
    /// SIGINT/SIGTERM while it cleans up; children must not inherit that); `flags` adds
    /// spawn flags such as POSIX_SPAWN_SETSID.
    static func resetSignals(_ attributes: inout posix_spawnattr_t, flags: Int16 = 0) {
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK) | flags)
    }

    static func markDescriptorsCloseOnExec() {
        guard let dir = opendir("/proc/self/fd") else { return }
        defer { closedir(dir) }
        let own = dirfd(dir)
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            guard let fd = Int32(name), fd > 2, fd != own else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0, flags & FD_CLOEXEC == 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
        }
    }

    mutating func wait(_ command: Command) throws -> CommandResult {
        var stdout = Data()
        var stderrTail = TailBuffer(lines: CommandRunner.tailLines)
        var input: Data = if case let .bytes(data) = command.input { data } else { Data() }
        var inputOffset = 0
        if stdinFD >= 0, input.isEmpty { close(stdinFD); stdinFD = -1 }
        let deadline = command.timeout.map { ContinuousClock.now + $0 }
        var timedOut = false
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
        defer { buffer.deallocate() }

        while stdoutFD >= 0 || stderrFD >= 0 || stdinFD >= 0 {
            var fds: [pollfd] = []
            if stdoutFD >= 0 { fds.append(pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)) }
            if stderrFD >= 0 { fds.append(pollfd(fd: stderrFD, events: Int16(POLLIN), revents: 0)) }
            if stdinFD >= 0 { fds.append(pollfd(fd: stdinFD, events: Int16(POLLOUT), revents: 0)) }
            var waitMilliseconds: Int32 = -1
            if let deadline {
                let left = deadline - ContinuousClock.now
                if left <= .zero {
                    timedOut = true
                    kill(pid, SIGTERM)
                    break
                }
                waitMilliseconds = Int32(min(1000, max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)))
            }
            let ready = poll(&fds, nfds_t(fds.count), waitMilliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                break
            }
            for entry in fds where entry.revents != 0 {
                if entry.fd == stdinFD {
                    let n = input.withUnsafeBytes { write(stdinFD, $0.baseAddress! + inputOffset, input.count - inputOffset) }
                    if n > 0 { inputOffset += n }
                    if n < 0, errno == EAGAIN || errno == EINTR { continue }
                    if n < 0 || inputOffset >= input.count {
                        close(stdinFD)
                        stdinFD = -1
                        input = Data()
                    }
                    continue
                }
                let n = read(entry.fd, buffer.baseAddress, buffer.count)
                if n <= 0 {
                    if n < 0, errno == EINTR { continue }
                    close(entry.fd)
                    if entry.fd == stdoutFD { stdoutFD = -1 } else { stderrFD = -1 }
                    continue
                }
                let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
                if entry.fd == stdoutFD {
                    stdout.append(contentsOf: chunk)
                } else {
                    stderrTail.append(chunk)
                    if command.echoStandardError { _ = write(2, chunk.baseAddress, n) }
                }
            }
        }
        var status: Int32 = 0
        var reaped = false
        if timedOut {
            // A grace period, then SIGKILL; never signal a pid already reaped.
            for _ in 0..<50 {
                if waitpid(pid, &status, WNOHANG) == pid { reaped = true; break }
                usleep(100_000)
            }
            if !reaped { kill(pid, SIGKILL) }
        }
        [stdinFD, stdoutFD, stderrFD].filter { $0 >= 0 }.forEach { close($0) }
        while !reaped, waitpid(pid, &status, 0) < 0, errno == EINTR {}
        if timedOut {
            throw CommandError.timedOut(
                command: command.description,
                seconds: Double(command.timeout!.components.seconds), standardErrorTail: stderrTail.text)
        }
        let signaled = (status & 0x7F) != 0 && (status & 0x7F) != 0x7F
        return CommandResult(
            status: signaled ? 128 + (status & 0x7F) : (status >> 8) & 0xFF,
            signal: signaled ? status & 0x7F : nil,
            standardOutput: stdout, standardErrorTail: stderrTail.text)
    }
}

/// Keeps the last lines of a stream.
private struct TailBuffer {
    let lines: Int
    private var data = Data()

    init(lines: Int) { self.lines = lines }

    mutating func append(_ chunk: UnsafeRawBufferPointer) {
        data.append(contentsOf: chunk)
        if data.count > 64 * 1024 { data = data.suffix(16 * 1024) }
    }

    var text: String {
        String(decoding: data, as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: true)
            .suffix(lines).joined(separator: "\n")
    }
}
