// The manifest-patch decoder (docs/fuzzing.md): `ReleaseManifest.read`, as `node apply`
// reads the manifest a controller pushed: a manifest patch (a zstd frame against the
// node's manifest of the base, behind a header naming it), a zstd-compressed manifest or
// a plain one. The node's base manifest is fuzz@1's, as a node that landed it has it.
import Foundation
import FuzzSupport
@testable import SlipwayArchive
import SlipwayRelease

struct Fixture {
    var scratch: Scratch
    /// fuzz@1's and fuzz@2's manifests (arrays: see `SeedReleases` on `Data` in fixtures).
    var base: [UInt8]
    var next: [UInt8]
}

FuzzTarget.run(
    setUp: {
        let scratch = try Scratch()
        let releases = try SeedReleases.make(in: scratch.path("releases"))
        return Fixture(scratch: scratch, base: Array(try releases.release(1).manifestBytes), next: Array(try releases.release(2).manifestBytes))
    },
    seeds: { fixture in
        let base = Data(fixture.base)
        let next = Data(fixture.next)
        return [
            "patch-1-to-2": try ManifestPatch.make(manifest: next, app: SeedReleases.app, base: "1", baseManifest: base),
            "patch-1-to-1": try ManifestPatch.make(manifest: base, app: SeedReleases.app, base: "1", baseManifest: base),
            "plain.json": next,
            "zstd.json.zst": try ZstdData.compress(next),
        ]
    },
    body: { fixture, bytes in
        let path = fixture.scratch.write(bytes, to: "manifest.json")
        _ = try? ReleaseManifest.read(path: path) { app, version in
            guard app == SeedReleases.app, version == "1" else {
                throw ReleaseError.invalidReference("\(app)@\(version)", reason: "not landed on this node")
            }
            return Data(fixture.base)
        }
    })
