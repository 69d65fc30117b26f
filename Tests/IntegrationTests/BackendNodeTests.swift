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
import SlipwayTestSupport

/// The node operations end to end on the btrfs and ZFS backends (apply, delta, activate,
/// rollback, prune, schroot), and kill -9 of `slipway node apply` at seeded moments.
@Suite("Node on btrfs and ZFS", .serialized)
struct BackendNodeTests {
    // MARK: End to end

    @Test("btrfs: apply, delta, activate, rollback, prune; current and schroot follow", .needs(.btrfs, .schroot))
    func btrfsEndToEnd() throws {
        let fx = try NodeFixture("slipway-node-btrfs")
        defer { fx.remove() }
        let loop = try mountBtrfs(at: fx.root, fx: fx)
        defer { loop.tearDown() }
        try endToEnd(fx, backend: .btrfs) { _ in }
    }

    @Test("zfs: apply, delta, activate, rollback, prune; current and schroot follow", .needs(.zfs, .schroot))
    func zfsEndToEnd() throws {
        let fx = try NodeFixture("slipway-node-zfs")
        defer { fx.remove() }
        try SharedZFSFuse.shared.acquire()
        defer { SharedZFSFuse.shared.release() }
        let pool = try ZFSTestPool.make(in: fx.dir)
        defer { pool.destroy() }
        try endToEnd(fx, backend: .zfs) { $0.backendTables["zfs"] = ["dataset": "\(pool.name)/slipway"] }
        // Pruning 1 and 2 promoted their clones: only 3 and 4 remain, each with its snapshot.
        let snapshots = try runChecked("zfs", ["list", "-H", "-t", "snapshot", "-o", "name", "-r", pool.name]).out
        #expect(snapshots.split(separator: "\n").sorted() == ["\(pool.name)/slipway/web/3@landed-3", "\(pool.name)/slipway/web/4@landed-4"])
    }

    private func endToEnd(_ fx: NodeFixture, backend: BackendKind, settings: (inout NodeSettings) -> Void) throws {
        for version in ["1", "2", "3", "4"] { try storeRelease(fx, version, compression: version >= "3" ? .zstd : .xz) }
        let chrootDirectory = fx.dir.sub("chroot.d")
        let context = try fx.context {
            $0.backend = backend
            $0.schrootEnabled = true
            $0.schrootDirectory = chrootDirectory
            settings(&$0)
        }
        let unique = uniqueApp("e2e")

        func expectCurrent(_ version: String, _ label: String) throws {
            #expect(fx.current == version, "\(label): current is \(fx.current ?? "absent")")
            let manifest = try fx.store.release(name: fx.app, version: version).manifest
            let diff = ManifestDiff(old: manifest.entries, new: try TreeWalker.records(root: fx.layout.current + "/"))
            #expect(diff.isEmpty, "\(label): current differs from its manifest: \(diff)")
            #expect(try context.backend.landedVersions(layout: fx.layout).contains(version))
            #expect(try schrootOutput(fx, chrootDirectory: chrootDirectory, unique: unique) == version, "\(label): schroot")
            let hidden = try FileManager.default.contentsOfDirectory(atPath: fx.layout.releases)
                .filter { $0.hasPrefix(".") && $0 != ".schroot-sessions" }
            #expect(hidden.isEmpty, "\(label): leftovers \(hidden)")
        }

        try fx.applyFull("1", context: context)
        _ = try NodeActivate.activate(app: fx.app, version: "1", context: context)
        try expectCurrent("1", "after activating 1")
        #expect(isReadOnly(fx.layout.release("1")))

        try fx.applyDelta("2", base: "1", context: context)
        _ = try NodeActivate.activate(app: fx.app, version: "2", context: context)
        try expectCurrent("2", "after activating the delta 2")

        _ = try NodeRollback.rollback(app: fx.app, context: context)
        try expectCurrent("1", "after rollback")
        _ = try NodeActivate.activate(app: fx.app, version: "2", context: context)

        // 3 and 4 are zstd releases: their deltas are zstd too (ReleaseDelta.compression). An
        // xz delta an older slipway left beside it goes when the zstd one is made.
        let staleDelta = ReleaseDelta.archivePath(store: fx.store, name: fx.app, from: "2", to: "3", compression: .xz)
        try FileManager.default.createDirectory(atPath: (staleDelta as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data("stale".utf8).write(to: URL(fileURLWithPath: staleDelta))
        try fx.applyDelta("3", base: "2", context: context)
        #expect(!FileManager.default.fileExists(atPath: staleDelta), "the older xz delta is still there")
        let zstdDelta = ReleaseDelta.archivePath(store: fx.store, name: fx.app, from: "2", to: "3", compression: .zstd)
        #expect(zstdDelta.hasSuffix("/deltas/2.tar.zst"))
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: zstdDelta)).prefix(4)) == [0x28, 0xB5, 0x2F, 0xFD], "not zstd")
        _ = try NodeActivate.activate(app: fx.app, version: "3", context: context)
        try expectCurrent("3", "after activating the zstd delta 3")
        try fx.applyDelta("4", base: "3", context: context)
        _ = try NodeActivate.activate(app: fx.app, version: "4", context: context)
        // 1 and 2 are older than the previous (3): pruned, though 2, 3 and 4 are clones of them.
        _ = try NodePrune.prune(app: fx.app, keep: 1, context: context)
        #expect(try context.backend.landedVersions(layout: fx.layout) == ["3", "4"])
        try expectCurrent("4", "after prune")
        _ = try NodeRollback.rollback(app: fx.app, context: context)
        try expectCurrent("3", "after rollback past the pruned base")
    }

    // MARK: A full file system

    @Test("btrfs: ENOSPC during apply is a clear error; 1 stays current, no staging subvolume is left", .needs(.btrfs))
    func btrfsFull() throws {
        let fx = try NodeFixture("slipway-enospc-btrfs")
        defer { fx.remove() }
        // A 32 MiB btrfs in mixed mode (data and metadata share chunks, as mkfs.btrfs does for small disks).
        let loop = try mountBtrfs(at: fx.root, fx: fx, size: "32M", mixed: true)
        defer { loop.tearDown() }
        let context = try fx.context { $0.backend = .btrfs }
        try fx.expectFullDiskKeepsOne(context: context, big: 48 << 20)
        let subvolumes = try runChecked("btrfs", ["subvolume", "list", "-o", fx.layout.releases]).out
        #expect(!subvolumes.contains(".partial") && !subvolumes.contains(".staging"), "staging subvolumes left: \(subvolumes)")
    }

    @Test("zfs: a full dataset (quota) during apply is a clear error; 1 stays current, no staging dataset is left", .needs(.zfs))
    func zfsFull() throws {
        let fx = try NodeFixture("slipway-enospc-zfs")
        defer { fx.remove() }
        try SharedZFSFuse.shared.acquire()
        defer { SharedZFSFuse.shared.release() }
        // The releases' parent dataset is full at its quota (EDQUOT), as an app's dataset with a
        // quota is on a farm. Filling a whole pool instead once killed zfs-fuse itself (a userspace
        // daemon short of its slop space), taking every ZFS test running beside this one with it.
        let pool = try ZFSTestPool.make(in: fx.dir, size: "256M")
        defer { pool.destroy() }
        try runChecked("zfs", ["create", "-o", "mountpoint=none", "-o", "quota=40M", "\(pool.name)/slipway"])
        let context = try fx.context { $0.backend = .zfs; $0.backendTables["zfs"] = ["dataset": "\(pool.name)/slipway"] }
        // `node status` reports the quota's room as the space a version may take (deploy --plan).
        let space = try #require(try NodeStatus.read(app: fx.app, context: context).space)
        #expect(space.location == "ZFS dataset \(pool.name)/slipway" && space.availableBytes <= 40 << 20 && space.availableBytes > 30 << 20, "\(space)")
        try fx.expectFullDiskKeepsOne(context: context, big: 64 << 20)
        let datasets = try runChecked("zfs", ["list", "-H", "-o", "name,slipway:staging", "-r", pool.name]).out
        #expect(!datasets.contains("partial-") && !datasets.contains("\ton"), "staging datasets left: \(datasets)")
    }

    // MARK: Crash injection

    @Test("btrfs: kill -9 of node apply at seeded moments leaves the old version or the new one", .needs(.btrfs, .nodeBinary))
    func btrfsCrash() throws {
        let binary = try #require(nodeBinary)
        let fx = try NodeFixture("slipway-crash-btrfs")
        defer { fx.remove() }
        let loop = try mountBtrfs(at: fx.root, fx: fx)
        defer { loop.tearDown() }
        try crashTrials(fx, binary: binary, config: "backend = \"btrfs\"\nroot = \"\(fx.root)\"\n")
    }

    @Test("zfs: kill -9 of node apply at seeded moments leaves the old version or the new one", .needs(.zfs, .nodeBinary))
    func zfsCrash() throws {
        let binary = try #require(nodeBinary)
        let fx = try NodeFixture("slipway-crash-zfs")
        defer { fx.remove() }
        try SharedZFSFuse.shared.acquire()
        defer { SharedZFSFuse.shared.release() }
        let pool = try ZFSTestPool.make(in: fx.dir)
        defer { pool.destroy() }
        try crashTrials(fx, binary: binary, config: "backend = \"zfs\"\nroot = \"\(fx.root)\"\n[zfs]\ndataset = \"\(pool.name)/slipway\"\n")
        let datasets = try runChecked("zfs", ["list", "-H", "-o", "name,slipway:staging", "-r", pool.name]).out
        #expect(!datasets.contains("partial-") && !datasets.contains("\ton"), "staging datasets left: \(datasets)")
    }

    /// SLIPWAY_CRASH_SEED and SLIPWAY_BACKEND_CRASH_TRIALS reproduce or widen a run.
    private func crashTrials(_ fx: NodeFixture, binary: String, config: String) throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["SLIPWAY_CRASH_SEED"].flatMap(UInt64.init) ?? 20_240_602
        let trials = environment["SLIPWAY_BACKEND_CRASH_TRIALS"].flatMap(Int.init) ?? 30
        var random = SeededGenerator(seed: seed)
        let configFile = fx.dir.sub("node.toml")
        try config.write(toFile: configFile, atomically: true, encoding: .utf8)
        let node = ["--config", configFile, "--json"]
        try fx.release("1", bulk: 120)
        let r2 = try fx.release("2", bulk: 120, big: 1 << 20)
        let delta = try ReleaseDelta.make(store: fx.store, from: .init(name: fx.app, version: "1"), to: .init(name: fx.app, version: "2"))
        var settings = try NodeSettings.parse(config)
        settings.lockTimeout = 10
        let context = try NodeContext(settings: settings)
        try fx.applyFull("1", context: context)
        _ = try NodeActivate.activate(app: fx.app, version: "1", context: context)

        func applyArguments(full: Bool) throws -> [String] {
            // Back to "1 landed and current, 2 absent".
            if try context.backend.landedVersions(layout: fx.layout).contains("2") {
                if fx.current == "2" { _ = try NodeActivate.activate(app: fx.app, version: "1", context: context) }
                try context.backend.remove(version: "2", layout: fx.layout)
            }
            _ = try NodeRecovery.recover(app: fx.app, context: context)
            return full
                ? ["node", "apply", "--archive", r2.archivePath, "--manifest", r2.manifestPath] + node
                : ["node", "apply", "--delta", delta.archivePath, "--base", "1", "--manifest", r2.manifestPath] + node
        }
        func run(_ arguments: [String]) -> (status: Int32, stderr: String) {
            guard let child = try? NodeChild(binary, arguments) else { return (-1, "could not start \(arguments)") }
            return child.wait()
        }
        func checkInvariant(_ label: String) throws {
            let current = try #require(fx.current, "\(label): current vanished")
            let manifest = try fx.store.release(name: fx.app, version: current).manifest
            let diff = ManifestDiff(old: manifest.entries, new: try TreeWalker.records(root: fx.layout.current + "/"))
            #expect(diff.isEmpty, "\(label): current (\(current)) differs from its manifest: \(diff)")
        }

        var durations: [Double] = []
        for full in [true, false] {
            let arguments = try applyArguments(full: full)
            let start = Date()
            let result = run(arguments)
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            durations.append(Date().timeIntervalSince(start))
        }
        // A trial whose apply ended before its kill (its time varies a lot on a loaded
        // machine) is drawn again, up to three times, with the time it just showed as the
        // window; each attempt is checked like any other (as NodeCrashTests does).
        var killedMidway = 0
        var leftovers = 0
        for trial in 0..<trials {
            let full = trial % 2 == 0
            for attempt in 0..<3 {
                let arguments = try applyArguments(full: full)
                let delay = Double.random(in: 0...(durations[full ? 0 : 1] * 1.1), using: &random)
                let (landed, status, elapsed) = try NodeChild.killed(binary, arguments, after: delay)
                if landed { killedMidway += 1 }
                if status == 0 { durations[full ? 0 : 1] = elapsed }
                let label = "trial \(trial).\(attempt) (seed \(seed), \(full ? "full" : "delta") apply killed after \(String(format: "%.3f", delay)) s)"
                try checkInvariant(label + " before recovery")
                let recovered = run(["node", "recover", "web"] + node)
                #expect(recovered.status == 0, "\(label): recover failed: \(recovered.stderr)")
                // The killed apply's children (zfs, btrfs, sync) that were still running.
                if recovered.stderr.contains("leftover process") { leftovers += 1 }
                try checkInvariant(label)
                // Recovery is idempotent: a second finds nothing to do.
                let second = try NodeRecovery.recover(app: fx.app, context: context)
                #expect(second.removed.isEmpty && second.journalAdded.isEmpty && second.journalDropped.isEmpty && second.problems.isEmpty,
                        "\(label): a second recover still did something: \(second)")
                let hidden = try FileManager.default.contentsOfDirectory(atPath: fx.layout.releases).filter { $0.hasPrefix(".") }
                #expect(hidden.isEmpty, "\(label): leftovers after recover: \(hidden)")
                let landedVersions = Set(try context.backend.landedVersions(layout: fx.layout))
                let journaled = Set(try NodeState.load(fx.layout).versions)
                #expect(landedVersions == journaled, "\(label): journal \(journaled.sorted()) ≠ landed \(landedVersions.sorted())")
                // Whatever landed is whole: apply again (a no-op or a full landing) and switch to it.
                let again = run(try applyArguments(full: true))
                #expect(again.status == 0, "\(label): apply after the crash failed: \(again.stderr)")
                _ = try NodeActivate.activate(app: fx.app, version: "2", context: context)
                try checkInvariant(label + " after switching to 2")
                if landed || status != 0 { break }
            }
        }
        print("backend crash injection: \(trials) trials, \(killedMidway) killed mid-apply, \(leftovers) left children that recovery ended (seed \(seed))")
        #expect(killedMidway >= trials / 3, "too few kills landed inside apply; the fixture is too fast")
    }

    // MARK: Helpers

    /// A btrfs loop filesystem mounted as the node root itself.
    private func mountBtrfs(at root: String, fx: NodeFixture, size: String = "1G", mixed: Bool = false) throws -> BtrfsLoop {
        let loop = BtrfsLoop(image: fx.dir.sub("btrfs.img"), mount: root)
        try runChecked("truncate", ["-s", size, loop.image])
        try runChecked("mkfs.btrfs", ["-q"] + (mixed ? ["--mixed"] : []) + [loop.image])
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try runChecked("mount", ["-o", "loop", loop.image, root])
        return loop
    }

    /// A release of the fixture's app whose tree schroot can enter (cat and its libraries).
    private func storeRelease(_ fx: NodeFixture, _ version: String, compression: ArchiveCompression = .xz) throws {
        let tree = fx.dir.sub("schroot-tree-\(version)")
        try makeReleaseTree(at: tree, app: fx.app, version: version)
        defer { try? FileManager.default.removeItem(atPath: tree) }
        _ = try fx.store.add(tree: tree, name: fx.app, version: version, created: 1_700_000_000,
                             configuration: .init(compression: compression, level: 1))
    }

    /// Copies the chroot.d file activation wrote into the real /etc/schroot/chroot.d under a
    /// unique chroot name, enters it and returns what `cat /etc/web-version` printed.
    private func schrootOutput(_ fx: NodeFixture, chrootDirectory: String, unique: String) throws -> String {
        let written = try String(contentsOfFile: SchrootConfig(directory: chrootDirectory).file(for: fx.layout), encoding: .utf8)
        let name = SchrootConfig.chrootName(app: unique)
        let text = written.replacingOccurrences(of: "[\(SchrootConfig.chrootName(app: fx.app))]", with: "[\(name)]")
        let real = "/etc/schroot/chroot.d/\(name)"
        try text.write(toFile: real, atomically: true, encoding: .utf8)
        defer { unlink(real) }
        let result = try IntegrationTests.run("schroot", ["-d", "/", "-c", name, "--", "cat", "/etc/\(fx.app)-version"])
        guard result.ok else { throw TestSupportError.commandFailed("schroot -c \(name)", result.status, result.err) }
        return result.out.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
