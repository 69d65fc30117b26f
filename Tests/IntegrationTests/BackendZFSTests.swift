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

/// The ZFS backend under zfs-fuse (one daemon per test process, see SharedZFSFuse), each test
/// with its own pool on a file.
@Suite("ZFS backend", .serialized)
struct BackendZFSTests {
    @Test("a committed version is a read-only dataset with its landed snapshot; deltas are clones; prune promotes", .needs(.zfs))
    func lifecycle() throws {
        try withZFSPool { dir, pool in
            let layout = NodeLayout(root: dir.sub("root"), app: "web")
            let backend = try ZFSBackend(settings: ["dataset": "\(pool.name)/slipway"])
            let v1 = try packRelease(in: dir, app: "web", version: "1.0")

            let staging = try backend.createStaging(.empty("1.0"), layout: layout)
            #expect(staging == layout.partial("1.0"))
            let ds1 = "\(pool.name)/slipway/web/1.0"
            // Staging is the version's own dataset, marked until its commit (no rename).
            #expect(try pool.property("mountpoint", ds1) == staging)
            #expect(try pool.property("slipway:staging", ds1) == "on")
            #expect(try backend.landedVersions(layout: layout) == [])
            _ = try ArchiveExtractor.extract(archive: v1, into: staging)
            try backend.commit(version: "1.0", layout: layout)
            #expect(try pool.property("slipway:staging", ds1) == "-")

            #expect(!exists(layout.partial("1.0")))
            #expect(try backend.landedVersions(layout: layout) == ["1.0"])
            #expect(try pool.property("mountpoint", ds1) == layout.release("1.0"))
            #expect(try pool.property("readonly", ds1) == "on")
            #expect(try pool.property("mounted", ds1) == "yes")
            #expect(try runChecked("zfs", ["list", "-H", "-o", "name", "\(ds1)@landed-1.0"]).ok)
            #expect(isReadOnly(layout.release("1.0")))
            try expectTreeMatchesArchive(layout.release("1.0"), v1, "landed 1.0")
            #expect(throws: ZFSBackendError.self) { try backend.createStaging(.empty("1.0"), layout: layout) }

            // A delta: a clone of the base's landed snapshot, writable, isolated from the base.
            let staging2 = try backend.createStaging(.copy("2.0", of: "1.0"), layout: layout)
            #expect(try pool.property("origin", "\(pool.name)/slipway/web/2.0") == "\(ds1)@landed-1.0")
            #expect(try pool.property("slipway:staging", "\(pool.name)/slipway/web/2.0") == "on")
            try "2.0\n".write(toFile: staging2 + "/etc/web-version", atomically: false, encoding: .utf8)
            try FileManager.default.removeItem(atPath: staging2 + "/srv/only-in-1.0")
            try backend.commit(version: "2.0", layout: layout)
            let ds2 = "\(pool.name)/slipway/web/2.0"
            #expect(try pool.property("origin", ds2) == "\(ds1)@landed-1.0")
            try expectTreeMatchesArchive(layout.release("1.0"), v1, "base after the delta")
            #expect(try String(contentsOfFile: layout.release("2.0") + "/etc/web-version", encoding: .utf8) == "2.0\n")

            // A third version cloned from the same base, then prune the base: promotes.
            _ = try backend.createStaging(.copy("3.0", of: "1.0"), layout: layout)
            try backend.commit(version: "3.0", layout: layout)
            #expect(try backend.landedVersions(layout: layout) == ["1.0", "2.0", "3.0"])
            try backend.remove(version: "1.0", layout: layout)
            #expect(try backend.landedVersions(layout: layout) == ["2.0", "3.0"])
            #expect(!exists(layout.release("1.0")))
            #expect(try String(contentsOfFile: layout.release("3.0") + "/etc/web-version", encoding: .utf8) == "1.0\n")
            #expect(try String(contentsOfFile: layout.release("2.0") + "/etc/web-version", encoding: .utf8) == "2.0\n")
            // Then the promoted one, which now holds the snapshot 3.0 depends on.
            try backend.remove(version: "2.0", layout: layout)
            #expect(try backend.landedVersions(layout: layout) == ["3.0"])
            #expect(exists(layout.release("3.0") + "/bin/cat"))
            let snapshots = try runChecked("zfs", ["list", "-H", "-t", "snapshot", "-o", "name", "-r", "\(pool.name)/slipway"]).out
            #expect(snapshots.split(separator: "\n").map(String.init) == ["\(pool.name)/slipway/web/3.0@landed-3.0"])
            try backend.remove(version: "2.0", layout: layout)  // already gone: a no-op
        }
    }

    @Test("recover destroys staging datasets, clears the mark of a landed one, and finishes an older slipway's commit killed after its rename", .needs(.zfs))
    func recover() throws {
        try withZFSPool { dir, pool in
            let layout = NodeLayout(root: dir.sub("root"), app: "web")
            let backend = try ZFSBackend(settings: ["zfs_dataset": "\(pool.name)/slipway"])
            let v1 = try packRelease(in: dir, app: "web", version: "1.0")
            _ = try ArchiveExtractor.extract(archive: v1, into: try backend.createStaging(.empty("1.0"), layout: layout))
            try backend.commit(version: "1.0", layout: layout)

            // Killed mid-extract: a staging clone and a staging dataset.
            let clone = try backend.createStaging(.copy("2.0", of: "1.0"), layout: layout)
            try "half\n".write(toFile: clone + "/half", atomically: false, encoding: .utf8)
            _ = try backend.createStaging(.empty("3.0"), layout: layout)
            // An older slipway's staging dataset, and its commit killed after the rename, before
            // readonly / mountpoint / snapshot.
            let app = "\(pool.name)/slipway/web"
            try runChecked("zfs", ["create", "-o", "mountpoint=\(layout.partial("5.0"))", "\(app)/partial-5.0"])
            try runChecked("zfs", ["create", "-o", "mountpoint=\(dir.sub("elsewhere"))", "\(app)/4.0"])
            try "4.0\n".write(toFile: dir.sub("elsewhere") + "/version", atomically: false, encoding: .utf8)
            // Killed after the snapshot, before the mark was cleared: landed.
            _ = try ArchiveExtractor.extract(archive: v1, into: try backend.createStaging(.empty("6.0"), layout: layout))
            try backend.commit(version: "6.0", layout: layout)
            try runChecked("zfs", ["set", "slipway:staging=on", "\(app)/6.0"])

            try backend.recover(layout: layout)
            try backend.recover(layout: layout)  // idempotent
            let datasets = try runChecked("zfs", ["list", "-H", "-o", "name", "-r", app]).out
            #expect(!datasets.contains("partial-") && !datasets.contains("/2.0") && !datasets.contains("/3.0"), "\(datasets)")
            let marked = try runChecked("zfs", ["list", "-H", "-o", "name,slipway:staging", "-r", app]).out
            #expect(!marked.contains("\ton"), "\(marked)")
            #expect(!exists(layout.partial("2.0")) && !exists(layout.partial("3.0")) && !exists(layout.partial("5.0")))
            #expect(try backend.landedVersions(layout: layout) == ["1.0", "4.0", "6.0"])
            #expect(try pool.property("readonly", "\(app)/4.0") == "on")
            #expect(try String(contentsOfFile: layout.release("4.0") + "/version", encoding: .utf8) == "4.0\n")
            try expectTreeMatchesArchive(layout.release("1.0"), v1, "landed 1.0 after recover")

            // Unmounted landed datasets (zfs-fuse restarted) are mounted again.
            try runChecked("zfs", ["umount", "\(app)/1.0"])
            try backend.recover(layout: layout)
            #expect(try pool.property("mounted", "\(app)/1.0") == "yes")
        }
    }

    @Test("a service keeps none of the machine's mounts: a dataset mounted when it started is remounted elsewhere at once; one a namespace holds is named",
          .needs(.zfs, .tools(["unshare", "nsenter", "chroot", "sleep", "nice"], root: true)))
    func serviceKeepsNoForeignMount() throws {
        try withZFSPool { dir, pool in
            // Mounted when the service starts, as another version's staging dataset may be.
            let foreign = "\(pool.name)/foreign"
            try runChecked("zfs", ["create", "-o", "mountpoint=\(dir.sub("foreign"))", foreign])
            let layout = NodeLayout(root: dir.sub("root"), app: "web")
            try makeReleaseTree(at: layout.release("1"), app: "web", version: "1")
            try runChecked("cp", ["-L", try #require(toolPath("sleep")), layout.release("1") + "/bin/sleep"])
            var settings = NodeSettings()
            settings.root = layout.root
            let context = try NodeContext(settings: settings)
            let spec = ServiceSpec(command: "exec /bin/sleep 300")
            let instance = try NodeService.start("1", spec: spec, port: 8080, layout: layout, context: context)
            defer { NodeService.stop("1", spec: spec, layout: layout, context: context) }
            // Until the launcher has exec'd the server in the release.
            let started = waitFor(seconds: 10) {
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(instance.pid)/root")) == layout.release("1")
            }
            try #require(started, "the service runs in its release: \(String(decoding: FileManager.default.contents(atPath: NodeService.logPath(layout, "1")) ?? Data(), as: UTF8.self))")
            // The whole namespace: the server's own mountinfo lists only what its chroot reaches.
            let mounts = try runChecked("nsenter", ["--target", "\(instance.pid)", "--mount", "cat", "/proc/self/mountinfo"]).out
                .split(separator: "\n").map { String($0.split(separator: " ")[4]) }
            #expect(!mounts.contains(dir.sub("foreign")), "the service's namespace kept \(dir.sub("foreign")): \(mounts)")
            #expect(mounts.contains(layout.release("1") + "/proc") && mounts.contains("/"), "\(mounts)")
            // What a landing's commit does: unmount, then mount read-only elsewhere. With the
            // copy kept alive in the service's namespace, zfs-fuse said "dataset is busy".
            try runChecked("zfs", ["umount", foreign])
            try runChecked("zfs", ["set", "mountpoint=\(dir.sub("moved"))", foreign])
            let remount = try run("zfs", ["mount", "-o", "ro", foreign])
            #expect(remount.ok, "\(remount.err)")

            // A namespace that keeps every mount (unshare alone) holds a staging dataset: the
            // commit waits, then names the holder instead of a bare "busy".
            let backend = try ZFSBackend(settings: ["dataset": "\(pool.name)/slipway"])
            let staging = try backend.createStaging(.empty("2"), layout: layout)
            try makeReleaseTree(at: staging, app: "web", version: "2")
            let holder = Process()
            holder.executableURL = URL(fileURLWithPath: try #require(toolPath("unshare")))
            holder.arguments = ["--mount", "--propagation", "private", "sleep", "120"]
            try holder.run()
            defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() } }
            let pinned = waitFor(seconds: 10) {
                ((try? String(contentsOfFile: "/proc/\(holder.processIdentifier)/mountinfo", encoding: .utf8)) ?? "").contains(staging)
                    && (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(holder.processIdentifier)/exe"))?.hasSuffix("sleep") == true
            }
            try #require(pinned)
            do {
                try backend.commit(version: "2", layout: layout)
                Issue.record("the commit of a dataset another namespace holds should fail")
            } catch let error as ZFSBackendError {
                #expect("\(error)".contains("another mount namespace") && "\(error)".contains("pid \(holder.processIdentifier) (sleep)"), "\(error)")
            }
            #expect(Mounts.holders(source: "\(pool.name)/slipway/web/2").map(\.pid) == [holder.processIdentifier])
            kill(holder.processIdentifier, SIGKILL)
            holder.waitUntilExit()
            // Nothing is lost: the landing is committed once the holder is gone.
            try backend.commit(version: "2", layout: layout)
            #expect(try backend.landedVersions(layout: layout) == ["2"])
            #expect(try String(contentsOfFile: layout.release("2") + "/etc/web-version", encoding: .utf8) == "2\n")
        }
    }

    @Test("bad settings fail clearly")
    func badSettings() throws {
        #expect(throws: ZFSBackendError.self) { try ZFSBackend(settings: [:]) }
        #expect(throws: ZFSBackendError.self) { try ZFSBackend(settings: ["dataset": "tank/x", "pool": "tank"]) }
    }

    @Test("a delta against a missing base, a missing pool and a version named like staging fail clearly", .needs(.zfs))
    func errors() throws {
        try withZFSPool { dir, pool in
            let layout = NodeLayout(root: dir.sub("root"), app: "web")
            let backend = try ZFSBackend(settings: ["dataset": "\(pool.name)/slipway"])
            do {
                _ = try backend.createStaging(.copy("2.0", of: "1.0"), layout: layout)
                Issue.record("a delta against a missing base should fail")
            } catch let error as ZFSBackendError {
                #expect("\(error)".contains("apply the full release"))
            }
            let missing = try ZFSBackend(settings: ["dataset": "nosuchpool\(UUID().uuidString.prefix(4))/slipway"])
            do {
                _ = try missing.createStaging(.empty("1.0"), layout: layout)
                Issue.record("a missing pool should fail")
            } catch let error as ZFSBackendError {
                #expect("\(error)".contains("does not exist"))
            }
            #expect(throws: ZFSBackendError.self) { try backend.createStaging(.empty("partial-1"), layout: layout) }
        }
    }

    @Test("schroot enters the version of a ZFS release (type=directory)", .needs(.zfs, .schroot))
    func schroot() throws {
        try withZFSPool { dir, pool in
            let app = uniqueApp("zf")
            let layout = NodeLayout(root: dir.sub("root"), app: app)
            let backend = try ZFSBackend(settings: ["dataset": "\(pool.name)/slipway"])
            let v1 = try packRelease(in: dir, app: app, version: "1.0")
            _ = try ArchiveExtractor.extract(archive: v1, into: try backend.createStaging(.empty("1.0"), layout: layout))
            try backend.commit(version: "1.0", layout: layout)
            let staging = try backend.createStaging(.copy("2.0", of: "1.0"), layout: layout)
            try "2.0\n".write(toFile: staging + "/etc/\(app)-version", atomically: false, encoding: .utf8)
            try backend.commit(version: "2.0", layout: layout)
            #expect(try schrootPrintsVersion(layout: layout, backend: backend, version: "2.0") == "2.0")
            #expect(try schrootPrintsVersion(layout: layout, backend: backend, version: "1.0") == "1.0")
        }
    }
}
