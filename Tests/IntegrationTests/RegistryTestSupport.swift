import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension Requirement {
    /// Debian's docker-registry (distribution 2.8) and curl, which slipway talks to it with.
    static let registry = Requirement.tools(["docker-registry", "curl"])
}

/// A real OCI registry (Debian's `docker-registry`, distribution 2.8) on `address`, with its
/// configuration and storage in `scratch`; started for a test and stopped by its pid.
final class RegistryServer {
    let address: String
    let port: Int
    let storage: String
    /// Its standard error: the access log (one line per request) and its own messages.
    let log: String
    private let process = Process()

    var hostPort: String { "\(address):\(port)" }
    /// `oci+http://ADDRESS:PORT/REPO`.
    func location(_ repository: String) -> String { "oci+http://\(hostPort)/\(repository)" }

    init(address: String = "127.0.0.1", scratch: String) throws {
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        self.address = address
        storage = scratch + "/storage"
        log = scratch + "/registry.log"
        port = address == "127.0.0.1" ? try freeLocalPort() : 20000 + Int.random(in: 0..<2000)
        let config = """
            version: 0.1
            log:
              level: info
              formatter: text
            storage:
              filesystem:
                rootdirectory: \(storage)
              delete:
                enabled: true
            http:
              addr: \(address):\(port)
            """
        try Data(config.utf8).write(to: URL(fileURLWithPath: scratch + "/config.yml"))
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.executableURL = URL(fileURLWithPath: toolPath("docker-registry") ?? "/usr/bin/docker-registry")
        process.arguments = ["serve", scratch + "/config.yml"]
        process.standardInput = FileHandle.nullDevice
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        try? handle.close()
        for _ in 0..<200 {
            if let answer = try? run("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://\(hostPort)/v2/"]), answer.out == "200" { return }
            if !process.isRunning { break }
            usleep(50_000)
        }
        stop()
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        throw TestSupportError.commandFailed("docker-registry serve on \(hostPort)", -1, "did not answer: \(text.suffix(2000))")
    }

    /// Requests for `path` (a substring of the URL path) in the access log, by method.
    func requests(_ method: String, containing path: String) -> Int {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.contains("\"\(method) ") && $0.contains(path) }.count
    }

    /// The file the registry keeps a blob's bytes in.
    func blobFile(_ digest: String) -> String {
        let hex = String(digest.dropFirst("sha256:".count))
        return "\(storage)/docker/registry/v2/blobs/sha256/\(hex.prefix(2))/\(hex)/data"
    }

    /// Stops it by its pid (SIGTERM, then SIGKILL after 5 s).
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning, Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}
