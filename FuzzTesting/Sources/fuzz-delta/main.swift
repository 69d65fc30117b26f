// The delta reader (docs/fuzzing.md): `NodeDeltaApply.apply`, as `node apply --delta`
// lands a pushed delta over a staged copy of its base: the delta archive is extracted into
// a scratch directory inside the staging tree, its `.slipway-delta.json` read and checked,
// format-2 zstd patches decoded against the base's files, removals made and the entries
// moved into place. The base is fuzz@1, extracted afresh for every input; the node expects
// fuzz@2 over fuzz@1, as the seed deltas make it.
import Foundation
import FuzzSupport
import SlipwayArchive
import SlipwayRelease
@testable import SlipwayNode

struct Fixture {
    var scratch: Scratch
    var releases: SeedReleases
    /// fuzz@1 as a plain tar: the base every input is applied over.
    var base: String
}

FuzzTarget.run(
    setUp: {
        let scratch = try Scratch()
        let releases = try SeedReleases.make(in: scratch.path("releases"))
        let base = scratch.write(try SeedReleases.repack(try releases.release(1).archivePath, as: .none, work: scratch.path("work")), to: "base.tar")
        return Fixture(scratch: scratch, releases: releases, base: base)
    },
    seeds: { fixture in
        let delta = fixture.releases.delta
        return [
            "delta-1-to-2.tar.xz": try Data(contentsOf: URL(fileURLWithPath: delta)),
            "delta-1-to-2.tar": try SeedReleases.repack(delta, as: .none, work: fixture.scratch.path("work")),
            "delta-1-to-2.tar.zst": try SeedReleases.repack(delta, as: .zstd, work: fixture.scratch.path("work")),
        ]
    },
    body: { fixture, bytes in
        let delta = fixture.scratch.write(bytes, to: "delta")
        let staging = fixture.scratch.path("staging")
        defer { Scratch.removeTree(staging) }
        do {
            _ = try ArchiveExtractor.extract(archive: fixture.base, into: staging)
            try NodeTreeCheck.prepareRoot(staging)
        } catch {
            fatalError("staging the base failed: \(error)")
        }
        let expect = (app: SeedReleases.app, base: "1", version: "2", targetSHA256: fixture.releases.targetSHA256)
        _ = try? NodeDeltaApply.apply(delta: delta, staging: staging, expect: expect)
    })
