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

/// The dead man's switch of `node activate --confirm-timeout`, through the built binary: the
/// detached watcher switches back when no confirmation comes, a confirmation keeps the new
/// version, newer switches replace a pending confirmation, and recovery switches back after a
/// reboot that took the watcher away.
@Suite("Node: activation confirmation (dead man's switch)")
struct NodeConfirmTests {
    /// A node with releases 1 and 2 (and 3, whose health check fails), 1 active; every reload
    /// appends its version to `reloads`.
    struct ConfirmNode {
        let fx: NodeFixture
        let binary: String
        let reloads: String

        init(binary: String) throws {
            self.binary = binary
            fx = try NodeFixture("slipway-confirm")
            reloads = fx.dir.sub("reloads")
            let reload = "echo \"$SLIPWAY_VERSION\" >> \(reloads)"
            do {
                try fx.release("1", service: ServiceSpec(reload: reload))
                try fx.release("2", service: ServiceSpec(reload: reload))
                try fx.release("3", service: ServiceSpec(reload: reload, health: HealthCheck(command: "false", timeoutSeconds: 2, retries: 1)))
                let context = try fx.context()
                for version in ["1", "2", "3"] { try fx.applyFull(version, context: context) }
                _ = try NodeActivate.activate(app: fx.app, version: "1", context: context)
            } catch {
                fx.remove()
                throw error
            }
        }

        /// `slipway node …` on this node's root.
        func node(_ arguments: [String]) throws -> (status: Int32, stdout: Data, stderr: String, seconds: Double) {
            try runSlipway(binary, ["node"] + arguments + ["--root", fx.root])
        }

        func activate(_ version: String, confirmTimeout: Double) throws -> (reply: NodeActivate.Result, seconds: Double) {
            let run = try node(["activate", "web@\(version)", "--confirm-timeout", String(confirmTimeout), "--json"])
            try #require(run.status == 0, "activate failed: \(run.stderr)")
            return (try JSONDecoder().decode(NodeActivate.Result.self, from: run.stdout), run.seconds)
        }

        func status() throws -> NodeStatus {
            let run = try node(["status", fx.app, "--json"])
            try #require(run.status == 0, "status failed: \(run.stderr)")
            return try JSONDecoder().decode(NodeStatus.self, from: run.stdout)
        }

        var pendingToken: String? {
            guard let data = FileManager.default.contents(atPath: fx.layout.confirmFile),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
            return object["token"] as? String
        }

        var reloadLog: String { (try? String(contentsOfFile: reloads, encoding: .utf8)) ?? "" }

        /// Waits up to `seconds` for `condition`.
        func waitFor(_ seconds: Double, _ condition: () -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while !condition() {
                if Date() > deadline { return false }
                usleep(50_000)
            }
            return true
        }
    }

    /// The pid of the watcher started for `token`, from /proc (its command line carries it).
    static func watcherPID(token: String) -> pid_t? {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(name), let data = FileManager.default.contents(atPath: "/proc/\(name)/cmdline") else { continue }
            let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if arguments.contains("confirm-watch"), arguments.contains(token) { return pid }
        }
        return nil
    }

    /// The session id of `pid` (/proc/PID/stat: pid (comm) state ppid pgrp session …).
    static func sessionID(_ pid: pid_t) -> pid_t? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.range(of: ")", options: .backwards) else { return nil }
        let fields = text[close.upperBound...].split(separator: " ")
        return fields.count > 3 ? pid_t(fields[3]) : nil
    }

    @Test("not confirmed: the watcher switches back to 1 soon after the deadline, reloads 1, journals why", .needs(.builtSlipway))
    func unconfirmedSwitchesBack() throws {
        let binary = try #require(builtSlipway)
        let node = try ConfirmNode(binary: binary)
        defer { node.fx.remove() }

        // Bounds below are generous: under a loaded CI machine every process start can take
        // seconds. What is checked is the order of events, not their speed.
        let (reply, _) = try node.activate("2", confirmTimeout: 4)
        #expect(reply.outcome == .activated && reply.previous == "1")
        let deadline = try #require(reply.confirmDeadline)
        #expect(deadline <= Date().timeIntervalSince1970 + 4.5)
        let token = try #require(node.pendingToken)
        // The watcher sleeps until the deadline, so it must be found before it. Once the
        // deadline has passed (a loaded machine can take more than 4 s between writing the
        // confirmation and this line) it may already have switched back and exited: that is
        // checked below like any other run. The clock is read after the scan, so a watcher
        // missing before the deadline is a failure, never a timing excuse.
        if let watcher = Self.watcherPID(token: token) {
            #expect(Self.sessionID(watcher) == watcher, "the watcher leads its own session")
        } else {
            #expect(Date().timeIntervalSince1970 >= deadline, "no watcher running before the deadline")
        }
        if Date().timeIntervalSince1970 < deadline - 0.5 {
            #expect(node.fx.current == "2", "activate returned before the deadline, on 2, without waiting for its watcher")
            let pending = try #require(try node.status().confirmation)
            #expect(pending.version == "2" && pending.previous == "1" && pending.deadline == deadline && pending.timeout == 4)
        }

        // The watcher switches back, reloads 1, journals, removes the confirmation and exits.
        #expect(node.waitFor(60) { Self.watcherPID(token: token) == nil }, "the watcher exits once it has switched back")
        #expect(node.fx.current == "1", "still on \(node.fx.current ?? "none") after the watcher exited")
        let last = try #require(try NodeState.load(node.fx.layout).activations.last)
        #expect(last.kind == .rollback && last.from == "2" && last.to == "1" && last.result == .activated)
        #expect(last.at >= deadline, "switched back at \(last.at), before the deadline \(deadline)")
        #expect(last.detail == "not confirmed within 4 s", "\(last.detail ?? "no detail")")
        #expect(node.reloadLog == "2\n1\n", "reload of 2 at the switch, of 1 at the switch back: \(node.reloadLog)")
        #expect(!exists(node.fx.layout.confirmFile))
        #expect(try node.status().confirmation == nil)
        try node.fx.checkInvariant("after the switch back")

        let late = try node.node(["confirm", "web@2", "--json"])
        #expect(late.status != 0)
        #expect(late.stderr.contains("web@2 was not confirmed within 4 s") && late.stderr.contains("switched back to 1"), "\(late.stderr)")
        #expect(node.fx.current == "1")
    }

    @Test("confirmed in time: the node stays on 2 past the deadline; confirming again says already-confirmed", .needs(.builtSlipway))
    func confirmedStays() throws {
        let binary = try #require(builtSlipway)
        let node = try ConfirmNode(binary: binary)
        defer { node.fx.remove() }

        let (reply, _) = try node.activate("2", confirmTimeout: 10)
        let deadline = try #require(reply.confirmDeadline)
        let token = try #require(node.pendingToken)
        #expect(Self.watcherPID(token: token) != nil, "activate returned without waiting for its watcher")

        let confirmed = try node.node(["confirm", "web@2", "--json"])
        try #require(confirmed.status == 0, "\(confirmed.stderr)")
        let result = try JSONDecoder().decode(NodeConfirm.Result.self, from: confirmed.stdout)
        #expect(result.outcome == "confirmed" && result.version == "2" && result.deadline == deadline)
        #expect(!exists(node.fx.layout.confirmFile))
        #expect(node.waitFor(30) { Self.watcherPID(token: token) == nil }, "a confirmation ends the watcher")

        let wait = deadline + 1.5 - Date().timeIntervalSince1970
        if wait > 0 { usleep(useconds_t(wait * 1_000_000)) }
        #expect(node.fx.current == "2")
        let activations = try NodeState.load(node.fx.layout).activations
        #expect(activations.map(\.kind) == [.activate, .activate] && activations.last?.to == "2")
        #expect(node.reloadLog == "2\n")

        let again = try node.node(["confirm", "web@2", "--json"])
        try #require(again.status == 0, "\(again.stderr)")
        #expect(try JSONDecoder().decode(NodeConfirm.Result.self, from: again.stdout).outcome == "already-confirmed")
        let other = try node.node(["confirm", "web@1"])
        #expect(other.status != 0 && other.stderr.contains("no pending confirmation"), "\(other.stderr)")
    }

    @Test("a failed activation keeps the pending confirmation, a rollback clears it, recovery switches back after a reboot",
          .needs(.builtSlipway))
    func replacedAndRecovered() throws {
        let binary = try #require(builtSlipway)
        let node = try ConfirmNode(binary: binary)
        defer { node.fx.remove() }

        _ = try node.activate("2", confirmTimeout: 30)
        let first = try #require(node.pendingToken)
        let pendingFile = try Data(contentsOf: URL(fileURLWithPath: node.fx.layout.confirmFile))

        // 3 fails its health check: back on 2, whose confirmation is still pending as it was.
        let failed = try node.node(["activate", "web@3", "--confirm-timeout", "30"])
        #expect(failed.status != 0 && failed.stderr.contains("rolled back to 2"), "\(failed.stderr)")
        #expect(node.fx.current == "2")
        #expect(try Data(contentsOf: URL(fileURLWithPath: node.fx.layout.confirmFile)) == pendingFile)

        // A rollback is a new switch: the pending confirmation goes, its watcher exits quietly.
        let back = try node.node(["rollback", node.fx.app, "--to", "1"])
        #expect(back.status == 0, "\(back.stderr)")
        #expect(node.fx.current == "1" && !exists(node.fx.layout.confirmFile))
        #expect(node.waitFor(30) { Self.watcherPID(token: first) == nil }, "the old watcher sees no confirmation and exits")
        #expect(try NodeState.load(node.fx.layout).activations.allSatisfy { $0.detail?.hasPrefix("not confirmed") != true })

        // A reboot: the watcher is gone and the deadline passes while the node is down.
        _ = try node.activate("2", confirmTimeout: 30)
        let second = try #require(node.pendingToken)
        let watcher = try #require(Self.watcherPID(token: second))
        #expect(kill(watcher, SIGKILL) == 0)
        #expect(node.waitFor(30) { Self.watcherPID(token: second) == nil })
        let data = try Data(contentsOf: URL(fileURLWithPath: node.fx.layout.confirmFile))
        var object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        object["deadline"] = Date().timeIntervalSince1970 - 1
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: node.fx.layout.confirmFile), options: .atomic)

        // Status (read-only) shows the expired confirmation and changes nothing.
        let status = try node.status()
        #expect(status.current == "2" && status.confirmation?.version == "2" && status.confirmation?.expired == true)
        #expect(node.fx.current == "2")

        // The next mutating command's recovery switches back, as the watcher would have.
        let pruned = try node.node(["prune", node.fx.app, "--keep", "5"])
        #expect(pruned.status == 0, "\(pruned.stderr)")
        #expect(node.fx.current == "1")
        let last = try #require(try NodeState.load(node.fx.layout).activations.last)
        #expect(last.kind == .rollback && last.from == "2" && last.to == "1" && last.detail == "not confirmed within 30 s")
        #expect(!exists(node.fx.layout.confirmFile))
        #expect(node.reloadLog.hasSuffix("2\n1\n"), "\(node.reloadLog)")
        try node.fx.checkInvariant("after recovery switched back")
    }
}
