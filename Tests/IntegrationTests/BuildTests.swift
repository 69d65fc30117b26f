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

/// A port the kernel says is free now (its ephemeral range, clear of the nodes' service ports 20000-29999).
private func freePort() -> Int { (try? freeLocalPort()) ?? Int.random(in: 32768...60999) }

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

    @Test(.needs(.build("mmdebstrap", "dpkg-query"), .sbomValidators, .securesystemslib, .builtSlipway))
    func pythonWebBuildsReproduciblyFromTheCachedBase() throws {
        let temp = try TempDir("slipway-build-python")
        defer { temp.remove() }
        let recipe = try Recipe.load(path: recipesDirectory + "/python-web.toml")
        let key = try ReleaseSigning.generateKey(at: temp.sub("release.key"))
        // zstd keeps the test quick; the bytes are as reproducible as with xz.
        let first = try build(recipe, store: temp.sub("store-a"), compression: .zstd, signingKey: key.privateKeyPath)
        let second = try build(recipe, store: temp.sub("store-b"), compression: .zstd, signingKey: key.privateKeyPath)
        #expect(second.baseCacheHit, "the second build uses the cached base")
        #expect(first.baseKey == second.baseKey)
        #expect(first.sha256 == second.sha256, "two builds from the same cached base are byte-identical")
        // So are the SBOMs and the provenance (docs/sbom.md).
        for file in [SBOM.Format.spdx.fileName, SBOM.Format.cyclonedx.fileName, Provenance.fileName] {
            let a = try Data(contentsOf: URL(fileURLWithPath: first.directory + "/" + file))
            let b = try Data(contentsOf: URL(fileURLWithPath: second.directory + "/" + file))
            #expect(a == b && !a.isEmpty, "\(file) is byte-identical in two builds")
        }
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

        // The SBOM: valid SPDX and CycloneDX, exactly dpkg's packages, the venv's
        // distributions, the recipe's files; the provenance verifies with securesystemslib.
        let packages = try checkSBOM(release, tree: tree)
        let python = Dictionary(packages.filter { $0.ecosystem == .pypi }.map { ($0.name.lowercased(), $0.version) }, uniquingKeysWith: { a, _ in a })
        #expect(python["gunicorn"] == "23.0.0" && python["packaging"] != nil, "the venv's distributions: \(python)")
        let spdx = try String(contentsOfFile: release.directory + "/" + SBOM.Format.spdx.fileName, encoding: .utf8)
        #expect(spdx.contains("\"fileName\" : \"./etc/python-web/gunicorn.conf.py\""), "the recipe's files are listed")
        #expect(spdx.contains("pkg:deb/debian/python3.11@") && spdx.contains("pkg:pypi/gunicorn@23.0.0"))
        try checkProvenance(release, publicKey: try ReleaseSigning.loadPublicKey(path: key.publicKeyPath))
        let verified = try ReleaseVerifier.verify(release, trust: try ReleaseSigning.loadPublicKey(path: key.publicKeyPath))
        #expect(verified.isValid, "\(verified.problems)")

        // One more Debian package, netbase (it depends on nothing minbase lacks): diff
        // --packages names exactly it.
        let text = try String(contentsOfFile: recipesDirectory + "/python-web.toml", encoding: .utf8)
            .replacingOccurrences(of: "version = \"1.0.0\"", with: "version = \"1.1.0\"")
        let variant = try Recipe.parse(text: "packages = [\"netbase\"]\n" + text, file: temp.sub("python-web-netbase.toml"),
                                       directory: recipesDirectory)
        _ = try build(variant, store: temp.sub("store-a"), compression: .zstd)
        let slipway = try #require(builtSlipway)
        let diff = try runChecked(slipway, ["diff", "python-web@1.0.0", "python-web@1.1.0", "--packages", "--json", "--store", temp.sub("store-a")])
        let changes = try JSONDecoder().decode(PackageChanges.self, from: diff.stdout)
        #expect(changes.added.map(\.name) == ["netbase"] && changes.removed.isEmpty && changes.upgraded.isEmpty, "\(diff.out)")
        let shown = try runChecked(slipway, ["diff", "python-web@1.0.0", "python-web@1.1.0", "--packages", "--store", temp.sub("store-a")])
        #expect(shown.out.contains("+ netbase ") && shown.out.contains("1 added, 0 removed, 0 upgraded"), "\(shown.out)")
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
