// The manifest JSON decoder (docs/fuzzing.md): `ReleaseManifest.decode`, which every
// reader of manifest.json goes through (node apply, verify, inspect, the store), held equal
// to JSONDecoder alone (its fast entries decoder must never answer differently).
import Foundation
import FuzzSupport
import SlipwayRelease

FuzzTarget.run(
    setUp: { try Scratch() },
    seeds: { scratch in
        let releases = try SeedReleases.make(in: scratch.path("seeds"))
        let one = try releases.release(1)
        let two = try releases.release(2)
        var service = two.manifest
        service.service = ServiceSpec(
            start: "/usr/bin/true", reload: "kill -HUP $MAINPID", preActivate: "/bin/check",
            health: HealthCheck(url: "http://127.0.0.1:{port}/health", timeoutSeconds: 2.5, retries: 3, intervalSeconds: 0.5),
            sharedDirectories: ["var/data"], command: "/bin/server --port {port}", user: "www-data", port: 8080,
            stopSignal: "INT", stopTimeout: 7.5)
        return [
            "release-1.json": one.manifestBytes,
            "release-2.json": two.manifestBytes,
            "service.json": try service.encoded(),
        ]
    },
    body: { _, bytes in
        // The fast entries decoder and JSONDecoder alone agree on every input: the same
        // manifest, or both an error.
        let fast = try? ReleaseManifest.decode(Data(bytes))
        let reference = try? ReleaseManifest.decodeWithFoundation(Data(bytes))
        guard fast == reference else {
            fatalError("the fast decoder and JSONDecoder disagree: \(String(describing: fast)) against \(String(describing: reference))")
        }
        guard let manifest = fast else { return }
        // A manifest that decodes encodes, and its encoding decodes to the same manifest.
        let encoded: Data
        do { encoded = try manifest.encoded() } catch { fatalError("a decoded manifest does not encode: \(error)") }
        guard let again = try? ReleaseManifest.decode(encoded), again == manifest else {
            fatalError("a decoded manifest does not survive encoding: \(String(decoding: encoded, as: UTF8.self))")
        }
        _ = manifest.summary
    })
