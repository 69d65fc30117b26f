import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// How the controller runs commands on one node: OpenSSH, or this machine for `local`
/// nodes. Neither throws for a non-zero exit; `NodeClient` reads the results.
public protocol NodeTransport: Sendable {
    var node: FleetNode { get }
    /// Runs slipway on the node. `fresh` asks for a new connection (no multiplexing), as a
    /// confirmation must prove that the node is still reachable from scratch.
    func slipway(_ arguments: [String], input: Command.Input, timeout: Duration?, fresh: Bool) throws -> CommandResult
    /// Runs a POSIX shell script on the node.
    func shell(_ script: String, input: Command.Input, timeout: Duration?) throws -> CommandResult
    /// Whether a failed result means the node could not be reached at all.
    func isUnreachable(_ result: CommandResult) -> Bool
    /// Ends shared connections.
    func close()
}

extension NodeTransport {
    public func slipway(_ arguments: [String], input: Command.Input = .null, timeout: Duration? = nil) throws -> CommandResult {
        try slipway(arguments, input: input, timeout: timeout, fresh: false)
    }
}

/// Quotes a word for a POSIX shell.
func shellQuote(_ word: String) -> String {
    if !word.isEmpty, word.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_./=:@,+%".contains($0)) }) { return word }
    return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// OpenSSH: the user's ssh config, agent and known_hosts apply; one master connection per
/// node (ControlMaster) carries every call of a run and is closed by `close()`.
public struct SSHTransport: NodeTransport {
    public let node: FleetNode
    let runner: CommandRunner
    /// The directory of the control sockets (private to this run).
    let controlDirectory: String

    public init(node: FleetNode, controlDirectory: String, runner: CommandRunner = CommandRunner()) {
        self.node = node
        self.controlDirectory = controlDirectory
        self.runner = runner
    }

    /// `ssh` and its options up to (not including) the `--` that ends them before the
    /// destination: a host or user beginning with '-' is never read as an option.
    func sshArguments(fresh: Bool) -> [String] {
        var arguments = ["ssh"]
        if let config = node.sshConfig { arguments += ["-F", config] }
        if let port = node.port { arguments += ["-p", String(port)] }
        if let user = node.user { arguments += ["-l", user] }
        // The user's options come first: for ssh the first value of an option wins.
        arguments += node.sshOptions
        arguments += ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if fresh {
            arguments += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        } else {
            arguments += ["-o", "ControlMaster=auto", "-o", "ControlPath=\(controlDirectory)/%C", "-o", "ControlPersist=120"]
        }
        return arguments
    }

    public func slipway(_ arguments: [String], input: Command.Input, timeout: Duration?, fresh: Bool) throws -> CommandResult {
        let remote = ([node.slipwayPath] + arguments).map(shellQuote).joined(separator: " ")
        return try runner.runAllowingFailure(Command(sshArguments(fresh: fresh) + ["--", node.host, remote], input: input, timeout: timeout))
    }

    public func shell(_ script: String, input: Command.Input, timeout: Duration?) throws -> CommandResult {
        try runner.runAllowingFailure(Command(sshArguments(fresh: false) + ["--", node.host, "sh -c " + shellQuote(script)],
                                              input: input, timeout: timeout))
    }

    /// ssh exits 255 for its own errors (no route, refused, host key, auth).
    public func isUnreachable(_ result: CommandResult) -> Bool { result.status == 255 }

    public func close() {
        let arguments = sshArguments(fresh: false) + ["-O", "exit", "--", node.host]
        _ = try? runner.runAllowingFailure(Command(arguments, timeout: .seconds(10)))
    }
}

/// A node that is a directory on this machine: this very slipway binary runs the verbs.
public struct LocalTransport: NodeTransport {
    public let node: FleetNode
    let executable: String
    let runner: CommandRunner

    public init(node: FleetNode, executable: String, runner: CommandRunner = CommandRunner()) {
        self.node = node
        self.executable = executable
        self.runner = runner
    }

    public func slipway(_ arguments: [String], input: Command.Input, timeout: Duration?, fresh: Bool) throws -> CommandResult {
        try runner.runAllowingFailure(Command([executable] + arguments, input: input, timeout: timeout))
    }

    public func shell(_ script: String, input: Command.Input, timeout: Duration?) throws -> CommandResult {
        try runner.runAllowingFailure(Command(["/bin/sh", "-c", script], input: input, timeout: timeout))
    }

    public func isUnreachable(_ result: CommandResult) -> Bool { false }
    public func close() {}
}

/// Makes the transports of one run and closes them at its end.
public final class TransportPool: Sendable {
    let controlDirectory: String
    let executable: String
    /// The lock this run holds on its socket directory (-1: none), released by `close`.
    private let ownerLock: Int32

    /// `executable`: the slipway binary local nodes run (default: this process's own).
    public init(executable: String? = nil) throws {
        self.executable = executable ?? TransportPool.ownExecutable()
        var template = Array("/tmp/slipway-ssh-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw FleetError.invalidArgument("cannot create a directory for ssh control sockets in /tmp: \(String(cString: strerror(errno)))")
        }
        controlDirectory = String(cString: made)
        ownerLock = Self.holdOwnerLock(in: controlDirectory)
        Self.removeAbandoned(keeping: controlDirectory)
    }

    /// The lock file of a socket directory: held (flock) by the run that made the directory for
    /// as long as it runs, and so released by its death, however it dies.
    static let ownerFile = "owner.lock"

    /// Makes the directory's lock file and locks it before giving it its name, so that no
    /// other run finds it unlocked. -1 when it cannot (the directory is then never removed
    /// by another run: it stays as it did before there was a lock).
    private static func holdOwnerLock(in directory: String) -> Int32 {
        let temporary = directory + "/.owner"
        let fd = open(temporary, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return -1 }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0, rename(temporary, directory + "/" + ownerFile) == 0 else {
            Glibc.close(fd)
            unlink(temporary)
            return -1
        }
        return fd
    }

    /// Removes the socket directories of runs that ended without removing their own: a
    /// controller killed with -9 leaves its directory (and the manifests it sent) in /tmp.
    /// Only a directory of this user's, named as ours, whose lock file nobody holds, is
    /// removed: that of a run still going on (in any PID namespace), of another user, or
    /// without a lock file (made by an older slipway) stays.
    static func removeAbandoned(keeping own: String, in parent: String = "/tmp") {
        let parentFD = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard parentFD >= 0 else { return }
        defer { Glibc.close(parentFD) }
        let listing = PosixPath.duplicate(parentFD)
        guard listing >= 0, let names = try? PosixPath.directoryNames(fd: listing, path: Array(parent.utf8)) else { return }
        let prefix = Array("slipway-ssh-".utf8)
        for name in names where name.starts(with: prefix) && parent + "/" + String(decoding: name, as: UTF8.self) != own {
            let directory = PosixPath.withCString(name) { openat(parentFD, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            guard directory >= 0 else { continue }
            defer { Glibc.close(directory) }
            var st = stat()
            guard fstat(directory, &st) == 0, st.st_uid == geteuid() else { continue }
            let lock = openat(directory, ownerFile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            guard lock >= 0 else { continue }
            defer { Glibc.close(lock) }
            guard flock(lock, LOCK_EX | LOCK_NB) == 0 else { continue }
            PosixPath.removeTree(parentFD: parentFD, name: name)
        }
    }

    public func transport(for node: FleetNode) -> any NodeTransport {
        switch node.transport {
        case .ssh: SSHTransport(node: node, controlDirectory: controlDirectory)
        case .local: LocalTransport(node: node, executable: executable)
        }
    }

    /// Closes every master connection of `nodes` and removes the socket directory.
    public func close(_ nodes: [FleetNode]) {
        ParallelWork.forEach(nodes.filter { $0.transport == .ssh }, width: 16) { self.transport(for: $0).close() }
        PosixPath.removeTree(controlDirectory)
        if ownerLock >= 0 { Glibc.close(ownerLock) }
    }

    /// The path of the running slipway binary.
    public static func ownExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return CommandLine.arguments[0] }
        buffer[n] = 0
        return String(cString: buffer)
    }
}
