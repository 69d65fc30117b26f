import Foundation
import SlipwayCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// recipes/hello-static.toml built as 1.0.0 and 1.0.1, and as 1.0.2 with a health check that
/// never passes (a copy of the recipe whose health URL names a missing page).
func buildHelloStatic(store: String, work: TempDir) throws {
    let recipe = try Recipe.load(path: recipesDirectory + "/hello-static.toml")
    for version in ["1.0.0", "1.0.1"] { _ = try build(recipe, store: store, compression: .zstd, version: version) }
    let copy = work.sub("recipes")
    try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
    try runChecked("cp", ["-a", recipesDirectory + "/hello-static", copy + "/hello-static"])
    let text = try String(contentsOfFile: recipesDirectory + "/hello-static.toml", encoding: .utf8)
    let broken = text.replacingOccurrences(of: "$PORT/health.txt", with: "$PORT/missing.txt")
    #expect(broken != text, "the recipe's health URL changed")
    try Data(broken.utf8).write(to: URL(fileURLWithPath: copy + "/hello-static.toml"))
    _ = try build(try Recipe.load(path: copy + "/hello-static.toml"), store: store, compression: .zstd, version: "1.0.2")
}

/// A local node with nginx in front, driven through the slipway binary as an operator would.
struct FrontedNode {
    let binary: String
    let store: String
    let config: String
    let root: String
    let port: Int

    @discardableResult
    func slipway(_ arguments: [String]) throws -> CommandResult {
        let local = ["install", "rollback"].contains(arguments.first ?? "") ? ["--config", config] : []
        return try run(binary, arguments + local)
    }

    func node(_ arguments: [String]) throws -> CommandResult {
        try run(binary, ["node"] + arguments + ["--config", config])
    }

    func install(_ reference: String) throws -> CommandResult { try slipway(["install", reference, "--store", store]) }

    var served: String? { servedVersion(port: port) }

    /// Waits until the front serves `version` (a dead man's switch acts on its own time).
    func waitServed(_ version: String, seconds: Double) -> Bool { waitFor(seconds: seconds) { served == version } }
}

@Suite("Graceful switch: the node runs the service, nginx in front, no request fails")
struct GracefulSwitchTests {
    @Test("hello-static behind nginx: deploy, rollback, a version failing health, an unconfirmed one: 0 failed requests",
          .enabled(if: serviceToolsPresent, serviceToolsMissing), .enabled(if: builtSlipway != nil, slipwayNotBuilt),
          arguments: ["dir", "btrfs"])
    func helloStatic(backend: String) throws {
        if backend == "btrfs" { try #require(requireBtrfs(), "btrfs on a loop file is not available") }
        let binary = try #require(builtSlipway)
        let work = try TempDir("slipway-graceful")
        defer { work.remove() }
        let store = work.sub("store")
        try buildHelloStatic(store: store, work: work)

        var loop: BtrfsLoop?
        defer { loop?.tearDown() }
        var root = work.sub("node")
        if backend == "btrfs" {
            loop = try BtrfsLoop.make(in: work)
            root = loop!.mount + "/slipway"
        }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let nginx = try TestNginx(root: work.sub("nginx"))
        defer { nginx.stop() }
        let releases = root + "/hello-static/releases"
        defer { stopServices(under: releases) }
        let port = Int.random(in: 30000...39999)
        let config = work.sub("node.toml")
        try Data(("root = \"\(root)\"\nbackend = \"\(backend)\"\n" + nginx.nodeSettings(app: "hello-static", listen: "127.0.0.1:\(port)")).utf8)
            .write(to: URL(fileURLWithPath: config))
        let node = FrontedNode(binary: binary, store: store, config: config, root: root, port: port)

        let first = try node.install("hello-static@1.0.0")
        #expect(first.ok, "\(first.err)")
        #expect(node.served == "1.0.0")

        let load = try LoadClient(url: "http://127.0.0.1:\(port)/", extract: "hello-static version ([0-9.]+)", directory: work.path)
        // Deploy.
        let second = try node.install("hello-static@1.0.1")
        #expect(second.ok, "\(second.err)")
        #expect(node.served == "1.0.1")
        // Roll back.
        let back = try node.slipway(["rollback", "hello-static", "--local"])
        #expect(back.ok, "\(back.err)")
        #expect(node.served == "1.0.0")
        // A version whose health check fails never takes a request.
        let broken = try node.install("hello-static@1.0.2")
        #expect(!broken.ok)
        #expect(broken.err.contains("health") && broken.err.contains("1.0.0"), "\(broken.err)")
        #expect(node.served == "1.0.0")
        #expect(processesRootedAt(releases + "/1.0.2").isEmpty, "the failed version left processes")
        // A switch nobody confirms: the watcher switches back on its own, the same graceful way.
        let unconfirmed = try node.node(["activate", "hello-static@1.0.1", "--confirm-timeout", "2", "--json"])
        #expect(unconfirmed.ok, "\(unconfirmed.err)")
        #expect(node.served == "1.0.1")
        #expect(node.waitServed("1.0.0", seconds: 30), "the dead man's switch did not switch back")
        let report = try load.finish()
        print("hello-static (\(backend)): \(report)")

        #expect(report.failed == 0, "\(report)")
        #expect(report.requests > 100, "\(report)")
        #expect(Set(report.bodies.keys) == ["1.0.0", "1.0.1"], "\(report)")
        #expect(Array(report.sequence.prefix(5)) == ["1.0.0", "1.0.1", "1.0.0", "1.0.1", "1.0.0"], "\(report)")
        // Once drained, nothing of the old versions runs; the current one does.
        _ = waitFor(seconds: 10) { processesRootedAt(releases + "/1.0.1").isEmpty }
        #expect(processesRootedAt(releases + "/1.0.1").isEmpty, "1.0.1 left processes after the switch back")
        #expect(!processesRootedAt(releases + "/1.0.0").isEmpty, "the current version runs")
        let status = try node.node(["status", "hello-static", "--json"])
        #expect(status.out.contains("\"current\" : \"1.0.0\"") || status.out.contains("\"current\":\"1.0.0\""), "\(status.out)")
    }
}
