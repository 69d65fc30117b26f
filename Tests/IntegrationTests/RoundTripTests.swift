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

/// A tree with every entry kind survives slipway's own round trip and interoperates with GNU
/// tar and bsdtar in both directions.
@Suite("Round trip")
struct RoundTripTests {
    /// The warnings of a foreign tool, less one that is GNU tar's own gap: tar 1.34 does not
    /// know the POSIX pax keyword `hdrcharset` (libarchive writes `hdrcharset=BINARY` for a
    /// name that is not UTF-8, as POSIX prescribes) and says it ignores it; the name itself
    /// still comes out byte for byte, which the record comparison checks.
    private func warnings(_ stderr: String) -> [Substring] {
        stderr.split(separator: "\n").filter { !$0.contains("unknown extended header keyword 'hdrcharset'") }
    }

    /// Packs the fixture with `compression`, extracts it and compares trees, records and times.
    private func roundTrip(_ compression: ArchiveCompression, sourceDateEpoch: Int64? = nil, writers: Int = 0) throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let fixture = try FixtureTree.build(at: tmp.sub("src"))
        let archive = tmp.sub("release.\(compression.fileExtension)")
        let target = tmp.sub("out")

        let source = try TreeWalker.records(root: fixture.root)
        let packed = try ArchiveWriter.pack(
            tree: fixture.root, to: archive,
            configuration: .init(compression: compression, sourceDateEpoch: sourceDateEpoch))
        expectSameRecords(packed.entries, source, "PackResult.entries vs the source tree")
        #expect(packed.archiveSize == UInt64((try FileManager.default.attributesOfItem(atPath: archive)[.size] as? NSNumber)?.uint64Value ?? 0))
        #expect(packed.archiveSHA256 == sha256(archive))
        #expect(packed.tarSize % 512 == 0 && packed.tarSize > packed.archiveSize / 2)
        #expect(ArchiveCompression.detect(magic: Array((try Data(contentsOf: URL(fileURLWithPath: archive))).prefix(8))) == compression)

        let read = try ArchiveReader.records(archive: archive)
        expectSameRecords(read, source, "ArchiveReader.records vs the source tree")

        let result = try ArchiveExtractor.extract(archive: archive, into: target,
                                                  options: .init(hashContents: true, writers: writers))
        #expect(result.entryCount == source.count)
        #expect(result.tarSize == packed.tarSize)
        // The hashes taken as the bytes were written are the files' hashes (hardlinks have
        // none of their own).
        let expectedHashes = Dictionary(uniqueKeysWithValues: read.compactMap { record in
            record.kind == .file ? record.sha256.map { (record.path, $0) } : nil
        })
        #expect(result.fileHashes == expectedHashes, "hashes taken while writing differ from the archive's")
        expectSameRecords(try TreeWalker.records(root: target), source, "extracted tree vs source tree")

        if fixture.hasCapability {
            let getcap = try runChecked("getcap", [target + "/bin/ping"])
            #expect(getcap.out.contains("cap_net_raw"), "getcap on the extracted bin/ping: \(getcap.out)")
        }
        try expectTimes(source: fixture.root, extracted: target, clampedTo: sourceDateEpoch)
    }

    /// File and directory mtimes come back, clamped to the epoch when one was given.
    private func expectTimes(source: String, extracted: String, clampedTo epoch: Int64?) throws {
        let before = try mtimes(source)
        let after = try mtimes(extracted)
        var wrong: [String] = []
        for (path, st) in try walk(source) {
            let kind = st.st_mode & S_IFMT
            guard kind == S_IFREG || kind == S_IFDIR else { continue }
            guard let original = before[path] else { continue }
            let expected = epoch.map { min(original, Int($0)) } ?? original
            if after[path] != expected {
                wrong.append("\(path): expected \(expected), got \(after[path].map(String.init) ?? "nothing")")
            }
        }
        #expect(wrong.isEmpty, "mtimes not restored:\n  \(wrong.prefix(20).joined(separator: "\n  "))")
    }

    @Test("xz: pack, extract, same tree", .needs("setfattr", "mkfifo", "chmod"))
    func xzRoundTrip() throws { try roundTrip(.xz) }

    @Test("xz with SOURCE_DATE_EPOCH: later mtimes clamped, earlier kept", .needs("setfattr", "mkfifo", "chmod"))
    func xzRoundTripClamped() throws { try roundTrip(.xz, sourceDateEpoch: 1_500_000_000) }

    /// Small files created by worker threads (the ZFS backend's extraction): the same tree,
    /// metadata, times and hashes as the reading thread alone gives.
    @Test("xz with 8 writer threads: pack, extract, same tree", .needs("setfattr", "mkfifo", "chmod"))
    func xzRoundTripWriters() throws { try roundTrip(.xz, writers: 8) }

    @Test("zstd: pack, extract, same tree", .needs("setfattr", "mkfifo", "chmod"))
    func zstdRoundTrip() throws { try roundTrip(.zstd) }

    @Test("uncompressed tar: pack, extract, same tree", .needs("setfattr", "mkfifo", "chmod"))
    func plainRoundTrip() throws { try roundTrip(.none) }

    @Test("GNU tar and bsdtar list slipway's archive",
          .needs("tar", "bsdtar", "setfattr", "mkfifo", "zstd"), arguments: ArchiveCompression.allCases)
    func foreignToolsList(compression: ArchiveCompression) throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let fixture = try FixtureTree.build(at: tmp.sub("src"))
        let archive = tmp.sub("release.\(compression.fileExtension)")
        let packed = try ArchiveWriter.pack(tree: fixture.root, to: archive,
                                            configuration: .init(compression: compression))

        // Names that are valid UTF-8 and printable come out of both listers verbatim.
        let expected = Set(packed.entries.compactMap { String(validating: $0.path.bytes, as: UTF8.self) }
            .filter { $0.allSatisfy(\.isASCII) })
        for tool in ["tar", "bsdtar"] {
            let verbose = try run(tool, ["-tvf", archive])
            #expect(verbose.ok, "\(tool) -tvf failed: \(verbose.err)")
            #expect(warnings(verbose.err).isEmpty, "\(tool) -tvf warned: \(verbose.err)")
            let lines = verbose.out.split(separator: "\n")
            #expect(lines.count == packed.entries.count, "\(tool) -tvf lists \(lines.count) entries, slipway packed \(packed.entries.count)")

            let names = try run(tool, ["-tf", archive])
            #expect(names.ok, "\(tool) -tf failed: \(names.err)")
            let listed = Set(names.out.split(separator: "\n").map { line -> String in
                var name = String(line)
                while name.hasSuffix("/") { name.removeLast() }
                return name
            })
            let missing = expected.subtracting(listed)
            #expect(missing.isEmpty, "\(tool) -tf does not list \(missing.sorted())")
            #expect(!listed.contains(where: { $0.hasPrefix("./") || $0.hasPrefix("/") || $0.isEmpty || $0 == "." }),
                    "entries must have no ./ or / prefix and the root must not be stored")
        }
    }

    @Test("GNU tar extracts slipway's archive to the same tree", .needs("tar", "xz", "setfattr", "mkfifo", "getcap"))
    func gnuTarExtracts() throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let fixture = try FixtureTree.build(at: tmp.sub("src"))
        let archive = tmp.sub("release.tar.xz")
        let target = tmp.sub("out")
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
        _ = try ArchiveWriter.pack(tree: fixture.root, to: archive)

        var arguments = ["--xattrs", "--xattrs-include=*", "-xpf", archive, "-C", target]
        if isRoot { arguments.insert("--numeric-owner", at: 0) }
        let extract = try run("tar", arguments)
        #expect(extract.ok, "tar -xpf failed: \(extract.err)")
        #expect(warnings(extract.err).isEmpty, "tar -xpf warned: \(extract.err)")

        expectSameRecords(try TreeWalker.records(root: target), try TreeWalker.records(root: fixture.root),
                          "GNU tar's extraction vs source tree")
        if fixture.hasCapability {
            let getcap = try runChecked("getcap", [target + "/bin/ping"])
            #expect(getcap.out.contains("cap_net_raw"), "getcap after GNU tar: \(getcap.out)")
        }
    }

    @Test("bsdtar extracts slipway's archive to the same tree", .needs("bsdtar", "setfattr", "mkfifo"))
    func bsdtarExtracts() throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let fixture = try FixtureTree.build(at: tmp.sub("src"))
        let archive = tmp.sub("release.tar.xz")
        let target = tmp.sub("out")
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
        _ = try ArchiveWriter.pack(tree: fixture.root, to: archive)

        // -p restores modes, xattrs (including security.capability) and, as root, owners.
        let extract = try run("bsdtar", ["--numeric-owner", "-xpf", archive, "-C", target])
        #expect(extract.ok, "bsdtar -xpf failed: \(extract.err)")
        #expect(extract.err.isEmpty, "bsdtar -xpf warned: \(extract.err)")

        expectSameRecords(try TreeWalker.records(root: target), try TreeWalker.records(root: fixture.root),
                          "bsdtar's extraction vs source tree")
        if fixture.hasCapability, toolPath("getcap") != nil {
            let getcap = try runChecked("getcap", [target + "/bin/ping"])
            #expect(getcap.out.contains("cap_net_raw"), "getcap after bsdtar: \(getcap.out)")
        }
    }

    /// GNU tar's archive has a `./` root entry and `./`-prefixed names, directories with a
    /// trailing `/`, readdir order rather than sorted, pax atime/ctime records: slipway takes
    /// all of it.
    @Test("slipway extracts GNU tar's archive of the tree",
          .needs("tar", "xz", "zstd", "setfattr", "mkfifo"), arguments: ["-J", "--zstd", ""])
    func extractsGNUTarArchive(compressionFlag: String) throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let fixture = try FixtureTree.build(at: tmp.sub("src"))
        let archive = tmp.sub("gnu.tar")
        let target = tmp.sub("out")
        var arguments = ["--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", fixture.root, "-cf", archive]
        if !compressionFlag.isEmpty { arguments.insert(compressionFlag, at: 0) }
        arguments.append(".")
        try runChecked("tar", arguments)

        _ = try ArchiveExtractor.extract(archive: archive, into: target)
        expectSameRecords(try TreeWalker.records(root: target), try TreeWalker.records(root: fixture.root),
                          "slipway's extraction of GNU tar's archive (\(compressionFlag)) vs source tree")
        if fixture.hasCapability {
            let getcap = try runChecked("getcap", [target + "/bin/ping"])
            #expect(getcap.out.contains("cap_net_raw"), "getcap: \(getcap.out)")
        }
    }

    @Test("slipway extracts bsdtar's archive of the tree", .needs("bsdtar", "setfattr", "mkfifo"))
    func extractsBsdtarArchive() throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let fixture = try FixtureTree.build(at: tmp.sub("src"))
        let archive = tmp.sub("bsd.tar.xz")
        let target = tmp.sub("out")
        try runChecked("bsdtar", ["--numeric-owner", "--format", "pax", "-C", fixture.root, "-cJf", archive, "."])

        _ = try ArchiveExtractor.extract(archive: archive, into: target)
        expectSameRecords(try TreeWalker.records(root: target), try TreeWalker.records(root: fixture.root),
                          "slipway's extraction of bsdtar's archive vs source tree")
    }

    /// The extractor refuses a hardlink to a symlink, so the writer must not make one: two
    /// names of one symlink inode are packed as two symlinks.
    @Test("a hardlinked symlink is packed as a symlink of its own and extracts")
    func hardlinkedSymlink() throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let src = tmp.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try symlinkBytes("target", ArchivePath(src + "/a-link"))
        try #require(linkat(AT_FDCWD, src + "/a-link", AT_FDCWD, src + "/b-link", 0) == 0, "linkat: \(String(cString: strerror(errno)))")
        let records = try TreeWalker.records(root: src)
        #expect(records.map(\.kind) == [.symlink, .symlink])
        #expect(records.map { $0.linkTarget?.description } == ["target", "target"])
        let archive = tmp.sub("links.tar.xz")
        let packed = try ArchiveWriter.pack(tree: src, to: archive)
        expectSameRecords(packed.entries, records, "PackResult.entries vs the source tree")
        _ = try ArchiveExtractor.extract(archive: archive, into: tmp.sub("out"))
        expectSameRecords(try TreeWalker.records(root: tmp.sub("out")), records, "extracted tree vs source tree")
    }

    /// 64 MB of compressible data: several 16 MiB xz blocks, decoded in parallel.
    @Test("a 64 MB archive with several xz blocks round-trips", .needs("xz"))
    func bigArchive() throws {
        let tmp = try TempDir()
        defer { tmp.remove() }
        let src = tmp.sub("src")
        try FileManager.default.createDirectory(atPath: src + "/data", withIntermediateDirectories: true)
        try writeFileBytes(ArchivePath(src + "/data/big.bin"), compressibleBytes(48 << 20))
        for i in 0..<16 {
            try writeFileBytes(ArchivePath(src + "/data/chunk-\(i)"), compressibleBytes(1 << 20))
        }
        let archive = tmp.sub("big.tar.xz")
        let packed = try ArchiveWriter.pack(tree: src, to: archive)
        #expect(packed.tarSize > 64 << 20)

        let list = try runChecked("xz", ["--robot", "--list", archive])
        let totals = list.out.split(separator: "\n").first { $0.hasPrefix("totals\t") }
        let blocks = totals.flatMap { Int($0.split(separator: "\t")[2]) } ?? 0
        #expect(blocks >= 4, "expected 16 MiB blocks, xz --list says \(blocks) block(s): \(list.out)")
        #expect(try run("xz", ["-t", archive]).ok, "xz -t rejects slipway's archive")

        let target = tmp.sub("out")
        _ = try ArchiveExtractor.extract(archive: archive, into: target, options: .init(threads: 2))
        expectSameRecords(try TreeWalker.records(root: target), packed.entries, "extracted big tree vs PackResult.entries")
        #expect(sha256(target + "/data/big.bin") == sha256(src + "/data/big.bin"))
    }
}
