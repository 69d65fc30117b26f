import Foundation
import Testing
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

/// A farm of `local` nodes (directories on this machine) driven through the real binary:
/// deploy, deltas, rolling batches with a failing health check, status drift, fleet
/// rollback, idempotent and resumed pushes.
struct LocalFarm {
    let fixture: NodeFixture
    let binary: String
    let nodes: [String]
    var inventory: String { fixture.dir.sub("inventory.toml") }

    init(nodes count: Int, binary: String) throws {
        fixture = try NodeFixture("slipway-fleet-local")
        self.binary = binary
        nodes = (1...count).map { "n\($0)" }
        var text = "[defaults]\ntransport = \"local\"\n\n"
        for (index, node) in nodes.enumerated() {
            text += "[nodes.\(node)]\nroot = \"\(fixture.dir.sub(node))\"\ngroups = [\"\(index < count / 2 ? "web" : "api")\"]\n\n"
        }
        try Data(text.utf8).write(to: URL(fileURLWithPath: inventory))
    }

    func root(_ node: String) -> String { fixture.dir.sub(node) }
    func current(_ node: String) -> String? { NodeLayout(root: root(node), app: fixture.app).currentVersion }

    /// Runs `slipway <arguments> --inventory …` (and `--store …` for push and deploy).
    func slipway(_ arguments: [String]) throws -> CommandResult {
        let store = ["push", "deploy"].contains(arguments.first ?? "") ? ["--store", fixture.store.root] : []
        return try run(binary, arguments + ["--inventory", inventory] + store)
    }

    /// Packs `version`: 2 MB of data every version shares (seeded, so the same bytes) and a
    /// few small files of its own, so a delta is small next to the full archive.
    @discardableResult
    func release(_ version: String, service: ServiceSpec? = nil) throws -> StoredRelease {
        let tree = fixture.dir.sub("farm-tree-\(version)")
        try FileManager.default.createDirectory(atPath: tree + "/usr/share/app", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tree + "/etc/app", withIntermediateDirectories: true)
        var generator = SeededGenerator(seed: 42)
        for index in 0..<8 {
            let chunk = (0..<(256 << 10)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            try Data(chunk).write(to: URL(fileURLWithPath: tree + "/usr/share/app/data\(index)"))
        }
        try Data("\(version)\n".utf8).write(to: URL(fileURLWithPath: tree + "/etc/app/version"))
        defer { try? FileManager.default.removeItem(atPath: tree) }
        return try fixture.store.add(tree: tree, name: fixture.app, version: version, created: 1_700_000_000,
                                     configuration: .init(level: 1), service: service).release
    }

    /// The end table of a fleet command, by node.
    func outcomes(_ result: CommandResult) throws -> [String: NodeOutcome] {
        let list = try JSONDecoder().decode([NodeOutcome].self, from: result.stdout)
        return Dictionary(uniqueKeysWithValues: list.map { ($0.node, $0) })
    }
}

@Suite("Fleet, local nodes", .serialized)
struct FleetLocalTests {
    @Test("deploy full then delta, a failing batch stops the rollout, drift, fleet rollback", .needs(.nodeBinary))
    func rollout() throws {
        let binary = try #require(nodeBinary)
        let farm = try LocalFarm(nodes: 4, binary: binary)
        defer { farm.fixture.remove() }
        let health = ServiceSpec(health: HealthCheck(command: "[ ! -e \"$SLIPWAY_ROOT/unhealthy-$SLIPWAY_VERSION\" ]", timeoutSeconds: 5, retries: 1))
        try farm.release("1", service: health)
        try farm.release("2", service: health)
        try farm.release("3", service: health)
        let app = farm.fixture.app

        let first = try farm.slipway(["deploy", "\(app)@1", "--on", "@web,@api", "--json", "--confirm-timeout", "30"])
        #expect(first.status == 0, "deploy 1: \(first.err)")
        let v1 = try farm.outcomes(first)
        for node in farm.nodes {
            #expect(v1[node]?.result == .activated)
            #expect(v1[node]?.method == "full")
            #expect(farm.current(node) == "1")
        }

        let second = try farm.slipway(["deploy", "\(app)@2", "--on", "n*", "--json", "--canary", "1", "--batch", "50%"])
        #expect(second.status == 0, "deploy 2: \(second.err)")
        let store = farm.fixture.store
        let full = try store.release(name: app, version: "2").manifest.archive.size
        // What travels: the delta and the manifest as a patch against 1's (docs/fleet.md).
        let deltaSize = try #require(try FileManager.default.attributesOfItem(atPath: store.root + "/\(app)/2/deltas/1.tar.xz")[.size] as? UInt64)
        let patch = try ManifestPatch.make(manifest: try store.release(name: app, version: "2").manifestBytes, app: app, base: "1",
                                           baseManifest: try store.release(name: app, version: "1").manifestBytes)
        for (node, outcome) in try farm.outcomes(second) {
            #expect(outcome.result == .activated, "\(node): \(outcome)")
            #expect(outcome.method == "delta from 1")
            #expect(outcome.from == "1")
            #expect(outcome.bytesSent == deltaSize + UInt64(patch.count), "\(node) sent \(outcome.bytesSent) of \(full)")
            #expect(farm.current(node) == "2")
        }

        // A failing health check on n3 in batches of one: n1 and n2 go to 3, n3 switches
        // itself back, n4 is not touched; the command fails.
        try #require(FileManager.default.createFile(atPath: farm.root("n3") + "/unhealthy-3", contents: Data()))
        let third = try farm.slipway(["deploy", "\(app)@3", "--on", "n1,n2,n3,n4", "--json", "--batch", "1"])
        #expect(third.status != 0)
        let v3 = try farm.outcomes(third)
        #expect(v3["n1"]?.result == .activated && v3["n2"]?.result == .activated)
        #expect(v3["n3"]?.result == .rolledBack, "\(String(describing: v3["n3"]))")
        #expect(v3["n4"]?.result == .notTouched)
        #expect(farm.current("n3") == "2" && farm.current("n4") == "2" && farm.current("n1") == "3")
        #expect(third.err.contains("failed or rolled back: n3;"))
        // The last line is the command that retries only n3 and the untouched n4.
        let lastLine = String(third.err.split(separator: "\n").last ?? "")
        let marker = try #require(lastLine.range(of: "not touched: "), "\(third.err)")
        let retry = String(lastLine[marker.upperBound...])
        #expect(retry == "slipway deploy \(app)@3 --on n3,n4 --inventory \(farm.inventory) --batch 1 --store \(farm.fixture.store.root)", "\(retry)")

        let status = try farm.slipway(["status", app, "--on", "@web,@api", "--json"])
        #expect(status.status == 0, "status: \(status.err)")
        let fleet = try JSONDecoder().decode(FleetStatus.self, from: status.stdout)
        #expect(Set(fleet.drifting).count == 2)
        #expect(fleet.rows.allSatisfy { $0.error == nil })

        let back = try farm.slipway(["rollback", app, "--on", "@web", "--json"])
        #expect(back.status == 0, "rollback: \(back.err)")
        for (node, outcome) in try farm.outcomes(back) {
            #expect(outcome.result == .switched)
            #expect(farm.current(node) == "2")
        }
        let again = try farm.slipway(["push", "\(app)@3", "--on", "n1", "--json"])
        #expect(again.status == 0)
        #expect(try farm.outcomes(again)["n1"]?.result == .alreadyLanded)
        for node in farm.nodes {
            let nodeFixture = NodeFixture(sharing: farm.fixture, root: farm.root(node))
            try nodeFixture.checkInvariant(node)
        }

        // The retry line, run as printed once n3 is healthy, takes n3 and n4 to 3.
        try FileManager.default.removeItem(atPath: farm.root("n3") + "/unhealthy-3")
        let retried = try run("/bin/sh", ["-c", retry.replacingOccurrences(of: "slipway ", with: "'\(binary)' ") + " --json"])
        #expect(retried.status == 0, "\(retried.err)")
        #expect(farm.current("n3") == "3" && farm.current("n4") == "3" && farm.current("n1") == "2")

        // A failure budget as a share of the selection: 20% of 4 nodes tolerates none, so the
        // rollout stops at unhealthy n2; 25% tolerates one, so n3 and n4 go on to 4.
        try farm.release("4", service: health)
        try #require(FileManager.default.createFile(atPath: farm.root("n2") + "/unhealthy-4", contents: Data()))
        let strict = try farm.slipway(["deploy", "\(app)@4", "--on", "n1,n2,n3,n4", "--json", "--batch", "1", "--max-failures", "20%"])
        #expect(strict.status != 0)
        let v4 = try farm.outcomes(strict)
        #expect(v4["n1"]?.result == .activated && v4["n2"]?.result == .rolledBack)
        #expect(v4["n3"]?.result == .notTouched && v4["n4"]?.result == .notTouched, "\(v4)")
        let tolerant = try farm.slipway(["deploy", "\(app)@4", "--on", "n1,n2,n3,n4", "--json", "--batch", "1", "--max-failures", "25%"])
        #expect(tolerant.status != 0, "a failed node still fails the command")
        let v4b = try farm.outcomes(tolerant)
        #expect(v4b["n2"]?.result == .rolledBack && v4b["n3"]?.result == .activated && v4b["n4"]?.result == .activated, "\(v4b)")
        #expect(farm.current("n3") == "4" && farm.current("n4") == "4" && farm.current("n2") != "4")
        #expect(tolerant.err.contains("--max-failures 25%"), "the retry line keeps the budget: \(tolerant.err)")
        let bad = try farm.slipway(["deploy", "\(app)@4", "--on", "n1", "--max-failures", "150%"])
        #expect(bad.status != 0 && bad.err.contains("not a failure budget"), "\(bad.err)")
    }

    @Test("--progress json: one JSON object per line and state change, every node from its first state to its result", .needs(.nodeBinary))
    func progressJSON() throws {
        let binary = try #require(nodeBinary)
        let farm = try LocalFarm(nodes: 2, binary: binary)
        defer { farm.fixture.remove() }
        try farm.release("1")
        let push = try farm.slipway(["push", "\(farm.fixture.app)@1", "--on", "n1,n2", "--progress", "json", "-q"])
        #expect(push.status == 0, "push: \(push.err)")
        struct Event: Decodable { var time: String; var node: String; var state: String; var total: UInt64? }
        let lines = push.err.split(separator: "\n").filter { $0.hasPrefix("{") }
        let events = try lines.map { try JSONDecoder().decode(Event.self, from: Data($0.utf8)) }
        for node in ["n1", "n2"] {
            let states = events.filter { $0.node == node }.map(\.state)
            #expect(states.first == "asking what it has" && states.last?.hasPrefix("landed") == true, "\(node): \(states)")
            #expect(states.contains { $0.hasPrefix("sending archive") }, "\(node): \(states)")
        }
        #expect(events.contains { $0.total != nil && $0.total! > 0 })
        #expect(events.allSatisfy { $0.time.hasSuffix("Z") && $0.time.contains("T") }, "\(events.map(\.time))")
        let bad = try farm.slipway(["push", "\(farm.fixture.app)@1", "--on", "n1", "--progress", "fancy"])
        #expect(bad.status != 0 && bad.err.contains("fancy"), "\(bad.err)")
    }

    @Test("deploy --resume works only on the nodes the rollout state does not record as done, and contacts none of the others", .needs(.nodeBinary))
    func resumeRollout() throws {
        let binary = try #require(nodeBinary)
        let farm = try LocalFarm(nodes: 4, binary: binary)
        defer { farm.fixture.remove() }
        let app = farm.fixture.app
        let health = ServiceSpec(health: HealthCheck(command: "[ ! -e \"$SLIPWAY_ROOT/unhealthy-$SLIPWAY_VERSION\" ]", timeoutSeconds: 5, retries: 1))
        try farm.release("1", service: health)
        let store = farm.fixture.store

        // Nothing to resume yet: said so.
        let none = try farm.slipway(["deploy", "\(app)@1", "--on", "n1,n2,n3,n4", "--resume"])
        #expect(none.status != 0 && none.err.contains("no rollout of \(app)@1 to resume"), "\(none.err)")

        // n2 is unhealthy: in batches of one the rollout stops there; n3 and n4 are not touched.
        try FileManager.default.createDirectory(atPath: farm.root("n2"), withIntermediateDirectories: true)
        try #require(FileManager.default.createFile(atPath: farm.root("n2") + "/unhealthy-1", contents: Data()))
        let first = try farm.slipway(["deploy", "\(app)@1", "--on", "n1,n2,n3,n4", "--json", "--batch", "1"])
        #expect(first.status != 0)
        let state = try #require(try RolloutState.load(store: store, reference: .init(name: app, version: "1")))
        #expect(state.ended && Set(state.unfinished) == ["n2", "n3", "n4"], "\(state.nodes)")

        // The state file a controller killed after the first batch would leave: n1 done, the
        // rest pending. --resume takes the rest and never asks n1 (its node root is made
        // unreadable to the controller: any contact would fail).
        var killed = state
        killed.ended = false
        for i in killed.nodes.indices where killed.nodes[i].node != "n1" { killed.nodes[i].result = .pending }
        try killed.save(store: store, reference: .init(name: app, version: "1"))
        try FileManager.default.removeItem(atPath: farm.root("n2") + "/unhealthy-1")
        let hidden = farm.root("n1") + ".away"
        try FileManager.default.moveItem(atPath: farm.root("n1"), toPath: hidden)
        let resumed = try farm.slipway(["deploy", "\(app)@1", "--on", "n1,n2,n3,n4", "--json", "--batch", "1", "--resume"])
        try FileManager.default.moveItem(atPath: hidden, toPath: farm.root("n1"))
        #expect(resumed.status == 0, "resume: \(resumed.err)")
        let outcomes = try farm.outcomes(resumed)
        #expect(Set(outcomes.keys) == ["n2", "n3", "n4"], "\(outcomes.keys)")
        // They had landed 1 in the first run: nothing is sent again.
        for (node, outcome) in outcomes {
            #expect(outcome.result == .activated && outcome.bytesSent == 0, "\(node): \(outcome)")
        }
        #expect(resumed.err.contains("3 nodes to do, 1 done already"), "\(resumed.err)")
        for node in farm.nodes { #expect(farm.current(node) == "1", "\(node)") }
        let after = try #require(try RolloutState.load(store: store, reference: .init(name: app, version: "1")))
        #expect(after.ended && after.unfinished.isEmpty && after.nodes.count == 4, "\(after.nodes)")

        // Everything done: a resume has nothing to do and contacts no node.
        let again = try farm.slipway(["deploy", "\(app)@1", "--on", "n1,n2,n3,n4", "--resume"])
        #expect(again.status == 0 && again.err.contains("0 nodes to do"), "\(again.err)")
            }

    @Test("an interrupted upload resumes from the node's offset", .needs(.nodeBinary))
    func resume() throws {
        let binary = try #require(nodeBinary)
        let farm = try LocalFarm(nodes: 1, binary: binary)
        defer { farm.fixture.remove() }
        let release = try farm.fixture.release("1", big: 4 << 20)
        let size = release.manifest.archive.size
        // Half the archive already in incoming/, as a cut connection leaves it.
        let incoming = farm.root("n1") + "/\(farm.fixture.app)/incoming"
        try FileManager.default.createDirectory(atPath: incoming, withIntermediateDirectories: true)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: release.archivePath))
        try bytes.prefix(Int(size / 2)).write(to: URL(fileURLWithPath: incoming + "/1.tar.xz"))

        let push = try farm.slipway(["push", "\(farm.fixture.app)@1", "--on", "n1", "--json"])
        #expect(push.status == 0, "push: \(push.err)")
        let outcome = try #require(try farm.outcomes(push)["n1"])
        #expect(outcome.result == .landed)
        let manifestSize = try FileHasher.sha256(path: release.manifestPath).size
        // The second half of the archive, and the manifest (compressed on the wire).
        #expect(outcome.bytesSent > size - size / 2 && outcome.bytesSent < size - size / 2 + manifestSize, "sent \(outcome.bytesSent)")
        // Landed uploads are not kept.
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: incoming)) ?? []).isEmpty)
        #expect(farm.current("n1") == nil)
    }

    /// Issue 14: the controller decides by the node's error code, never by its words. A first
    /// activation whose health fails leaves the node with no current version and says so in
    /// words that contain neither "rolled back to" nor "switched back"; it is still filed as
    /// rolled back (the node undid it itself), and a node verb's failure under --json is an
    /// error document with its code and the protocol version.
    @Test("node failures are typed: an error document with a code; a first activation that fails is rolled back", .needs(.nodeBinary))
    func typedFailures() throws {
        let binary = try #require(nodeBinary)
        let farm = try LocalFarm(nodes: 1, binary: binary)
        defer { farm.fixture.remove() }
        let health = ServiceSpec(health: HealthCheck(command: "[ ! -e \"$SLIPWAY_ROOT/unhealthy-$SLIPWAY_VERSION\" ]", timeoutSeconds: 5, retries: 1))
        try farm.release("1", service: health)
        let app = farm.fixture.app
        try FileManager.default.createDirectory(atPath: farm.root("n1"), withIntermediateDirectories: true)
        try #require(FileManager.default.createFile(atPath: farm.root("n1") + "/unhealthy-1", contents: Data()))
        let first = try farm.slipway(["deploy", "\(app)@1", "--on", "n1", "--json"])
        #expect(first.status != 0)
        let outcome = try #require(try farm.outcomes(first)["n1"])
        #expect(outcome.result == .rolledBack, "\(outcome)")
        #expect(outcome.detail?.contains("no previous version") == true, "\(outcome)")
        #expect(farm.current("n1") == nil)

        // The node verb itself: the error document on stdout, the human line on stderr.
        let rollback = try run(binary, ["node", "rollback", app, "--root", farm.root("n1"), "--json"])
        #expect(rollback.status != 0)
        let reply = try JSONDecoder().decode(NodeErrorReply.self, from: rollback.stdout)
        #expect(reply.error.code == .noPreviousVersion && reply.protocolVersion == NodeWire.version, "\(reply)")
        #expect(rollback.err.hasPrefix("slipway: error: ") && rollback.err.contains(reply.error.message))
        let status = try run(binary, ["node", "status", app, "--root", farm.root("n1"), "--json"])
        #expect(try JSONDecoder().decode(NodeStatus.self, from: status.stdout).protocolVersion == NodeWire.version)
    }

    @Test("bad selections and inventories fail with one clear line", .needs(.nodeBinary))
    func mistakes() throws {
        let binary = try #require(nodeBinary)
        let farm = try LocalFarm(nodes: 2, binary: binary)
        defer { farm.fixture.remove() }
        try farm.fixture.release("1")
        let nothing = try farm.slipway(["deploy", "web@1", "--on", "@db"])
        #expect(nothing.status != 0)
        #expect(nothing.err.contains("'@db' matches no node"))
        let missing = try run(binary, ["status", "--on", "n1", "--inventory", farm.fixture.dir.sub("none.toml")])
        #expect(missing.status != 0)
        #expect(missing.err.contains("no such file"))
        let unknown = try farm.slipway(["push", "web@9", "--on", "n1"])
        #expect(unknown.status != 0)
        #expect(unknown.err.split(separator: "\n").count == 1, "\(unknown.err)")
    }
}

/// Issue 13: the controller ran `ssh … <host> -- <command>`, so a host such as `-V` was read by
/// ssh as an option (`ssh -V` prints its version and exits 0, as if the node had answered).
/// `--` must come before the destination in every ssh invocation of the fleet.
@Suite("Fleet: ssh options end before the destination")
struct FleetSSHDestinationTests {
    @Test("a host beginning with '-' is a destination to ssh, never an option",
          .enabled(if: toolPath("ssh") != nil, "needs OpenSSH's ssh client; scripts/setup installs it"))
    func dashHost() throws {
        let tmp = try TempDir("slipway-ssh-dash")
        defer { tmp.remove() }
        // The node is built directly: the inventory itself refuses such a host.
        var node = FleetNode(name: "dash", host: "-V")
        // No network: were "-V" taken as a host name, nothing would be looked up or reached.
        node.sshOptions = ["-F", "/dev/null", "-o", "ProxyCommand=false"]
        let transport = SSHTransport(node: node, controlDirectory: tmp.path)
        defer { transport.close() }
        for (label, result) in [("slipway", try transport.slipway(["--version"], timeout: .seconds(30))),
                                ("shell", try transport.shell("true", input: .null, timeout: .seconds(30)))] {
            #expect(result.status != 0, "\(label): ssh exited 0, so '-V' was read as an option: \(result.standardErrorTail)")
            #expect(!result.standardErrorTail.contains("OpenSSH_"), "\(label): ssh printed its version: \(result.standardErrorTail)")
        }
    }
}
