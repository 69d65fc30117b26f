import Foundation
import Glibc
import SlipwaySystem

/// One file fetched over HTTP(S) with `curl`, resumable: what a node's `node fetch` (a static
/// store or a registry's blob) and the controller's `pull` both use (docs/registry.md).
///
/// A partial file is resumed with a Range request from its current size, and a transfer that
/// ends early but made progress is resumed again at once (up to `resumeAttempts` times). A
/// server that ignores Range (200 to a ranged request) or cannot satisfy it (416 short of the
/// expected size) makes the download start over from byte 0, once, so nothing is ever
/// appended to bytes of another file. A transfer that moves no byte for `stallTimeout`
/// seconds counts as stalled. Checking the finished file's digest is the caller's.
public struct HTTPDownload: Sendable {
    /// Seconds without a byte before a transfer counts as stalled.
    public static let defaultStallTimeout: Double = 60
    /// Transfers that end early but made progress are resumed up to this many times.
    public static let resumeAttempts = 5

    public var url: String
    /// The file written (appended to when it holds a prefix already).
    public var path: String
    /// The size the finished file has.
    public var size: UInt64
    public var stallTimeout: Double
    /// A file with the `Authorization` header (`--header @FILE`), never argv.
    public var headerFile: String?
    /// TLS arguments (`RegistryTLS.curlArguments`).
    public var tlsArguments: [String]

    public init(url: String, path: String, size: UInt64, stallTimeout: Double = HTTPDownload.defaultStallTimeout,
                headerFile: String? = nil, tlsArguments: [String] = []) {
        self.url = url
        self.path = path
        self.size = size
        self.stallTimeout = stallTimeout
        self.headerFile = headerFile
        self.tlsArguments = tlsArguments
    }

    /// Why a download stopped short: `bytes` of `size` are in the file, kept for a resume.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var url: String
        public var detail: String
        public var bytes: UInt64
        public var size: UInt64
        public var description: String { "fetching \(url) failed: \(detail)" }
    }

    /// Runs curl until the file has `size` bytes or the server says it is done. Returns the
    /// bytes this call added to the file.
    @discardableResult
    public func run(runner: CommandRunner = CommandRunner(), log: (String) -> Void = { _ in }) throws -> UInt64 {
        func current() throws -> UInt64 {
            var st = stat()
            if stat(path, &st) != 0 {
                guard errno == ENOENT else { throw Failure(url: url, detail: "stat \(path): \(String(cString: strerror(errno)))", bytes: 0, size: size) }
                return 0
            }
            return UInt64(st.st_size)
        }
        func startOver(_ why: String) throws {
            log("\(url): \(why); fetching from byte 0")
            guard truncate(path, 0) == 0 || errno == ENOENT else {
                throw Failure(url: url, detail: "truncate \(path): \(String(cString: strerror(errno)))", bytes: 0, size: size)
            }
        }
        var received: UInt64 = 0
        var restarted = false
        var resumes = 0
        if try current() > size { try startOver("\(path) is larger than the expected \(size) bytes") }
        while true {
            let offset = try current()
            if offset == size { break }
            log(offset == 0 ? "fetching \(url)" : "fetching \(url) from byte \(offset)")
            let outcome = try transfer(from: offset, runner: runner)
            let now = try current()
            received += now > offset ? now - offset : 0
            let status = outcome.httpStatus
            if offset > 0, status == 200 || (status == 416 && now < size) {
                // 200: the server ignored Range (curl refuses to append and writes nothing).
                // 416: the server's file ends before ours does; it is not the file we hold.
                guard !restarted else {
                    throw Failure(url: url, detail: "the server answered HTTP \(status) after a restart from byte 0", bytes: now, size: size)
                }
                restarted = true
                try startOver(status == 200 ? "the server ignores Range requests" : "the server has fewer bytes than \(path) (HTTP 416)")
                continue
            }
            if outcome.result.succeeded { break }
            if status >= 400 {
                throw Failure(url: url, detail: "HTTP \(status)" + (Self.reasons[status].map { " (\($0))" } ?? ""), bytes: now, size: size)
            }
            let detail = Self.curlDetail(outcome.result, stallTimeout: stallTimeout)
            if now > offset, resumes < Self.resumeAttempts, Self.transientExits.contains(outcome.result.status) {
                resumes += 1
                log("\(url): \(detail) after \(now) bytes; resuming")
                continue
            }
            throw Failure(url: url, detail: detail, bytes: now, size: size)
        }
        return received
    }

    /// One curl run: appends to `path` from `offset` (curl's `--continue-at` opens the file
    /// for appending and refuses to write a 200 answer to its Range request).
    func transfer(from offset: UInt64, runner: CommandRunner) throws -> (result: CommandResult, httpStatus: Int) {
        let stall = Int(stallTimeout.rounded(.up))
        var arguments = ["curl", "--fail", "--silent", "--show-error", "--location", "--max-redirs", "5",
                         "--proto", "=http,https", "--proto-redir", "=http,https",
                         "--connect-timeout", String(min(stall, 30)), "--speed-limit", "1", "--speed-time", String(stall),
                         "--write-out", "%{http_code}", "--output", path]
        if offset > 0 { arguments += ["--continue-at", String(offset)] }
        if let headerFile { arguments += ["--header", "@" + headerFile] }
        arguments += tlsArguments
        arguments += ["--url", url]
        arguments = Self.diesWithParent(arguments)
        let result = try runner.runAllowingFailure(Command(arguments))
        let status = Int(result.outputText.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        return (result, status)
    }

    static let setprivInstalled = CommandRunner.isInstalled("setpriv")

    /// `command` wrapped so that it dies with slipway. Killed with -9, slipway would otherwise
    /// leave curl appending to the file while the next fetch appends from the size it sees
    /// (the file's flock is slipway's, not curl's). setpriv (util-linux) has the kernel send
    /// SIGKILL when the parent dies; a parent killed before setpriv's prctl would go unnoticed,
    /// so the shell setpriv executes checks that its parent is still `parent` (slipway) before
    /// it executes the command: dead before the prctl, the parent is no longer this process;
    /// dead after it, the kernel kills the child.
    static func diesWithParent(_ command: [String], parent: pid_t = getpid()) -> [String] {
        guard setprivInstalled else { return command }
        return ["setpriv", "--pdeathsig", "KILL", "--", "sh", "-c", #"[ "$PPID" = "$0" ] && exec "$@""#, String(parent)] + command
    }

    /// curl exit statuses after which a resume may get further: connect failed, partial file,
    /// stalled, empty reply, send or receive failure, HTTP/2 stream error.
    static let transientExits: Set<Int32> = [7, 18, 28, 52, 55, 56, 92]

    /// curl exit statuses of a TLS failure: the server's certificate is not trusted (60), it
    /// or the client's could not be used (35, 58, 59, 77, 83, 90, 91).
    static let tlsExits: Set<Int32> = [35, 58, 59, 60, 77, 83, 90, 91]

    /// curl's own message (its last stderr line), what a stall means, and where trust for a
    /// server with a private CA goes.
    public static func curlDetail(_ result: CommandResult, stallTimeout: Double? = nil) -> String {
        let line = result.standardErrorTail.split(separator: "\n").last.map { String($0) } ?? "curl exited with status \(result.status)"
        var message = line.hasPrefix("curl: ") ? String(line.dropFirst(6)) : line
        // "(7) Failed to connect …": the number is curl's exit status, no news to the reader.
        if message.hasPrefix("("), let close = message.firstIndex(of: ")"), message[message.index(after: message.startIndex)..<close].allSatisfy(\.isNumber) {
            message = message[message.index(after: close)...].trimmingCharacters(in: .whitespaces)
        }
        while message.hasSuffix(".") { message.removeLast() }
        if result.status == 28, let stallTimeout {
            return "\(message) (no progress for \(Int(stallTimeout.rounded(.up))) s; a longer --timeout waits longer)"
        }
        if result.status == 58 {
            return "\(message) (the client certificate NAME.cert or its key NAME.key in certs.d/HOST:PORT cannot be used; docs/registry.md, \"TLS\")"
        }
        if tlsExits.contains(result.status) {
            return "\(message) (a server with a private CA: put the CA certificate into certs.d/HOST:PORT/ca.crt, and a client " +
                "certificate as NAME.cert with NAME.key; docs/registry.md, \"TLS\")"
        }
        return message
    }

    static let reasons: [Int: String] = [
        400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
        408: "Request Timeout", 410: "Gone", 416: "Range Not Satisfiable", 429: "Too Many Requests",
        500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
    ]
}
