// The tar stream reader and the extractor (docs/fuzzing.md): `ArchiveReader.records`
// (inspect's reading of an archive) and `ArchiveExtractor.extract` (unpack, node apply,
// build bases) into a scratch directory, over tar, tar.xz and tar.zst (detected by content).
// An input whose last byte is odd is extracted with 2 writer threads (the ZFS backend's
// extraction), an even one by the reading thread alone. A failed extraction must leave
// nothing: a target directory still there afterwards aborts, as a crash.
import Foundation
import Glibc
import FuzzSupport
import SlipwayArchive

struct Fixture {
    var scratch: Scratch
}

FuzzTarget.run(
    setUp: { Fixture(scratch: try Scratch()) },
    seeds: { fixture in
        let releases = try SeedReleases.make(in: fixture.scratch.path("releases"))
        let one = try releases.release(1).archivePath
        let two = try releases.release(2).archivePath
        return [
            "release-1.tar.zst": try Data(contentsOf: URL(fileURLWithPath: one)),
            "release-1.tar": try SeedReleases.repack(one, as: .none, work: fixture.scratch.path("work")),
            "release-2.tar": try SeedReleases.repack(two, as: .none, work: fixture.scratch.path("work")),
            "release-2.tar.xz": try SeedReleases.repack(two, as: .xz, work: fixture.scratch.path("work")),
        ]
    },
    body: { fixture, bytes in
        let archive = fixture.scratch.write(bytes, to: "archive")
        _ = try? ArchiveReader.records(archive: archive)
        let tree = fixture.scratch.path("tree")
        defer { Scratch.removeTree(tree) }
        let writers = (bytes.last ?? 0) & 1 == 1 ? 2 : 0
        do {
            _ = try ArchiveExtractor.extract(archive: archive, into: tree, options: .init(hashContents: true, writers: writers))
        } catch {
            if access(tree, F_OK) == 0 {
                FileHandle.standardError.write(Data("extraction failed (\(error)) and left \(tree) behind\n".utf8))
                abort()
            }
        }
    })
