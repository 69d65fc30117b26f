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

extension BuildTests {
    /// SIGINT to the real `slipway build` while it works: exit status 130, and nothing left —
    /// no process in the tree, no mount, no work directory, no store entry, no cache entry.
    @Suite("slipway build: interrupted")
    struct Interrupted {
        /// Paths below `directory` (one level) whose name starts with `prefix`.
        static func entries(_ directory: String, prefix: String = "") -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix(prefix) }
        }

        @Test(.needs(.build("apt-get", "dpkg-deb"), .builtSlipway))
        func duringARunStep() throws {
            let slipway = try #require(builtSlipway)
            let temp = try TempDir("slipway-build-sigint")
            defer { temp.remove() }
            // A run step that says it started, then sleeps well past the test.
            _ = try writeRecipe("""
                packages = ["busybox-static"]
                [release]
                name = "interrupted"
                version = "1"
                [base]
                type = "scratch"
                [[run]]
                name = "long"
                shell = ["/bin/busybox", "sh"]
                command = "echo started > /started; exec /bin/busybox sleep 2947"
                """, named: "interrupted.toml", in: temp.path)
            let cache = temp.sub("cache")
            let child = try NodeChild(slipway, ["build", temp.sub("interrupted.toml"), "--store", temp.sub("store"), "--cache-dir", cache])
            let started = waitFor(seconds: 300) {
                Self.entries(cache + "/work", prefix: "build-").contains { FileManager.default.fileExists(atPath: "\(cache)/work/\($0)/tree/started") }
            }
            #expect(started, "the run step started: \(child.stderr.suffix(2000))")
            guard started else { return }
            #expect(!mountsUnder(cache + "/work").isEmpty, "the tree has /proc, /sys and /dev mounted during the step")
            #expect(!processesInside(cache + "/work").isEmpty, "the step runs in the tree")

            child.signal(SIGINT)
            let status = child.wait(seconds: 60)
            #expect(status == 130, "exit status \(String(describing: status)): \(child.stderr.suffix(2000))")
            #expect(processesInside(temp.path).isEmpty, "the step's processes are gone")
            #expect(mountsUnder(temp.path).isEmpty, "nothing stays mounted")
            #expect(Self.entries(cache + "/work").isEmpty, "the work directory is removed")
            #expect(!FileManager.default.fileExists(atPath: temp.sub("store/interrupted/1")), "no store entry")
            #expect(Self.entries(temp.sub("store/interrupted")).filter { $0.hasPrefix(".") }.isEmpty, "no half-written release")
            #expect(!child.stderr.contains("build stage"), "an interrupt is not reported as a failed stage: \(child.stderr.suffix(1000))")
        }

        /// SIGINT while mmdebstrap bootstraps into the cache: its partial tree goes too, and no
        /// cache entry exists afterwards.
        @Test(.needs(.build("mmdebstrap"), .builtSlipway))
        func duringTheBootstrap() throws {
            let slipway = try #require(builtSlipway)
            let temp = try TempDir("slipway-build-sigint-base")
            defer { temp.remove() }
            _ = try writeRecipe("""
                [release]
                name = "interrupted-base"
                version = "1"
                [base]
                type = "debian"
                suite = "bookworm"
                """, named: "base.toml", in: temp.path)
            let cache = temp.sub("cache")
            let bases = cache + "/bases"
            let child = try NodeChild(slipway, ["build", temp.sub("base.toml"), "--store", temp.sub("store"), "--cache-dir", cache])
            // Interrupt once dpkg, chrooted into the partial tree, installs the essential
            // packages (their file lists appear).
            let unpacking = waitFor(seconds: 300) {
                Self.entries(bases, prefix: ".partial-").contains { Self.entries("\(bases)/\($0)/var/lib/dpkg/info").contains { $0.hasSuffix(".list") } }
            }
            #expect(unpacking, "mmdebstrap started: \(child.stderr.suffix(2000))")
            guard unpacking else { return }
            print("interrupting mmdebstrap with \(processesInside(bases).count) process(es) in the partial tree and \(mountsUnder(bases).count) mount(s)")
            child.signal(SIGINT)
            let status = child.wait(seconds: 60)
            #expect(status == 130, "exit status \(String(describing: status)): \(child.stderr.suffix(2000))")
            #expect(processesInside(temp.path).isEmpty, "nothing runs in the partial tree")
            #expect(mountsUnder(temp.path).isEmpty, "nothing stays mounted")
            #expect(Self.entries(bases, prefix: ".partial-").isEmpty, "the partial bootstrap is removed")
            #expect(Self.entries(bases).filter { $0.hasSuffix(".json") }.isEmpty, "no cache entry")
            #expect(Self.entries(cache + "/work").isEmpty, "the work directory is removed")
            #expect(!FileManager.default.fileExists(atPath: temp.sub("store/interrupted-base")), "no store entry")
        }
    }
}
