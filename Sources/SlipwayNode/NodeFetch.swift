import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem
import SlipwayRegistry

/// Pull mode: the node fetches release bytes from a static HTTP store (nginx, a CDN, an S3
/// bucket's endpoint) or a registry's blob URL into `incoming/<file>` itself, with the
/// resumable `HTTPDownload` (curl through the command runner; docs/registry.md). Once the
/// file has the announced size its SHA-256 is checked; a mismatch removes it. Fetches of one
/// file are serialized with `node receive` by the same flock on the file; a fetch waits for
/// it up to the lock timeout.
public enum NodeFetch {
    /// Seconds without a byte before a transfer counts as stalled (`--timeout`).
    public static let defaultStallTimeout = HTTPDownload.defaultStallTimeout

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

        var received: UInt64 = 0
        do {
            // TLS with a private CA or a client certificate: node.toml's registry_certs, else
            // the certs.d roots podman and docker use (docs/registry.md, "TLS").
            let roots = context.settings.registryCerts.map { [$0] } ?? RegistryTLS.defaultRoots
            var download = HTTPDownload(url: request.url, path: path, size: request.size, stallTimeout: request.stallTimeout)
            if let registry = RegistryLocation(blobURL: request.url), try size() < request.size {
                // A registry's blob: answer its challenge first (node.toml's registry_auth), and
                // hand curl the header through a file in the client's private scratch directory.
                let credentials = try RegistryCredentials.load(host: registry.host, file: context.settings.registryAuth)
                try RegistryClient.withScratch(location: registry, credentials: .some(credentials), tlsRoots: roots) { client in
                    _ = try client.authorization(for: request.url)
                    received = try client.download(request.url, to: path, size: request.size, stallTimeout: request.stallTimeout)
                        .run(runner: context.runner, log: context.log)
                }
            } else if let host = RegistryTLS.host(ofHTTPS: request.url), let tls = try RegistryTLS.find(host: host, roots: roots) {
                try RegistryClient.withScratchDirectory { scratch in
                    download.tlsArguments = try tls.curlArguments(scratch: scratch)
                    received = try download.run(runner: context.runner, log: context.log)
                }
            } else {
                received = try download.run(runner: context.runner, log: context.log)
            }
        } catch let failure as HTTPDownload.Failure {
            if (try? size()) == 0 { unlink(path) }
            throw NodeError.fetchFailed(url: failure.url, detail: failure.detail, path: path, bytes: failure.bytes, size: failure.size)
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
}
