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

/// Findings of the attack review (docs/security.md): the signature policy, shared
/// directories that would lead out of the node root, and a switch whose journal cannot be
/// written.
@Suite("Node security: signature policy, shared paths, journal on a full disk")
struct NodeSecurityTests {
    /// A release signed by `key`, its signature then stripped and its manifest rewritten
    /// with a start hook that leaves a mark: what an attacker with write access to the store
    /// (or the path) could make of a signed release.
    func strippedRelease(_ fx: NodeFixture, key: ReleaseSigningKey, mark: String) throws -> StoredRelease {
        let release = try fx.release("1", signingKey: key)
        try FileManager.default.removeItem(atPath: release.signaturePath)
        var manifest = release.manifest
        manifest.service = ServiceSpec(start: "touch \(mark)")
        try manifest.encoded().write(to: URL(fileURLWithPath: release.manifestPath))
        return try fx.store.release(name: fx.app, version: "1")
    }

    @Test("trusted keys alone require a signature: a stripped, rewritten release does not land and its hook never runs (install)",
          .needs(.nodeBinary))
    func strippedSignatureInstall() throws {
        let binary = try #require(nodeBinary)
        let fx = try NodeFixture()
        defer { fx.remove() }
        let keyPath = fx.dir.sub("k")
        try ReleaseSigning.generateKey(at: keyPath)
        let mark = fx.dir.sub("pwned")
        _ = try strippedRelease(fx, key: try ReleaseSigning.loadSigningKey(path: keyPath), mark: mark)
        let config = fx.dir.sub("node.toml")
        try Data("trusted_keys = [\"\(keyPath).pub\"]\n".utf8).write(to: URL(fileURLWithPath: config))

        let install = try run(binary, ["install", "\(fx.app)@1", "--store", fx.store.root, "--root", fx.root, "--config", config])
        #expect(install.status != 0, "install of a stripped release must fail: \(install.err)")
        #expect(install.err.contains("unsigned") && install.err.contains("requires signed releases"), "\(install.err)")
        #expect(!exists(mark), "the rewritten start hook ran")
        #expect(fx.current == nil)
        #expect(((try? DirBackend().landedVersions(layout: fx.layout)) ?? []).isEmpty)

        // The explicit opt-out lands it, and says so.
        let allowed = fx.dir.sub("allow.toml")
        try Data("trusted_keys = [\"\(keyPath).pub\"]\nallow_unsigned = true\n".utf8).write(to: URL(fileURLWithPath: allowed))
        let apply = try run(binary, ["node", "apply", "--archive", try fx.store.release(name: fx.app, version: "1").archivePath,
                                     "--manifest", try fx.store.release(name: fx.app, version: "1").manifestPath,
                                     "--root", fx.root, "--config", allowed, "--json"])
        #expect(apply.status == 0, "\(apply.err)")
        #expect(apply.err.contains("warning:") && apply.err.contains("allow_unsigned"), "no warning: \(apply.err)")
        #expect(apply.out.contains("\"unsigned-allowed\""), "\(apply.out)")
    }

    @Test("--require-signature without a trusted key is an error, as in node.toml; with both opt-in and opt-out too",
          .needs(.nodeBinary))
    func requireSignatureNeedsKey() throws {
        let binary = try #require(nodeBinary)
        let fx = try NodeFixture()
        defer { fx.remove() }
        let status = try run(binary, ["node", "status", fx.app, "--root", fx.root, "--require-signature"])
        #expect(status.status != 0)
        #expect(status.err.contains("no trusted key is listed"), "\(status.err)")
        let keyPath = fx.dir.sub("k")
        try ReleaseSigning.generateKey(at: keyPath)
        let both = try run(binary, ["node", "status", fx.app, "--root", fx.root, "--trust", keyPath + ".pub",
                                    "--require-signature", "--allow-unsigned"])
        #expect(both.status != 0)
        #expect(both.err.contains("contradict"), "\(both.err)")
        #expect(throws: NodeError.self) { try NodeSettings.parse("allow_unsigned = true\nrequire_signature = true\ntrusted_keys = [\"/k.pub\"]\n") }
    }

    @Test("apply with trusted keys: unsigned refused, allow_unsigned lands it with a warning, a bad signature is refused either way")
    func policyInTheLibrary() throws {
        let fx = try NodeFixture()
        defer { fx.remove() }
        let keyPath = fx.dir.sub("k")
        try ReleaseSigning.generateKey(at: keyPath)
        let otherPath = fx.dir.sub("other")
        try ReleaseSigning.generateKey(at: otherPath)
        try fx.release("1")
        try fx.release("2", signingKey: try ReleaseSigning.loadSigningKey(path: otherPath))
        let strict = try fx.context { $0.trustedKeys = [keyPath + ".pub"] }
        #expect(strict.settings.signatureRequired)
        #expect(throws: NodeError.self) { try fx.applyFull("1", context: strict) }
        let lines = LogLines()
        var loose = try fx.context { $0.trustedKeys = [keyPath + ".pub"]; $0.allowUnsigned = true }
        loose.log = { lines.append($0) }
        #expect(try fx.applyFull("1", context: loose).signature == .unsignedAllowed)
        #expect(lines.all.contains { $0.hasPrefix("warning:") && $0.contains("allow_unsigned") }, "\(lines.all)")
        #expect(throws: NodeError.self) { try fx.applyFull("2", context: loose) }
    }

    @Test("activate and rollback check a landed version against the policy in force now")
    func activateRechecks() throws {
        let fx = try NodeFixture()
        defer { fx.remove() }
        let keyPath = fx.dir.sub("k")
        try ReleaseSigning.generateKey(at: keyPath)
        let key = try ReleaseSigning.loadSigningKey(path: keyPath)
        try fx.release("1")
        try fx.release("2", signingKey: key)
        try fx.release("3")
        let open = try fx.context()
        for version in ["1", "2", "3"] { try fx.applyFull(version, context: open) }
        _ = try NodeActivate.activate(app: fx.app, version: "1", context: open)
        _ = try NodeActivate.activate(app: fx.app, version: "2", context: open)

        // The node now trusts a key: the unsigned versions landed before may not become current.
        let strict = try fx.context { $0.trustedKeys = [keyPath + ".pub"] }
        do {
            _ = try NodeActivate.activate(app: fx.app, version: "3", context: strict)
            Issue.record("activating an unsigned landed version under trusted keys should fail")
        } catch {
            #expect("\(error)".contains("web@3 is unsigned"), "\(error)")
        }
        #expect(fx.current == "2")
        do {
            _ = try NodeRollback.rollback(app: fx.app, context: strict)
            Issue.record("rolling back to an unsigned landed version under trusted keys should fail")
        } catch {
            #expect("\(error)".contains("web@1 is unsigned"), "\(error)")
        }
        #expect(fx.current == "2")
        try fx.checkInvariant("after refused switches")
        // The signed one switches as before.
        _ = try NodeActivate.activate(app: fx.app, version: "1", context: open)
        #expect(try NodeActivate.activate(app: fx.app, version: "2", context: strict).outcome == .activated)
    }

    @Test("a shared directory whose path in shared/ leads through a symlink is refused; nothing is written outside the root")
    func sharedEscape() throws {
        let fx = try NodeFixture()
        defer { fx.remove() }
        let outside = try TempDir("slipway-outside")
        defer { outside.remove() }
        // Release 1 shares all of var/ and ships var/log as a symlink out of the tree.
        let tree1 = fx.dir.sub("t1")
        try FileManager.default.createDirectory(atPath: tree1 + "/var", withIntermediateDirectories: true)
        #expect(symlink(outside.path, tree1 + "/var/log") == 0)
        try Data("1\n".utf8).write(to: URL(fileURLWithPath: tree1 + "/version"))
        _ = try fx.store.add(tree: tree1, name: fx.app, version: "1", created: 1_700_000_000, configuration: .init(level: 1),
                             service: ServiceSpec(sharedDirectories: ["var"]))
        // Release 2 shares var/log/app: resolved naively, shared/var/log/app is outside/app.
        let tree2 = fx.dir.sub("t2")
        try FileManager.default.createDirectory(atPath: tree2 + "/var/log/app", withIntermediateDirectories: true)
        try Data("x\n".utf8).write(to: URL(fileURLWithPath: tree2 + "/var/log/app/f"))
        try Data("2\n".utf8).write(to: URL(fileURLWithPath: tree2 + "/version"))
        _ = try fx.store.add(tree: tree2, name: fx.app, version: "2", created: 1_700_000_000, configuration: .init(level: 1),
                             service: ServiceSpec(sharedDirectories: ["var/log/app"]))
        let context = try fx.context()
        try fx.applyFull("1", context: context)
        #expect(NodeFilesForTest.readLink(fx.layout.shared + "/var/log") == outside.path, "the fixture's premise")
        do {
            try fx.applyFull("2", context: context)
            Issue.record("landing release 2 should fail: shared/var/log is a symlink")
        } catch {
            #expect("\(error)".contains("\(fx.layout.shared)/var/log is a symlink to \(outside.path)"), "\(error)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside.path).isEmpty, "written outside the node root")
        #expect(try DirBackend().landedVersions(layout: fx.layout) == ["1"])
    }

    @Test("a full disk stops activate and rollback before the switch: current and the journal stay as they were",
          .enabled(if: isRoot, "mounts a small tmpfs (root only)"))
    func fullDiskJournal() throws {
        let fx = try NodeFixture()
        defer { fx.remove() }
        try FileManager.default.createDirectory(atPath: fx.root, withIntermediateDirectories: true)
        try runChecked("mount", ["-t", "tmpfs", "-o", "size=2m", "slipway-journal", fx.root])
        defer { _ = try? run("umount", ["-l", fx.root]) }
        for version in ["1", "2", "3"] { try fx.release(version) }
        let context = try fx.context()
        for version in ["1", "2", "3"] { try fx.applyFull(version, context: context) }
        _ = try NodeActivate.activate(app: fx.app, version: "1", context: context)
        _ = try NodeActivate.activate(app: fx.app, version: "2", context: context)
        let journal = try NodeState.load(fx.layout).activations.count

        // Fill the file system to the last page.
        let filler = open(fx.root + "/filler", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        #expect(filler >= 0)
        let chunk = [UInt8](repeating: 0xA5, count: 4096)
        while chunk.withUnsafeBytes({ write(filler, $0.baseAddress, $0.count) }) > 0 {}
        #expect(errno == ENOSPC)
        close(filler)

        for (label, body) in [("activate", { _ = try NodeActivate.activate(app: fx.app, version: "3", context: context) }),
                              ("rollback", { _ = try NodeRollback.rollback(app: fx.app, context: context) })] as [(String, () throws -> Void)] {
            do {
                try body()
                Issue.record("\(label) on a full disk should fail")
            } catch {
                #expect("\(error)".contains("was not activated") && "\(error)".contains("No space left"), "\(label): \(error)")
                #expect("\(error)".contains("stays on 2"), "\(label): \(error)")
            }
            #expect(fx.current == "2", "\(label) switched although its journal could not be written")
            #expect(try NodeState.load(fx.layout).activations.count == journal, "\(label)")
        }
        unlink(fx.root + "/filler")
        try fx.checkInvariant("after the full disk")
        #expect(try NodeRollback.rollback(app: fx.app, context: context).version == "1")
        #expect(try NodeState.load(fx.layout).activations.count == journal + 1)
    }
}

/// Log lines collected from another thread.
final class LogLines: @unchecked Sendable {
    private var lines: [String] = []
    private let lock = NSLock()
    func append(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}

/// Whether the ssh farm can run here: root, sshd, ip, btrfs (the suite's tests are serialized:
/// they share scripts/testfarm).
let farmTools: Bool = isRoot && ["sshd", "ssh", "ip", "mkfs.btrfs", "tc"].allSatisfy { toolPath($0) != nil }

extension FleetFarmTests {
    @Test("deploy refuses, before sending a byte, an unsigned or stripped release to a node that trusts a key, and names it",
          .enabled(if: farmTools, "needs root, sshd, ip, mkfs.btrfs and tc (scripts/setup installs them)"),
          .needs(.nodeBinary))
    func signaturePolicyBeforeSending() throws {
        let binary = try #require(nodeBinary)
        let farm = try SSHFarm(nodes: 2, binary: binary)
        defer { farm.down() }
        let app = "web"
        let keyPath = farm.temp.sub("release-key")
        try ReleaseSigning.generateKey(at: keyPath)
        let key = try ReleaseSigning.loadSigningKey(path: keyPath)
        let mark = "/var/lib/slipway/pwned"
        try farm.release(app, "1", service: ServiceSpec(start: "touch \(mark)"))

        // node1 trusts the key (node.toml on its own file system); node2 trusts nothing.
        let publicKey = try String(contentsOfFile: keyPath + ".pub", encoding: .utf8)
        try farm.ssh("node1", "printf '%s' '\(publicKey)' > /var/lib/slipway/release.pub && " +
                     "echo 'trusted_keys = [\"/var/lib/slipway/release.pub\"]' > /var/lib/slipway/node.toml")
        let inventoryText = try String(contentsOfFile: farm.inventory, encoding: .utf8)
        #expect(inventoryText.contains("[nodes.node1]\n"))
        let inventory = (farm.inventory as NSString).deletingLastPathComponent + "/inventory-signed.toml"
        try Data(inventoryText.replacingOccurrences(of: "[nodes.node1]\n", with: "[nodes.node1]\nnode_config = \"/var/lib/slipway/node.toml\"\n").utf8)
            .write(to: URL(fileURLWithPath: inventory))
        func deploy(_ version: String) throws -> CommandResult {
            try run(binary, ["deploy", "\(app)@\(version)", "--on", "@farm", "--json", "--inventory", inventory, "--store", farm.store.root])
        }
        func incoming(_ node: String) throws -> String {
            try farm.ssh(node, "ls -A /var/lib/slipway/\(app)/incoming 2>/dev/null || true").out.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        // An unsigned release: node1 refuses it, node2 is not touched, nothing travels.
        let unsigned = try deploy("1")
        #expect(unsigned.status != 0)
        #expect(unsigned.err.contains("node1"), "the refusing node is named: \(unsigned.err)")
        let first = try farm.outcomes(unsigned)
        #expect(first["node1"]?.result == .failed && first["node1"]?.detail?.contains("unsigned") == true, "\(String(describing: first["node1"]))")
        #expect(first["node2"]?.result == .notTouched, "\(String(describing: first["node2"]))")
        #expect(first.values.allSatisfy { $0.bytesSent == 0 })
        for node in farm.nodes {
            #expect(try incoming(node).isEmpty, "\(node) received bytes")
            #expect(try farm.current(node, app: app) == nil)
        }

        // A signed release whose signature was stripped and manifest rewritten: the same.
        let signed = try farm.store.add(tree: try { () throws -> String in
            let tree = farm.temp.sub("tree-2")
            try FileManager.default.createDirectory(atPath: tree + "/etc/app", withIntermediateDirectories: true)
            try Data("2\n".utf8).write(to: URL(fileURLWithPath: tree + "/etc/app/version"))
            return tree
        }(), name: app, version: "2", created: 1_700_000_000, configuration: .init(level: 1), signingKey: key).release
        try FileManager.default.removeItem(atPath: signed.signaturePath)
        var manifest = signed.manifest
        manifest.service = ServiceSpec(start: "touch \(mark)")
        try manifest.encoded().write(to: URL(fileURLWithPath: signed.manifestPath))
        let stripped = try deploy("2")
        #expect(stripped.status != 0)
        #expect(try farm.outcomes(stripped)["node1"]?.detail?.contains("unsigned") == true, "\(stripped.out)")
        for node in farm.nodes {
            #expect(try incoming(node).isEmpty, "\(node) received bytes")
            #expect(try farm.ssh(node, "test -e \(mark)").status != 0, "\(node) ran the rewritten hook")
        }

        // Signed properly, it lands on both: node1 verifies it.
        let good = try farm.store.add(tree: try { () throws -> String in
            let tree = farm.temp.sub("tree-3")
            try FileManager.default.createDirectory(atPath: tree + "/etc/app", withIntermediateDirectories: true)
            try Data("3\n".utf8).write(to: URL(fileURLWithPath: tree + "/etc/app/version"))
            return tree
        }(), name: app, version: "3", created: 1_700_000_000, configuration: .init(level: 1), signingKey: key).release
        _ = good
        let third = try deploy("3")
        #expect(third.status == 0, "\(third.err)")
        for node in farm.nodes { #expect(try farm.current(node, app: app) == "3") }
    }
}
