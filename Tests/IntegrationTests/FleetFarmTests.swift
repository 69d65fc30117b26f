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
@testable import SlipwayRegistry
import SlipwayTestSupport

/// The repository's root, from this file's path.
private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// A farm from `scripts/testfarm up N`: real sshd nodes in network namespaces, each with its
/// own btrfs root and no slipway until the controller installs it. Torn down by `down()`.
final class SSHFarm {
    let inventory: String
    let nodes: [String]
    let store: ReleaseStore
    let temp: TempDir
    let binary: String

    init(nodes count: Int, binary: String) throws {
        self.binary = binary
        let up = try run("bash", [repositoryRoot + "/scripts/testfarm", "up", String(count)])
        guard up.ok, let last = up.out.split(separator: "\n").last else {
            _ = try? run("bash", [repositoryRoot + "/scripts/testfarm", "down"])
            throw TestSupportError.commandFailed("scripts/testfarm up \(count)", up.status, up.err)
        }
        inventory = String(last)
        nodes = (1...count).map { "node\($0)" }
        temp = try TempDir("slipway-farm-test")
        store = ReleaseStore(root: temp.sub("store"))
    }

    func down() {
        _ = try? run("bash", [repositoryRoot + "/scripts/testfarm", "down"])
        temp.remove()
    }

    /// `slipway <arguments> --inventory … [--store …]`.
    func slipway(_ arguments: [String]) throws -> CommandResult {
        let store = ["push", "deploy"].contains(arguments.first ?? "") ? ["--store", self.store.root] : []
        return try run(binary, arguments + ["--inventory", inventory] + store)
    }

    /// Runs a shell command on a node over the farm's ssh config.
    @discardableResult
    func ssh(_ node: String, _ command: String) throws -> CommandResult {
        try run("ssh", ["-F", repositoryRoot + "/.testfarm/ssh_config", node, command])
    }

    /// A file of the node's directory on this machine, `.testfarm/hosts/NODE/NAME`
    /// (`opt/…` is the node's /opt/slipway, bound).
    func hostFile(_ node: String, _ name: String) -> String { repositoryRoot + "/.testfarm/hosts/\(node)/\(name)" }

    /// What a node's own sshd sees at `path`, through /proc/PID/root: its root and mount
    /// namespace, with no ssh and no namespace to enter.
    func nodePath(_ node: String, _ path: String) throws -> String {
        let pid = try String(contentsOfFile: hostFile(node, "sshd.pid"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return "/proc/\(pid)/root" + path
    }

    func outcomes(_ result: CommandResult) throws -> [String: NodeOutcome] {
        let list = try JSONDecoder().decode([NodeOutcome].self, from: result.stdout)
        return Dictionary(uniqueKeysWithValues: list.map { ($0.node, $0) })
    }

    func current(_ node: String, app: String) throws -> String? {
        let result = try ssh(node, "readlink /var/lib/slipway/\(app)/current || true")
        let text = result.out.trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : (text as NSString).lastPathComponent
    }

    /// Packs a release: `shared` MB of data every version has (seeded) plus a version file and
    /// `own` MB of its own random data.
    @discardableResult
    func release(_ app: String, _ version: String, shared: Int = 4, own: Int = 0, service: ServiceSpec? = nil,
                 compression: ArchiveCompression = .xz) throws -> StoredRelease {
        let tree = temp.sub("tree-\(app)-\(version)")
        try FileManager.default.createDirectory(atPath: tree + "/usr/share/app", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tree + "/etc/app", withIntermediateDirectories: true)
        var generator = SeededGenerator(seed: 7)
        for index in 0..<shared {
            try Data((0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) })
                .write(to: URL(fileURLWithPath: tree + "/usr/share/app/shared\(index)"))
        }
        if own > 0 { try Data(randomBytes(own << 20)).write(to: URL(fileURLWithPath: tree + "/usr/share/app/own")) }
        try Data("\(version)\n".utf8).write(to: URL(fileURLWithPath: tree + "/etc/app/version"))
        defer { try? FileManager.default.removeItem(atPath: tree) }
        var configuration = ArchiveWriterConfiguration(level: 1)
        configuration.compression = compression
        return try store.add(tree: tree, name: app, version: version, created: 1_700_000_000, configuration: configuration,
                             service: service).release
    }
}

extension Requirement {
    /// What the farm needs: root, sshd, ip, btrfs, tc, nft (lossy links, partitions).
    static let farm = Requirement.tools(["sshd", "ssh", "ip", "mkfs.btrfs", "tc", "nft"], root: true)
}

@Suite("Fleet, ssh farm", .serialized)
struct FleetFarmTests {
    @Test("six ssh nodes: install, deploy, deltas, a failing group, drift, rollback, cut and resume",
          .needs(.farm, .nodeBinary))
    func sixNodes() throws {
        let binary = try #require(nodeBinary)
        let farm = try SSHFarm(nodes: 6, binary: binary)
        defer { farm.down() }
        let app = "web"
        let health = ServiceSpec(health: HealthCheck(command: "[ ! -e \"$SLIPWAY_ROOT/unhealthy-$SLIPWAY_VERSION\" ]", timeoutSeconds: 5, retries: 1))
        try farm.release(app, "1", service: health)
        try farm.release(app, "2", service: health)
        try farm.release(app, "3", service: health)

        // The plan of v1 over ssh: every node lacks slipway (it would be installed, not now),
        // all full, the bytes the deploy then sends.
        let planned = try farm.slipway(["deploy", "\(app)@1", "--on", "@farm", "--plan", "--json"])
        #expect(planned.status == 0, "plan 1: \(planned.err)")
        let plan1 = try JSONDecoder().decode(FleetPlan.self, from: planned.stdout)
        #expect(plan1.nodes.allSatisfy { $0.slipway?.contains("would be installed") == true && $0.method == "full" }, "\(plan1.nodes)")
        for node in farm.nodes {
            let missing = try farm.ssh(node, "test -e /opt/slipway/bin/slipway && echo present || echo absent")
            #expect(missing.out.contains("absent"), "the plan installed slipway on \(node)")
        }

        // v1: every node lacks slipway and gets it installed first.
        let first = try farm.slipway(["deploy", "\(app)@1", "--on", "@farm", "--json", "--confirm-timeout", "30"])
        #expect(first.status == 0, "deploy 1: \(first.err)")
        let v1 = try farm.outcomes(first)
        for node in farm.nodes {
            #expect(v1[node]?.result == .activated, "\(node): \(String(describing: v1[node]))")
            #expect(v1[node]?.installedSlipway == true)
            #expect(v1[node]?.method == "full")
            #expect(v1[node]?.bytesSent == plan1.nodes.first { $0.node == node }?.bytes, "\(node): planned \(plan1.nodes)")
            #expect(try farm.current(node, app: app) == "1")
        }

        // v2 travels as deltas, a few kB instead of megabytes; the plan says so first.
        let plan2 = try JSONDecoder().decode(FleetPlan.self, from: try farm.slipway(["deploy", "\(app)@2", "--on", "@web,@api", "--plan", "--json", "--canary", "1", "--batch", "50%"]).stdout)
        #expect(plan2.canProceed && plan2.nodes.allSatisfy { $0.method == "delta from 1" && $0.slipway == nil && $0.space?.contains("free") == true }, "\(plan2.nodes)")
        let second = try farm.slipway(["deploy", "\(app)@2", "--on", "@web,@api", "--json", "--canary", "1", "--batch", "50%"])
        #expect(second.status == 0, "deploy 2: \(second.err)")
        let full = try farm.store.release(name: app, version: "2").manifest.archive.size
        for (node, outcome) in try farm.outcomes(second) {
            #expect(outcome.result == .activated && outcome.method == "delta from 1", "\(node): \(outcome)")
            #expect(!outcome.installedSlipway)
            #expect(outcome.bytesSent < full / 20, "\(node) sent \(outcome.bytesSent) of \(full)")
        }

        // v3's health check fails on the api group (node4-6): in batches of two, node3 and
        // node4 form the second batch; node4 switches itself back, node5 and node6 are not
        // touched, the command fails, and status shows the drift.
        for node in ["node4", "node5", "node6"] { try farm.ssh(node, "touch /var/lib/slipway/unhealthy-3") }
        let third = try farm.slipway(["deploy", "\(app)@3", "--on", "@farm", "--json", "--batch", "2"])
        #expect(third.status != 0)
        let v3 = try farm.outcomes(third)
        #expect(["node1", "node2", "node3"].allSatisfy { v3[$0]?.result == .activated }, "\(v3)")
        #expect(v3["node4"]?.result == .rolledBack)
        #expect(v3["node5"]?.result == .notTouched && v3["node6"]?.result == .notTouched)
        #expect(try farm.current("node4", app: app) == "2")
        #expect(try farm.current("node6", app: app) == "2")
        let status = try farm.slipway(["status", app, "--on", "@farm", "--json"])
        #expect(status.status == 0, "status: \(status.err)")
        let fleet = try JSONDecoder().decode(FleetStatus.self, from: status.stdout)
        #expect(fleet.drifting.count == 3, "drift: \(fleet.drifting)")
        #expect(fleet.unreachable.isEmpty)

        // Fleet rollback of the web group: back to 2 with no transfer.
        let back = try farm.slipway(["rollback", app, "--on", "@web", "--json"])
        #expect(back.status == 0, "rollback: \(back.err)")
        for node in ["node1", "node2", "node3"] { #expect(try farm.current(node, app: app) == "2") }

        // A node cut in the middle of its upload: the others complete; after heal a re-run
        // resumes from the node's offset. node2's link is slowed so the cut lands mid-way: at
        // 4 Mbit/s the 24 MiB take ~50 s, so the cut comes long before the end even when a
        // busy machine delays this loop by seconds (at 40 Mbit/s, 5 s, a loaded CI run once
        // cut after the upload had finished).
        // Meanwhile node3 and node5 are on lossy links (5 % of packets dropped each way,
        // 20 Mbit/s): TCP gets their uploads through.
        try farm.release(app, "4", shared: 0, own: 24, compression: .zstd)
        let testfarm = repositoryRoot + "/scripts/testfarm"
        try runChecked("bash", [testfarm, "netem", "node2", "rate 4mbit"])
        try runChecked("bash", [testfarm, "netem", "node3", "loss 5% rate 20mbit"])
        try runChecked("bash", [testfarm, "netem", "node5", "loss 5% rate 20mbit"])
        let started = Date()
        defer { _ = try? run("bash", [testfarm, "netem", "all", "off"]) }
        let push = try NodeChild(binary, ["push", "\(app)@4", "--full", "--on", "@farm", "--json", "--inventory", farm.inventory, "--store", farm.store.root])
        let upload = try farm.nodePath("node2", "/var/lib/slipway/\(app)/incoming/4.tar.zst")
        var partial: UInt64 = 0
        for _ in 0..<300 {
            partial = ((try? FileManager.default.attributesOfItem(atPath: upload))?[.size] as? NSNumber)?.uint64Value ?? 0
            if partial > 1 << 20 { break }
            usleep(50_000)
        }
        #expect(partial > 0, "node2's upload never started")
        _ = try run("bash", [repositoryRoot + "/scripts/testfarm", "cut", "node2"])
        let cutAfter = Date().timeIntervalSince(started)
        let cut = push.wait()
        #expect(cut.status != 0, "the push with node2 cut must fail (cut \(cutAfter) s after the start, \(partial) bytes seen)")
        print("push of 24 MiB to six nodes, two lossy, node2 cut: \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        // Its error names exactly the node that failed; the lossy ones landed.
        #expect(cut.stderr.contains("1 of 6 nodes failed or rolled back: node2;"), "\(cut.stderr)")
        _ = try run("bash", [repositoryRoot + "/scripts/testfarm", "heal", "node2"])
        _ = try runChecked("bash", [testfarm, "netem", "all", "off"])
        for node in farm.nodes {
            let half = try farm.ssh(node, "ls -a /var/lib/slipway/\(app)/releases | grep '^\\.' | grep -v '^\\.\\.\\?$' || true")
            #expect(half.out.isEmpty, "\(node) has half-landed work: \(half.out)")
        }
        let resumed = try farm.slipway(["push", "\(app)@4", "--full", "--on", "@farm", "--json"])
        #expect(resumed.status == 0, "re-run: \(resumed.err)")
        let again = try farm.outcomes(resumed)
        let size4 = try farm.store.release(name: app, version: "4").manifest.archive.size
        #expect(again["node2"]?.result == .landed)
        #expect((again["node2"]?.bytesSent ?? .max) < size4, "node2 resumed: sent \(again["node2"]?.bytesSent ?? 0) of \(size4)")
        for node in farm.nodes where node != "node2" {
            #expect(again[node]?.result == .alreadyLanded && again[node]?.bytesSent == 0, "\(node): \(String(describing: again[node]))")
        }
    }

    @Test("pull mode: nodes fetch from nginx serving the store; the controller sends no release bytes",
          .needs(.farm, .tools(["nginx", "curl"]), .nodeBinary))
    func pullMode() throws {
        let binary = try #require(nodeBinary)
        let farm = try SSHFarm(nodes: 3, binary: binary)
        defer { farm.down() }
        let app = "pulled"
        try farm.release(app, "1")
        try farm.release(app, "2")
        let server = try StoreServer(root: farm.store.root, address: "10.231.0.1", scratch: farm.temp.sub("nginx"))
        defer { server.stop() }
        let url = "http://10.231.0.1:\(server.port)"

        let first = try farm.slipway(["deploy", "\(app)@1", "--on", "@farm", "--json", "--pull-from", url])
        #expect(first.status == 0, "deploy 1: \(first.err)")
        let size = try farm.store.release(name: app, version: "1").manifest.archive.size
        for (node, outcome) in try farm.outcomes(first) {
            #expect(outcome.result == .activated && outcome.method == "pull full", "\(node): \(outcome)")
            #expect(outcome.bytesSent >= size, "\(node) fetched \(outcome.bytesSent)")
        }
        let second = try farm.slipway(["deploy", "\(app)@2", "--on", "@farm", "--json", "--pull-from", url])
        #expect(second.status == 0, "deploy 2: \(second.err)")
        for (node, outcome) in try farm.outcomes(second) {
            #expect(outcome.result == .activated && outcome.method == "pull delta from 1", "\(node): \(outcome)")
            #expect(try farm.current(node, app: app) == "2")
        }
        // Every byte came from nginx: its log holds the archive and delta requests of each node.
        let log = try String(contentsOfFile: server.accessLog, encoding: .utf8)
        #expect(log.components(separatedBy: "/\(app)/1/rootfs.tar.xz").count - 1 >= 3)
        #expect(log.components(separatedBy: "/\(app)/2/deltas/1.tar.xz").count - 1 >= 3)
    }
}

extension FleetFarmTests {
    @Test("pull from an OCI registry: the release is published once, nodes fetch its blobs by digest, then the published delta",
          .needs(.farm, .registry, .nodeBinary))
    func pullFromRegistry() throws {
        let binary = try #require(nodeBinary)
        let farm = try SSHFarm(nodes: 3, binary: binary)
        defer { farm.down() }
        let app = "registered"
        try farm.release(app, "1")
        try farm.release(app, "2", own: 1)
        // The registry on the farm's bridge, where the nodes reach it.
        let server = try RegistryServer(address: "10.231.0.1", scratch: farm.temp.sub("registry"))
        defer { server.stop() }
        let location = server.location("farm/\(app)")
        let store = ["--store", farm.store.root]

        // Not published yet: the deploy says so and touches no node.
        let early = try farm.slipway(["deploy", "\(app)@1", "--on", "@farm", "--json", "--pull-from", location])
        #expect(early.status != 0 && early.err.contains("slipway publish"), "unpublished: \(early.err)")

        let published = try run(binary, ["publish", "\(app)@1", "--to", location] + store)
        #expect(published.status == 0, "publish 1: \(published.err)")
        let first = try farm.slipway(["deploy", "\(app)@1", "--on", "@farm", "--json", "--pull-from", location])
        #expect(first.status == 0, "deploy 1: \(first.err)")
        let release1 = try farm.store.release(name: app, version: "1")
        for (node, outcome) in try farm.outcomes(first) {
            #expect(outcome.result == .activated && outcome.method == "pull full", "\(node): \(outcome)")
            #expect(try farm.current(node, app: app) == "1")
        }
        // Every node fetched the archive from the registry, by its digest.
        #expect(server.requests("GET", containing: "/blobs/sha256:\(release1.manifest.archive.sha256)") >= 3)

        // Version 2 with the delta from 1 made and published: each node fetches the delta.
        _ = try ReleaseDelta.make(store: farm.store, from: .init(name: app, version: "1"), to: .init(name: app, version: "2"))
        let published2 = try run(binary, ["publish", "\(app)@2", "--to", location] + store)
        #expect(published2.status == 0, "publish 2: \(published2.err)")
        let delta = try #require(try JSONDecoder().decode(DeltaMetadata.self, from: Data(contentsOf: URL(fileURLWithPath:
            ReleaseDelta.metadataPath(store: farm.store, name: app, from: "1", to: "2")))).archiveSHA256)
        let second = try farm.slipway(["deploy", "\(app)@2", "--on", "@farm", "--json", "--pull-from", location])
        #expect(second.status == 0, "deploy 2: \(second.err)")
        let release2 = try farm.store.release(name: app, version: "2")
        for (node, outcome) in try farm.outcomes(second) {
            #expect(outcome.result == .activated && outcome.method == "pull delta from 1", "\(node): \(outcome)")
            #expect(outcome.bytesSent < release2.manifest.archive.size, "\(node) fetched \(outcome.bytesSent)")
            #expect(try farm.current(node, app: app) == "2")
        }
        #expect(server.requests("GET", containing: "/blobs/sha256:\(delta)") >= 3)
        #expect(server.requests("GET", containing: "/blobs/sha256:\(release2.manifest.archive.sha256)") == 0)

        // The store's release is not the registry's any more (rebuilt under the same version):
        // the deploy refuses before any node fetches.
        let other = try farm.release(app, "3")
        _ = try run(binary, ["publish", "\(app)@3", "--to", location] + store)
        try FileManager.default.removeItem(atPath: other.directory)
        try farm.release(app, "3", own: 1)
        let mismatch = try farm.slipway(["deploy", "\(app)@3", "--on", "@farm", "--json", "--pull-from", location])
        #expect(mismatch.status != 0 && mismatch.err.contains("not the store's"), "mismatch: \(mismatch.err)")
        for node in farm.nodes { #expect(try farm.current(node, app: app) == "2") }
    }
}

/// nginx serving a directory on one address, started for a test and stopped by its pid.
final class StoreServer {
    let port: Int
    let accessLog: String
    private let process = Process()

    init(root: String, address: String, scratch: String) throws {
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        port = 18000 + Int.random(in: 0..<2000)
        accessLog = scratch + "/access.log"
        let config = """
            daemon off;
            master_process off;
            worker_processes 1;
            pid \(scratch)/nginx.pid;
            error_log \(scratch)/error.log;
            events { worker_connections 64; }
            http {
                access_log \(accessLog);
                client_body_temp_path \(scratch)/body;
                proxy_temp_path \(scratch)/proxy;
                fastcgi_temp_path \(scratch)/fastcgi;
                uwsgi_temp_path \(scratch)/uwsgi;
                scgi_temp_path \(scratch)/scgi;
                server {
                    listen \(address):\(port);
                    root \(root);
                }
            }
            """
        try Data(config.utf8).write(to: URL(fileURLWithPath: scratch + "/nginx.conf"))
        process.executableURL = URL(fileURLWithPath: toolPath("nginx") ?? "/usr/sbin/nginx")
        process.arguments = ["-c", scratch + "/nginx.conf", "-p", scratch]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<100 {
            if let answer = try? run("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://\(address):\(port)/"]), answer.out.count == 3 { return }
            usleep(50_000)
        }
        stop()
        throw TestSupportError.commandFailed("nginx on \(address):\(port)", -1, "did not answer")
    }

    /// Stops nginx by its pid.
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}
