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

/// The same tree gives the same bytes: packed twice, after its times moved past the epoch,
/// and whatever the number of threads.
@Suite("Reproducibility")
struct ReproducibilityTests {
    private func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    @Test("packing twice gives identical bytes", .needs("setfattr", "mkfifo"), arguments: ArchiveCompression.allCases)
    func packTwice(compression: ArchiveCompression) throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let fixture = try FixtureTree.build(at: tmp.sub("src"))
        let first = try ArchiveWriter.pack(tree: fixture.root, to: tmp.sub("first"),
                                           configuration: .init(compression: compression))
        let second = try ArchiveWriter.pack(tree: fixture.root, to: tmp.sub("second"),
                                            configuration: .init(compression: compression))
        #expect(first.archiveSHA256 == second.archiveSHA256)
        #expect(first.archiveSHA256 == sha256(tmp.sub("first")))
        #expect(try bytes(tmp.sub("first")) == bytes(tmp.sub("second")))
        #expect(first.entries == second.entries)
    }

    @Test("touching atimes and mtimes past SOURCE_DATE_EPOCH changes nothing",
          .needs("setfattr", "mkfifo", "find", "touch"), arguments: [ArchiveCompression.xz, .zstd])
    func touchedPastEpoch(compression: ArchiveCompression) throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let fixture = try FixtureTree.build(at: tmp.sub("src"))
        // Between files/old (kept) and every other mtime (clamped).
        let epoch: Int64 = 1_500_000_000
        let configuration = ArchiveWriterConfiguration(compression: compression, sourceDateEpoch: epoch)
        let before = try ArchiveWriter.pack(tree: fixture.root, to: tmp.sub("before"), configuration: configuration)

        // Every entry but files/old (whose mtime is before the epoch and is kept) gets
        // now as atime and mtime; -h: symlinks themselves, not their targets.
        try runChecked("find", [fixture.root, "-mindepth", "1", "!", "-path", "*/files/old",
                                "-exec", "touch", "-h", "{}", "+"])
        try runChecked("touch", ["-a", fixture.root + "/files/old"])
        let touched = try #require(lstatBytes(ArchivePath(fixture.root + "/files/small.txt")))
        #expect(Int64(touched.st_mtim.tv_sec) > epoch)

        let after = try ArchiveWriter.pack(tree: fixture.root, to: tmp.sub("after"), configuration: configuration)
        #expect(before.archiveSHA256 == after.archiveSHA256, "repacking after touch changed the archive")
        #expect(try bytes(tmp.sub("before")) == bytes(tmp.sub("after")))
    }

    @Test("atimes are not stored: reading every file changes nothing, without an epoch", .needs("setfattr", "mkfifo", "find", "touch"))
    func atimeIgnored() throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let fixture = try FixtureTree.build(at: tmp.sub("src"))
        let before = try ArchiveWriter.pack(tree: fixture.root, to: tmp.sub("before"))
        try runChecked("find", [fixture.root, "-mindepth", "1", "-exec", "touch", "-a", "-h", "{}", "+"])
        let after = try ArchiveWriter.pack(tree: fixture.root, to: tmp.sub("after"))
        #expect(before.archiveSHA256 == after.archiveSHA256, "an atime change altered the archive")
    }

    /// 40 MB (three 16 MiB xz blocks) so that threads really share the work.
    @Test("the bytes do not depend on the number of threads", arguments: [ArchiveCompression.xz, .zstd])
    func threadsDoNotMatter(compression: ArchiveCompression) throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let src = tmp.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try writeFileBytes(ArchivePath(src + "/big"), compressibleBytes(40 << 20))
        try writeFileBytes(ArchivePath(src + "/small"), Array("small\n".utf8))

        var digests: [Int: String] = [:]
        for threads in [1, 2, 0] {
            let archive = tmp.sub("threads-\(threads)")
            let packed = try ArchiveWriter.pack(
                tree: src, to: archive,
                configuration: .init(compression: compression, level: compression == .xz ? 1 : 3, threads: threads))
            digests[threads] = packed.archiveSHA256
            #expect(packed.archiveSHA256 == sha256(archive))
        }
        #expect(digests[1] == digests[2], "1 thread vs 2 threads: \(digests)")
        #expect(digests[1] == digests[0], "1 thread vs one per core: \(digests)")

        // And the output decodes with the reference tools.
        let target = tmp.sub("out")
        _ = try ArchiveExtractor.extract(archive: tmp.sub("threads-2"), into: target, options: .init(threads: 1))
        #expect(sha256(target + "/big") == sha256(src + "/big"))
    }
}
