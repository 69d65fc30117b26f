import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif
@testable import SlipwayCommands
@testable import SlipwaySystem
@testable import SlipwayArchive
@testable import SlipwayRelease
@testable import SlipwayRecipe
@testable import SlipwayBuild
@testable import SlipwayExport
@testable import SlipwayNodeProtocol
@testable import SlipwayNode
@testable import SlipwayFleet

// Helpers of the pull-mode and confirmation tests: the slipway binary built beside these
// tests, and a real nginx serving a directory on a free local port.

/// The `slipway` binary built with the same scratch path as this test bundle (so that
/// `swift test --scratch-path X` tests X's binary), else `nodeBinary`; nil when none is built.
/// Tests that run it carry `.needs(.builtSlipway)`.
let builtSlipway: String? = {
    if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        var directory = (executable as NSString).deletingLastPathComponent
        // The bundle may sit inside `<scratch>/debug/…xctest/…`: walk up to the slipway beside it.
        while directory.count > 1 {
            let candidate = directory + "/slipway"
            var st = stat()
            if stat(candidate, &st) == 0, st.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 { return candidate }
            directory = (directory as NSString).deletingLastPathComponent
            if directory.hasSuffix(".build") || directory.hasSuffix(".build-node") { break }
        }
    }
    return nodeBinary
}()

extension Requirement {
    /// `builtSlipway` is built.
    static let builtSlipway = Requirement.that(IntegrationTests.builtSlipway != nil, slipwayNotBuilt)
}

/// Runs the built slipway with `arguments` through SlipwaySystem's command runner, which reads
/// stdout and stderr through pipes until both reach end of file: a descendant that kept them
/// open would hold this call up.
func runSlipway(_ binary: String, _ arguments: [String], environment: [String: String?] = [:], timeout: Duration = .seconds(120)) throws
    -> (status: Int32, stdout: Data, stderr: String, seconds: Double) {
    let started = Date()
    let result = try SlipwaySystem.CommandRunner().runAllowingFailure(Command([binary] + arguments, environment: environment, timeout: timeout))
    return (result.status, result.standardOutput, result.standardErrorTail, Date().timeIntervalSince(started))
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
func freeLocalPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestSupportError.syscall("socket", "127.0.0.1", errno) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw TestSupportError.syscall("bind", "127.0.0.1:0", errno) }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw TestSupportError.syscall("getsockname", "127.0.0.1", errno) }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Whether something accepts connections on 127.0.0.1:`port`.
func isListening(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}

/// A real nginx in the foreground (`daemon off;`) serving `root` on two free local ports:
/// `port` honours Range requests, `noRangePort` ignores them (`max_ranges 0`, a 200 with the
/// whole file). `stop()` ends it by its own pid; call it in a `defer`.
final class NginxServer {
    static let binary = "/usr/sbin/nginx"
    let port: Int
    let noRangePort: Int
    /// Honours Range, at 4 MB/s per request (`limit_rate`): a transfer long enough to kill.
    let slowPort: Int
    let prefix: String

    var url: String { "http://127.0.0.1:\(port)" }
    var slowURL: String { "http://127.0.0.1:\(slowPort)" }
    var noRangeURL: String { "http://127.0.0.1:\(noRangePort)" }
    var accessLog: String { prefix + "/access.log" }

    /// Starts nginx with its configuration and logs under `prefix`; waits until it listens.
    init(root: String, prefix: String) throws {
        self.prefix = prefix
        var attempt = 0
        while true {
            attempt += 1
            let port = try freeLocalPort()
            var other = try freeLocalPort()
            while other == port { other = try freeLocalPort() }
            var slow = try freeLocalPort()
            while slow == port || slow == other { slow = try freeLocalPort() }
            let temp = prefix + "/temp"
            try FileManager.default.createDirectory(atPath: temp, withIntermediateDirectories: true)
            let config = """
                daemon off;
                \(geteuid() == 0 ? "user root;" : "")
                worker_processes 1;
                pid \(prefix)/nginx.pid;
                error_log \(prefix)/error.log;
                events { worker_connections 64; }
                http {
                    access_log \(prefix)/access.log;
                    client_body_temp_path \(temp); proxy_temp_path \(temp); fastcgi_temp_path \(temp);
                    uwsgi_temp_path \(temp); scgi_temp_path \(temp);
                    default_type application/octet-stream;
                    server { listen 127.0.0.1:\(port); root \(root); }
                    server { listen 127.0.0.1:\(other); root \(root); max_ranges 0; }
                    server { listen 127.0.0.1:\(slow); root \(root); limit_rate 4m; }
                }
                """
            try Data(config.utf8).write(to: URL(fileURLWithPath: prefix + "/nginx.conf"))
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.binary)
            process.arguments = ["-c", prefix + "/nginx.conf", "-p", prefix + "/", "-e", prefix + "/error.log"]
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning, !(isListening(port) && isListening(other) && isListening(slow)), Date() < deadline { usleep(20_000) }
            if process.isRunning, isListening(port), isListening(other), isListening(slow) {
                self.port = port
                noRangePort = other
                slowPort = slow
                self.process = process
                return
            }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            // Another program took a port between the check and nginx's bind: try new ones.
            if attempt >= 5 {
                let log = (try? String(contentsOfFile: prefix + "/error.log", encoding: .utf8)) ?? ""
                throw TestSupportError.commandFailed("nginx -c \(prefix)/nginx.conf", process.terminationStatus, log)
            }
        }
    }

    private var process: Process?

    /// Stops nginx (SIGQUIT to its master, by pid; SIGKILL after 5 s) and waits for it.
    func stop() {
        guard let process else { return }
        self.process = nil
        stopDaemon(process, signal: SIGQUIT)
    }

    deinit { stop() }

    /// The HTTP statuses nginx logged for `path`, in order, once there are at least `count`
    /// (nginx logs a request as it finishes it, which may be just after curl has the bytes).
    func statuses(of path: String, count: Int = 0) -> [Int] {
        let deadline = Date().addingTimeInterval(3)
        var found = loggedStatuses(of: path)
        while found.count < count, Date() < deadline {
            usleep(20_000)
            found = loggedStatuses(of: path)
        }
        return found
    }

    private func loggedStatuses(of path: String) -> [Int] {
        let log = (try? String(contentsOfFile: accessLog, encoding: .utf8)) ?? ""
        return log.split(separator: "\n").compactMap { line in
            guard line.contains("GET \(path) ") else { return nil }
            // combined format: … "GET /path HTTP/1.1" STATUS BYTES …
            let fields = line.components(separatedBy: "\" ")
            guard fields.count > 1 else { return nil }
            return Int(fields[1].split(separator: " ").first ?? "")
        }
    }
}
