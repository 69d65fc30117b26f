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

private func freePort() -> Int { Int.random(in: 20000...40000) }

/// Every build test, run one at a time: they share a base cache (and the checks that nothing
/// is left mounted below it), and two builds at once only share the same cores.
@Suite("slipway build", .serialized)
struct BuildTests {
    @Test(.needs(.build("apt-get", "dpkg-deb")))
    func helloStaticBuildsAndServes() throws {
        let temp = try TempDir("slipway-build-hello")
        defer { temp.remove() }
        let recipe = try Recipe.load(path: recipesDirectory + "/hello-static.toml")
        let summary = try build(recipe, store: temp.sub("store"), cache: temp.sub("cache"))
        #expect(summary.outcome == .added)
        #expect(summary.stages.map(\.name) == Builder.stageNames)
        #expect(summary.sourceDateEpoch == 1_735_689_600)

        let tree = temp.sub("tree")
        _ = try ArchiveExtractor.extract(archive: summary.archive, into: tree)
        let index = try String(contentsOfFile: tree + "/srv/www/index.html", encoding: .utf8)
        #expect(index.contains("hello-static version 1.0.0"))
        #expect(index.contains("Hello from a slipway release"))
        let passwd = try String(contentsOfFile: tree + "/etc/passwd", encoding: .utf8)
        #expect(passwd.contains("www:x:900:900:"))

        // busybox httpd in the unpacked tree, on loopback, stopped by its pid.
        let port = freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: toolPath("chroot") ?? "/usr/sbin/chroot")
        server.arguments = [tree, "/bin/httpd", "-f", "-p", "127.0.0.1:\(port)", "-h", "/srv/www"]
        try server.run()
        defer {
            // busybox httpd in the foreground does not stop on SIGTERM: SIGKILL, by pid.
            kill(server.processIdentifier, SIGKILL)
            server.waitUntilExit()
        }
        var body = ""
        for _ in 0..<50 {
            if let answer = httpGet(port: port, path: "/"), answer.contains("200 OK") { body = answer; break }
            usleep(100_000)
        }
        #expect(body.contains("hello-static version 1.0.0"), "the server answered: \(body)")
        #expect(mountsUnder(temp.path).isEmpty)
    }

    @Test(.needs(.build("mmdebstrap")))
    func pythonWebBuildsReproduciblyFromTheCachedBase() throws {
        let temp = try TempDir("slipway-build-python")
        defer { temp.remove() }
        let recipe = try Recipe.load(path: recipesDirectory + "/python-web.toml")
        // zstd keeps the test quick; the bytes are as reproducible as with xz.
        let first = try build(recipe, store: temp.sub("store-a"), compression: .zstd)
        let second = try build(recipe, store: temp.sub("store-b"), compression: .zstd)
        #expect(second.baseCacheHit, "the second build uses the cached base")
        #expect(first.baseKey == second.baseKey)
        #expect(first.sha256 == second.sha256, "two builds from the same cached base are byte-identical")
        let base = try #require(second.stages.first { $0.name == "base" })
        print("python-web: warm base stage \(String(format: "%.2f", base.seconds)) s (\(base.detail)), total \(String(format: "%.1f", second.totalSeconds)) s")
        // The work tree copied from the cached base instead of laid on it as an overlay: the
        // same bytes.
        let copied = try build(recipe, store: temp.sub("store-c"), compression: .zstd, overlayBase: false)
        #expect(copied.baseCacheHit)
        #expect(copied.stages.first { $0.name == "base" }?.detail.contains("copied from the cached tree") == true)
        #expect(copied.sha256 == first.sha256, "a copied base tree gives the same archive as an overlay")
        #expect(mountsUnder(sharedCacheDirectory + "/bases").isEmpty, "nothing is mounted on the cache")

        let store = ReleaseStore(root: temp.sub("store-a"))
        let release = try store.release(name: "python-web", version: "1.0.0")
        #expect(release.manifest.service?.health?.url == "http://127.0.0.1:$PORT/health")
        #expect(release.manifest.service?.command?.contains("gunicorn") == true)
        #expect(release.manifest.service?.user == "web" && release.manifest.service?.port == 8000)

        let tree = temp.sub("tree")
        _ = try ArchiveExtractor.extract(archive: first.archive, into: tree)
        let check = try run("chroot", [tree, "/opt/app/venv/bin/python", "-c", "import gunicorn, sys; sys.path.insert(0, '/opt/app/src'); import hello; print(gunicorn.__version__)"])
        #expect(check.ok, "\(check.err)")
        #expect(check.out.contains("23.0.0"))
        #expect(!FileManager.default.fileExists(atPath: tree + "/usr/sbin/policy-rc.d"), "the build's policy-rc.d is gone")
        let dpkgConfig = try FileManager.default.contentsOfDirectory(atPath: tree + "/etc/dpkg/dpkg.cfg.d")
        #expect(!dpkgConfig.contains { $0.contains("slipway") || $0.contains("mmdebstrap") },
                "the bootstrap's dpkg settings (force-unsafe-io) are not in the image: \(dpkgConfig)")
        let conf = try String(contentsOfFile: tree + "/etc/python-web/gunicorn.conf.py", encoding: .utf8)
        #expect(conf.contains("bind = \"127.0.0.1:\" + os.environ.get(\"PORT\", \"8000\")"), "\(conf)")
        // Only the cache itself: other suites may be building in its work/ meanwhile.
        #expect(mountsUnder(sharedCacheDirectory + "/bases").isEmpty)
    }

    @Test(.needs(.build("apt-get", "dpkg-deb")))
    func failingRunStepNamesStageAndLeavesNothing() throws {
        let temp = try TempDir("slipway-build-fail")
        defer { temp.remove() }
        let recipePath = temp.sub("broken.toml")
        try Data("""
            packages = ["busybox-static"]
            [release]
            name = "broken"
            version = "1"
            [base]
            type = "scratch"
            [[run]]
            name = "explode"
            shell = ["/bin/busybox", "sh"]
            command = "echo about to fail; echo oh no >&2; exit 3"
            """.utf8).write(to: URL(fileURLWithPath: recipePath))
        let recipe = try Recipe.load(path: recipePath)
        let cache = temp.sub("cache")
        do {
            _ = try build(recipe, store: temp.sub("store"), cache: cache)
            Issue.record("the build should have failed")
        } catch let error as BuildError {
            let message = error.description
            #expect(message.contains("stage 'run'"), "\(message)")
            #expect(message.contains("step 'explode'"))
            #expect(message.contains("broken.toml:7"))
            #expect(message.contains("status 3"))
            #expect(message.contains("oh no"))
        }
        #expect(mountsUnder(temp.path).isEmpty, "nothing stays mounted")
        let work = (try? FileManager.default.contentsOfDirectory(atPath: cache + "/work")) ?? []
        #expect(work.isEmpty, "the work directory is removed: \(work)")
        #expect(!FileManager.default.fileExists(atPath: temp.sub("store/broken/1")), "no store entry")
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: temp.sub("store/broken"))) ?? []
        #expect(leftovers.filter { $0.hasPrefix(".tmp") }.isEmpty)
    }

    @Test(.needs(.build()))
    func missingBootstrapToolIsAClearError() throws {
        let temp = try TempDir("slipway-build-notool")
        defer { temp.remove() }
        let recipe = try Recipe.parse(text: """
            [release]
            name = "x"
            version = "1"
            [base]
            type = "debian"
            suite = "bookworm"
            """, file: "x.toml", directory: temp.path)
        let options = BuildOptions(storeRoot: temp.sub("store"), cacheDirectory: temp.sub("cache"),
                                   bootstrapTools: ["slipway-test-no-such-mmdebstrap"])
        do {
            _ = try Builder(recipe: recipe, options: options, output: Output(verbosity: .quiet)).build()
            Issue.record("the build should have failed")
        } catch {
            let message = "\(error)"
            #expect(message.contains("stage 'base'"), "\(message)")
            #expect(message.contains("install mmdebstrap"))
        }
        #expect(mountsUnder(temp.path).isEmpty)
    }
}
