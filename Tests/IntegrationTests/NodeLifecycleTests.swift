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

@Suite("Node: dir backend lifecycle, health, hostile inputs, lock")
struct NodeLifecycleTests {
    /// With `[dir] link_unchanged = true` a delta's staged copy hardlinks the base's files:
    /// the untouched ones stay shared, the changed ones are new files, the base is unchanged.
    @Test("apply v1, activate, apply v2 as a delta, activate, rollback, prune", arguments: [false, true])
    func lifecycle(linkUnchanged: Bool) throws {
        let fx = try NodeFixture()
        defer { fx.remove() }
        try fx.release("1")
        try fx.release("2")
        try fx.release("3")
        let context = try fx.context { if linkUnchanged { $0.backendTables["dir"] = ["link_unchanged": "true"] } }
        func inode(_ version: String, _ path: String) -> ino_t? {
            var st = stat()
            return lstat(fx.layout.release(version) + "/" + path, &st) == 0 ? st.st_ino : nil
        }

        #expect(try fx.applyFull("1", context: context).outcome == .landed)
        #expect(try fx.applyFull("1", context: context).outcome == .alreadyLanded)
        try fx.checkInvariant("after apply 1")
        #expect(fx.current == nil)
        _ = try NodeActivate.activate(app: fx.app, version: "1", context: context)
        #expect(fx.current == "1")
        try fx.checkInvariant("after activate 1")

        let delta = try fx.applyDelta("2", base: "1", context: context)
        #expect(delta.outcome == .landed && delta.origin == .delta)
        #expect(try NodeActivate.activate(app: fx.app, version: "2", context: context).previous == "1")
        #expect(fx.current == "2")
        try fx.checkInvariant("after activate 2 (delta)")
        #expect(try String(contentsOfFile: fx.layout.current + "/etc/app/version", encoding: .utf8) == "2\n")
        #expect(!exists(fx.layout.current + "/etc/app/legacy"))
        // The untouched file is shared exactly when asked; the changed one never is, and the
        // base keeps its own bytes.
        #expect((inode("1", "etc/app/config") == inode("2", "etc/app/config")) == linkUnchanged)
        #expect(inode("1", "etc/app/version") != inode("2", "etc/app/version"))
        #expect(try String(contentsOfFile: fx.layout.release("1") + "/etc/app/version", encoding: .utf8) == "1\n")
        #expect(exists(fx.layout.release("1") + "/etc/app/legacy"))

        let back = try NodeRollback.rollback(app: fx.app, context: context)
        #expect(back.version == "1" && fx.current == "1")
        try fx.checkInvariant("after rollback")
        #expect(try NodeRollback.rollback(app: fx.app, context: context).version == "2")

        try fx.applyDelta("3", base: "2", context: context)
        _ = try NodeActivate.activate(app: fx.app, version: "3", context: context)
        // keep 1: current (3) and previous (2) stay; 1 goes.
        let pruned = try NodePrune.prune(app: fx.app, keep: 1, context: context)
        #expect(pruned.removed == ["1"])
        #expect(try DirBackend().landedVersions(layout: fx.layout).sorted() == ["2", "3"])
        try fx.checkInvariant("after prune")

        let status = try NodeStatus.read(app: fx.app, context: context)
        #expect(status.current == "3" && status.previous == "2")
        #expect(status.activations.map(\.result).allSatisfy { $0 == .activated })
        // The versions left still match their manifests (removing 1 removed links only).
        for version in ["2", "3"] {
            let manifest = try ReleaseManifest.read(path: fx.layout.manifest(version)).manifest
            #expect(try NodeTreeCheck.differences(root: fx.layout.release(version), manifest: manifest, layout: fx.layout) == [])
        }
    }

    @Test("[dir] takes link_unchanged = true or false; anything else is refused by name")
    func dirSettings() throws {
        let fx = try NodeFixture()
        defer { fx.remove() }
        for (table, wanted) in [(["link_unchanged": "yes"], "link_unchanged = yes"), (["hardlinks": "true"], "[dir] hardlinks")] {
            do {
                _ = try fx.context { $0.backendTables["dir"] = table }
                Issue.record("accepted [dir] \(table)")
            } catch {
                #expect("\(error)".contains(wanted), "\(error)")
            }
        }
    }

    @Test("a failed health check switches back, reloads the old version and says so", .needs(.nodeBinary))
    func healthFailureRollsBack() throws {
        let fx = try NodeFixture()
        defer { fx.remove() }
        let marker = fx.dir.sub("reloads")
        let reload = "echo \"$SLIPWAY_VERSION\" >> \(marker)"
        try fx.release("1", service: ServiceSpec(reload: reload))
        try fx.release("2", service: ServiceSpec(reload: reload, health: HealthCheck(command: "test -e /nonexistent-\(UUID())", timeoutSeconds: 2, retries: 2, intervalSeconds: 0.05)))
        let context = try fx.context()
        try fx.applyFull("1", context: context)
        _ = try NodeActivate.activate(app: fx.app, version: "1", context: context)
        try fx.applyFull("2", context: context)
        do {
            _ = try NodeActivate.activate(app: fx.app, version: "2", context: context)
            Issue.record("activate should have failed")
        } catch let error as NodeError {
            #expect(error.description.contains("rolled back to 1"), "\(error)")
        }
        #expect(fx.current == "1")
        try fx.checkInvariant("after health rollback")
        #expect(try String(contentsOfFile: marker, encoding: .utf8) == "2\n1\n")
        let last = try #require(try NodeState.load(fx.layout).activations.last)
        #expect(last.result == .rolledBack && last.from == "1" && last.to == "2")

        // Through the binary: non-zero exit, the message on stderr.
        let binary = try #require(nodeBinary)
        let child = try NodeChild(binary, ["node", "activate", "web@2", "--root", fx.root])
        let (status, stderr) = child.wait()
        #expect(status != 0)
        #expect(stderr.contains("rolled back to 1"), "\(stderr)")
    }

    @Test("a delta carries an edited file as a zstd patch against the base's file; the node rebuilds it exactly")
    func patchedFiles() throws {
        let fx = try NodeFixture()
        defer { fx.remove() }
        // 256 kB of incompressible text, then the same with a line appended and one edited.
        let text = randomBytes(128 << 10).map { String(format: "%02x", $0) }.joined()
        for (version, content) in [("1", text), ("2", "v2 header\n" + text.dropFirst(10) + "\nappended in 2\n")] {
            let tree = try fx.tree(version)
            try FileManager.default.createDirectory(atPath: tree + "/usr/share/app", withIntermediateDirectories: true)
            try Data(content.utf8).write(to: URL(fileURLWithPath: tree + "/usr/share/app/data.txt"))
            _ = try fx.store.add(tree: tree, name: fx.app, version: version, created: 1_700_000_000, configuration: .init(level: 1))
            try FileManager.default.removeItem(atPath: tree)
        }
        let delta = try ReleaseDelta.make(store: fx.store, from: .init(name: fx.app, version: "1"), to: .init(name: fx.app, version: "2"))
        #expect(delta.metadata.patched == [ArchivePath("usr/share/app/data.txt")] && delta.metadata.formatVersion == 2)
        let deltaSize = try #require(delta.metadata.archiveSize)
        #expect(deltaSize < 16 << 10, "a 256 kB file with two lines changed made a \(deltaSize) B delta")

        let context = try fx.context()
        try fx.applyFull("1", context: context)
        _ = try NodeActivate.activate(app: fx.app, version: "1", context: context)
        try fx.applyDelta("2", base: "1", context: context)
        _ = try NodeActivate.activate(app: fx.app, version: "2", context: context)
        try fx.checkInvariant("after the patched delta")
        #expect(try String(contentsOfFile: fx.layout.current + "/usr/share/app/data.txt", encoding: .utf8).hasSuffix("appended in 2\n"))

        // A base whose file is not the one the patch was made against: refused, nothing landed.
        let other = NodeFixture(sharing: fx, root: fx.dir.sub("node-b"))
        let otherContext = try other.context()
        try other.applyFull("1", context: otherContext)
        _ = try NodeActivate.activate(app: fx.app, version: "1", context: otherContext)
        try Data("not the base\n".utf8).write(to: URL(fileURLWithPath: other.layout.release("1") + "/usr/share/app/data.txt"))
        let refused = #expect(throws: NodeError.self) { try other.applyDelta("2", base: "1", context: otherContext) }
        #expect("\(refused.map { "\($0)" } ?? "")".contains("the patch of usr/share/app/data.txt does not apply"), "\(String(describing: refused))")
        #expect(other.current == "1")
        #expect(try DirBackend().landedVersions(layout: other.layout) == ["1"])
    }

    @Test("an http health check: nginx serves through current; a 200 keeps the switch, a 404 switches back",
          .needs("nginx", "curl", root: true))
    func httpHealthCheck() throws {
        let fx = try NodeFixture()
        defer { fx.remove() }
        // The app server of this node: nginx serving whatever `current` points at.
        let prefix = fx.dir.sub("nginx")
        try FileManager.default.createDirectory(atPath: prefix, withIntermediateDirectories: true)
        let server = try NginxServer(root: fx.layout.current, prefix: prefix)
        defer { server.stop() }
        // /etc/app/added exists from 2 on; /etc/app/legacy only in 1.
        func health(_ path: String) -> ServiceSpec {
            ServiceSpec(health: HealthCheck(url: server.url + path, timeoutSeconds: 5, retries: 2, intervalSeconds: 0.05))
        }
        try fx.release("1")
        try fx.release("2", service: health("/etc/app/added"))
        try fx.release("3", service: health("/etc/app/legacy"))
        let context = try fx.context()
        for version in ["1", "2", "3"] { try fx.applyFull(version, context: context) }
        _ = try NodeActivate.activate(app: fx.app, version: "1", context: context)

        let healthy = try NodeActivate.activate(app: fx.app, version: "2", context: context)
        #expect(healthy.outcome == .activated && fx.current == "2")
        #expect(server.statuses(of: "/etc/app/added", count: 1) == [200])

        do {
            _ = try NodeActivate.activate(app: fx.app, version: "3", context: context)
            Issue.record("activating 3 should fail its health check")
        } catch let error as NodeError {
            #expect(error.description.contains("rolled back to 2") && error.description.contains("404"), "\(error)")
        }
        #expect(fx.current == "2")
        #expect(server.statuses(of: "/etc/app/legacy", count: 2) == [404, 404], "one request per try")
        let last = try #require(try NodeState.load(fx.layout).activations.last)
        #expect(last.result == .rolledBack && last.from == "2" && last.to == "3")
        try fx.checkInvariant("after the failed http health check")
    }

    @Test("wrong sha256, missing or bad signature, delta without base, truncated upload: clear errors, nothing changed")
    func hostileInputs() throws {
        let fx = try NodeFixture()
        defer { fx.remove() }
        let keyPath = fx.dir.sub("key")
        try ReleaseSigning.generateKey(at: keyPath)
        let otherPath = fx.dir.sub("other")
        try ReleaseSigning.generateKey(at: otherPath)
        let key = try ReleaseSigning.loadSigningKey(path: keyPath)
        let other = try ReleaseSigning.loadSigningKey(path: otherPath)
        try fx.release("1", signingKey: key)
        let r2 = try fx.release("2")
        let r3 = try fx.release("3", signingKey: other)
        let r4 = try fx.release("4", signingKey: key)
        let context = try fx.context { $0.trustedKeys = [keyPath + ".pub"]; $0.requireSignature = true }
        try fx.applyFull("1", context: context)
        _ = try NodeActivate.activate(app: fx.app, version: "1", context: context)
        let before = try DirBackend().landedVersions(layout: fx.layout)

        func expectRefused(_ label: String, _ needle: String, _ body: () throws -> Void) {
            do {
                try body()
                Issue.record("\(label): should have failed")
            } catch {
                let text = "\(error)"
                #expect(text.contains(needle), "\(label): \(text)")
            }
            #expect(fx.current == "1", "\(label)")
            #expect((try? DirBackend().landedVersions(layout: fx.layout)) == before, "\(label)")
            try? fx.checkInvariant(label)
        }

        // A damaged archive (one byte flipped).
        let damaged = fx.dir.sub("damaged.tar.xz")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: r4.archivePath))
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: damaged))
        expectRefused("wrong sha256", "does not match its manifest") {
            _ = try NodeApply.apply(.init(source: .full(archive: damaged), manifestPath: r4.manifestPath, signaturePath: r4.signaturePath), context: context)
        }
        expectRefused("missing signature", "requires signed releases") { try fx.applyFull("2", context: context) }
        expectRefused("signature by an untrusted key", "does not verify") { try fx.applyFull("3", context: context) }
        // A manifest changed after signing.
        let forged = fx.dir.sub("forged.json")
        var manifest = r4.manifest
        manifest.service = ServiceSpec(start: "echo pwned")
        try manifest.encoded().write(to: URL(fileURLWithPath: forged))
        expectRefused("forged manifest", "does not verify") {
            _ = try NodeApply.apply(.init(source: .full(archive: r4.archivePath), manifestPath: forged, signaturePath: r4.signaturePath), context: context)
        }
        let openContext = try fx.context()
        let delta = try ReleaseDelta.make(store: fx.store, from: .init(name: fx.app, version: "2"), to: .init(name: fx.app, version: "3"))
        expectRefused("delta against a base the node lacks", "does not have") {
            _ = try NodeApply.apply(.init(source: .delta(archive: delta.archivePath, base: "2"), manifestPath: r3.manifestPath), context: openContext)
        }
        _ = r2

        // Truncated upload, then resumed from where it stopped.
        let archive = try Data(contentsOf: URL(fileURLWithPath: r4.archivePath))
        let half = archive.count / 2
        func send(_ data: Data, offset: UInt64) throws -> NodeReceive.Result {
            let chunk = fx.dir.sub("chunk-\(offset)")
            try data.write(to: URL(fileURLWithPath: chunk))
            let input = open(chunk, O_RDONLY | O_CLOEXEC)
            defer { close(input) }
            return try NodeReceive.receive(app: fx.app, fileName: "4.tar.xz", from: input, offset: offset,
                                           size: UInt64(archive.count), sha256: r4.manifest.archive.sha256, context: openContext)
        }
        let first = try send(archive.prefix(half), offset: 0)
        #expect(!first.complete && first.bytes == UInt64(half))
        expectRefused("apply of a partial upload", "does not match its manifest") {
            _ = try NodeApply.apply(.init(source: .full(archive: first.path), manifestPath: r4.manifestPath, signaturePath: r4.signaturePath), context: context)
        }
        do {
            _ = try send(Data(), offset: UInt64(half + 10))
            Issue.record("an offset past the received bytes should fail")
        } catch {
            #expect("\(error)".contains("resume at --offset \(half)"), "\(error)")
        }
        let second = try send(archive.suffix(from: half), offset: UInt64(half))
        #expect(second.complete && second.sha256 == r4.manifest.archive.sha256)
        #expect(try NodeApply.apply(.init(source: .full(archive: second.path), manifestPath: r4.manifestPath, signaturePath: r4.signaturePath), context: context).outcome == .landed)
        #expect(!exists(second.path), "the landed upload is removed from incoming/")
    }

    @Test("two concurrent activations: the second waits, then fails naming the holder", .needs(.nodeBinary))
    func lockContention() throws {
        let binary = try #require(nodeBinary)
        let fx = try NodeFixture()
        defer { fx.remove() }
        try fx.release("1")
        try fx.release("2")
        let context = try fx.context()
        try fx.applyFull("1", context: context)
        try fx.applyFull("2", context: context)
        let lock = try NodeLock.acquire(fx.layout, command: "slipway node activate web@1 (test)", timeout: 1)
        let child = try NodeChild(binary, ["node", "activate", "web@2", "--root", fx.root, "--lock-timeout", "0.5"])
        let (status, stderr) = child.wait()
        lock.release()
        #expect(status != 0)
        #expect(stderr.contains("holds the lock") && stderr.contains("pid \(getpid())") && stderr.contains("(test)"), "\(stderr)")
        #expect(fx.current == nil)

        // Released: two racing children both succeed, one after the other, never interleaved.
        let a = try NodeChild(binary, ["node", "activate", "web@1", "--root", fx.root])
        let b = try NodeChild(binary, ["node", "activate", "web@2", "--root", fx.root])
        #expect(a.wait().status == 0)
        #expect(b.wait().status == 0)
        try fx.checkInvariant("after racing activations")
        #expect(try NodeState.load(fx.layout).activations.count == 2)
    }

    @Test("shared directories: seeded into shared/ once, emptied in every release (the mount point), bound for hooks; data survives switches")
    func sharedDirectories() throws {
        let fx = try NodeFixture()
        defer { fx.remove() }
        // The hook writes through the release's path: it runs with shared/ bound there.
        let service = ServiceSpec(start: "echo \"start $SLIPWAY_VERSION\" >> \"$SLIPWAY_RELEASE/var/log/app/hooks.log\"",
                                  reload: "echo \"reload $SLIPWAY_VERSION\" >> \"$SLIPWAY_RELEASE/var/log/app/hooks.log\"",
                                  sharedDirectories: ["var/log/app"])
        try fx.release("1", service: service)
        try fx.release("2", service: service)
        let context = try fx.context()
        try fx.applyFull("1", context: context)
        _ = try NodeActivate.activate(app: fx.app, version: "1", context: context)
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: fx.layout.release("1") + "/var/log/app", isDirectory: &isDirectory) && isDirectory.boolValue)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fx.layout.release("1") + "/var/log/app").isEmpty,
                "the release's shared directory is an empty mount point on the host")
        try fx.applyDelta("2", base: "1", context: context)
        _ = try NodeActivate.activate(app: fx.app, version: "2", context: context)
        #expect(try String(contentsOfFile: fx.layout.shared + "/var/log/app/hooks.log", encoding: .utf8) == "start 1\nreload 2\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: fx.layout.release("2") + "/var/log/app").isEmpty)
        try fx.checkInvariant("after switches with a shared directory")
    }

    /// the node must catch a root it did not make instead of reporting it verified.
    @Test("an archive entry '.' cannot change the release root's mode or owner",
          .enabled(if: toolPath("tar") != nil && toolPath("xz") != nil && isRoot, "needs GNU tar, xz and root (a foreign owner)"))
    func archiveRootEntry() throws {
        let fx = try NodeFixture()
        defer { fx.remove() }
        let context = try fx.context()

        /// A release of `version` packed by GNU tar with the tree's root as `./`, its mode and
        /// owner as given, and a manifest of the tree (which has no root entry).
        func landRelease(_ version: String, rootMode: mode_t, rootOwner: uid_t) throws -> NodeApply.Result {
            let tree = try fx.tree(version)
            chmod(tree, rootMode)
            chown(tree, rootOwner, rootOwner)
            let archive = fx.dir.sub("gnu-\(version).tar.xz")
            try runChecked("tar", ["--numeric-owner", "-C", tree, "-cJf", archive, "."])
            let listing = try runChecked("tar", ["-tf", archive]).out
            #expect(listing.split(separator: "\n").first == "./", "the archive starts with its root entry: \(listing)")
            let hash = try FileHasher.sha256(path: archive)
            let manifest = ReleaseManifest(name: fx.app, version: version, created: 1_700_000_000, compression: .xz,
                                           archive: .init(sha256: hash.hex, size: hash.size), tarSize: hash.size * 20,
                                           entries: try TreeWalker.records(root: tree))
            #expect(!manifest.entries.contains { $0.path.bytes.isEmpty || $0.path.description == "." })
            let manifestPath = fx.dir.sub("gnu-\(version).json")
            try manifest.encoded().write(to: URL(fileURLWithPath: manifestPath))
            return try NodeApply.apply(.init(source: .full(archive: archive), manifestPath: manifestPath), context: context)
        }

        // A root entry like the node's own root (0755, root's) lands: `./` is no error itself.
        #expect(try landRelease("1", rootMode: 0o755, rootOwner: 0).outcome == .landed)
        var st = stat()
        #expect(lstat(fx.layout.release("1"), &st) == 0 && st.st_mode & 0o7777 == 0o755 && st.st_uid == 0)

        // 0777 and uid 1000 on `./`: refused, nothing landed.
        do {
            let result = try landRelease("2", rootMode: 0o777, rootOwner: 1000)
            var landed = stat()
            _ = lstat(fx.layout.release("2"), &landed)
            Issue.record("landed (\(result.outcome)) with a release root of mode \(String(landed.st_mode & 0o7777, radix: 8)), uid \(landed.st_uid)")
        } catch {
            #expect("\(error)".contains("release root"), "\(error)")
        }
        #expect(!exists(fx.layout.release("2")))
        #expect(try context.backend.landedVersions(layout: fx.layout) == ["1"])
        let hidden = try FileManager.default.contentsOfDirectory(atPath: fx.layout.releases).filter { $0.hasPrefix(".") }
        #expect(hidden.isEmpty, "leftovers: \(hidden)")
    }

    /// Issue 18: a full apply hashes each file as it writes it and does not read the tree
    /// back; the check must still catch content that is not the manifest's, and holes of a
    /// sparse file must count as zeros. `verify_landed` reads it all back and agrees.
    @Test("apply checks each file's bytes as written: a file unlike its manifest entry is refused; sparse files land; verify_landed agrees",
          .enabled(if: toolPath("tar") != nil && toolPath("xz") != nil, "needs GNU tar and xz"))
    func verifiedAsWritten() throws {
        let fx = try NodeFixture()
        defer { fx.remove() }

        /// GNU tar's archive of `version`'s tree (sparse files kept sparse), with a manifest
        /// of the tree as it was before `edit` changed it.
        func publish(_ version: String, edit: (String) throws -> Void = { _ in }) throws -> (archive: String, manifest: String) {
            let tree = try fx.tree(version)
            chmod(tree, 0o755)
            // 8 MiB with two written islands: a sparse file in the archive.
            let sparse = open(tree + "/usr/bin/sparse", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            try #require(sparse >= 0)
            #expect(ftruncate(sparse, 8 << 20) == 0)
            #expect(pwrite(sparse, "island one", 10, 1 << 20) == 10)
            #expect(pwrite(sparse, "island two", 10, 5 << 20) == 10)
            close(sparse)
            let entries = try TreeWalker.records(root: tree)
            try edit(tree)
            let archive = fx.dir.sub("gnu-\(version).tar.xz")
            try runChecked("tar", ["--numeric-owner", "--sparse", "-C", tree, "-cJf", archive, "."])
            let hash = try FileHasher.sha256(path: archive)
            let manifest = ReleaseManifest(name: fx.app, version: version, created: 1_700_000_000, compression: .xz,
                                           archive: .init(sha256: hash.hex, size: hash.size), tarSize: 16 << 20, entries: entries)
            let manifestPath = fx.dir.sub("gnu-\(version).json")
            try manifest.encoded().write(to: URL(fileURLWithPath: manifestPath))
            return (archive, manifestPath)
        }
        for verifyLanded in [false, true] {
            let context = try fx.context { $0.verifyLanded = verifyLanded }
            let v1 = verifyLanded ? "3" : "1", v2 = verifyLanded ? "4" : "2"
            // A sound release, sparse file included, lands.
            let sound = try publish(v1)
            let listing = try runChecked("tar", ["-tvf", sound.archive]).out
            #expect(listing.contains("usr/bin/sparse"), Comment(rawValue: listing))
            let landed = try NodeApply.apply(.init(source: .full(archive: sound.archive), manifestPath: sound.manifest), context: context)
            #expect(landed.outcome == .landed)
            let copy = try Data(contentsOf: URL(fileURLWithPath: fx.layout.release(v1) + "/usr/bin/sparse"))
            #expect(copy.count == 8 << 20 && copy[(1 << 20)..<((1 << 20) + 10)] == Data("island one".utf8))

            // The archive's hash is the manifest's, but one file's bytes are not its entry's
            // (same size): refused, naming the file, nothing landed.
            let forged = try publish(v2) { tree in
                try Data("#!/bin/sh\necho app 6+\n".utf8).write(to: URL(fileURLWithPath: tree + "/usr/bin/app"))
            }
            do {
                let result = try NodeApply.apply(.init(source: .full(archive: forged.archive), manifestPath: forged.manifest), context: context)
                Issue.record("landed (\(result.outcome)) a file whose bytes are not its manifest's (verify_landed \(verifyLanded))")
            } catch {
                #expect("\(error)".contains("usr/bin/app: sha256 differ"), "\(error)")
            }
            #expect(!exists(fx.layout.release(v2)))
            let hidden = try FileManager.default.contentsOfDirectory(atPath: fx.layout.releases).filter { $0.hasPrefix(".") }
            #expect(hidden.isEmpty, "leftovers: \(hidden)")
        }
    }

    /// Issue 13: an upload that outgrows its announced `--size` must not stay in incoming/.
    @Test("node receive refuses and removes an upload larger than its --size")
    func receiveOversize() throws {
        let fx = try NodeFixture()
        defer { fx.remove() }
        let context = try fx.context()
        func send(_ data: Data, offset: UInt64, size: UInt64) throws -> NodeReceive.Result {
            let chunk = fx.dir.sub("chunk-\(UUID().uuidString)")
            try data.write(to: URL(fileURLWithPath: chunk))
            let input = open(chunk, O_RDONLY | O_CLOEXEC)
            defer { close(input) }
            return try NodeReceive.receive(app: fx.app, fileName: "9.tar.xz", from: input, offset: offset,
                                           size: size, sha256: nil, context: context)
        }
        let path = fx.layout.incoming + "/9.tar.xz"

        // 3 MiB announced as 1 MiB (several reads of the input).
        do {
            let result = try send(Data(randomBytes(3 << 20)), offset: 0, size: 1 << 20)
            Issue.record("accepted \(result.bytes) bytes against --size \(1 << 20)")
        } catch {
            #expect("\(error)".contains("more than the announced --size"), "\(error)")
        }
        #expect(!exists(path), "the oversized upload was left in incoming/ (\(lstatBytes(ArchivePath(path))?.st_size ?? 0) bytes)")

        // A partial upload, then a resume whose announced size is smaller than what is there.
        let partial = try send(Data(randomBytes(100)), offset: 0, size: 200)
        #expect(!partial.complete && partial.bytes == 100)
        do {
            let result = try send(Data(), offset: 100, size: 50)
            Issue.record("accepted a resume at 100 against --size 50 (\(result.bytes) bytes)")
        } catch {
            #expect("\(error)".contains("--size 50"), "\(error)")
        }
        #expect(!exists(path), "an upload larger than its --size was left in incoming/")
    }
}

enum NodeFilesForTest {
    static func readLink(_ path: String) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: path)
    }
}
