import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif
@testable import SlipwaySystem
@testable import SlipwayArchive
@testable import SlipwayRelease
@testable import SlipwayRegistry
@testable import SlipwayNode

/// Releases in a real OCI registry (Debian's docker-registry, distribution 2.8), through the
/// real binary: publish, pull, what travels, what is refused (docs/registry.md).
@Suite("Registry: publish and pull releases as OCI artifacts")
struct RegistryTests {
    /// A store with signed releases 1 and 2 and the delta 1 → 2 cached, a key pair, and a
    /// registry.
    struct Published {
        let fx: NodeFixture
        let server: RegistryServer
        let keyPath: String
        let binary: String

        init(binary: String) throws {
            self.binary = binary
            fx = try NodeFixture("slipway-registry")
            do {
                keyPath = fx.dir.sub("release.key")
                _ = try ReleaseSigning.generateKey(at: keyPath)
                let key = try ReleaseSigning.loadSigningKey(path: keyPath)
                try fx.release("1", big: 1_000_000, signingKey: key)
                try fx.release("2", big: 1_000_000, signingKey: key)
                _ = try ReleaseDelta.make(store: fx.store, from: .init(name: fx.app, version: "1"), to: .init(name: fx.app, version: "2"))
                server = try RegistryServer(scratch: fx.dir.sub("registry"))
            } catch {
                fx.remove()
                throw error
            }
        }

        func stop() {
            server.stop()
            fx.remove()
        }

        func slipway(_ arguments: [String], store: String? = nil) throws -> CommandResult {
            try run(binary, arguments + ["--store", store ?? fx.store.root])
        }

        /// The release's files (deltas aside) as bytes, by name.
        func files(_ store: String, _ version: String) throws -> [String: Data] {
            let directory = "\(store)/\(fx.app)/\(version)"
            var files: [String: Data] = [:]
            for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name != "deltas" {
                files[name] = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name))
            }
            return files
        }
    }

    @Test("publish, publish again (nothing sent, same digest), pull byte for byte with the signature checked, a wrong key refused",
          .needs(.registry, .builtSlipway))
    func publishAndPull() throws {
        let setup = try Published(binary: try #require(builtSlipway))
        defer { setup.stop() }
        let app = setup.fx.app
        let location = setup.server.location("farm/web")

        let first = try setup.slipway(["publish", "\(app)@2", "--to", location, "--json"])
        #expect(first.status == 0, "publish: \(first.err)")
        let report = try JSONDecoder().decode(ReleaseRegistry.PublishReport.self, from: first.stdout)
        let release = try setup.fx.store.release(name: app, version: "2")
        #expect(report.tag == "2" && report.digest.hasPrefix("sha256:"))
        #expect(Set(report.blobs.map(\.file)) == ["rootfs.tar.xz", "manifest.json", "manifest.sig", "deltas/1.tar.xz"])
        #expect(report.blobs.allSatisfy { $0.outcome == "uploaded" }, "\(report.blobs)")
        #expect(report.bytesUploaded > release.manifest.archive.size)
        #expect(Set(report.artifacts.map(\.kind)) == ["release", "signature", "delta"])
        #expect(report.artifacts.first { $0.kind == "delta" }?.base == "1")

        // The artifact as the registry serves it: the release's type, the empty config, the
        // archive's digest; and the referrers under the tag schema (no referrers API in 2.8).
        let client = try RegistryClient(location: try RegistryLocation(parsing: location), scratch: setup.fx.dir.path)
        let pinned = try ReleaseRegistry.resolve(release.reference, client: client)
        #expect(pinned.digest == report.digest)
        #expect(pinned.layer("rootfs.tar.xz")?.digest == "sha256:" + release.manifest.archive.sha256)
        let referrers = try ReleaseRegistry.referrers(of: report.digest, client: client)
        #expect(Set(referrers.compactMap(\.artifactType)) == [ReleaseRegistry.signatureType, ReleaseRegistry.deltaType], "\(referrers)")
        #expect(try ReleaseRegistry.delta(release.reference, base: "1", client: client)?.digest
                == report.blobs.first { $0.file == "deltas/1.tar.xz" }?.digest)

        // Again: every blob is there (HEAD), nothing is uploaded, the digest is the same.
        let puts = setup.server.requests("PUT", containing: "/blobs/uploads/")
        let second = try setup.slipway(["publish", "\(app)@2", "--to", location, "--json"])
        #expect(second.status == 0, "publish again: \(second.err)")
        let again = try JSONDecoder().decode(ReleaseRegistry.PublishReport.self, from: second.stdout)
        #expect(again.digest == report.digest && again.bytesUploaded == 0 && again.blobs.allSatisfy { $0.outcome == "present" })
        #expect(setup.server.requests("PUT", containing: "/blobs/uploads/") == puts)

        // Another repository of the registry: the blobs are mounted, not sent.
        let mounted = try setup.slipway(["publish", "\(app)@2", "--to", setup.server.location("mirror/web"), "--mount-from", "farm/web", "--json"])
        #expect(mounted.status == 0, "publish with mounts: \(mounted.err)")
        let mountReport = try JSONDecoder().decode(ReleaseRegistry.PublishReport.self, from: mounted.stdout)
        #expect(mountReport.bytesUploaded == 0 && mountReport.blobs.allSatisfy { $0.outcome == "mounted" }, "\(mountReport.blobs)")
        #expect(mountReport.digest == report.digest)

        // Pull into an empty store with the right key: the same bytes, the signature verified.
        let other = setup.fx.dir.sub("store-pulled")
        let pulled = try setup.slipway(["pull", "\(app)@2", "--from", location, "--trust", setup.keyPath + ".pub", "--json"], store: other)
        #expect(pulled.status == 0, "pull: \(pulled.err)")
        let pullReport = try JSONDecoder().decode(ReleaseRegistry.PullReport.self, from: pulled.stdout)
        #expect(pullReport.outcome == "added" && pullReport.signature == "verified" && pullReport.digest == report.digest)
        #expect(try setup.files(other, "2") == setup.files(setup.fx.store.root, "2"))
        #expect(try ReleaseStore(root: other).versions(of: app) == ["2"])
        let verified = try setup.slipway(["verify", "\(app)@2", "--trust", setup.keyPath + ".pub"], store: other)
        #expect(verified.status == 0, "verify after pull: \(verified.err)")
        let repeated = try setup.slipway(["pull", "\(app)@2", "--from", location, "--json"], store: other)
        #expect(repeated.status == 0, "pull again: \(repeated.err)")
        let repeatedReport = try JSONDecoder().decode(ReleaseRegistry.PullReport.self, from: repeated.stdout)
        #expect(repeatedReport.outcome == "alreadyPresent")

        // A key that did not sign it: refused, and nothing of it stays in the store.
        let otherKey = setup.fx.dir.sub("other.key")
        _ = try ReleaseSigning.generateKey(at: otherKey)
        let refusedStore = setup.fx.dir.sub("store-refused")
        let refused = try setup.slipway(["pull", "\(app)@2", "--from", location, "--trust", otherKey + ".pub"], store: refusedStore)
        #expect(refused.status != 0 && refused.err.contains("signature"), "wrong key: \(refused.err)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: refusedStore + "/" + app)) ?? []).filter { $0 != ".lock" }.isEmpty)

        // A version that was never published: named.
        let missing = try setup.slipway(["pull", "\(app)@9", "--from", location], store: refusedStore)
        #expect(missing.status != 0 && missing.err.contains("web@9"), "missing: \(missing.err)")
    }

    @Test("pull brings the published delta from a version the store has into its cache; not again, and not one made from another build",
          .needs(.registry, .builtSlipway))
    func pullBringsDeltas() throws {
        let setup = try Published(binary: try #require(builtSlipway))
        defer { setup.stop() }
        let app = setup.fx.app
        let location = setup.server.location("farm/web")
        for version in ["1", "2"] {
            let published = try setup.slipway(["publish", "\(app)@\(version)", "--to", location])
            #expect(published.status == 0, "publish \(version): \(published.err)")
        }
        let source = setup.fx.store.root + "/\(app)/2/deltas"

        // A store with 1: pulling 2 brings the delta from 1, byte for byte, with its metadata.
        let other = setup.fx.dir.sub("store-pulled")
        #expect(try setup.slipway(["pull", "\(app)@1", "--from", location], store: other).status == 0)
        let pulled = try setup.slipway(["pull", "\(app)@2", "--from", location, "--json"], store: other)
        #expect(pulled.status == 0, "pull: \(pulled.err)")
        let report = try JSONDecoder().decode(ReleaseRegistry.PullReport.self, from: pulled.stdout)
        #expect(report.outcome == "added" && report.deltasFrom == ["1"] && report.deltasSkipped.isEmpty, "\(report)")
        let delta = try Data(contentsOf: URL(fileURLWithPath: source + "/1.tar.xz"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: other + "/\(app)/2/deltas/1.tar.xz")) == delta)
        #expect(report.bytesFetched >= UInt64(delta.count) + (try setup.fx.store.release(name: app, version: "2")).manifest.archive.size)
        #expect(try Data(contentsOf: URL(fileURLWithPath: other + "/\(app)/2/deltas/1.json"))
                == Data(contentsOf: URL(fileURLWithPath: source + "/1.json")), "the cache entry is the one the delta's maker wrote")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: other + "/\(app)/2/deltas")) ?? []).sorted() == ["1.json", "1.tar.xz"])
        // The pulled store's own delta maker finds it cached: a push from it sends it as is.
        let made = try ReleaseDelta.make(store: ReleaseStore(root: other), from: .init(name: app, version: "1"), to: .init(name: app, version: "2"))
        #expect(made.cached)
        let verified = try setup.slipway(["verify", "\(app)@2", "--trust", setup.keyPath + ".pub"], store: other)
        #expect(verified.status == 0, "verify after pull: \(verified.err)")

        // Again: nothing fetched, the delta blob not asked for.
        let digest = "sha256:" + (try FileHasher.sha256(path: source + "/1.tar.xz")).hex
        let gets = setup.server.requests("GET", containing: "/blobs/" + digest)
        let again = try setup.slipway(["pull", "\(app)@2", "--from", location, "--json"], store: other)
        #expect(again.status == 0, "pull again: \(again.err)")
        let againReport = try JSONDecoder().decode(ReleaseRegistry.PullReport.self, from: again.stdout)
        #expect(againReport.outcome == "alreadyPresent" && againReport.deltasFrom.isEmpty && againReport.bytesFetched == 0, "\(againReport)")
        #expect(setup.server.requests("GET", containing: "/blobs/" + digest) == gets)

        // A store whose version 1 is another build: the delta is not taken, and it says why.
        let rebuilt = try NodeFixture("slipway-registry-rebuilt")
        defer { rebuilt.remove() }
        try rebuilt.release("1", big: 1_000_001)
        let skipped = try setup.slipway(["pull", "\(app)@2", "--from", location, "--json"], store: rebuilt.store.root)
        #expect(skipped.status == 0, "pull over another build: \(skipped.err)")
        let skippedReport = try JSONDecoder().decode(ReleaseRegistry.PullReport.self, from: skipped.stdout)
        #expect(skippedReport.deltasFrom.isEmpty && skippedReport.deltasSkipped.count == 1
                && skippedReport.deltasSkipped[0].contains("another build"), "\(skippedReport)")
        #expect(!FileManager.default.fileExists(atPath: rebuilt.store.root + "/\(app)/2/deltas"))
    }

    @Test("a blob whose bytes the registry changed is refused and not kept; an interrupted pull resumes with a Range request",
          .needs(.registry, .builtSlipway))
    func wrongDigestAndResume() throws {
        let setup = try Published(binary: try #require(builtSlipway))
        defer { setup.stop() }
        let app = setup.fx.app
        let location = setup.server.location("farm/web")
        let published = try setup.slipway(["publish", "\(app)@1", "--to", location])
        #expect(published.status == 0, "publish: \(published.err)")
        let release = try setup.fx.store.release(name: app, version: "1")
        let blob = setup.server.blobFile("sha256:" + release.manifest.archive.sha256)

        // An interrupted pull left the first half of the archive: the next pull asks for the
        // rest only, and the release is whole.
        let store = setup.fx.dir.sub("store-resumed")
        let work = "\(store)/\(app)/.pulling-1"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let whole = try Data(contentsOf: URL(fileURLWithPath: release.archivePath))
        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: work + "/rootfs.tar.xz"))
        let resumed = try setup.slipway(["pull", "\(app)@1", "--from", location, "--json"], store: store)
        #expect(resumed.status == 0, "resumed pull: \(resumed.err)")
        let report = try JSONDecoder().decode(ReleaseRegistry.PullReport.self, from: resumed.stdout)
        let rest = UInt64(whole.count - whole.count / 2)
        let others = (try? Data(contentsOf: URL(fileURLWithPath: release.manifestPath)).count).map(UInt64.init) ?? 0
        #expect(report.bytesFetched < UInt64(whole.count) && report.bytesFetched >= rest + others, "fetched \(report.bytesFetched)")
        #expect(try setup.files(store, "1") == setup.files(setup.fx.store.root, "1"))
        #expect(access(work, F_OK) != 0, "the pull's work directory is gone")

        // The registry's copy of the archive changes under it (a disk fault, a hostile
        // mirror): the pull fails naming the digest, and nothing is stored.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: blob))
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: blob))
        let tampered = setup.fx.dir.sub("store-tampered")
        let refused = try setup.slipway(["pull", "\(app)@1", "--from", location], store: tampered)
        // Refused as it arrives (the blob's digest), before the store's own checks would.
        #expect(refused.status != 0 && refused.err.contains(release.manifest.archive.sha256) && refused.err.contains("the registry sent bytes"),
                "tampered: \(refused.err)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: tampered + "/" + app)) ?? []).filter { !$0.hasPrefix(".pulling") && $0 != ".lock" }.isEmpty)
        #expect(try ReleaseStore(root: tampered).versions(of: app).isEmpty)
        let leftover = ((try? FileManager.default.contentsOfDirectory(atPath: "\(tampered)/\(app)/.pulling-1")) ?? [])
        #expect(!leftover.contains("rootfs.tar.xz"), "the wrong archive was kept: \(leftover)")
    }

    @Test("skopeo reads a published release: the same manifest bytes, and a copy to an OCI layout holds the same blobs",
          .needs(.registry, .builtSlipway, .tools(["skopeo"])))
    func skopeoReadsIt() throws {
        let setup = try Published(binary: try #require(builtSlipway))
        defer { setup.stop() }
        let app = setup.fx.app
        let published = try setup.slipway(["publish", "\(app)@2", "--to", setup.server.location("farm/web"), "--json"])
        #expect(published.status == 0, "publish: \(published.err)")
        let report = try JSONDecoder().decode(ReleaseRegistry.PublishReport.self, from: published.stdout)
        let reference = "docker://\(setup.server.hostPort)/farm/web:2"
        let raw = try run("skopeo", ["inspect", "--raw", "--tls-verify=false", reference])
        #expect(raw.ok, "skopeo inspect: \(raw.err)")
        #expect(RegistryClient.digest(raw.stdout) == report.digest)
        let layout = setup.fx.dir.sub("layout")
        let copied = try run("skopeo", ["copy", "--src-tls-verify=false", reference, "oci:\(layout):2"])
        #expect(copied.ok, "skopeo copy: \(copied.err)")
        for blob in report.blobs where blob.file != "deltas/1.tar.xz" {
            let path = "\(layout)/blobs/sha256/\(blob.digest.dropFirst("sha256:".count))"
            #expect(try FileHasher.sha256(path: path).hex == String(blob.digest.dropFirst("sha256:".count)), "\(blob.file)")
        }
    }

    @Test("credentials: a registry with token authentication refuses anonymous publishes; publish, pull and a node's fetch get in with docker config.json credentials",
          .needs(.registry, .builtSlipway, .tools(["python3"]), .that(access(TokenService.python, X_OK) == 0, "\(TokenService.python) is not installed")))
    func credentials() throws {
        let binary = try #require(builtSlipway)
        let fx = try NodeFixture("slipway-registry-auth")
        defer { fx.remove() }
        try fx.release("1", big: 500_000)
        let password = UUID().uuidString
        let token = try TokenService(user: "ci", password: password, scratch: fx.dir.sub("token"))
        defer { token.stop() }
        let server = try RegistryServer(scratch: fx.dir.sub("registry"), auth: token.registryConfig)
        defer { server.stop() }
        let location = server.location("farm/web")
        func authFile(_ name: String, password: String) throws -> String {
            let path = fx.dir.sub(name)
            let auth = Data("ci:\(password)".utf8).base64EncodedString()
            try Data(#"{"auths": {"\#(server.hostPort)": {"auth": "\#(auth)"}}}"#.utf8).write(to: URL(fileURLWithPath: path))
            return path
        }
        let good = try authFile("auth.json", password: password)
        let wrong = try authFile("wrong.json", password: "not-" + password)
        func slipway(_ arguments: [String], auth: String, store: String? = nil) throws -> CommandResult {
            try run(binary, arguments + ["--store", store ?? fx.store.root], environment: ["REGISTRY_AUTH_FILE": auth])
        }

        let anonymous = try slipway(["publish", "web@1", "--to", location], auth: fx.dir.sub("absent.json"))
        #expect(anonymous.status != 0 && anonymous.err.contains("no credentials are configured"), "anonymous: \(anonymous.err)")
        let refused = try slipway(["publish", "web@1", "--to", location], auth: wrong)
        #expect(refused.status != 0 && refused.err.contains("answered 401 for user ci"), "wrong password: \(refused.err)")

        let published = try slipway(["publish", "web@1", "--to", location, "--json"], auth: good)
        #expect(published.status == 0, "publish: \(published.err)")
        let report = try JSONDecoder().decode(ReleaseRegistry.PublishReport.self, from: published.stdout)
        #expect(report.bytesUploaded > 0)
        let pulled = try slipway(["pull", "web@1", "--from", location], auth: good, store: fx.dir.sub("store-pulled"))
        #expect(pulled.status == 0, "pull: \(pulled.err)")
        // The token service saw the password (Basic) and the registry only tokens: the access
        // log has no request refused once a token was in hand.
        let tokenLog = try String(contentsOfFile: token.log, encoding: .utf8)
        #expect(tokenLog.contains("auth=basic"))

        // A node's fetch of the archive blob, with node.toml's registry_auth.
        let release = try fx.store.release(name: "web", version: "1")
        let url = "http://\(server.hostPort)/v2/farm/web/blobs/sha256:\(release.manifest.archive.sha256)"
        let request = NodeFetch.Request(app: fx.app, fileName: "1.tar.xz", url: url, size: release.manifest.archive.size,
                                        sha256: release.manifest.archive.sha256)
        let without = try fx.context { $0.registryAuth = fx.dir.sub("absent.json") }
        #expect(throws: (any Error).self) { try NodeFetch.fetch(request, context: without) }
        do {
            _ = try NodeFetch.fetch(request, context: without)
        } catch {
            #expect("\(error)".contains("no credentials are configured"), "\(error)")
        }
        let with = try fx.context { $0.registryAuth = good }
        let fetched = try NodeFetch.fetch(request, context: with)
        #expect(fetched.complete && fetched.sha256 == release.manifest.archive.sha256)
        // No credentials or header files are left behind, in incoming/ or in /tmp.
        #expect(try FileManager.default.contentsOfDirectory(atPath: fx.layout.incoming) == ["1.tar.xz"])
    }

    @Test("TLS with a private CA and client certificates: refused without the CA in certs.d, then publish, pull and a node's fetch get in with it",
          .needs(.registry, .builtSlipway, .tools(["openssl"])))
    func privateCA() throws {
        let binary = try #require(builtSlipway)
        let fx = try NodeFixture("slipway-registry-tls")
        defer { fx.remove() }
        try fx.release("1", big: 300_000)
        let ca = try PrivateCA(directory: fx.dir.sub("ca"))
        let server = try RegistryServer(scratch: fx.dir.sub("registry"), tls: ca)
        defer { server.stop() }
        let location = server.location("farm/web")
        #expect(location.hasPrefix("oci://"))
        let empty = fx.dir.sub("certs-empty")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let caOnly = try ca.certsRoot(at: fx.dir.sub("certs-ca"), host: server.hostPort, client: false)
        let full = try ca.certsRoot(at: fx.dir.sub("certs-full"), host: server.hostPort, client: true)
        func slipway(_ arguments: [String], certs: String, store: String? = nil) throws -> CommandResult {
            try run(binary, arguments + ["--store", store ?? fx.store.root], environment: ["SLIPWAY_CERTS_D": certs])
        }

        // Without the CA, curl does not trust the server, and the error says where the CA goes.
        let untrusted = try slipway(["publish", "web@1", "--to", location], certs: empty)
        #expect(untrusted.status != 0 && untrusted.err.contains("certs.d/HOST:PORT/ca.crt"), "no CA: \(untrusted.err)")
        // With the CA but no client certificate, the server refuses the handshake.
        let anonymous = try slipway(["publish", "web@1", "--to", location], certs: caOnly)
        #expect(anonymous.status != 0, "no client certificate: \(anonymous.err)")
        #expect(server.requests("PUT", containing: "/manifests/") == 0)

        let published = try slipway(["publish", "web@1", "--to", location], certs: full)
        #expect(published.status == 0, "publish: \(published.err)")
        let pulledStore = fx.dir.sub("store-pulled")
        let pulled = try slipway(["pull", "web@1", "--from", location], certs: full, store: pulledStore)
        #expect(pulled.status == 0, "pull: \(pulled.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: "\(pulledStore)/web/1/rootfs.tar.xz"))
                == Data(contentsOf: URL(fileURLWithPath: try fx.store.release(name: "web", version: "1").archivePath)))

        // A node's fetch of the archive blob over HTTPS: node.toml's registry_certs names the root.
        let release = try fx.store.release(name: "web", version: "1")
        let url = "https://\(server.hostPort)/v2/farm/web/blobs/sha256:\(release.manifest.archive.sha256)"
        let request = NodeFetch.Request(app: fx.app, fileName: "1.tar.xz", url: url, size: release.manifest.archive.size,
                                        sha256: release.manifest.archive.sha256)
        let without = try fx.context { $0.registryCerts = empty }
        do {
            _ = try NodeFetch.fetch(request, context: without)
            Issue.record("a node without the CA fetched from the registry")
        } catch {
            #expect("\(error)".contains("certs.d/HOST:PORT/ca.crt"), "\(error)")
        }
        let with = try fx.context { $0.registryCerts = full }
        let fetched = try NodeFetch.fetch(request, context: with)
        #expect(fetched.complete && fetched.sha256 == release.manifest.archive.sha256)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fx.layout.incoming) == ["1.tar.xz"])
    }

    @Test("a pull cut off mid-blob (the registry's front killed) fails, keeps its bytes, and the next pull fetches only the rest",
          .needs(.registry, .builtSlipway, .that(access(NginxServer.binary, X_OK) == 0, "nginx is not installed at \(NginxServer.binary)")))
    func killedMidBlob() throws {
        let binary = try #require(builtSlipway)
        let fx = try NodeFixture("slipway-registry-cut")
        defer { fx.remove() }
        let release = try fx.release("1", big: 6_000_000)
        let server = try RegistryServer(scratch: fx.dir.sub("registry"))
        defer { server.stop() }
        let published = try run(binary, ["publish", "web@1", "--to", server.location("farm/web"), "--store", fx.store.root])
        #expect(published.status == 0, "publish: \(published.err)")

        // The pull goes through a front slowed to 1 MB/s, killed once 1 MB of the archive is in.
        let proxy = try RegistryProxy(upstream: server.hostPort, rate: "1m", scratch: fx.dir.sub("proxy"))
        let port = proxy.port
        let store = fx.dir.sub("store-pulled")
        let partial = "\(store)/web/.pulling-1/rootfs.tar.xz"
        let child = try NodeChild(binary, ["pull", "web@1", "--from", "oci+http://127.0.0.1:\(port)/farm/web", "--store", store, "--json"])
        let deadline = Date().addingTimeInterval(60)
        func partialSize() -> UInt64 { (try? FileManager.default.attributesOfItem(atPath: partial)[.size] as? NSNumber)??.uint64Value ?? 0 }
        while partialSize() < 1_000_000, Date() < deadline, child.process.isRunning { usleep(20_000) }
        proxy.kill9()
        let cut = child.wait()
        let kept = partialSize()
        let size = release.manifest.archive.size
        #expect(cut.status != 0, "the cut pull must fail: \(cut.stderr)")
        #expect(kept >= 1_000_000 && kept < size, "kept \(kept) of \(size)")
        #expect(try ReleaseStore(root: store).versions(of: "web").isEmpty)

        // The front comes back on the same port, unslowed: the next pull asks for the rest.
        let again = try RegistryProxy(upstream: server.hostPort, port: port, scratch: fx.dir.sub("proxy2"))
        defer { again.stop() }
        let resumed = try run(binary, ["pull", "web@1", "--from", "oci+http://127.0.0.1:\(port)/farm/web", "--store", store, "--json"])
        #expect(resumed.status == 0, "resumed pull: \(resumed.err)")
        let report = try JSONDecoder().decode(ReleaseRegistry.PullReport.self, from: resumed.stdout)
        #expect(report.bytesFetched <= size - kept + 100_000, "fetched \(report.bytesFetched) after keeping \(kept) of \(size)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: "\(store)/web/1/rootfs.tar.xz")) == Data(contentsOf: URL(fileURLWithPath: release.archivePath)))
        // The registry answered the second GET of the archive with its rest (206).
        #expect(server.statuses("GET", containing: "/blobs/sha256:\(release.manifest.archive.sha256)").last == 206,
                "\(server.statuses("GET", containing: "/blobs/sha256:\(release.manifest.archive.sha256)"))")
    }
}
