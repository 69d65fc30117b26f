import Foundation
import Glibc
import Testing
@testable import SlipwayNode
@testable import SlipwayNodeProtocol
@testable import SlipwayRelease
@testable import SlipwayArchive
@testable import SlipwaySystem
@testable import SlipwayTestSupport

/// The tree check of a delta over an immutable base looks only at what the delta can have
/// changed, and finds there what a full walk finds.
@Suite("Delta over an immutable base: the tree check looks at what changed")
struct DeltaTreeCheckTests {
    /// A base tree, its manifest, and a staged copy of it (what a btrfs snapshot or ZFS clone is).
    struct Fixture {
        let dir: String
        var base: String { dir + "/base" }
        var staging: String { dir + "/staging" }
        let layout: NodeLayout

        init(_ dir: String) throws {
            self.dir = dir
            layout = NodeLayout(root: dir + "/node", app: "web")
            for sub in ["etc", "srv/data", "usr/bin", "var/cache"] {
                try FileManager.default.createDirectory(atPath: base + "/" + sub, withIntermediateDirectories: true)
            }
            for (path, text) in [("etc/motd", "hello\n"), ("etc/keep", "keep\n"), ("usr/bin/app", "v1\n"), ("srv/data/old", "gone\n"),
                                 ("var/cache/c", "cached\n")] {
                try text.write(toFile: base + "/" + path, atomically: false, encoding: .utf8)
            }
            chmod(base, NodeTreeCheck.rootMode)
        }

        func manifest(_ root: String, version: String, shared: [String]? = ["var/cache"]) throws -> ReleaseManifest {
            var entries = try TreeWalker.records(root: root, hashing: true)
            // A shared directory's contents are not part of the landed tree.
            entries.removeAll { $0.path.isStrictlyBelow(ArchivePath("var/cache")) && shared != nil }
            return ReleaseManifest(name: "web", version: version, created: 0, compression: .xz, archive: .init(sha256: "00", size: 0),
                                   tarSize: 0, entries: entries, service: ServiceSpec(sharedDirectories: shared))
        }

        /// Copies the base to staging and empties the shared directory, as the node does.
        func stage() throws {
            try? FileManager.default.removeItem(atPath: staging)
            #expect(try CommandRunner().run(Command(["cp", "-a", base, staging])).succeeded)
            try? FileManager.default.removeItem(atPath: staging + "/var/cache/c")
            try? FileManager.default.removeItem(atPath: base + "/var/cache/c")
        }

        func write(_ path: String, _ text: String) throws { try text.write(toFile: staging + "/" + path, atomically: false, encoding: .utf8) }
    }

    func both(_ fx: Fixture, _ new: ReleaseManifest, _ base: ReleaseManifest, touched: [String], removals: [String]) throws -> (sparse: [String]?, full: [String]) {
        let sparse = try NodeTreeCheck.deltaDifferences(root: fx.staging, manifest: new, base: base, touched: Set(touched.map(ArchivePath.init)),
                                                        removals: removals.map(ArchivePath.init))
        let full = try NodeTreeCheck.differences(root: fx.staging, manifest: new, layout: fx.layout)
        return (sparse, full)
    }

    @Test("a faithful delta passes; a wrong byte, a file left behind, an extra file, a missing one, a mode and a filled shared directory are found, as a walk finds them")
    func findsWhatAWalkFinds() throws { try withTemporaryDirectory { dir in
        let fx = try Fixture(dir)
        try fx.stage()
        let base = try fx.manifest(fx.base, version: "1")
        // The delta: app rewritten, a new file, srv/data/old removed, etc/motd made 0600.
        try fx.write("usr/bin/app", "v2\n")
        try fx.write("etc/new", "new\n")
        unlink(fx.staging + "/srv/data/old")
        chmod(fx.staging + "/etc/motd", 0o600)
        let new = try fx.manifest(fx.staging, version: "2")
        let touched = ["usr/bin/app", "etc/new", "etc/motd"], removals = ["srv/data/old"]
        let good = try both(fx, new, base, touched: touched, removals: removals)
        #expect(good.full == [])
        #expect(good.sparse == [])

        // What a broken or hostile delta could leave, each where the delta touched.
        try fx.write("usr/bin/app", "v3\n")                                     // wrong content
        try fx.write("srv/data/old", "gone\n")                                  // a removal not done
        try fx.write("etc/extra", "x\n")                                        // a file the manifest does not have
        unlink(fx.staging + "/etc/new")                                         // a new file missing
        chmod(fx.staging + "/etc/motd", 0o644)                                  // the mode change not made
        try "x".write(toFile: fx.staging + "/var/cache/leftover", atomically: false, encoding: .utf8)
        let bad = try both(fx, new, base, touched: touched + ["etc/extra"], removals: removals)
        let sparse = try #require(bad.sparse)
        #expect(sparse.count == 6, "\(sparse)")
        #expect(Set(sparse) == Set(bad.full), "sparse \(sparse) against full \(bad.full)")
        for needle in ["usr/bin/app: sha256", "srv/data/old: not in the manifest", "etc/extra: not in the manifest", "etc/new: missing",
                       "etc/motd: mode", "var/cache/leftover: below a shared directory"] {
            #expect(sparse.contains { $0.hasPrefix(needle) }, "\(needle) not in \(sparse)")
        }
    } }

    @Test("a hardlink among the changed paths, other shared directories, or most of the tree changed: a full walk decides")
    func fallsBackToAWalk() throws { try withTemporaryDirectory { dir in
        let fx = try Fixture(dir)
        try fx.stage()
        let base = try fx.manifest(fx.base, version: "1")
        link(fx.staging + "/etc/keep", fx.staging + "/etc/keep2")
        let linked = try fx.manifest(fx.staging, version: "2")
        #expect(linked.entries.contains { $0.kind == .hardlink })
        #expect(try NodeTreeCheck.deltaDifferences(root: fx.staging, manifest: linked, base: base, touched: [ArchivePath("etc/keep2")], removals: []) == nil)
        unlink(fx.staging + "/etc/keep2")

        let otherShared = try fx.manifest(fx.staging, version: "2", shared: ["srv/data"])
        #expect(try NodeTreeCheck.deltaDifferences(root: fx.staging, manifest: otherShared, base: base, touched: [], removals: []) == nil)

        for path in ["etc/motd", "etc/keep", "usr/bin/app", "srv/data/old"] { try fx.write(path, "changed\n") }
        var many = try fx.manifest(fx.staging, version: "2")
        many.entries += (0..<300).map { EntryRecord(path: ArchivePath("many/\($0)"), kind: .directory, mode: 0o755, uid: 0, gid: 0) }
        #expect(try NodeTreeCheck.deltaDifferences(root: fx.staging, manifest: many, base: base, touched: [], removals: []) == nil)
    } }
}
