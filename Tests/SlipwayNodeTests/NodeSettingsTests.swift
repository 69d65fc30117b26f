import Foundation
import Testing
@testable import SlipwayNode
@testable import SlipwayNodeProtocol
@testable import SlipwayRelease
@testable import SlipwayArchive
@testable import SlipwaySystem
@testable import SlipwayTestSupport

@Suite("Node settings, journal and delta planning")
struct NodeSettingsTests {
    @Test("node.toml: every key, defaults, backend tables")
    func parsesEverything() throws {
        let settings = try NodeSettings.parse("""
            root = "/srv/slipway"
            backend = "btrfs"
            keep = 3
            trusted_keys = ["/etc/slipway/release.pub"]
            require_signature = true
            lock_timeout = 10
            hook_timeout = 30.5
            registry_certs = "/etc/slipway/certs.d"
            [btrfs]
            mount = "/srv"
            [schroot]
            enabled = true
            directory = "/tmp/chroot.d"
            """, source: "node.toml")
        #expect(settings.root == "/srv/slipway" && settings.backend == .btrfs && settings.keep == 3)
        #expect(settings.trustedKeys == ["/etc/slipway/release.pub"] && settings.requireSignature)
        #expect(settings.lockTimeout == 10 && settings.hookTimeout == 30.5)
        #expect(settings.registryCerts == "/etc/slipway/certs.d")
        #expect(settings.backendParameters == ["mount": "/srv"])
        #expect(settings.schrootEnabled && settings.schrootDirectory == "/tmp/chroot.d")
        let defaults = try NodeSettings.parse("", source: "node.toml")
        #expect(defaults == { var d = NodeSettings(); d.source = "node.toml"; return d }())
    }

    @Test("unknown keys and wrong types are errors naming the key")
    func rejectsUnknown() {
        for (text, needle) in [("colour = 1", "colour: unknown key"), ("[schroot]\nmode = 1", "schroot.mode: unknown key"),
                               ("backend = \"ext9\"", "unknown backend 'ext9'"), ("keep = 0", "keep:"), ("registry_certs = \"certs.d\"", "registry_certs: expected an absolute path"),
                               ("require_signature = true", "no trusted key is listed"), ("root = \"relative\"", "absolute"),
                               ("require_sbom = true", "require_sbom needs signed releases"),
                               ("trusted_keys = [\"/k.pub\"]\nallow_unsigned = true\nrequire_sbom = true", "require_sbom needs signed releases"),
                               ("require_sbom = \"yes\"", "require_sbom")] {
            #expect(throws: NodeError.self) { try NodeSettings.parse(text, source: "node.toml") }
            do {
                _ = try NodeSettings.parse(text, source: "node.toml")
            } catch {
                #expect("\(error)".contains(needle), "\(text): \(error)")
            }
        }
    }

    @Test("previous comes from the journal's switches, not file times")
    func previousFromJournal() {
        var state = NodeState(app: "web")
        for (from, to) in [(nil, "1"), ("1", "2"), ("2", "3")] as [(String?, String)] {
            state.recordActivation(.init(kind: .activate, from: from, to: to, at: 0, result: .activated))
        }
        state.recordActivation(.init(kind: .activate, from: "3", to: "4", at: 0, result: .rolledBack))
        #expect(state.previous(current: "3", landed: ["1", "2", "3", "4"]) == "2")
        #expect(state.previous(current: "3", landed: ["1", "3"]) == "1")
        // A crash after the switch, before the journal: current already 4.
        #expect(state.previous(current: "4", landed: ["1", "2", "3", "4"]) == "3")
    }

    @Test("a delta carries changed files with their hardlink partners and parents")
    func deltaPlanning() {
        func file(_ path: String, _ sha: String) -> EntryRecord { EntryRecord(path: ArchivePath(path), kind: .file, mode: 0o644, uid: 0, gid: 0, size: 1, sha256: sha) }
        func dir(_ path: String) -> EntryRecord { EntryRecord(path: ArchivePath(path), kind: .directory, mode: 0o755, uid: 0, gid: 0) }
        func hard(_ path: String, _ target: String) -> EntryRecord { EntryRecord(path: ArchivePath(path), kind: .hardlink, mode: 0o644, uid: 0, gid: 0, linkTarget: ArchivePath(target)) }
        let old = [dir("a"), dir("a/b"), file("a/b/x", "1"), hard("a/y", "a/b/x"), file("gone", "1"), file("same", "1")]
        let new = [dir("a"), dir("a/b"), file("a/b/x", "2"), hard("a/y", "a/b/x"), file("same", "1"), file("added", "3")]
        let (paths, removals) = ReleaseDelta.entriesToShip(old: old, new: new)
        #expect(paths.map(\.description) == ["a", "a/b", "a/b/x", "a/y", "added"])
        #expect(removals.map(\.description) == ["gone"])
    }
}

@Suite("Node: the error code of each failure")
struct NodeErrorCodeTests {
    @Test("node errors map to their codes; a full disk is no-space")
    func codes() throws {
        #expect(NodeErrorCode.of(NodeError.noPreviousVersion(app: "web")) == .noPreviousVersion)
        #expect(NodeErrorCode.of(NodeError.rolledBack(app: "web", failedVersion: "2", restored: nil, detail: "x")) == .rolledBack)
        #expect(NodeErrorCode.of(ArchiveError.system(operation: "write", path: "/x", errno: ENOSPC)) == .noSpace)
        #expect(NodeErrorCode.of(ArchiveError.truncated(archive: "a")) == .release)
    }
}
