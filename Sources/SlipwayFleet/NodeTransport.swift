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

    /// `executable`: the slipway binary local nodes run (default: this process's own).
    public init(executable: String? = nil) throws {
        self.executable = executable ?? TransportPool.ownExecutable()
        var template = Array("/tmp/slipway-ssh-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw FleetError.invalidArgument("cannot create a directory for ssh control sockets in /tmp: \(String(cString: strerror(errno)))")
        }
        controlDirectory = String(cString: made)
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
