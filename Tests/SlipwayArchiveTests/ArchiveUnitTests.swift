import Foundation
import Testing
@testable import SlipwayArchive

/// The archive engine's pure parts; archives of real trees, against GNU tar and bsdtar, are
/// in IntegrationTests (RoundTripTests, ReproducibilityTests, HostileArchiveTests).
@Suite("Archive: compression, paths, small zstd buffers")
struct ArchiveUnitTests {
    @Test("compression is told by the magic number, not the file name")
    func detect() {
        #expect(ArchiveCompression.detect(magic: [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00, 0x01]) == .xz)
        #expect(ArchiveCompression.detect(magic: [0x28, 0xB5, 0x2F, 0xFD, 0x00]) == .zstd)
        #expect(ArchiveCompression.detect(magic: Array("ustar".utf8)) == .none)
        #expect(ArchiveCompression.detect(magic: []) == .none)
        #expect(ArchiveCompression.allCases.map(\.fileExtension) == ["tar.xz", "tar.zst", "tar"])
    }

    @Test("a name that is not UTF-8 keeps its bytes and is shown escaped")
    func paths() {
        let name = ArchivePath(bytes: Array("names/bad-".utf8) + [0xFF, 0xFE])
        #expect(name.bytes.suffix(2) == [0xFF, 0xFE])
        #expect(name.description.hasPrefix("names/bad-") && name.description.contains("\\x"))
        #expect(ArchivePath("etc/app/version").description == "etc/app/version")
        #expect(ArchivePath("a") < ArchivePath("b"))
    }

    @Test("zstd buffers: a round trip, a prefix (the base a patch is made against), a corrupt buffer is an error")
    func zstd() throws {
        let text = Data((0..<4096).map { UInt8($0 % 251) })
        let packed = try ZstdData.compress(text)
        #expect(ZstdData.isCompressed(packed) && !ZstdData.isCompressed(text))
        #expect(try ZstdData.decompress(packed, source: "buffer") == text)
        var edited = text
        edited[100] = 7
        let patch = try ZstdData.compress(edited, prefix: text)
        #expect(patch.count < packed.count)
        #expect(try ZstdData.decompress(patch, source: "patch", limit: 1 << 20, prefix: text) == edited)
        #expect(throws: ArchiveError.self) { try ZstdData.decompress(Data(packed.prefix(packed.count / 2)), source: "cut") }
    }

    @Test("one file's content is read from an archive (xz and plain); a path that is no regular file, or too big, is nil")
    func oneFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("slipway-onefile-\(getpid())-\(UInt32.random(in: 0 ... .max))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tree = dir + "/tree"
        try FileManager.default.createDirectory(atPath: tree + "/etc/app", withIntermediateDirectories: true)
        let body = Data((0..<300_000).map { UInt8(($0 * 7) % 253) })
        try body.write(to: URL(fileURLWithPath: tree + "/etc/app/data"))
        try Data("{}\n".utf8).write(to: URL(fileURLWithPath: tree + "/.meta.json"))
        symlink("data", tree + "/etc/app/link")
        for compression in [ArchiveCompression.xz, .none] {
            let archive = dir + "/a." + compression.fileExtension
            _ = try ArchiveWriter.pack(tree: tree, to: archive, configuration: .init(compression: compression, level: 0, sourceDateEpoch: 1_700_000_000))
            #expect(try ArchiveReader.file(ArchivePath("etc/app/data"), in: archive) == body)
            #expect(try ArchiveReader.file(ArchivePath(".meta.json"), in: archive) == Data("{}\n".utf8))
            #expect(try ArchiveReader.file(ArchivePath("etc/app/link"), in: archive) == nil)
            #expect(try ArchiveReader.file(ArchivePath("etc/app"), in: archive) == nil)
            #expect(try ArchiveReader.file(ArchivePath("etc/app/missing"), in: archive) == nil)
            #expect(try ArchiveReader.file(ArchivePath("etc/app/data"), in: archive, limit: 1000) == nil)
        }
    }
}
