import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif
@testable import SlipwayCommands
@testable import SlipwaySystem
@testable import SlipwayRelease
@testable import SlipwayNodeProtocol
@testable import SlipwayFleet

private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// The controller killed with -9 in the middle of a deploy, on the ssh farm (issue 15 §4):
/// while it sends, just after a batch was confirmed, and while it waits to confirm. Every
/// node must end on its old version or confirmed on the new one (the dead man's switch
/// takes back what was not confirmed), and running the same deploy again finishes the job.
/// In FleetFarmTests: farm tests run one at a time (each `testfarm up` replaces the farm).
extension FleetFarmTests {
    @Suite("A dying controller, ssh farm", .serialized)
    struct DyingController {
        static let confirmTimeout = 6

        /// Waits until the child's stderr has a line for which `match` holds (at most `seconds`).
        func waitFor(_ child: NodeChild, seconds: Double, _ match: (Substring) -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if child.stderr.split(separator: "\n").contains(where: match) { return true }
                if !child.process.isRunning { return child.stderr.split(separator: "\n").contains(where: match) }
                usleep(10_000)
            }
            return false
        }

        /// What each node runs and whether an activation waits for confirmation, from the
        /// node itself.
        func nodeState(_ farm: SSHFarm, _ node: String, app: String) throws -> NodeStatus {
            let result = try farm.ssh(node, "/opt/slipway/bin/slipway node status \(app) --json")
            try #require(result.ok, "\(node): \(result.err)")
            return try JSONDecoder().decode(NodeStatus.self, from: result.stdout)
        }

        /// The invariant after a controller died: once the confirmation deadline passed, no node
        /// waits for a confirmation and each runs `old` or `new`; returns what each runs.
        func settled(_ farm: SSHFarm, app: String, old: String, new: String) throws -> [String: String] {
            var running: [String: String] = [:]
            for node in farm.nodes {
                // Up to the deadline and the watcher's own switch back after it.
                var status = try nodeState(farm, node, app: app)
                for _ in 0..<(2 * Self.confirmTimeout + 20) where status.confirmation != nil {
                    usleep(500_000)
                    status = try nodeState(farm, node, app: app)
                }
                #expect(status.confirmation == nil, "\(node) still waits for a confirmation: \(String(describing: status.confirmation))")
                let current = try #require(status.current, "\(node) has no current version")
                #expect(current == old || current == new, "\(node) runs \(current)")
                running[node] = current
            }
            return running
        }

        /// The ssh socket directories in /tmp whose run is gone: a lock file nobody holds.
        func abandonedSocketDirectories() -> Set<String> {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
            return Set(names.filter { $0.hasPrefix("slipway-ssh-") }.map { "/tmp/" + $0 }.filter { directory in
                let fd = open(directory + "/" + TransportPool.ownerFile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                guard fd >= 0 else { return false }
                defer { close(fd) }
                return flock(fd, LOCK_EX | LOCK_NB) == 0
            })
        }

        @Test("killed while sending, after a batch, and while confirming: old or confirmed new everywhere; a re-run finishes",
              .needs(.farm, .tools(["nft"]), .nodeBinary))
        func killedMidDeploy() throws {
            let binary = try #require(nodeBinary)
            let farm = try SSHFarm(nodes: 3, binary: binary)
            defer { farm.down() }
            let app = "web"
            // The health check passes once the test has put go-<version> into the node's
            // /opt/slipway: the test decides when an activation may end (in 3, only after it
            // has cut the nodes off from new connections), however loaded the machine. That
            // directory is bound from the farm's hosts/NODE/opt, so the test writes it as a
            // plain file here, with no ssh (cut off in 3) and no namespace to enter.
            let gated = ServiceSpec(health: HealthCheck(
                command: "while [ ! -e \"/opt/slipway/go-$SLIPWAY_VERSION\" ]; do sleep 0.1; done", timeoutSeconds: 60, retries: 1))
            func letThrough(_ version: String) throws {
                for node in farm.nodes {
                    let gate = farm.hostFile(node, "opt/go-\(version)")
                    try #require(FileManager.default.createFile(atPath: gate, contents: Data()), "cannot write \(gate)")
                }
            }
            for node in farm.nodes {
                // A gate left by an earlier run must not open 3 early.
                try? FileManager.default.removeItem(atPath: farm.hostFile(node, "opt/go-3"))
                // The node sees the same file: the binding is what the gate relies on.
                let gate = farm.hostFile(node, "opt/go-probe")
                try #require(FileManager.default.createFile(atPath: gate, contents: Data()))
                try #require(try farm.ssh(node, "test -e /opt/slipway/go-probe").ok, "\(node) does not see \(gate) as /opt/slipway/go-probe")
                try FileManager.default.removeItem(atPath: gate)
            }
            try letThrough("1")
            try letThrough("2")
            try farm.release(app, "1", service: gated)
            try farm.release(app, "2", shared: 4, own: 12, service: gated)
            try farm.release(app, "3", shared: 4, own: 12, service: gated)
            let testfarm = repositoryRoot + "/scripts/testfarm"
            func deploy(_ version: String, _ extra: [String] = []) throws -> NodeChild {
                try NodeChild(binary, ["deploy", "\(app)@\(version)", "--on", "@farm", "--json", "--confirm-timeout", String(Self.confirmTimeout),
                                       "--inventory", farm.inventory, "--store", farm.store.root] + extra)
            }
            let first = try farm.slipway(["deploy", "\(app)@1", "--on", "@farm", "--json", "--confirm-timeout", String(Self.confirmTimeout)])
            try #require(first.ok, "deploy 1: \(first.err)")

            // 1. While it sends: the links slowed so the 12 MiB take seconds.
            try runChecked("bash", [testfarm, "netem", "all", "rate 16mbit"])
            let sending = try deploy("2", ["--full", "--batch", "1"])
            #expect(waitFor(sending, seconds: 60) { $0.hasSuffix(": sending archive") }, "the deploy never sent: \(sending.stderr)")
            usleep(500_000)
            sending.kill9()
            _ = sending.wait()
            // What a killed controller leaves in /tmp, removed by the next run.
            var abandoned = abandonedSocketDirectories()
            #expect(!abandoned.isEmpty, "the killed controller left no socket directory to find")
            try runChecked("bash", [testfarm, "netem", "all", "off"])
            let afterSending = try settled(farm, app: app, old: "1", new: "2")
            #expect(afterSending.values.allSatisfy { $0 == "1" }, "nothing was activated while bytes travelled: \(afterSending)")

            // 2. Just after the first batch (node1) was confirmed.
            let batches = try deploy("2", ["--full", "--batch", "1"])
            #expect(waitFor(batches, seconds: 120) { $0.hasPrefix("node1: activated ") }, "node1 was never confirmed: \(batches.stderr)")
            batches.kill9()
            _ = batches.wait()
            abandoned.formUnion(abandonedSocketDirectories())
            let afterBatch = try settled(farm, app: app, old: "1", new: "2")
            #expect(afterBatch["node1"] == "2", "node1 was confirmed on 2 before the kill")
            #expect(afterBatch["node3"] == "1", "the third batch never started")
            // The same deploy again finishes the job and sends nothing more to the nodes that have 2.
            let again = try farm.slipway(["deploy", "\(app)@2", "--full", "--on", "@farm", "--json", "--batch", "1",
                                          "--confirm-timeout", String(Self.confirmTimeout)])
            #expect(again.ok, "re-run: \(again.err)")
            for (node, outcome) in try farm.outcomes(again) {
                #expect(try farm.current(node, app: app) == "2")
                // The killed deploy landed 2 everywhere before it switched anything.
                #expect(outcome.bytesSent == 0, "\(node) had 2 landed and got \(outcome.bytesSent) bytes")
            }

            // 3. While it waits to confirm: the nodes are switching to 3, held in their health
            // check; new connections to them are dropped (the confirmation travels over a
            // fresh one), then the health checks are let through, and the controller is
            // killed while it tries to confirm. The nodes switch themselves back.
            let confirming = try deploy("3")
            let activating = waitFor(confirming, seconds: 120) { line in
                farm.nodes.allSatisfy { node in confirming.stderr.contains("\(node): activating") } && line.hasSuffix(": activating")
            }
            #expect(activating, "no activation: \(confirming.stderr)")
            try runChecked("bash", [testfarm, "block-new", "all"])
            defer { _ = try? run("bash", [testfarm, "unblock", "all"]) }
            try letThrough("3")
            #expect(waitFor(confirming, seconds: 30) { $0.hasSuffix(": confirming") }, "never confirming: \(confirming.stderr)")
            let confirmedBeforeKill = confirming.stderr.split(separator: "\n").filter { $0.contains(": activated 2 → 3") }.count
            confirming.kill9()
            _ = confirming.wait()
            abandoned.formUnion(abandonedSocketDirectories())
            // The killed controller's ssh children outlive it: a confirmation's ssh keeps
            // knocking until its ConnectTimeout (10 s). The partition lasts longer, so none
            // gets through and the dead man's switch alone decides.
            sleep(11)
            try runChecked("bash", [testfarm, "unblock", "all"])
            #expect(confirmedBeforeKill == 0, "no confirmation could get through: \(confirming.stderr)")
            let afterConfirm = try settled(farm, app: app, old: "2", new: "3")
            #expect(afterConfirm.values.allSatisfy { $0 == "2" }, "every unconfirmed node switched itself back to 2: \(afterConfirm)")
            for node in farm.nodes {
                let status = try nodeState(farm, node, app: app)
                #expect(status.activations.last?.to == "2", "\(node)'s journal ends with the switch back: \(status.activations.last.map { "\($0)" } ?? "-")")
            }
            let finished = try farm.slipway(["deploy", "\(app)@3", "--on", "@farm", "--json", "--confirm-timeout", String(Self.confirmTimeout)])
            #expect(finished.ok, "re-run: \(finished.err)")
            let left = abandoned.filter { FileManager.default.fileExists(atPath: $0) }
            #expect(left.isEmpty, "the killed controllers' socket directories are removed by the runs after them: \(left.sorted())")
            for (node, outcome) in try farm.outcomes(finished) {
                #expect(outcome.result == .activated && outcome.bytesSent == 0, "\(node): \(outcome)")
                let status = try nodeState(farm, node, app: app)
                #expect(status.current == "3" && status.confirmation == nil && status.leftovers.isEmpty, "\(node): \(status.current ?? "-") \(status.leftovers)")
            }
        }
    }
}
