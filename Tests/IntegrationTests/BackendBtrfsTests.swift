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

extension Requirement {
    /// The temporary directory is not on btrfs (where "not on btrfs" cannot be shown); asked
    /// of `stat -f`, as the test does, when the test is about to run.
    fileprivate static let temporaryDirectoryNotOnBtrfs = Requirement.deferred("the temporary directory is itself on btrfs") {
        let type = try? run("stat", ["-f", "-c", "%T", FileManager.default.temporaryDirectory.path])
        return type?.out.trimmingCharacters(in: .whitespacesAndNewlines) != "btrfs"
    }
}

/// The btrfs backend on a real btrfs filesystem (a loop file): staging, commit, snapshots
/// for deltas, remove, recover, and schroot on top.
@Suite("btrfs backend")
struct BackendBtrfsTests {
    @Test("a committed version is a read-only subvolume holding the release", .needs(.btrfs))
    func landAndCommit() throws {
        try withBtrfs { dir, loop in
            let layout = NodeLayout(root: loop.mount + "/root", app: "web")
            let backend = try BtrfsBackend(settings: ["mount": loop.mount])
            let archive = try packRelease(in: dir, app: "web", version: "1.0")

            let staging = try backend.createStaging(.empty("1.0"), layout: layout)
            #expect(staging == layout.partial("1.0"))
            _ = try ArchiveExtractor.extract(archive: archive, into: staging)
            try backend.commit(version: "1.0", layout: layout)

            #expect(!exists(layout.partial("1.0")))
            #expect(try backend.landedVersions(layout: layout) == ["1.0"])
            let show = try runChecked("btrfs", ["subvolume", "show", layout.release("1.0")]).out
            #expect(show.contains("Flags:") && show.contains("readonly"))
            #expect(isReadOnly(layout.release("1.0")))
            #expect(isReadOnly(layout.release("1.0") + "/etc"))
            try expectTreeMatchesArchive(layout.release("1.0"), archive, "landed 1.0")

            // Landing it twice is refused, naming the path.
            #expect(throws: BtrfsBackendError.self) { try backend.createStaging(.empty("1.0"), layout: layout) }
        }
    }

    @Test("a delta starts as a writable snapshot of its base and never touches the base", .needs(.btrfs))
    func snapshotFromBase() throws {
        try withBtrfs { dir, loop in
            let layout = NodeLayout(root: loop.mount + "/root", app: "web")
            let backend = try BtrfsBackend(settings: [:])
            let archive = try packRelease(in: dir, app: "web", version: "1.0")
            _ = try ArchiveExtractor.extract(archive: archive, into: try backend.createStaging(.empty("1.0"), layout: layout))
            try backend.commit(version: "1.0", layout: layout)

            let staging = try backend.createStaging(.copy("2.0", of: "1.0"), layout: layout)
            let baseUUID = try subvolumeField("UUID", layout.release("1.0"))
            #expect(try subvolumeField("Parent UUID", staging) == baseUUID)
            #expect(!isReadOnly(staging))
            try "2.0\n".write(toFile: staging + "/etc/web-version", atomically: false, encoding: .utf8)
            try FileManager.default.removeItem(atPath: staging + "/srv/only-in-1.0")
            try backend.commit(version: "2.0", layout: layout)

            try expectTreeMatchesArchive(layout.release("1.0"), archive, "base after the delta")
            #expect(try String(contentsOfFile: layout.release("2.0") + "/etc/web-version", encoding: .utf8) == "2.0\n")
            #expect(try backend.landedVersions(layout: layout) == ["1.0", "2.0"])

            // Pruning the base keeps the snapshot made from it whole.
            try backend.remove(version: "1.0", layout: layout)
            #expect(!exists(layout.release("1.0")))
            #expect(try backend.landedVersions(layout: layout) == ["2.0"])
            #expect(exists(layout.release("2.0") + "/bin/cat"))
            try backend.remove(version: "1.0", layout: layout)  // already gone: a no-op
        }
    }

    @Test("recover removes staging subvolumes left by a killed apply, read-only or not", .needs(.btrfs))
    func recoverLeftovers() throws {
        try withBtrfs { dir, loop in
            let layout = NodeLayout(root: loop.mount + "/root", app: "web")
            let backend = try BtrfsBackend(settings: [:])
            let archive = try packRelease(in: dir, app: "web", version: "1.0")
            _ = try ArchiveExtractor.extract(archive: archive, into: try backend.createStaging(.empty("1.0"), layout: layout))
            try backend.commit(version: "1.0", layout: layout)

            // Killed mid-extract: a writable staging subvolume.
            let partial = try backend.createStaging(.copy("2.0", of: "1.0"), layout: layout)
            try "half\n".write(toFile: partial + "/half", atomically: false, encoding: .utf8)
            // Killed between "ro true" and the rename: a read-only one.
            let readOnly = try backend.createStaging(.empty("3.0"), layout: layout)
            try runChecked("btrfs", ["property", "set", "-ts", readOnly, "ro", "true"])
            // A stray plain directory with the staging name.
            try FileManager.default.createDirectory(atPath: layout.partial("4.0") + "/x", withIntermediateDirectories: true)

            try backend.recover(layout: layout)
            try backend.recover(layout: layout)  // idempotent
            #expect(try FileManager.default.contentsOfDirectory(atPath: layout.releases).sorted() == ["1.0"])
            #expect(try backend.landedVersions(layout: layout) == ["1.0"])
            let list = try runChecked("btrfs", ["subvolume", "list", loop.mount]).out
            #expect(!list.contains(".partial-"))
            try expectTreeMatchesArchive(layout.release("1.0"), archive, "landed 1.0 after recover")
        }
    }

    @Test("releases/ not on btrfs is refused with a clear message", .needs(.tools(["btrfs", "stat"]), .temporaryDirectoryNotOnBtrfs))
    func notBtrfs() throws {
        let dir = try TempDir("slipway-btrfs-no")
        defer { dir.remove() }
        let type = try runChecked("stat", ["-f", "-c", "%T", dir.path]).out.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(type != "btrfs", "the temporary directory is itself on btrfs")
        let backend = try BtrfsBackend(settings: [:])
        do {
            _ = try backend.createStaging(.empty("1.0"), layout: NodeLayout(root: dir.path, app: "web"))
            Issue.record("createStaging on \(type) should fail")
        } catch let error as BtrfsBackendError {
            #expect("\(error)".contains("is not on a btrfs filesystem"))
        }
        #expect(throws: BtrfsBackendError.self) { try BtrfsBackend(settings: ["mountpoint": "/x"]) }
    }

    @Test("schroot enters the version, as a btrfs snapshot and as a directory", .needs(.btrfs, .schroot))
    func schroot() throws {
        try withBtrfs { dir, loop in
            let app = uniqueApp("bt")
            let layout = NodeLayout(root: loop.mount + "/root", app: app)
            let backend = try BtrfsBackend(settings: [:])
            for version in ["1.0", "2.0"] {
                let archive = try packRelease(in: dir, app: app, version: version)
                _ = try ArchiveExtractor.extract(archive: archive, into: try backend.createStaging(.empty(version), layout: layout))
                try backend.commit(version: version, layout: layout)
            }
            #expect(try schrootPrintsVersion(layout: layout, backend: backend, version: "2.0") == "2.0")
            #expect(try schrootPrintsVersion(layout: layout, backend: backend, version: "1.0") == "1.0")
            // The session snapshot is gone once the session ends.
            #expect(isEmptyDirectory(layout.releases + "/.schroot-sessions"))
            let plain = try BtrfsBackend(settings: ["schroot_type": "directory"])
            #expect(try schrootPrintsVersion(layout: layout, backend: plain, version: "2.0") == "2.0")
            #expect(try backend.landedVersions(layout: layout) == ["1.0", "2.0"])
        }
    }
}

/// A field of `btrfs subvolume show` ("UUID", "Parent UUID").
func subvolumeField(_ field: String, _ path: String) throws -> String? {
    let out = try runChecked("btrfs", ["subvolume", "show", path]).out
    for line in out.split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 1)
        if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == field {
            return parts[1].trimmingCharacters(in: .whitespaces)
        }
    }
    return nil
}
