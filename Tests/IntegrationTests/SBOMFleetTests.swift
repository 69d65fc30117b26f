import Foundation
import Testing
@testable import SlipwayCommands
@testable import SlipwaySystem
@testable import SlipwayArchive
@testable import SlipwayRelease
@testable import SlipwayNodeProtocol
@testable import SlipwayNode
@testable import SlipwayFleet
import SlipwayTestSupport

/// The SBOM from `pack` to the node (docs/sbom.md): it travels with the release, the node
/// keeps it and shows it, a node with require_sbom refuses a release without one or with a
/// forged one, and plans and deploy summaries name the package changes.
@Suite("SBOM on the fleet, local nodes", .serialized)
struct SBOMFleetTests {
    @Test("packed SBOMs travel to the nodes; require_sbom; package changes in the plan and the summary", .needs(.nodeBinary))
    func sbomOnTheFleet() throws {
        let binary = try #require(nodeBinary)
        let farm = try LocalFarm(nodes: 2, binary: binary)
        defer { farm.fixture.remove() }
        let dir = farm.fixture.dir
        let app = farm.fixture.app
        let store = farm.fixture.store.root
        let key = try ReleaseSigning.generateKey(at: dir.sub("release.key"))

        // 1.0 and 1.1 (one more Debian package) from Debian-like trees; 2.0 from a tree
        // with nothing an SBOM lists. All signed.
        try makeDebianLikeTree(at: dir.sub("tree-1.0"))
        try makeDebianLikeTree(at: dir.sub("tree-1.1"), extra: ("netbase", "6.4"))
        try FileManager.default.createDirectory(atPath: dir.sub("tree-2.0") + "/etc", withIntermediateDirectories: true)
        try writeFile(dir.sub("tree-2.0") + "/etc/motd", "plain\n")
        for version in ["1.0", "1.1", "2.0"] {
            try runChecked(binary, ["pack", dir.sub("tree-\(version)"), "--name", app, "--version", version, "--store", store,
                                    "--sign-key", key.privateKeyPath])
        }
        let printed = try runChecked(binary, ["sbom", "\(app)@1.1", "--format", "cyclonedx", "--store", store, "--trust", key.publicKeyPath])
        #expect(printed.out.contains("\"bomFormat\" : \"CycloneDX\"") && printed.out.contains("pkg:deb/debian/netbase@6.4"))
        let none = try run(binary, ["sbom", "\(app)@2.0", "--store", store])
        #expect(!none.ok && none.err.contains("has no sbom.spdx.json"), "\(none.err)")

        // n2 trusts the key and requires an SBOM.
        let config = dir.sub("n2.toml")
        try writeFile(config, "trusted_keys = [\"\(key.publicKeyPath)\"]\nrequire_sbom = true\n")
        var inventory = try String(contentsOfFile: farm.inventory, encoding: .utf8)
        inventory = inventory.replacingOccurrences(of: "root = \"\(farm.root("n2"))\"", with: "root = \"\(farm.root("n2"))\"\nnode_config = \"\(config)\"")
        try writeFile(farm.inventory, inventory)

        let first = try farm.slipway(["deploy", "\(app)@1.0", "--on", "n*"])
        #expect(first.ok, "\(first.err)")
        for node in farm.nodes {
            #expect(FileManager.default.fileExists(atPath: NodeLayout(root: farm.root(node), app: app).sbom("1.0")), "\(node) keeps the SBOM")
        }
        let shown = try runChecked(binary, ["status", "--local", "--packages", app, "--root", farm.root("n2"), "--config", config, "--json"])
        let packages = try JSONDecoder().decode(NodePackages.self, from: shown.stdout)
        #expect(packages.version == "1.0" && packages.packages?.map(\.displayName) == ["base-files", "libfoo1:i386", "tzdata", "Flask-Login (pypi)"],
                "\(shown.out)")

        // The plan names the change; the deploy's summary too.
        let plan = try farm.slipway(["deploy", "\(app)@1.1", "--on", "n*", "--plan", "--json"])
        #expect(plan.ok, "\(plan.err)")
        let planned = try JSONDecoder().decode(FleetPlan.self, from: plan.stdout)
        for node in planned.nodes {
            #expect(node.packages == "1 added" && node.packageChanges?.added.map(\.name) == ["netbase"], "\(node.node): \(node.packages ?? "-")")
        }
        let second = try farm.slipway(["deploy", "\(app)@1.1", "--on", "n*"])
        #expect(second.ok && second.out.contains("packages 1.0 → 1.1: 1 added"), "\(second.out) \(second.err)")

        // A release without an SBOM: n2 refuses it, before anything is sent.
        let refused = try farm.slipway(["deploy", "\(app)@2.0", "--on", "n*"])
        #expect(!refused.ok && refused.out.contains("require_sbom"), "\(refused.out) \(refused.err)")
        #expect(farm.current("n2") == "1.1" && farm.current("n1") == "1.1")
        let blocked = try farm.slipway(["deploy", "\(app)@2.0", "--on", "n*", "--plan"])
        #expect(!blocked.ok && blocked.out.contains("BLOCKED: refuses the release: the release has no SBOM"), "\(blocked.out)")

        // A forged SBOM, straight to a node that requires one: refused, nothing landed.
        let release = try farm.fixture.store.release(name: app, version: "1.1")
        let forged = dir.sub("forged.spdx.json")
        try writeFile(forged, try readText(release.directory + "/sbom.spdx.json").replacingOccurrences(of: "netbase", with: "netbasf"))
        let fresh = dir.sub("fresh")
        let apply = try run(binary, ["node", "apply", "--archive", release.archivePath, "--manifest", release.manifestPath,
                                     "--signature", release.signaturePath, "--sbom", forged, "--root", fresh, "--config", config])
        #expect(!apply.ok && apply.err.contains("is not the one its manifest records"), "\(apply.err)")
        let missing = try run(binary, ["node", "apply", "--archive", release.archivePath, "--manifest", release.manifestPath,
                                       "--signature", release.signaturePath, "--root", fresh, "--config", config])
        #expect(!missing.ok && missing.err.contains("was not sent"), "\(missing.err)")
        #expect(NodeLayout(root: fresh, app: app).currentVersion == nil)
        #expect(!FileManager.default.fileExists(atPath: fresh + "/\(app)/releases/1.1"))
    }
}
