import Foundation
import Glibc
import Synchronization
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The node verbs as the controller calls them (`slipway node <verb> … --json`), with the
/// replies decoded and failures turned into `FleetError`s that carry the node's own message.
public struct NodeClient: Sendable {
    public let transport: any NodeTransport
    public var node: FleetNode { transport.node }

    public init(transport: any NodeTransport) { self.transport = transport }

    /// Runs `slipway node <verb> <arguments> <node flags> --json` and decodes its reply.
    func call<Reply: Decodable>(_ verb: String, _ arguments: [String], as: Reply.Type, input: Command.Input = .null,
                                timeout: Duration? = .seconds(600), fresh: Bool = false) throws -> Reply {
        let result = try run(verb, arguments, input: input, timeout: timeout, fresh: fresh)
        do {
            return try JSONDecoder().decode(Reply.self, from: result.standardOutput)
        } catch {
            throw FleetError.nodeCommand(node: node.name, verb: verb,
                                         detail: "its reply is not what this slipway expects (\(error)); is the node's slipway the same version?")
        }
    }

    /// Runs a node verb and returns its result when it succeeded.
    func run(_ verb: String, _ arguments: [String], input: Command.Input = .null, timeout: Duration? = .seconds(600),
             fresh: Bool = false) throws -> CommandResult {
        let result: CommandResult
        do {
            result = try transport.slipway(["node", verb] + arguments + node.nodeFlags + ["--json"], input: input, timeout: timeout, fresh: fresh)
        } catch let error as CommandError {
            throw FleetError.transport(node: node.name, detail: error.description)
        }
        guard result.succeeded else { throw failure(verb, result) }
        return result
    }

    /// The error a failed node verb stands for.
    func failure(_ verb: String, _ result: CommandResult) -> FleetError {
        let lines = result.standardErrorTail.split(separator: "\n").map(String.init)
        if transport.isUnreachable(result) {
            return .transport(node: node.name, detail: lines.last ?? "ssh exited with status 255")
        }
        if let reply = try? JSONDecoder().decode(NodeErrorReply.self, from: result.standardOutput) {
            return .nodeCommand(node: node.name, verb: verb, detail: reply.error.message, code: reply.error.code)
        }
        if let line = lines.last(where: { $0.hasPrefix("slipway: error: ") }) {
            // A version-1 node: its message, no code (the controller does not read words).
            return .nodeCommand(node: node.name, verb: verb, detail: String(line.dropFirst("slipway: error: ".count)) +
                                " (\(NodeWire.olderNode(nil)))")
        }
        // A usage error: the node's slipway does not know an option this one sends.
        if let line = lines.first(where: { $0.hasPrefix("Error: ") }) {
            return .nodeCommand(node: node.name, verb: verb, detail: String(line.dropFirst("Error: ".count)) + " (is the node's slipway older than this one?)")
        }
        if result.status == 126 || result.status == 127 {
            return .nodeSlipway(node: node.name, detail: "slipway cannot run at \(node.slipwayPath) (\(lines.last ?? "status \(result.status)"))")
        }
        return .nodeCommand(node: node.name, verb: verb, detail: lines.last ?? "exit status \(result.status)")
    }

    // MARK: Verbs

    public func status(app: String) throws -> NodeStatus {
        let status = try call("status", [app], as: NodeStatus.self, timeout: .seconds(120))
        guard let version = status.protocolVersion, version >= NodeWire.version else {
            throw FleetError.nodeSlipway(node: node.name, detail: NodeWire.olderNode(status.protocolVersion))
        }
        return status
    }

    /// Every app on the node.
    public func statusAll() throws -> [NodeStatus] {
        try call("status", [], as: [NodeStatus].self, timeout: .seconds(120))
    }

    /// Sends `path` from `offset` into the node's `incoming/<file>`; `sent` is told how many
    /// bytes the transport has read so far.
    public func receive(_ reference: ReleaseReference, file: String, path: String, offset: UInt64, size: UInt64, sha256: String,
                        sent: @escaping @Sendable (UInt64) -> Void = { _ in }) throws -> NodeReceive.Result {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FleetError.invalidArgument("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard lseek(fd, off_t(offset), SEEK_SET) >= 0 else {
            throw FleetError.invalidArgument("cannot seek \(path) to \(offset): \(String(cString: strerror(errno)))")
        }
        // The child shares the descriptor's offset: watching it is watching the upload.
        let watcher = OffsetWatcher(fd: fd, start: offset, report: sent)
        defer { watcher.stop() }
        return try call("receive", ["\(reference)", "--file", file, "--offset", String(offset), "--size", String(size), "--sha256", sha256],
                        as: NodeReceive.Result.self, input: .descriptor(fd), timeout: nil)
    }

    /// Has the node fetch `url` into `incoming/<file>` (pull mode).
    public func fetch(_ reference: ReleaseReference, file: String, url: String, size: UInt64, sha256: String) throws -> NodeReceive.Result {
        try call("fetch", ["\(reference)", "--url", url, "--file", file, "--size", String(size), "--sha256", sha256],
                 as: NodeReceive.Result.self, timeout: nil)
    }

    public func apply(archive: String?, delta: (path: String, base: String, sha256: String)?, manifest: String,
                      signature: String?, sbom: String? = nil) throws -> NodeApply.Result {
        var arguments: [String] = []
        if let archive { arguments += ["--archive", archive] }
        if let delta { arguments += ["--delta", delta.path, "--base", delta.base, "--sha256", delta.sha256] }
        arguments += ["--manifest", manifest]
        if let signature { arguments += ["--signature", signature] }
        if let sbom { arguments += ["--sbom", sbom] }
        return try call("apply", arguments, as: NodeApply.Result.self, timeout: nil)
    }

    public func activate(_ reference: ReleaseReference, confirmTimeout: Double?) throws -> NodeActivate.Result {
        var arguments = ["\(reference)"]
        if let confirmTimeout { arguments += ["--confirm-timeout", String(confirmTimeout)] }
        return try call("activate", arguments, as: NodeActivate.Result.self, timeout: nil)
    }

    /// Confirms an activation over a fresh connection (the dead man's switch).
    public func confirm(_ reference: ReleaseReference) throws {
        _ = try run("confirm", ["\(reference)"], timeout: .seconds(60), fresh: true)
    }

    /// `slipway node prune APP [--keep N] [--dry-run]`.
    public func prune(app: String, keep: Int?, dryRun: Bool) throws -> NodePrune.Result {
        try call("prune", [app] + (keep.map { ["--keep", String($0)] } ?? []) + (dryRun ? ["--dry-run"] : []),
                 as: NodePrune.Result.self, timeout: nil)
    }

    public func rollback(app: String, to version: String?) throws -> NodeActivate.Result {
        try call("rollback", [app] + (version.map { ["--to", $0] } ?? []), as: NodeActivate.Result.self, timeout: nil)
    }

    // MARK: The node's slipway

    /// The version of slipway on the node, nil when there is none.
    public func slipwayVersion() throws -> String? {
        guard node.transport == .ssh else { return SlipwayVersion.string }
        let path = shellQuote(node.slipwayPath)
        let result = try transport.shell("if [ -x \(path) ]; then exec \(path) --version; else echo slipway-missing; fi", input: .null,
                                         timeout: .seconds(60))
        if transport.isUnreachable(result) {
            throw FleetError.transport(node: node.name, detail: result.standardErrorTail.split(separator: "\n").last.map(String.init) ?? "ssh failed")
        }
        let text = result.outputText.trimmingCharacters(in: .whitespacesAndNewlines)
        if result.succeeded { return text == "slipway-missing" ? nil : text }
        throw FleetError.nodeSlipway(node: node.name, detail: Self.explainBrokenBinary(path: node.slipwayPath, stderr: result.standardErrorTail))
    }

    /// The Debian package that owns `path` on the node (`dpkg-query -S`), nil when none does
    /// or the node has no dpkg.
    public func owningPackage(_ path: String) throws -> String? {
        let result = try transport.shell("command -v dpkg-query >/dev/null 2>&1 || exit 0; dpkg-query -S \(shellQuote(path)) 2>/dev/null || true",
                                         input: .null, timeout: .seconds(60))
        if transport.isUnreachable(result) {
            throw FleetError.transport(node: node.name, detail: result.standardErrorTail.split(separator: "\n").last.map(String.init) ?? "ssh failed")
        }
        // "slipway: /usr/bin/slipway" (a diversion prints other lines first; the owner is last).
        guard let line = result.outputText.split(separator: "\n").last(where: { $0.hasSuffix(": \(path)") }) else { return nil }
        let package = line.dropLast(path.count + 2).split(separator: ",").first.map { String($0).trimmingCharacters(in: .whitespaces) }
        return package?.isEmpty == false ? package : nil
    }

    /// Installs `binary` at the node's slipway path (temporary name, then rename) and checks
    /// that it runs there.
    public func installSlipway(binary: String) throws {
        let path = node.slipwayPath
        let directory = (path as NSString).deletingLastPathComponent
        let script = "set -e; umask 022; mkdir -p \(shellQuote(directory)); t=\(shellQuote(directory))/.slipway.new.$$; " +
            "trap 'rm -f \"$t\"' EXIT; cat > \"$t\"; chmod 755 \"$t\"; mv -f \"$t\" \(shellQuote(path)); trap - EXIT"
        let result = try transport.shell(script, input: .file(binary), timeout: .seconds(600))
        guard result.succeeded else {
            if transport.isUnreachable(result) { throw FleetError.transport(node: node.name, detail: result.standardErrorTail) }
            throw FleetError.nodeSlipway(node: node.name, detail: "installing slipway at \(path) failed: \(result.standardErrorTail.split(separator: "\n").last ?? "")")
        }
        guard try slipwayVersion() != nil else {
            throw FleetError.nodeSlipway(node: node.name, detail: "slipway was installed at \(path) but is not there now")
        }
    }

    /// Turns the loader's complaint about a missing library into what to install.
    static func explainBrokenBinary(path: String, stderr: String) -> String {
        let packages = ["libarchive.so": "libarchive13", "liblzma.so": "liblzma5", "libzstd.so": "libzstd1", "libcurl.so": "libcurl4",
                        "libxml2.so": "libxml2", "libstdc++.so": "libstdc++6", "libz.so": "zlib1g"]
        var missing: [String] = []
        for line in stderr.split(separator: "\n") where line.contains("error while loading shared libraries") {
            let parts = line.components(separatedBy: "shared libraries: ")
            guard parts.count > 1, let library = parts[1].split(separator: ":").first.map(String.init) else { continue }
            if library.hasPrefix("libswift") || library.hasPrefix("libFoundation") || library.hasPrefix("libdispatch") || library.hasPrefix("lib_Foundation") {
                return "slipway at \(path) needs the Swift runtime (\(library)); install a slipway built with `swift build -c release --static-swift-stdlib` (give it with --slipway-binary)"
            }
            let package = packages.first { library.hasPrefix($0.key) }?.value
            missing.append(package.map { "\(library) (apt-get install \($0))" } ?? library)
        }
        if !missing.isEmpty { return "slipway at \(path) cannot run: missing \(missing.joined(separator: ", ")) on the node" }
        return "slipway at \(path) does not run: \(stderr.split(separator: "\n").last ?? "unknown error")"
    }
}

/// Reports how far a child has read a shared descriptor, every 200 ms, until stopped.
final class OffsetWatcher: Sendable {
    private let stopped = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    init(fd: Int32, start: UInt64, report: @escaping @Sendable (UInt64) -> Void) {
        Thread.detachNewThread { [self] in
            while !self.stopped.load(ordering: .relaxed) {
                let position = lseek(fd, 0, SEEK_CUR)
                if position >= 0 { report(UInt64(position) - min(start, UInt64(position))) }
                usleep(200_000)
            }
            self.done.signal()
        }
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        done.wait()
    }
}
