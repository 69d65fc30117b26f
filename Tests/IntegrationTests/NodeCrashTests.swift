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

@Suite("Node: crash injection and a full disk (dir backend)")
struct NodeCrashTests {
    /// kill -9 of `slipway node apply|activate|rollback|prune|receive` at seeded random
    /// moments; after each, one more command runs and the invariant must hold, and a killed
    /// upload resumes from the offset the node reports. SLIPWAY_CRASH_SEED and
    /// SLIPWAY_CRASH_TRIALS reproduce or widen a run.
    @Test("kill -9 at random moments of apply, activate, rollback, prune, receive and fetch leaves the old or the new version",
          .needs(.nodeBinary, .nginxAndCurl))
    func crashInjection() throws {
        let binary = try #require(nodeBinary)
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["SLIPWAY_CRASH_SEED"].flatMap(UInt64.init) ?? 20_240_601
        let trials = environment["SLIPWAY_CRASH_TRIALS"].flatMap(Int.init) ?? 36
        var random = SeededGenerator(seed: seed)
        let fx = try NodeFixture()
        defer { fx.remove() }
        // Enough files that apply takes a while, so kills land inside it.
        try fx.release("1", bulk: 150)
        let r2 = try fx.release("2", bulk: 150, big: 2 << 20)
        // What prune removes: landed again before each prune trial.
        try fx.release("3", bulk: 150)
        let delta = try ReleaseDelta.make(store: fx.store, from: .init(name: fx.app, version: "1"), to: .init(name: fx.app, version: "2"))
        let context = try fx.context()
        try fx.applyFull("1", context: context)
        _ = try NodeActivate.activate(app: fx.app, version: "1", context: context)
        // fetch's origin: the store behind nginx, at 4 MB/s so a kill lands mid-transfer.
        let prefix = fx.dir.sub("nginx")
        try FileManager.default.createDirectory(atPath: prefix, withIntermediateDirectories: true)
        let server = try NginxServer(root: fx.store.root, prefix: prefix)
        defer { server.stop() }
        let archiveURL = String(r2.archivePath.dropFirst(fx.store.root.count))

        let node = ["--root", fx.root]
        func arguments(_ kind: Int, fullApply: Bool) throws -> [String] {
            switch kind {
            case 0:
                // apply needs 2 absent: go to 1 and drop 2.
                if fx.current == "2" { _ = try NodeActivate.activate(app: fx.app, version: "1", context: context) }
                try DirBackend().remove(version: "2", layout: fx.layout)
                _ = try NodeRecovery.recover(app: fx.app, context: context)
                return fullApply
                    ? ["node", "apply", "--archive", r2.archivePath, "--manifest", r2.manifestPath] + node
                    : ["node", "apply", "--delta", delta.archivePath, "--base", "1", "--manifest", r2.manifestPath] + node
            case 1:
                if try !DirBackend().landedVersions(layout: fx.layout).contains("2") { try fx.applyFull("2", context: context) }
                return ["node", "activate", "web@\(fx.current == "2" ? "1" : "2")"] + node
            case 3:
                // 1 and 2 are current and previous (never pruned); 3 goes.
                for version in ["2", "3"] where try !DirBackend().landedVersions(layout: fx.layout).contains(version) {
                    try fx.applyFull(version, context: context)
                }
                if fx.current == nil { _ = try NodeActivate.activate(app: fx.app, version: "1", context: context) }
                if try NodeStatus.read(app: fx.app, context: context).previous == nil {
                    _ = try NodeActivate.activate(app: fx.app, version: fx.current == "2" ? "1" : "2", context: context)
                }
                return ["node", "prune", "web", "--keep", "1"] + node
            case 4:
                // A fresh upload of 2's archive from the start, read from stdin.
                unlink(fx.layout.incoming + "/2.tar.xz")
                return ["node", "receive", "web@2", "--file", "2.tar.xz", "--offset", "0", "--size", String(r2.manifest.archive.size),
                        "--sha256", r2.manifest.archive.sha256] + node
            case 5:
                // A fresh fetch of 2's archive from the slow server.
                unlink(fx.layout.incoming + "/2.tar.xz")
                return ["node", "fetch", "web@2", "--file", "2.tar.xz", "--url", server.slowURL + archiveURL, "--size", String(r2.manifest.archive.size),
                        "--sha256", r2.manifest.archive.sha256] + node
            default:
                if try !DirBackend().landedVersions(layout: fx.layout).contains("2") { try fx.applyFull("2", context: context) }
                return ["node", "rollback", "web", "--to", fx.current == "2" ? "1" : "2"] + node
            }
        }

        // How long each command takes uninterrupted, to spread the kills over it. A command that
        // ends before its kill says how long it takes now (the machine's load changes during a
        // test run), and the next draws use that.
        var durations: [String: Double] = [:]
        func key(_ args: [String]) -> String { args[1] + (args.contains("--delta") ? " delta" : "") }
        // receive reads the archive on stdin: sh execs slipway with it, keeping the pid.
        // receive reads the archive on its stdin: sh execs it with the redirection.
        func command(_ args: [String]) -> (binary: String, arguments: [String]) {
            guard args[1] == "receive" else { return (binary, args) }
            return ("/bin/sh", ["-c", "exec \"$0\" \"$@\" < \"\(r2.archivePath)\"", binary] + args)
        }
        func launch(_ args: [String]) throws -> NodeChild { try NodeChild(command(args).binary, command(args).arguments) }
        for (kind, fullApply) in [(0, true), (0, false), (1, true), (2, true), (3, true), (4, true), (5, true)] {
            let args = try arguments(kind, fullApply: fullApply)
            let start = Date()
            let child = try launch(args)
            let (status, stderr) = child.wait()
            #expect(status == 0, "\(args): \(stderr)")
            durations[key(args)] = Date().timeIntervalSince(start)
        }

        // A trial whose command ended before its kill (its time varies a lot on a loaded
        // machine: other tests' disk I/O stalls its syncs) is drawn again, up to three times,
        // each attempt checked like any other.
        var killedMidway = 0
        for trial in 0..<trials {
            for attempt in 0..<3 {
                let kind = trial % 6
                let args = try arguments(kind, fullApply: (trial / 6) % 2 == 0)
                let delay = Double.random(in: 0...(durations[key(args), default: 1] * 1.1), using: &random)
                let (landed, status, elapsed) = try NodeChild.killed(command(args).binary, command(args).arguments, after: delay)
                if landed { killedMidway += 1 }
                // It ended on its own within `elapsed`: the next draws use that (an upper
                // bound, so a run of misses shrinks the window fast).
                if status == 0 { durations[key(args)] = elapsed }
                let label = "trial \(trial).\(attempt) (seed \(seed), \(args[1]) killed after \(String(format: "%.3f", delay)) s)"
                // Before anything runs, current must already be whole.
                try fx.checkInvariant(label + " before recovery", allowLeftovers: true)
                let after = try NodeChild(binary, ["node", "status", "web", "--json"] + node)
                #expect(after.wait().status == 0, "\(label): status failed")
                let recover = try NodeChild(binary, ["node", "recover", "web", "--json"] + node)
                let recovered = recover.wait()
                #expect(recovered.status == 0, "\(label): recover failed: \(recovered.stderr)")
                try fx.checkInvariant(label)
                // Recovery is idempotent: a second finds nothing to do.
                let second = try NodeRecovery.recover(app: fx.app, context: context)
                #expect(second.removed.isEmpty && second.journalAdded.isEmpty && second.journalDropped.isEmpty && second.problems.isEmpty,
                        "\(label): a second recover still did something: \(second)")
                if args[1] == "fetch" {
                    // No curl is left appending, and the next fetch gets exactly the rest.
                    let have = try NodeStatus.read(app: fx.app, context: context).incoming.first { $0.name == "2.tar.xz" }?.bytes ?? 0
                    usleep(200_000)
                    let still = try NodeStatus.read(app: fx.app, context: context).incoming.first { $0.name == "2.tar.xz" }?.bytes ?? 0
                    #expect(still == have, "\(label): the file grew after the kill, \(have) → \(still) bytes")
                    let resumed = try run(binary, ["node", "fetch", "web@2", "--file", "2.tar.xz", "--url", server.url + archiveURL,
                                                   "--size", String(r2.manifest.archive.size), "--sha256", r2.manifest.archive.sha256, "--json"] + node)
                    #expect(resumed.ok && resumed.out.contains("\"complete\" : true"), "\(label): resuming from \(still) failed: \(resumed.err) \(resumed.out)")
                }
                if args[1] == "receive" {
                    // The upload resumes from what the node reports it holds, and completes whole.
                    let have = try NodeStatus.read(app: fx.app, context: context).incoming.first { $0.name == "2.tar.xz" }?.bytes ?? 0
                    let resumed = try run("/bin/sh", ["-c", "tail -c +$(($1 + 1)) \"$2\" | exec \"$0\" node receive web@2 --file 2.tar.xz --offset \"$1\" --size \"$3\" --sha256 \"$4\" --root \"$5\" --json",
                                                      binary, String(have), r2.archivePath, String(r2.manifest.archive.size), r2.manifest.archive.sha256, fx.root])
                    #expect(resumed.ok && resumed.out.contains("\"complete\" : true"), "\(label): resuming from \(have) failed: \(resumed.err) \(resumed.out)")
                }
                if landed { break }
            }
        }
        print("crash injection: \(trials) trials, \(killedMidway) killed mid-command (seed \(seed))")
        #expect(killedMidway >= trials / 3, "too few kills landed inside a command; the fixture is too fast")
    }

    @Test("a holder killed while its hook runs: the next command ends the hook's processes before it recovers, and says so",
          .needs(.nodeBinary))
    func killedHolderLeftovers() throws {
        let binary = try #require(nodeBinary)
        let fx = try NodeFixture("slipway-crash-leftovers")
        defer { fx.remove() }
        let pidFile = fx.dir.sub("hook.pid")
        // The hook records its shell's pid, then a child that outlives a killed slipway.
        try fx.release("1")
        try fx.release("2", service: ServiceSpec(preActivate: "echo $$ > \(pidFile); sleep 120; true"))
        let context = try fx.context()
        try fx.applyFull("1", context: context)
        try fx.applyFull("2", context: context)
        _ = try NodeActivate.activate(app: fx.app, version: "1", context: context)
        let config = fx.dir.sub("node.toml")
        try "root = \"\(fx.root)\"\nhook_timeout = 300\n".write(toFile: config, atomically: true, encoding: .utf8)

        let child = try NodeChild(binary, ["node", "activate", "\(fx.app)@2", "--config", config])
        #expect(waitFor(seconds: 30) { (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) } != nil })
        let hook = try #require(pid_t(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        // The node command leads its own process group, and the hook is in it.
        let group = LockProcessGroup.liveMembers(of: child.process.processIdentifier)
        #expect(group.contains(hook) && group.contains(child.process.processIdentifier), "group \(group), hook \(hook)")
        child.kill9()
        _ = child.wait()
        #expect(kill(hook, 0) == 0, "the hook outlives the killed slipway (what this test is about)")
        defer { _ = kill(hook, SIGKILL) }

        // The next holder of the lock ends the leftovers first; the old version is current.
        let record = (try? String(contentsOfFile: fx.layout.lockFile, encoding: .utf8)) ?? "none"
        let next = try run(binary, ["node", "recover", fx.app, "--config", config])
        #expect(next.ok, "\(next.err)")
        #expect(next.err.contains("leftover process") && next.err.contains("killed holding the lock"), "\(next.err); lock record \(record)")
        #expect(LockProcessGroup.state(of: hook) == nil || LockProcessGroup.state(of: hook) == "Z", "the hook (pid \(hook)) still runs")
        #expect(fx.current == "1")
        // A holder that let go is not looked after: the next command finds nothing to end.
        let again = try run(binary, ["node", "recover", fx.app, "--config", config])
        #expect(again.ok && !again.err.contains("leftover"), "\(again.err)")
    }

    @Test("ENOSPC during apply: a clear error, the old version current, no leftovers", .needs("mount", "umount", root: true))
    func fullDisk() throws {
        let fx = try NodeFixture()
        defer { fx.remove() }
        try FileManager.default.createDirectory(atPath: fx.root, withIntermediateDirectories: true)
        try runChecked("mount", ["-t", "tmpfs", "-o", "size=4m", "slipway-enospc", fx.root])
        defer { _ = try? run("umount", [fx.root]) }
        try fx.expectFullDiskKeepsOne(context: try fx.context(), big: 6 << 20)
        try fx.checkInvariant("after ENOSPC")
    }
}
