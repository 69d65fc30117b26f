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
    /// What exporting and loop-mounting images of `formats` needs: their tools, root and loop devices.
    fileprivate static func export(_ formats: [ImageFormat]) -> Requirement {
        let packages = formats.map { format in
            format == .ext4 ? Requirement.tools(["mke2fs", "debugfs", "dumpe2fs", "e2fsck"], package: "e2fsprogs")
                            : Requirement.tools(["mksquashfs"], package: "squashfs-tools")
        }
        return Requirement(all: packages + [
            .tools(["mount", "umount", "losetup", "setfattr", "mkfifo"], root: true),
            .that(access("/dev/loop-control", F_OK) == 0, "no /dev/loop-control (loop devices unavailable here)"),
        ])
    }
}

/// `slipway export`: a release as an ext4 or squashfs image, loop-mounted and checked
/// against its manifest, byte-identical when exported again, and refused cleanly when it
/// cannot be made. Serialized: each test formats and mounts images, and the machine is shared.
@Suite("Export", .serialized)
struct ExportTests {
    /// The release's creation time; distinct from the fixture's mtimes so a mix-up shows.
    static let created: Int64 = 1_700_000_000

    /// Packs the fixture tree (every entry kind) into a new store as `fixture@1`; `extra`
    /// bytes of compressible data are added as `files/extra.bin` when given.
    private func packFixture(in tmp: TempDir, extra: Int = 0, smallFiles: Int = 0) throws -> (StoredRelease, FixtureTree) {
        let fixture = try FixtureTree.build(at: tmp.sub("src"))
        if extra > 0 { try writeFileBytes(ArchivePath(fixture.root + "/files/extra.bin"), compressibleBytes(extra)) }
        if smallFiles > 0 {
            try FileManager.default.createDirectory(atPath: fixture.root + "/many", withIntermediateDirectories: false)
            for i in 0..<smallFiles { try writeFileBytes(ArchivePath(fixture.root + "/many/file-\(i)"), Array("\(i)\n".utf8)) }
        }
        let store = ReleaseStore(root: tmp.sub("store"))
        let added = try store.add(tree: fixture.root, name: "fixture", version: "1", created: Self.created)
        return (added.release, fixture)
    }

    private func export(_ release: StoredRelease, _ format: ImageFormat, to out: String, size: UInt64? = nil,
                        force: Bool = false) throws -> ExportResult {
        try ReleaseExporter(output: Output(verbosity: .quiet))
            .export(release, ExportRequest(format: format, output: out, size: size, force: force))
    }

    /// Mounts `image` read-only on a loop device for `body`; always unmounts and detaches.
    private func withMounted(_ image: String, _ format: ImageFormat, at mountpoint: String, _ body: () throws -> Void) throws {
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        try runChecked("mount", ["-t", format.rawValue, "-o", "loop,ro", image, mountpoint])
        defer {
            let devices = (try? run("losetup", ["-j", image]).out) ?? ""
            if (try? run("umount", [mountpoint]).ok) != true { _ = try? run("umount", ["-l", mountpoint]) }
            for line in devices.split(separator: "\n") {
                if let device = line.split(separator: ":").first { _ = try? run("losetup", ["-d", String(device)]) }
            }
        }
        try body()
    }

    /// The working directories export leaves in `directory` (none, ever).
    private func leftovers(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix(".slipway-export-") }
    }

    /// The mounted tree matches the manifest in every recorded field (kinds, modes, owners,
    /// sizes, sha256, link targets, xattr names, device numbers); the root, the capability,
    /// mtimes and (ext4) the fixed atime/ctime are checked too.
    private func expectImageMatches(_ mountpoint: String, _ release: StoredRelease, _ fixture: FixtureTree, _ format: ImageFormat) throws {
        var records = try TreeWalker.records(root: mountpoint)
        if format == .ext4 {
            let lostFound = try #require(records.first { $0.path == ArchivePath("lost+found") }, "ext4 image has no lost+found")
            #expect(lostFound.kind == .directory && lostFound.mode == 0o700)
            records.removeAll { $0.path == ArchivePath("lost+found") }
        }
        expectSameRecords(records, release.manifest.entries, "\(format.rawValue) image vs the release manifest")
        #expect(records.contains { $0.kind == .hardlink }, "the fixture's hardlinks came out as copies")
        #expect(records.contains { $0.path == ArchivePath("files/small.txt") && $0.xattrs == ["user.test"] })
        if fixture.privileged {
            #expect(records.contains { $0.kind == .characterDevice } && records.contains { $0.kind == .blockDevice })
        }
        if fixture.hasCapability {
            #expect(records.contains { $0.path == ArchivePath("bin/ping") && $0.xattrs == ["security.capability"] })
            let getcap = try runChecked("getcap", [mountpoint + "/bin/ping"])
            #expect(getcap.out.contains("cap_net_raw"), "getcap on the image's bin/ping: \(getcap.out)")
        }

        let root = try #require(lstatBytes(ArchivePath(mountpoint)))
        #expect(root.st_mode & 0o7777 == 0o755 && root.st_uid == 0 && root.st_gid == 0, "root directory mode/owner")
        #expect(Int64(root.st_mtim.tv_sec) == Self.created, "root directory mtime")
        let old = try #require(lstatBytes(ArchivePath(mountpoint + "/files/old")))
        let small = try #require(lstatBytes(ArchivePath(mountpoint + "/files/small.txt")))
        #expect(old.st_mtim.tv_sec == FixtureTree.oldMtime && small.st_mtim.tv_sec == FixtureTree.mtime, "mtimes are the archive's")
        if format == .ext4 {
            // Not the moment of unpacking: the release's time.
            #expect(Int64(small.st_ctim.tv_sec) == Self.created && Int64(small.st_atim.tv_sec) == Self.created,
                    "ext4 ctime \(small.st_ctim.tv_sec), atime \(small.st_atim.tv_sec), expected \(Self.created)")
        }
    }

    @Test("an image of each format holds the release exactly", .needs(.export(ImageFormat.filesystems)), arguments: ImageFormat.filesystems)
    func imageMatchesManifest(format: ImageFormat) throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let (release, fixture) = try packFixture(in: tmp)
        let out = tmp.sub("fixture.\(format.rawValue)")
        let result = try export(release, format, to: out)
        #expect(result.sha256 == sha256(out))
        #expect(result.path == out && result.format == format)
        if format == .ext4 {
            #expect(result.size == ReleaseExporter.defaultExt4Size(release))
            #expect(try runChecked("e2fsck", ["-fn", out]).ok)
            let info = try runChecked("dumpe2fs", ["-h", out]).out
            #expect(info.contains(try #require(result.uuid)), "dumpe2fs shows another UUID:\n\(info)")
        } else {
            let info = try runChecked("unsquashfs", ["-s", out]).out
            #expect(info.contains("Compression zstd"), "unsquashfs -s: \(info)")
        }
        #expect(leftovers(tmp.path).isEmpty, "working directory left: \(leftovers(tmp.path))")
        try withMounted(out, format, at: tmp.sub("mnt")) {
            try expectImageMatches(tmp.sub("mnt"), release, fixture, format)
        }
    }

    @Test("exporting the same release twice gives byte-identical images",
          .needs(.export(ImageFormat.filesystems)), arguments: ImageFormat.filesystems)
    func reproducible(format: ImageFormat) throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let (release, _) = try packFixture(in: tmp)
        let first = try export(release, format, to: tmp.sub("first"))
        // The second unpacking must happen in another second, so that its files' ctimes
        // differ from the first's: the image must not depend on them.
        usleep(1_100_000)
        let second = try export(release, format, to: tmp.sub("second"))
        #expect(first.sha256 == second.sha256, "\(format.rawValue) images differ")
        #expect(sha256(tmp.sub("first")) == sha256(tmp.sub("second")))
        #expect(first.uuid == second.uuid)
        #expect(try Data(contentsOf: URL(fileURLWithPath: tmp.sub("first"))) == Data(contentsOf: URL(fileURLWithPath: tmp.sub("second"))))
    }

    @Test("the default ext4 size leaves at least 30 % of the tree free", .needs(.export([.ext4])))
    func defaultSizeHeadroom() throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        // About 100 MB with 6000 small files: past the 64 MiB floor, so the formula decides;
        // and two block groups, the first with every inode in use (dumpe2fs then lists no
        // free inode for it, which the inode-time fix must read right).
        let (release, fixture) = try packFixture(in: tmp, extra: 90 << 20, smallFiles: 6000)
        let out = tmp.sub("fixture.ext4")
        let result = try export(release, .ext4, to: out)
        let groups = try runChecked("dumpe2fs", [out]).out.split(separator: "\n").filter { $0.hasPrefix("  Free inodes:") }
        #expect(groups.count > 1 && groups.contains { $0.trimmingCharacters(in: .whitespaces) == "Free inodes:" },
                "expected a full first block group: \(groups)")
        let treeBytes = release.manifest.entries.reduce(UInt64(0)) { sum, entry in
            sum + (entry.kind == .file ? (entry.size + 4095) / 4096 * 4096 : entry.kind == .directory ? 4096 : 0)
        }
        #expect(result.size > 64 << 20, "the default should exceed the floor for this tree")
        #expect(result.size < treeBytes * 2, "default size \(result.size) is wasteful for \(treeBytes) bytes of tree")
        let free = try #require(result.freeBytes)
        #expect(Double(free) >= 0.3 * Double(treeBytes), "free \(free) is under 30 % of the tree's \(treeBytes)")
        try withMounted(out, .ext4, at: tmp.sub("mnt")) {
            var st = statvfs()
            #expect(statvfs(tmp.sub("mnt"), &st) == 0)
            let available = UInt64(st.f_bavail) * UInt64(st.f_frsize)
            #expect(Double(available) >= 0.3 * Double(treeBytes), "df: \(available) available for \(treeBytes) of tree")
            #expect(available == free, "export reported \(free) bytes free, df shows \(available)")
            try expectImageMatches(tmp.sub("mnt"), release, fixture, .ext4)
        }
    }

    @Test("a --size too small for the tree is refused with a clear error and leaves nothing", .needs(.export([.ext4])))
    func sizeTooSmall() throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        // About 20 MiB of tree. 16 MiB cannot hold it: refused before anything is unpacked.
        // 2 MiB more than the tree holds the tree but not the 4 MiB journal beside it: only
        // mke2fs can tell, and its words are translated.
        let (release, _) = try packFixture(in: tmp, extra: 17 << 20)
        let treeBytes = release.manifest.entries.reduce(UInt64(0)) { sum, entry in
            sum + (entry.kind == .file ? (entry.size + 4095) / 4096 * 4096 : entry.kind == .directory ? 4096 : 0)
        }
        let out = tmp.sub("small.ext4")
        let justOver = (treeBytes + (2 << 20) + (1 << 20) - 1) / (1 << 20) * (1 << 20)
        for (size, saidByMke2fs) in [(UInt64(16 << 20), false), (justOver, true)] {
            let error = #expect(throws: ExportError.self) { try export(release, .ext4, to: out, size: size) }
            guard let error, case let .sizeTooSmall(name, requested, defaultSize, detail) = error else {
                Issue.record("expected sizeTooSmall for \(size), got \(String(describing: error))")
                continue
            }
            #expect(name == "fixture@1" && requested == size && defaultSize == ReleaseExporter.defaultExt4Size(release))
            if saidByMke2fs {
                #expect(detail?.contains("Could not allocate") == true, "mke2fs's words: \(String(describing: detail))")
            } else {
                #expect(detail == nil)
            }
            let message = Output.message(for: error)
            #expect(message.contains("too small for fixture@1") && message.contains("larger --size"), "message: \(message)")
            #expect(!exists(out), "a partial image was left at --out")
            #expect(leftovers(tmp.path).isEmpty, "working directory left: \(leftovers(tmp.path))")
        }
        // Below the minimum, whatever the tree.
        #expect(throws: ExportError.self) { try export(release, .ext4, to: out, size: 8 << 20) }
    }

    @Test("an existing --out is refused without --force and replaced with it", .needs(.export([.squashfs])))
    func existingOutput() throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let (release, _) = try packFixture(in: tmp)
        let out = tmp.sub("existing.img")
        try writeFileBytes(ArchivePath(out), Array("keep me\n".utf8))
        #expect(throws: ExportError.outputExists(path: out)) { try export(release, .squashfs, to: out) }
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "keep me\n")
        #expect(leftovers(tmp.path).isEmpty)

        let result = try export(release, .squashfs, to: out, force: true)
        #expect(sha256(out) == result.sha256)
        #expect(throws: ExportError.outputIsDirectory(path: tmp.path)) { try export(release, .squashfs, to: tmp.path, force: true) }
        #expect(throws: ExportError.outputDirectoryMissing(path: tmp.sub("no/such"))) {
            try export(release, .squashfs, to: tmp.sub("no/such/image"))
        }
    }

    @Test("a missing tool is named with its Debian package before any work")
    func missingTool() throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        try FileManager.default.createDirectory(atPath: tmp.sub("tree"), withIntermediateDirectories: false)
        try writeFileBytes(ArchivePath(tmp.sub("tree/hello")), Array("hello\n".utf8))
        let release = try ReleaseStore(root: tmp.sub("store")).add(tree: tmp.sub("tree"), name: "app", version: "1", created: 0).release
        for (format, missing, package) in [(ImageFormat.ext4, "mke2fs", "e2fsprogs"), (.squashfs, "mksquashfs", "squashfs-tools")] {
            let exporter = ReleaseExporter(output: Output(verbosity: .quiet), isInstalled: { $0 != missing })
            let error = #expect(throws: ExportError.self) {
                try exporter.export(release, ExportRequest(format: format, output: tmp.sub("out")))
            }
            #expect(error == .toolMissing(program: missing, package: package))
            #expect(error.map { Output.message(for: $0) }?.contains("install the Debian package \(package)") == true)
        }
        #expect(throws: ExportError.sizeNotApplicable(format: .squashfs)) {
            try ReleaseExporter().export(release, ExportRequest(format: .squashfs, output: tmp.sub("out"), size: 64 << 20))
        }
        #expect(!exists(tmp.sub("out")))
    }
}
