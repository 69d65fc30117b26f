import Testing
@testable import SlipwayRelease
@testable import SlipwayArchive
@testable import SlipwaySystem
@testable import SlipwayTestSupport

@Suite("Manifest diff")
struct ManifestDiffTests {
    @Test("added, removed and changed, with the fields that changed, sorted by path")
    func diff() throws {
        let old = sampleManifest()
        var new = sampleManifest(version: "1.1")
        // Remove bin/sh, add two files, change etc/motd's content and mode, ping's xattrs,
        // dev/null's device and the directory's owner.
        new.entries.removeAll { $0.path == ArchivePath("bin/sh") }
        new.entries.append(EntryRecord(path: ArchivePath("zz"), kind: .fifo, mode: 0o644, uid: 0, gid: 0))
        new.entries.append(EntryRecord(path: ArchivePath("aa"), kind: .file, mode: 0o644, uid: 0, gid: 0, size: 1,
                                       sha256: String(repeating: "0f", count: 32)))
        for i in new.entries.indices {
            switch new.entries[i].path.description {
            case "etc/motd":
                new.entries[i].size = 4
                new.entries[i].sha256 = String(repeating: "03", count: 32)
                new.entries[i].mode = 0o600
            case "bin/ping": new.entries[i].xattrs = nil
            case "dev/null": new.entries[i].deviceMinor = 5
            case "etc": new.entries[i].uid = 1
            default: break
            }
        }
        let diff = ManifestDiff(from: old, to: new)
        #expect(diff.added.map(\.path.description) == ["aa", "zz"])
        #expect(diff.removed.map(\.path.description) == ["bin/sh"])
        #expect(diff.changed.map(\.path.description) == ["bin/ping", "dev/null", "etc", "etc/motd"])
        #expect(diff.changed.map(\.fields) == [[.xattrs], [.device], [.uid], [.mode, .size, .sha256]])
        #expect(!diff.isEmpty)
        let text = diff.textLines
        #expect(text.contains("~ etc/motd: mode 0644 → 0600, size 3 → 4, sha256 010101010101 → 030303030303"))
        #expect(text.contains("- bin/sh (symlink -> dash)"))
        #expect(text.last == "2 added, 1 removed, 4 changed")
    }

    @Test("a manifest against itself is empty; a kind change is reported")
    func sameAndKind() {
        let manifest = sampleManifest()
        #expect(ManifestDiff(from: manifest, to: manifest).isEmpty)
        let a = EntryRecord(path: ArchivePath("x"), kind: .file, mode: 0o644, uid: 0, gid: 0, size: 0, sha256: "e3")
        let b = EntryRecord(path: ArchivePath("x"), kind: .symlink, mode: 0o777, uid: 0, gid: 0, linkTarget: ArchivePath("y"))
        #expect(ManifestDiff.differences(a, b) == [.kind, .mode, .sha256, .linkTarget])
        // No xattrs and an empty list are the same thing.
        var c = a
        c.xattrs = []
        #expect(ManifestDiff.differences(a, c).isEmpty)
    }
}
