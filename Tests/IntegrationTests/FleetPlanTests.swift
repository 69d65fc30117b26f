import Foundation
import Testing
@testable import SlipwaySystem
@testable import SlipwayRelease
@testable import SlipwayNodeProtocol
@testable import SlipwayNode
@testable import SlipwayFleet
import SlipwayTestSupport

/// Issue 19: `--plan` shows what deploy, push and rollback would do on each node and changes
/// nothing; the deploy that follows does what the plan said (method, bytes, batches); a node
/// that would refuse the release or lacks the space blocks the plan, named.
@Suite("Fleet plans", .serialized)
struct FleetPlanTests {
    func plan(_ farm: LocalFarm, _ arguments: [String]) throws -> (FleetPlan, CommandResult) {
        let result = try farm.slipway(arguments + ["--plan", "--json"])
        return (try JSONDecoder().decode(FleetPlan.self, from: result.stdout), result)
    }

    /// What a node root holds, every path with its size: the plan must leave it as it was.
    func contents(_ root: String) -> [String: Int] {
        var seen: [String: Int] = [:]
        for path in FileManager.default.subpaths(atPath: root) ?? [] {
            seen[path] = (try? FileManager.default.attributesOfItem(atPath: root + "/" + path)[.size] as? Int) ?? -1
        }
        return seen
    }

    @Test("deploy --plan matches the deploy that follows: full then delta bytes, canary and batches, hooks; nothing changes",
          .needs(.nodeBinary))
    func planThenDeploy() throws {
        let binary = try #require(nodeBinary)
        let farm = try LocalFarm(nodes: 4, binary: binary)
        defer { farm.fixture.remove() }
        let service = ServiceSpec(start: "true first", reload: "true reload",
                                  health: HealthCheck(command: "test -d \"$SLIPWAY_RELEASE\"", timeoutSeconds: 5, retries: 1))
        try farm.release("1", service: service)
        try farm.release("2", service: service)
        let app = farm.fixture.app
        let selection = ["--on", "n1,n2,n3,n4", "--canary", "1", "--batch", "2"]

        let before = farm.nodes.map { contents(farm.root($0)) }
        let (first, firstRun) = try plan(farm, ["deploy", "\(app)@1"] + selection)
        #expect(firstRun.status == 0, "\(firstRun.err)")
        #expect(farm.nodes.map { contents(farm.root($0)) } == before, "the plan changed a node")
        #expect(first.canProceed && first.totals.blocked == 0 && first.totals.full == 4 && first.totals.batches == 3)
        #expect(first.nodes.map(\.batch) == [1, 2, 2, 3] && first.nodes.map(\.canary) == [true, false, false, false])
        for node in first.nodes {
            #expect(node.action == "land and activate" && node.method == "full" && node.from == nil, "\(node)")
            #expect(node.hooks == ["start: true first", "health: test -d \"$SLIPWAY_RELEASE\""], "\(node.hooks)")
            #expect(node.signature == "not required (unsigned)" && node.space?.contains("free on the file system of") == true, "\(node)")
        }
        let text = try farm.slipway(["deploy", "\(app)@1", "--plan"] + selection)
        #expect(text.status == 0 && text.out.contains("4 to land (4 full, 0 delta") && text.out.contains("1 canary"), "\(text.out)")

        let deployed = try farm.outcomes(try farm.slipway(["deploy", "\(app)@1", "--json"] + selection))
        for node in first.nodes {
            let outcome = try #require(deployed[node.node])
            #expect(outcome.result == .activated && outcome.method == node.method && outcome.bytesSent == node.bytes,
                    "\(node.node): planned \(node.method ?? "-") \(node.bytes) B, deploy \(outcome)")
        }

        // The second version: deltas, and a node that already has it is not sent anything.
        #expect(try farm.slipway(["push", "\(app)@2", "--on", "n4"]).status == 0)
        let (second, _) = try plan(farm, ["deploy", "\(app)@2"] + selection)
        #expect(second.canProceed && second.totals.delta == 3 && second.totals.land == 3)
        let byNode = Dictionary(uniqueKeysWithValues: second.nodes.map { ($0.node, $0) })
        #expect(byNode["n4"]?.action == "activate" && byNode["n4"]?.method == nil && byNode["n4"]?.bytes == 0)
        #expect(byNode["n1"]?.hooks.first == "reload: true reload")
        let pushPlan = try plan(farm, ["push", "\(app)@2", "--on", "n1,n4"]).0
        #expect(pushPlan.nodes.map(\.action) == ["land", "nothing"] && pushPlan.nodes.allSatisfy { $0.batch == nil })
        let again = try farm.outcomes(try farm.slipway(["deploy", "\(app)@2", "--json"] + selection))
        for node in second.nodes {
            let outcome = try #require(again[node.node])
            #expect(outcome.result == .activated && outcome.method == node.method && outcome.bytesSent == node.bytes,
                    "\(node.node): planned \(node.method ?? "-") \(node.bytes) B, deploy \(outcome)")
        }
        #expect(byNode["n1"]?.method == "delta from 1")

        // Rollback: each node back to 1, in the same batches; a node set to its current
        // version is a no-op, an unlanded version a blocker.
        let back = try plan(farm, ["rollback", app, "--on", "n1,n2,n3,n4", "--batch", "2"]).0
        #expect(back.canProceed && back.nodes.allSatisfy { $0.from == "2" && $0.to == "1" && $0.action == "switch" })
        #expect(back.nodes.map(\.batch) == [1, 1, 2, 2])
        let (missing, missingRun) = try plan(farm, ["rollback", app, "--on", "n1", "--to", "7"])
        #expect(missingRun.status != 0 && !missing.canProceed && missing.nodes[0].blockers.first?.contains("7 is not landed") == true)
        #expect(missingRun.err.contains("cannot proceed: n1: 7 is not landed"), "\(missingRun.err)")
        #expect(farm.nodes.allSatisfy { farm.current($0) == "2" })

        // Prune: n1 gets 3, so 1 is neither current nor previous there; elsewhere 1 is the
        // previous version and stays. The plan names what goes; the prune removes just that.
        try farm.release("3", service: service)
        #expect(try farm.slipway(["deploy", "\(app)@3", "--on", "n1"]).status == 0)
        let beforePrune = farm.nodes.map { contents(farm.root($0)) }
        let (prunePlan, pruneRun) = try plan(farm, ["prune", app, "--on", "n1,n2,n3,n4", "--keep", "1"])
        #expect(pruneRun.status == 0 && prunePlan.canProceed, "\(pruneRun.err)")
        #expect(farm.nodes.map { contents(farm.root($0)) } == beforePrune, "the prune plan changed a node")
        #expect(prunePlan.nodes.map { $0.removes ?? ["?"] } == [["1"], [], [], []] && prunePlan.nodes.map(\.action) == ["prune", "nothing", "nothing", "nothing"])
        let pruned = try farm.outcomes(try farm.slipway(["prune", app, "--on", "n1,n2,n3,n4", "--keep", "1", "--json"]))
        #expect(pruned["n1"]?.result == .pruned && pruned["n1"]?.detail == "removed 1" && pruned["n2"]?.detail == "nothing to prune", "\(pruned)")
        #expect(!FileManager.default.fileExists(atPath: NodeLayout(root: farm.root("n1"), app: app).release("1")))
        #expect(FileManager.default.fileExists(atPath: NodeLayout(root: farm.root("n2"), app: app).release("1")))
    }

    @Test("the package that owns a node's slipway is found with dpkg-query", .needs("dpkg-query"))
    func owningPackage() throws {
        let pool = try TransportPool()
        var node = FleetNode(name: "here", host: "localhost")
        node.transport = .local
        defer { pool.close([node]) }
        let client = NodeClient(transport: pool.transport(for: node))
        #expect(try client.owningPackage("/usr/bin/dpkg") == "dpkg")
        let tmp = try TempDir("slipway-owner")
        defer { tmp.remove() }
        #expect(try client.owningPackage(tmp.path) == nil)
    }

    @Test("a node that requires signatures, a node without space and an unreachable one block the plan, each named",
          .needs(.nodeBinary, .tools(["ssh", "mount"]), .root("mounts a 1 MiB tmpfs as a node root — CI runs the tests as root")))
    func blockers() throws {
        let binary = try #require(nodeBinary)
        let fixture = try NodeFixture("slipway-fleet-plan")
        defer { fixture.remove() }
        let key = fixture.dir.sub("k")
        let keygen = try run(binary, ["keygen", "--out", key])
        #expect(keygen.status == 0, "\(keygen.err)")
        let config = fixture.dir.sub("signed.toml")
        try Data("trusted_keys = [\"\(key).pub\"]\n".utf8).write(to: URL(fileURLWithPath: config))
        let small = fixture.dir.sub("small")
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
        let mount = try run("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", small])
        try #require(mount.status == 0, "\(mount.err)")
        defer { _ = try? run("umount", [small]) }
        let inventory = fixture.dir.sub("inventory.toml")
        try Data("""
            [defaults]
            transport = "local"
            [nodes.ok]
            root = "\(fixture.dir.sub("ok"))"
            [nodes.signed]
            root = "\(fixture.dir.sub("signed"))"
            node_config = "\(config)"
            [nodes.small]
            root = "\(small)/slipway"
            [nodes.gone]
            transport = "ssh"
            host = "127.0.0.1"
            port = 1
            ssh_options = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]

            """.utf8).write(to: URL(fileURLWithPath: inventory))
        // 2 MB of random bytes: more than the tmpfs holds.
        var generator = SeededGenerator(seed: 7)
        let tree = fixture.dir.sub("tree")
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        try Data((0..<(2 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }).write(to: URL(fileURLWithPath: tree + "/data"))
        _ = try fixture.store.add(tree: tree, name: fixture.app, version: "1", created: 1_700_000_000, configuration: .init(level: 1))

        let result = try run(binary, ["deploy", "\(fixture.app)@1", "--on", "ok,signed,small,gone", "--plan", "--json",
                                      "--inventory", inventory, "--store", fixture.store.root])
        #expect(result.status != 0)
        let plan = try JSONDecoder().decode(FleetPlan.self, from: result.stdout)
        let byNode = Dictionary(uniqueKeysWithValues: plan.nodes.map { ($0.node, $0) })
        #expect(!plan.canProceed && plan.totals.blocked == 3)
        #expect(byNode["ok"]?.blockers == [] && byNode["ok"]?.batch == 1)
        #expect(byNode["signed"]?.signature == "refused" && byNode["signed"]?.blockers.first?.contains("unsigned") == true, "\(String(describing: byNode["signed"]))")
        #expect(byNode["small"]?.blockers.first?.hasPrefix("not enough space") == true, "\(String(describing: byNode["small"]))")
        #expect(byNode["gone"]?.blockers.isEmpty == false && byNode["gone"]?.batch == nil, "\(String(describing: byNode["gone"]))")
        #expect(result.err.contains("cannot proceed") && ["signed:", "small:", "gone:"].allSatisfy(result.err.contains), "\(result.err)")
        // Nothing reached any node.
        for root in [fixture.dir.sub("ok"), fixture.dir.sub("signed"), small + "/slipway"] {
            #expect(contents(root).keys.filter { !$0.hasPrefix("lock") }.isEmpty, "\(root): \(contents(root))")
        }
    }
}
