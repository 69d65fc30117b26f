import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem
import SlipwayRegistry

/// Pull mode: the node fetches release bytes from a static HTTP store (nginx, a CDN, an S3
/// bucket's endpoint) into `incoming/<file>` itself, with `curl` through the command runner.
/// A partial file is resumed with a Range request from its current size, and an interrupted
/// transfer that made progress is resumed again at once. A server that ignores Range (200 to
/// a ranged request) or cannot satisfy it (416 short of the expected size) makes the fetch
/// start over from byte 0, so nothing is ever appended to bytes of another file. Once the
/// file has the announced size its SHA-256 is checked; a mismatch removes it. Fetches of one
/// file are serialized with `node receive` by the same flock on the file; a fetch waits for
/// it up to the lock timeout.
public enum NodeFetch {
    /// Seconds without a byte before a transfer counts as stalled (`--timeout`).
    public static let defaultStallTimeout: Double = 60
    /// Transfers that end early but made progress are resumed up to this many times.
    static let resumeAttempts = 5

    /// What to fetch.
    public struct Request: Sendable {
        public var app: String
        /// The name in `incoming/` (same rules as a version).
        public var fileName: String
        public var url: String
        public var size: UInt64
        public var sha256: String
        public var stallTimeout: Double

        public init(app: String, fileName: String, url: String, size: UInt64, sha256: String,
                    stallTimeout: Double = NodeFetch.defaultStallTimeout) {
            self.app = app
            self.fileName = fileName
            self.url = url
            self.size = size
            self.sha256 = sha256
            self.stallTimeout = stallTimeout
        }
    }

    /// Fetches `request.url` into `incoming/<file>`; the reply is `node receive`'s, with
    /// `received` the bytes downloaded by this call.
    public static func fetch(_ request: Request, context: NodeContext) throws -> NodeReceive.Result {
        try ReleaseStore.validate(name: request.app)
        try ReleaseStore.validate(version: request.fileName)
        let lower = request.url.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else {
            throw NodeError.invalidArgument("--url \(request.url): give an http:// or https:// URL")
        }
        let expected = request.sha256.lowercased()
        guard expected.count == 64, expected.allSatisfy({ $0.isHexDigit }) else {
            throw NodeError.invalidArgument("--sha256 \(request.sha256): expected 64 hexadecimal digits")
        }
        guard request.stallTimeout >= 1 else {
            throw NodeError.invalidArgument("--timeout \(request.stallTimeout): give at least 1 second")
        }
        guard CommandRunner.isInstalled("curl") else {
            throw NodeError.toolMissing(tool: "curl", package: "curl", purpose: "fetching releases over HTTP (pull mode)")
        }

        let layout = context.layout(request.app)
        try NodeFiles.makeDirectories(layout.incoming)
        let path = "\(layout.incoming)/\(request.fileName)"
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw NodeError.system(operation: "open", path: path, errno: errno) }
        defer { close(fd) }
        // A fetch or receive of a dropped SSH session may still run (a fetch even completes
        // on its own): wait for it as long as for the app's lock, then continue from its bytes.
        let started = NodeFiles.now()
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else { throw NodeError.system(operation: "lock", path: path, errno: errno) }
            let waited = NodeFiles.now() - started
            if waited >= context.settings.lockTimeout {
                throw NodeError.invalidArgument("\(path) is being written by another slipway process (a receive or fetch); waited " +
                                                "\(NodeConfirm.seconds(waited.rounded())) s. Fetch again once it has finished")
            }
            usleep(100_000)
        }
        func size() throws -> UInt64 {
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw NodeError.system(operation: "stat", path: path, errno: errno) }
            return UInt64(st.st_size)
        }
        func startOver(_ why: String) throws {
            context.log("\(request.url): \(why); fetching from byte 0")
            guard ftruncate(fd, 0) == 0 else { throw NodeError.system(operation: "truncate", path: path, errno: errno) }
        }

        var received: UInt64 = 0
        do {
            if let registry = RegistryLocation(blobURL: request.url), try size() < request.size {
                // A registry's blob: answer its challenge first (node.toml's registry_auth), and
                // hand curl the header through a file in the client's private scratch directory.
                let credentials = try RegistryCredentials.load(host: registry.host, file: context.settings.registryAuth)
                try RegistryClient.withScratch(location: registry, credentials: .some(credentials)) { client in
                    let headerFile = try client.authorization(for: request.url).map { try RegistryAuth.headerFile($0, directory: client.scratch) }
                    try download(request, path: path, size: size, startOver: startOver, received: &received, log: context.log,
                                 headerFile: headerFile, runner: context.runner)
                }
            } else {
                try download(request, path: path, size: size, startOver: startOver, received: &received, log: context.log,
                             headerFile: nil, runner: context.runner)
            }
        } catch {
            // An empty file only held the lock: it is no partial upload to resume.
            if (try? size()) == 0 { unlink(path) }
            throw error
        }

        guard fsync(fd) == 0 else { throw NodeError.system(operation: "fsync", path: path, errno: errno) }
        let actual = try NodeApply.hash(path)
        guard actual.size == request.size, actual.hex == expected else {
            unlink(path)
            throw NodeError.fetchMismatch(url: request.url, path: path, expectedSHA256: expected, actualSHA256: actual.hex,
                                          expectedSize: request.size, actualSize: actual.size)
        }
        return NodeReceive.Result(path: path, received: received, bytes: actual.size, complete: true, sha256: actual.hex)
    }

    /// Runs curl until the file has `request.size` bytes or the server says it is done,
    /// resuming transfers that end early and starting over when the server ignores Range.
    private static func download(_ request: Request, path: String, size: () throws -> UInt64, startOver: (String) throws -> Void,
                                 received: inout UInt64, log: (String) -> Void, headerFile: String?, runner: CommandRunner) throws {
        var restarted = false
        var resumes = 0
        if try size() > request.size { try startOver("\(path) is larger than the expected \(request.size) bytes") }
        while true {
            let offset = try size()
            if offset == request.size { break }
            log(offset == 0 ? "fetching \(request.url)" : "fetching \(request.url) from byte \(offset)")
            let outcome = try transfer(request, to: path, offset: offset, headerFile: headerFile, runner: runner)
            let now = try size()
            received += now > offset ? now - offset : 0
            let status = outcome.httpStatus
            if offset > 0, status == 200 || (status == 416 && now < request.size) {
                // 200: the server ignored Range (curl refuses to append and writes nothing).
                // 416: the server's file ends before ours does; it is not the file we hold.
                guard !restarted else {
                    throw NodeError.fetchFailed(url: request.url, detail: "the server answered HTTP \(status) after a restart from byte 0",
                                                path: path, bytes: now, size: request.size)
                }
                restarted = true
                try startOver(status == 200 ? "the server ignores Range requests" : "the server has fewer bytes than \(path) (HTTP 416)")
                continue
            }
            if outcome.result.succeeded { break }
            if status >= 400 {
                throw NodeError.fetchFailed(url: request.url, detail: "HTTP \(status)" + (reasons[status].map { " (\($0))" } ?? ""),
                                            path: path, bytes: now, size: request.size)
            }
            let detail = curlDetail(outcome.result, stallTimeout: request.stallTimeout)
            if now > offset, resumes < resumeAttempts, transientExits.contains(outcome.result.status) {
                resumes += 1
                log("\(request.url): \(detail) after \(now) bytes; resuming")
                continue
            }
            throw NodeError.fetchFailed(url: request.url, detail: detail, path: path, bytes: now, size: request.size)
        }
    }

    /// One curl run: appends to `path` from `offset` (curl's `--continue-at` opens the file
    /// for appending and refuses to write a 200 answer to its Range request).
    static func transfer(_ request: Request, to path: String, offset: UInt64, headerFile: String? = nil,
                         runner: CommandRunner) throws -> (result: CommandResult, httpStatus: Int) {
        let stall = Int(request.stallTimeout.rounded(.up))
        var arguments = ["curl", "--fail", "--silent", "--show-error", "--location", "--max-redirs", "5",
                         "--proto", "=http,https", "--proto-redir", "=http,https",
                         "--connect-timeout", String(min(stall, 30)), "--speed-limit", "1", "--speed-time", String(stall),
                         "--write-out", "%{http_code}", "--output", path]
        if offset > 0 { arguments += ["--continue-at", String(offset)] }
        if let headerFile { arguments += ["--header", "@" + headerFile] }
        arguments += ["--url", request.url]
        let result = try runner.runAllowingFailure(Command(arguments))
        let status = Int(result.outputText.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        return (result, status)
    }

    /// curl exit statuses after which a resume may get further: connect failed, partial file,
    /// stalled, empty reply, send or receive failure, HTTP/2 stream error.
    static let transientExits: Set<Int32> = [7, 18, 28, 52, 55, 56, 92]

    /// curl's own message (its last stderr line), and what a stall means.
    static func curlDetail(_ result: CommandResult, stallTimeout: Double) -> String {
        let line = result.standardErrorTail.split(separator: "\n").last.map { String($0) } ?? "curl exited with status \(result.status)"
        var message = line.hasPrefix("curl: ") ? String(line.dropFirst(6)) : line
        // "(7) Failed to connect …": the number is curl's exit status, no news to the reader.
        if message.hasPrefix("("), let close = message.firstIndex(of: ")"), message[message.index(after: message.startIndex)..<close].allSatisfy(\.isNumber) {
            message = message[message.index(after: close)...].trimmingCharacters(in: .whitespaces)
        }
        while message.hasSuffix(".") { message.removeLast() }
        if result.status == 28 { return "\(message) (no progress for \(Int(stallTimeout.rounded(.up))) s; a longer --timeout waits longer)" }
        return message
    }

    static let reasons: [Int: String] = [
        400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
        408: "Request Timeout", 410: "Gone", 416: "Range Not Satisfiable", 429: "Too Many Requests",
        500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
    ]
}
