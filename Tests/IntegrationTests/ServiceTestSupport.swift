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

// Helpers of the graceful-switch tests: an nginx front started by the test (in the
// foreground, so it is the test's own child, stopped by its pid), the bounded load client of
// scripts/lib/loadclient.py, and the processes a node's services leave.

/// The repository's root, from this file's path.
let serviceTestRepository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// Whether nginx, python3 and curl are here (scripts/setup installs them) and we are root.
let serviceToolsPresent: Bool = isRoot && ["nginx", "python3", "curl", "unshare", "chroot", "apt-get", "dpkg-deb"]
    .allSatisfy { toolPath($0) != nil }
let serviceToolsMissing: Comment = "needs root, nginx, python3, curl, unshare, chroot, apt-get and dpkg-deb (scripts/setup installs them)"

/// Whether btrfs on a loop file can be made here (what `BtrfsLoop` needs), for a condition trait.
let btrfsLoopAvailable: Bool = isRoot && ["btrfs", "mkfs.btrfs", "losetup"].allSatisfy { toolPath($0) != nil }
    && access("/dev/loop-control", F_OK) == 0 && btrfsInKernel

/// nginx as a node's front: `daemon off`, so the process is this test's child; its
/// `http {}` includes the directory slipway writes into. Stopped by `stop()`, by its pid.
final class TestNginx {
    let root: String
    let process = Process()
    var directory: String { root + "/slipway.d" }
    var pidFile: String { root + "/nginx.pid" }

    init(root: String) throws {
        self.root = root
        try FileManager.default.createDirectory(atPath: root + "/slipway.d", withIntermediateDirectories: true)
        let conf = """
            daemon off;
            pid \(root)/nginx.pid;
            error_log \(root)/error.log;
            worker_processes 2;
            events { worker_connections 512; }
            http {
                access_log off;
                client_body_temp_path \(root)/tmp-body;
                proxy_temp_path \(root)/tmp-proxy;
                fastcgi_temp_path \(root)/tmp-fastcgi;
                uwsgi_temp_path \(root)/tmp-uwsgi;
                scgi_temp_path \(root)/tmp-scgi;
                include \(root)/slipway.d/*.conf;
            }

            """
        try Data(conf.utf8).write(to: URL(fileURLWithPath: root + "/nginx.conf"))
        process.executableURL = URL(fileURLWithPath: toolPath("nginx") ?? "/usr/sbin/nginx")
        process.arguments = ["-c", root + "/nginx.conf", "-p", root]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        guard waitFor(seconds: 10, { FileManager.default.fileExists(atPath: root + "/nginx.pid") }) else {
            stop()
            throw TestSupportError.commandFailed("nginx -c \(root)/nginx.conf", -1,
                                                 (try? String(contentsOfFile: root + "/error.log", encoding: .utf8)) ?? "")
        }
    }

    /// The node.toml lines of this front, with the app's server on `listen`.
    func nodeSettings(app: String, listen: String) -> String {
        """
        [front]
        directory = "\(directory)"
        pid_file = "\(pidFile)"
        [front.listen]
        \(app) = "\(listen)"

        """
    }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        if !waitFor(seconds: 10, { !process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// What scripts/lib/loadclient.py reports.
struct LoadReport: Decodable, CustomStringConvertible {
    var requests: Int
    var failed: Int
    var failureReasons: [String: Int]
    var longestGapMs: Double
    var p50Ms: Double?
    var p99Ms: Double?
    var bodies: [String: Int]
    var sequence: [String]

    var description: String {
        "\(requests) requests, \(failed) failed \(failureReasons), longest gap \(longestGapMs) ms, p50 \(p50Ms ?? -1) ms, p99 \(p99Ms ?? -1) ms, answers \(bodies), in order \(sequence)"
    }
}

/// The bounded load client, running until `finish()` (or `seconds`).
final class LoadClient {
    let process = Process()
    let output: URL
    let stopFile: String
    let readyFile: String

    init(url: String, extract: String, seconds: Int = 300, clients: Int = 4, directory: String) throws {
        output = URL(fileURLWithPath: directory + "/load-\(UUID().uuidString).json")
        stopFile = directory + "/load-stop-\(UUID().uuidString)"
        readyFile = directory + "/load-ready-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: toolPath("python3") ?? "/usr/bin/python3")
        process.arguments = [serviceTestRepository + "/scripts/lib/loadclient.py", url, "--clients", String(clients),
                             "--seconds", String(seconds), "--stop-file", stopFile, "--ready-file", readyFile,
                             "--extract", extract, "--json"]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = FileHandle.nullDevice
        try process.run()
        guard waitFor(seconds: 20, { FileManager.default.fileExists(atPath: readyFile) }) else {
            _ = finishSilently()
            throw TestSupportError.commandFailed("loadclient \(url)", -1, "no request succeeded within 20 s")
        }
    }

    private func finishSilently() -> Data {
        _ = FileManager.default.createFile(atPath: stopFile, contents: nil)
        if !waitFor(seconds: 30, { !process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return (try? Data(contentsOf: output)) ?? Data()
    }

    func finish() throws -> LoadReport {
        let data = finishSilently()
        try? FileManager.default.removeItem(at: output)
        try? FileManager.default.removeItem(atPath: stopFile)
        try? FileManager.default.removeItem(atPath: readyFile)
        return try JSONDecoder().decode(LoadReport.self, from: data)
    }

    deinit { _ = finishSilently() }
}

/// The pids whose root is `path` exactly (a version's service).
func processesRootedAt(_ path: String) -> [Int32] {
    let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
    return pids.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\($0)/root")) == path }
}

/// Stops every process rooted in a release under `releases` (by pid): what a test's node
/// left running.
func stopServices(under releases: String) {
    let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
    for pid in pids {
        if let root = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/root"), root.hasPrefix(releases + "/") {
            kill(pid, SIGKILL)
        }
    }
}

/// The version a page names (`hello-static version 1.0.1`, `hello from python-web 1.0.1`).
func servedVersion(port: Int, path: String = "/") -> String? {
    guard let answer = httpGet(port: port, path: path), answer.contains(" 200 ") else { return nil }
    for marker in ["version ", "python-web "] {
        if let range = answer.range(of: marker) {
            let rest = answer[range.upperBound...].prefix { $0.isNumber || $0 == "." }
            if !rest.isEmpty { return String(rest) }
        }
    }
    return nil
}
