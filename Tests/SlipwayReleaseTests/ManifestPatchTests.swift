import Crypto
import Foundation
import Testing
@testable import SlipwayRelease
@testable import SlipwayArchive
@testable import SlipwaySystem
@testable import SlipwayTestSupport

@Suite("Manifest patch")
struct ManifestPatchTests {
    /// Manifests of two versions of a 5,000-file tree that differ in a few records.
    static func manifests() throws -> (base: Data, new: Data) {
        var generator = SystemRandomNumberGenerator()
        func hash() -> String { (0..<4).map { _ in String(format: "%016llx", generator.next() as UInt64) }.joined() }
        var entries = (0..<5000).map { index in
            EntryRecord(path: ArchivePath("usr/lib/python3/site-packages/pkg\(index / 100)/module\(index).py"), kind: .file,
                        mode: 0o644, uid: 0, gid: 0, size: UInt64(1000 + index), sha256: hash())
        }
        let base = ReleaseManifest(name: "web", version: "1", created: 1_700_000_000, compression: .xz,
                                   archive: .init(sha256: hash(), size: 50_000_000), tarSize: 200_000_000, entries: entries)
        for index in stride(from: 7, to: 5000, by: 500) { entries[index].sha256 = hash() }
        entries.append(EntryRecord(path: ArchivePath("usr/share/new.bin"), kind: .file, mode: 0o644, uid: 0, gid: 0, size: 3 << 20, sha256: hash()))
        var new = base
        new.version = "2"
        new.created += 86_400
        new.archive = .init(sha256: hash(), size: 51_000_000)
        new.entries = entries.sorted { $0.path < $1.path }
        return (try base.encoded(), try new.encoded())
    }

    static func temporaryPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("slipway-manifest-patch-\(UUID().uuidString).zst").path
    }

    @Test("a patch decodes to the very bytes of the manifest and is a small part of its plain compression")
    func roundTrip() throws {
        let (base, new) = try Self.manifests()
        let patch = try ManifestPatch.make(manifest: new, app: "web", base: "1", baseManifest: base)
        let plain = try ZstdData.compress(new)
        #expect(patch.count * 20 < plain.count, "patch \(patch.count) B vs compressed \(plain.count) B")

        let path = Self.temporaryPath()
        defer { unlink(path) }
        try patch.write(to: URL(fileURLWithPath: path))
        var asked: [String] = []
        let (manifest, bytes) = try ReleaseManifest.read(path: path) { app, version in
            asked.append("\(app)@\(version)")
            return base
        }
        #expect(asked == ["web@1"])
        #expect(bytes == new)
        #expect(manifest.version == "2" && manifest.entries.count == 5001)
    }

    @Test("another base, no base, a bad header: clear errors, never a wrong manifest")
    func refusals() throws {
        let (base, new) = try Self.manifests()
        let patch = try ManifestPatch.make(manifest: new, app: "web", base: "1", baseManifest: base)
        let path = Self.temporaryPath()
        defer { unlink(path) }
        try patch.write(to: URL(fileURLWithPath: path))

        var other = base
        other[other.count - 3] ^= 1
        let differs = #expect(throws: ReleaseError.self) { try ReleaseManifest.read(path: path) { _, _ in other } }
        #expect("\(differs.map { "\($0)" } ?? "")".contains("manifest here differs from the controller's (push with --full)"))
        let none = #expect(throws: ReleaseError.self) { try ReleaseManifest.read(path: path) }
        #expect("\(none.map { "\($0)" } ?? "")".contains("no base manifest"))

        // A header naming a path outside the node's layout is refused before any look-up.
        var evil = Data(ManifestPatch.skippableMagic)
        let json = Data(#"{"app":"../etc","base":"1","baseSHA256":"00"}"#.utf8)
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { evil.append(contentsOf: $0) }
        evil.append(json)
        try evil.write(to: URL(fileURLWithPath: path))
        #expect(throws: ReleaseError.self) {
            try ReleaseManifest.read(path: path) { _, _ in
                Issue.record("the base manifest must not be looked up for an invalid app name")
                return base
            }
        }
        // A truncated patch.
        try patch.prefix(patch.count / 2).write(to: URL(fileURLWithPath: path))
        #expect(throws: ReleaseError.self) { try ReleaseManifest.read(path: path) { _, _ in base } }
    }
}
