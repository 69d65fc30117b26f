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

extension Requirement {
    /// nginx where `NginxServer` runs it from, and curl.
    static let nginxAndCurl = Requirement(all: [
        .that(access(NginxServer.binary, X_OK) == 0, "nginx is not installed at \(NginxServer.binary) — scripts/setup installs it"),
        .tools(["curl"]),
    ])
}

/// Pull mode against a real nginx serving the store: full fetch, Range resume, a server that
/// ignores Range, wrong hash, 404, a stalled server, and the CLI's reply.
@Suite("Node: fetch from a static HTTP store (pull mode)")
struct NodeFetchTests {
    /// A store with release 1 (a ~2 MB archive, so a resume moves a visible part of it) served
    /// by nginx.
    struct Served {
        let fx: NodeFixture
        let server: NginxServer
        let release: StoredRelease
        /// The archive's path on the server.
        let urlPath: String

        init() throws {
            fx = try NodeFixture("slipway-fetch")
            do {
                release = try fx.release("1", big: 2_000_000)
                let prefix = fx.dir.sub("nginx")
                try FileManager.default.createDirectory(atPath: prefix, withIntermediateDirectories: true)
                server = try NginxServer(root: fx.store.root, prefix: prefix)
            } catch {
                fx.remove()
                throw error
            }
            urlPath = String(release.archivePath.dropFirst(fx.store.root.count))
        }

        func stop() {
            server.stop()
            fx.remove()
        }

        var size: UInt64 { release.manifest.archive.size }
        var sha256: String { release.manifest.archive.sha256 }
        var incomingPath: String { fx.layout.incoming + "/1.tar.xz" }

        func request(base: String? = nil, sha256: String? = nil) -> NodeFetch.Request {
            NodeFetch.Request(app: fx.app, fileName: "1.tar.xz", url: (base ?? server.url) + urlPath, size: size,
                              sha256: sha256 ?? self.sha256)
        }

        func fetchedMatches() throws -> Bool {
            try Data(contentsOf: URL(fileURLWithPath: incomingPath)) == Data(contentsOf: URL(fileURLWithPath: release.archivePath))
        }
    }

    @Test("full fetch, resume of a truncated file with Range, an already complete file, a server that ignores Range", .needs(.nginxAndCurl))
    func fetchAndResume() throws {
        let served = try Served()
        defer { served.stop() }
        let context = try served.fx.context()
        let size = served.size

        let full = try NodeFetch.fetch(served.request(), context: context)
        #expect(full.path == served.incomingPath)
        #expect(full.complete && full.bytes == size && full.received == size && full.sha256 == served.sha256)
        #expect(try served.fetchedMatches())

        // Resume: a third is there; only the rest travels, asked for with a Range request.
        let kept = size / 3
        #expect(truncate(served.incomingPath, off_t(kept)) == 0)
        let status = try NodeStatus.read(app: served.fx.app, context: context)
        #expect(status.incoming.first { $0.name == "1.tar.xz" }?.bytes == kept, "status lists the partial file and its size")
        let resumed = try NodeFetch.fetch(served.request(), context: context)
        #expect(resumed.complete && resumed.bytes == size)
        #expect(resumed.received == size - kept && resumed.received < size, "resumed: \(resumed.received) of \(size) bytes moved")
        #expect(try served.fetchedMatches())
        #expect(served.server.statuses(of: served.urlPath, count: 2) == [200, 206])

        // Already complete: nothing is asked of the server (the log below has no request for it).
        let again = try NodeFetch.fetch(served.request(), context: context)
        #expect(again.complete && again.received == 0 && again.sha256 == served.sha256)

        // A server that answers a Range request with the whole file (200): the partial file
        // must not get the whole file appended; the fetch starts over from byte 0.
        #expect(truncate(served.incomingPath, off_t(size / 2)) == 0)
        let restarted = try NodeFetch.fetch(served.request(base: served.server.noRangeURL), context: context)
        #expect(restarted.complete && restarted.bytes == size && restarted.received == size)
        #expect(try served.fetchedMatches())
        // The ranged request answered 200 (curl refuses to append it), then the whole file.
        #expect(served.server.statuses(of: served.urlPath, count: 4) == [200, 206, 200, 200])

        // A partial file of other bytes than the server's: resumed, then refused by its hash.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: served.incomingPath)).prefix(Int(size / 2))
        bytes[bytes.startIndex + 100] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: served.incomingPath))
        #expect(throws: NodeError.self) { try NodeFetch.fetch(served.request(), context: context) }
        #expect(!exists(served.incomingPath), "a complete file with the wrong hash is removed")
        #expect(try NodeFetch.fetch(served.request(), context: context).received == size)
        #expect(try served.fetchedMatches())
    }

    @Test("wrong sha256 removes the file; 404 names the URL and status; a busy file is waited for; a stalled server times out",
          .needs(.nginxAndCurl))
    func failures() throws {
        let served = try Served()
        defer { served.stop() }
        let context = try served.fx.context()

        let wrong = String(served.sha256.reversed())
        do {
            _ = try NodeFetch.fetch(served.request(sha256: wrong), context: context)
            Issue.record("a wrong sha256 should fail")
        } catch {
            let text = "\(error)"
            #expect(text.contains("is not the expected file") && text.contains(served.urlPath) && text.contains(wrong), "\(text)")
            #expect(text.contains("was removed"), "\(text)")
        }
        #expect(!exists(served.incomingPath))

        var missing = served.request()
        missing.url = served.server.url + "/web/9/rootfs.tar.xz"
        missing.fileName = "9.tar.xz"
        do {
            _ = try NodeFetch.fetch(missing, context: context)
            Issue.record("a 404 should fail")
        } catch {
            let text = "\(error)"
            #expect(text.contains("HTTP 404") && text.contains(missing.url), "\(text)")
        }
        #expect(!exists(served.fx.layout.incoming + "/9.tar.xz"), "no empty file is left for a fetch that got nothing")

        // Another process writing the same file (a receive or fetch of a dropped session): the
        // fetch waits for its flock up to the lock timeout, then says who is in the way.
        let holder = open(served.incomingPath, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        try #require(holder >= 0 && flock(holder, LOCK_EX) == 0)
        let impatient = try served.fx.context { $0.lockTimeout = 1 }
        let waitStarted = Date()
        do {
            _ = try NodeFetch.fetch(served.request(), context: impatient)
            Issue.record("a fetch of a locked file should fail")
        } catch {
            #expect("\(error)".contains("is being written by another slipway process"), "\(error)")
        }
        #expect(Date().timeIntervalSince(waitStarted) >= 1)
        close(holder)
        #expect(try NodeFetch.fetch(served.request(), context: impatient).complete)

        // A server that accepts the connection and never answers: the stall timeout ends it.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0 && listen(fd, 4) == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        var stalled = served.request(base: "http://127.0.0.1:\(UInt16(bigEndian: address.sin_port))")
        stalled.stallTimeout = 1
        stalled.fileName = "stalled.tar.xz"
        let started = Date()
        do {
            _ = try NodeFetch.fetch(stalled, context: context)
            Issue.record("a silent server should time out")
        } catch {
            #expect("\(error)".contains("no progress for 1 s"), "\(error)")
        }
        #expect(Date().timeIntervalSince(started) < 60, "a stalled server must not hang the fetch")
    }

    @Test("through the binary: --json reply, then apply the fetched archive; a missing curl says what to install",
          .needs(.nginxAndCurl, .builtSlipway))
    func binary() throws {
        let binary = try #require(builtSlipway)
        let served = try Served()
        defer { served.stop() }
        let fx = served.fx
        let arguments = ["node", "fetch", "web@1", "--url", served.server.url + served.urlPath, "--size", String(served.size),
                         "--sha256", served.sha256, "--root", fx.root, "--json"]
        let fetched = try runSlipway(binary, arguments)
        try #require(fetched.status == 0, "\(fetched.stderr)")
        let reply = try JSONDecoder().decode(NodeReceive.Result.self, from: fetched.stdout)
        #expect(reply.path == served.incomingPath && reply.complete && reply.bytes == served.size && reply.received == served.size)
        let keys = try #require(try JSONSerialization.jsonObject(with: fetched.stdout) as? [String: Any]).keys.sorted()
        #expect(keys == ["bytes", "complete", "path", "protocolVersion", "received", "sha256"])

        let applied = try runSlipway(binary, ["node", "apply", "--archive", reply.path, "--manifest", served.release.manifestPath,
                                              "--root", fx.root, "--json"])
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(try DirBackend().landedVersions(layout: fx.layout) == ["1"])

        let empty = fx.dir.sub("empty-path")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let noCurl = try runSlipway(binary, arguments, environment: ["PATH": empty])
        #expect(noCurl.status != 0)
        #expect(noCurl.stderr.contains("apt-get install curl"), "\(noCurl.stderr)")
    }

    @Test("a fetch killed with -9 mid-transfer leaves no curl appending to the file; the next fetch resumes from what is there",
          .needs(.nginxAndCurl, .builtSlipway))
    func killedFetch() throws {
        let binary = try #require(builtSlipway)
        let served = try Served()
        defer { served.stop() }
        let fx = served.fx
        // 4 MB/s: the ~2 MB archive takes about half a second.
        let arguments = ["node", "fetch", "web@1", "--url", served.server.slowURL + served.urlPath, "--size", String(served.size),
                         "--sha256", served.sha256, "--root", fx.root, "--json"]
        func size() -> UInt64 { (try? FileManager.default.attributesOfItem(atPath: served.incomingPath)[.size] as? NSNumber)??.uint64Value ?? 0 }
        let child = try NodeChild(binary, arguments)
        #expect(waitFor(seconds: 20) { size() > 100_000 }, "the fetch wrote nothing")
        child.kill9()
        _ = child.wait()
        // curl died with slipway: the file stops growing short of the whole.
        usleep(300_000)
        let kept = size()
        usleep(700_000)
        #expect(size() == kept, "something still appends to \(served.incomingPath): \(kept) → \(size()) bytes")
        #expect(kept < served.size, "the fetch finished before its kill (\(kept) of \(served.size) bytes)")

        let resumed = try runSlipway(binary, arguments)
        try #require(resumed.status == 0, "\(resumed.stderr)")
        let reply = try JSONDecoder().decode(NodeReceive.Result.self, from: resumed.stdout)
        #expect(reply.complete && reply.sha256 == served.sha256 && reply.received == served.size - kept)
    }
}
