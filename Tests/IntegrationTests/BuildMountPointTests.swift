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

// Issue 13: a build mounts only on real directories inside its tree, and a killed build
// leaves nothing the next one cannot clean up.

/// Root and the tools a build's chroot session needs.
private let canMount = isRoot && ["chroot", "mount", "umount"].allSatisfy { toolPath($0) != nil }
/// Also the host's apt, to put busybox-static into a scratch tree (a shell for run steps).
private let canBuildBusybox = canMount && ["apt-get", "dpkg-deb"].allSatisfy { toolPath($0) != nil }
private let slipwayBinary = builtSlipway
private let needsRoot: Comment = "needs root and chroot, mount, umount (CI runs the tests as root; scripts/setup installs them)"
private let needsBusyboxBuild: Comment = "needs root, chroot, mount, umount, apt-get, dpkg-deb and a built slipway (swift build)"

/// Unmounts (lazily) whatever a failed check left mounted at or below `path`, deepest first.
private func unmountEverything(under path: String) {
    for point in mountsUnder(path).sorted(by: { $0.count > $1.count }) { _ = try? run("umount", ["-l", point]) }
}

/// A host directory with one marker file, which a build must leave exactly as it is.
private func makeHostDirectory(_ path: String) throws {
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    try Data("host\n".utf8).write(to: URL(fileURLWithPath: path + "/marker"))
}

private func hostDirectoryIsUntouched(_ path: String) -> Bool {
    (try? FileManager.default.contentsOfDirectory(atPath: path)) == ["marker"]
        && (try? String(contentsOfFile: path + "/marker", encoding: .utf8)) == "host\n"
}

extension BuildTests {
    @Suite("slipway build: mount points (issue 13)")
    struct MountPoints {
        /// A tree with /proc, /sys, /dev, /tmp as real directories.
        private func makeTree(_ tree: String) throws {
            for directory in ["proc", "sys", "dev", "tmp", "etc"] {
                try FileManager.default.createDirectory(atPath: tree + "/" + directory, withIntermediateDirectories: true)
            }
        }

        private func session(_ tree: String) -> ChrootSession {
            ChrootSession(tree: tree, runner: CommandRunner(), output: Output(verbosity: .quiet), sourceDateEpoch: 0)
        }

        @Test("a symlinked /proc, /sys or /dev is refused and nothing is mounted, on the host or in the tree",
              .enabled(if: canMount, needsRoot), arguments: ["/proc", "/sys", "/dev"])
        func sessionRefusesSymlinkedSystemDirectory(point: String) throws {
            let temp = try TempDir("slipway-mountpoint")
            defer { unmountEverything(under: temp.path); temp.remove() }
            let tree = temp.sub("tree"), host = temp.sub("host")
            try makeTree(tree)
            try makeHostDirectory(host)
            try FileManager.default.removeItem(atPath: tree + point)
            try FileManager.default.createSymbolicLink(atPath: tree + point, withDestinationPath: host)
            var chroot = session(tree)
            do {
                try chroot.mountSystem()
                Issue.record("mounting with \(point) → \(host) should have failed; mounted: \(mountsUnder(temp.path))")
            } catch {
                #expect("\(error)".contains("the tree's \(point) is a symlink to \(host)"), "\(error)")
            }
            #expect(mountsUnder(temp.path).isEmpty, "nothing is mounted on the host directory or left in the tree")
            #expect(hostDirectoryIsUntouched(host))
        }

        @Test("a read-only bind mount refuses a symlink on the way to its mount point",
              .enabled(if: canMount, needsRoot))
        func bindRefusesSymlinkedParent() throws {
            let temp = try TempDir("slipway-mountpoint-bind")
            defer { unmountEverything(under: temp.path); temp.remove() }
            let tree = temp.sub("tree"), host = temp.sub("host"), wheels = temp.sub("wheels")
            try makeTree(tree)
            try makeHostDirectory(host)
            try FileManager.default.createDirectory(atPath: wheels, withIntermediateDirectories: true)
            try FileManager.default.removeItem(atPath: tree + "/tmp")
            try FileManager.default.createSymbolicLink(atPath: tree + "/tmp", withDestinationPath: host)
            var chroot = session(tree)
            do {
                try chroot.bindReadOnly(wheels, at: "/tmp/slipway-venv/wheels")
                Issue.record("the bind mount through /tmp → \(host) should have failed; mounted: \(mountsUnder(temp.path))")
            } catch {
                #expect("\(error)".contains("the tree's /tmp is a symlink to \(host)"), "\(error)")
            }
            #expect(mountsUnder(temp.path).isEmpty)
            #expect(hostDirectoryIsUntouched(host), "nothing was created or mounted in the host directory")
        }

        @Test("on real directories: /proc, /sys, /dev mounted, missing mount points created, a read-only bind, all unmounted",
              .enabled(if: canMount, needsRoot))
        func sessionMountsOnRealDirectories() throws {
            let temp = try TempDir("slipway-mountpoint-ok")
            defer { unmountEverything(under: temp.path); temp.remove() }
            let tree = temp.sub("tree"), wheels = temp.sub("wheels")
            try FileManager.default.createDirectory(atPath: tree + "/etc", withIntermediateDirectories: true)
            try makeHostDirectory(wheels)
            var chroot = session(tree)
            try chroot.mountSystem()
            try chroot.bindReadOnly(wheels, at: "/tmp/slipway-venv/wheels")
            #expect(Set(mountsUnder(tree)) == Set(["/proc", "/sys", "/dev", "/tmp/slipway-venv/wheels"].map { tree + $0 }))
            #expect(FileManager.default.fileExists(atPath: tree + "/proc/self/mountinfo"))
            #expect(FileManager.default.fileExists(atPath: tree + "/dev/null"))
            #expect(FileManager.default.fileExists(atPath: tree + "/tmp/slipway-venv/wheels/marker"))
            #expect(!FileManager.default.createFile(atPath: tree + "/tmp/slipway-venv/wheels/new", contents: Data()), "the bind is read-only")
            try chroot.unmountAll()
            #expect(mountsUnder(temp.path).isEmpty)
            #expect(hostDirectoryIsUntouched(wheels))
        }

        /// The real `slipway build`: a scratch recipe whose [[files]] makes /dev, /proc or /sys
        /// a symlink to a host directory, and a run step, so that the chroot session mounts.
        /// While the build runs, mountinfo is watched for a mount on the host directory.
        @Test("slipway build fails naming the symlinked mount point, and mounts nothing on the host",
              .enabled(if: canBuildBusybox && slipwayBinary != nil, needsBusyboxBuild), arguments: ["dev", "proc", "sys"])
        func buildRefusesSymlinkedMountPoint(point: String) throws {
            let slipway = try #require(slipwayBinary)
            let temp = try TempDir("slipway-build-mountpoint")
            defer { unmountEverything(under: temp.path); temp.remove() }
            let host = temp.sub("host")
            try makeHostDirectory(host)
            try FileManager.default.createSymbolicLink(atPath: temp.sub("link"), withDestinationPath: host)
            _ = try writeRecipe("""
                packages = ["busybox-static"]
                [release]
                name = "mountpoint"
                version = "1"
                [base]
                type = "scratch"
                [[files]]
                source = "link"
                dest = "/\(point)"
                [[run]]
                name = "step"
                shell = ["/bin/busybox", "sh"]
                command = "echo ran"
                """, named: "mountpoint.toml", in: temp.path)
            let cache = temp.sub("cache")
            let child = try NodeChild(slipway, ["build", temp.sub("mountpoint.toml"), "--store", temp.sub("store"), "--cache-dir", cache])
            var seen: [String] = []
            let deadline = Date().addingTimeInterval(600)
            while child.process.isRunning, Date() < deadline {
                let now = mountsUnder(host)
                if !now.isEmpty { seen = now }
                usleep(2_000)
            }
            let (status, stderr) = child.wait()
            #expect(status == 1, "the build fails: status \(status), \(stderr.suffix(2000))")
            #expect(stderr.contains("build stage 'run' failed"), "\(stderr.suffix(2000))")
            #expect(stderr.contains("the tree's /\(point) is a symlink to \(host)"), "\(stderr.suffix(2000))")
            #expect(seen.isEmpty, "mounted on the host directory during the build: \(seen)")
            #expect(mountsUnder(temp.path).isEmpty, "nothing stays mounted")
            #expect(hostDirectoryIsUntouched(host))
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: cache + "/work")) ?? []).isEmpty, "the work directory is removed")
            #expect(!FileManager.default.fileExists(atPath: temp.sub("store/mountpoint/1")), "no release")
        }

        /// kill -9 leaves the run step running and /proc, /sys, /dev mounted in the tree (no
        /// exit hook runs); the next build with the same cache kills, unmounts and removes them.
        @Test("a build killed with -9 during a run step leaves nothing the next build cannot clean up",
              .enabled(if: canBuildBusybox && slipwayBinary != nil, needsBusyboxBuild))
        func killedBuildIsCleanedUpByTheNext() throws {
            let slipway = try #require(slipwayBinary)
            let temp = try TempDir("slipway-build-kill9")
            defer { unmountEverything(under: temp.path); temp.remove() }
            let recipe = try writeRecipe("""
                packages = ["busybox-static"]
                [release]
                name = "killed"
                version = "1"
                [base]
                type = "scratch"
                [[run]]
                name = "long"
                shell = ["/bin/busybox", "sh"]
                command = "if [ ! -e /second ]; then echo started > /started; exec /bin/busybox sleep 2947; fi"
                """, named: "killed.toml", in: temp.path)
            let cache = temp.sub("cache")
            let work = cache + "/work"
            let child = try NodeChild(slipway, ["build", temp.sub("killed.toml"), "--store", temp.sub("store"), "--cache-dir", cache])
            var killedWork = ""
            let started = waitFor(seconds: 300) {
                let found = Interrupted.entries(work, prefix: "build-").first { FileManager.default.fileExists(atPath: "\(work)/\($0)/tree/started") }
                killedWork = found.map { work + "/" + $0 } ?? ""
                return found != nil
            }
            #expect(started, "the run step started: \(child.stderr.suffix(2000))")
            guard started else { return }
            child.kill9()
            #expect(child.wait().status == 128 + SIGKILL)
            #expect(!mountsUnder(killedWork).isEmpty, "kill -9 leaves the tree's mounts (no exit hook runs)")
            #expect(!processesInside(killedWork).isEmpty, "and the run step, which outlives its build")

            // The next build: marked so that its own run step ends at once.
            try Data("second build\n".utf8).write(to: URL(fileURLWithPath: temp.sub("second")))
            let next = try writeRecipe(try String(contentsOfFile: temp.sub("killed.toml"), encoding: .utf8)
                .replacingOccurrences(of: "version = \"1\"", with: "version = \"2\"")
                .replacingOccurrences(of: "[[run]]", with: "[[files]]\nsource = \"second\"\ndest = \"/second\"\n[[run]]"),
                named: "next.toml", in: temp.path)
            #expect(recipe.release.version == "1" && next.release.version == "2")
            let summary = try build(next, store: temp.sub("store"), cache: cache)
            #expect(summary.outcome == .added)
            #expect(mountsUnder(temp.path).isEmpty, "no mount remains below the killed build's tree or the new one")
            #expect(processesInside(temp.path).isEmpty, "the killed build's run step is gone")
            #expect(!FileManager.default.fileExists(atPath: killedWork), "the killed build's work directory is removed")
            #expect(Interrupted.entries(work).isEmpty)
        }
    }
}
