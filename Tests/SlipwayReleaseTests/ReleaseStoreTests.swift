import Foundation
import Testing
@testable import SlipwayRelease
@testable import SlipwayArchive
@testable import SlipwaySystem
@testable import SlipwayTestSupport

@Suite("Release store")
struct ReleaseStoreTests {
    @Test("app names and versions are checked", arguments: [
        ("", "it is empty"), ("a/b", "it contains '/'"), (".hidden", "it starts with '.'"),
        ("web app", "it contains ' '"), ("wéb", "it contains 'é'"), ("a@b", "it contains '@'"),
    ])
    func invalidNames(value: String, reason: String) {
        #expect(throws: ReleaseError.invalidName(what: "app name", value: value, reason: reason)) {
            try ReleaseStore.validate(name: value)
        }
        #expect(throws: ReleaseError.invalidName(what: "version", value: value, reason: reason)) {
            try ReleaseStore.validate(version: value)
        }
    }

    @Test("usual names and versions are accepted")
    func validNames() throws {
        for value in ["web", "web-api_2", "1.4.2", "1.0~rc1", "2.0+deb12", "A.b-C"] {
            try ReleaseStore.validate(name: value)
            try ReleaseStore.validate(version: value)
        }
        #expect(throws: ReleaseError.self) { try ReleaseStore.validate(version: "index.json") }
    }

    @Test("NAME@VERSION references")
    func references() throws {
        let reference = try ReleaseReference(parsing: "web@1.4.2")
        #expect(reference == ReleaseReference(name: "web", version: "1.4.2"))
        #expect(reference.description == "web@1.4.2")
        #expect(throws: ReleaseError.invalidReference("web", reason: "it has no '@'")) { try ReleaseReference(parsing: "web") }
        #expect(throws: ReleaseError.invalidReference("@1", reason: "the name before '@' is empty")) { try ReleaseReference(parsing: "@1") }
        #expect(throws: ReleaseError.invalidReference("web@", reason: "the version after '@' is empty")) { try ReleaseReference(parsing: "web@") }
        #expect(throws: ReleaseError.self) { try ReleaseReference(parsing: "web@1@2") }
        #expect(throws: ReleaseError.self) { try ReleaseReference(parsing: "../x@1") }
        do {
            _ = try ReleaseReference(parsing: "web")
        } catch {
            #expect("\(error)".contains("write NAME@VERSION"))
        }
    }

    @Test("the store root comes from --store, else $SLIPWAY_STORE, else ./store")
    func defaultRoot() {
        #expect(ReleaseStore(root: "/x", environment: ["SLIPWAY_STORE": "/y"]).root == "/x")
        #expect(ReleaseStore(root: nil, environment: ["SLIPWAY_STORE": "/y"]).root == "/y")
        #expect(ReleaseStore(root: nil, environment: [:]).root == "store")
        #expect(ReleaseStore.archiveFileName(.zstd) == "rootfs.tar.zst")
    }

    @Test("add assembles, signs, indexes; same content is a no-op, other content an error")
    func addSignIndex() throws {
        try withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/tree", withIntermediateDirectories: true)
            func content(_ text: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: dir + "/tree/a")) }
            try content("one")
            try ReleaseSigning.generateKey(at: dir + "/key")
            let key = try ReleaseSigning.loadSigningKey(path: dir + "/key")
            let store = ReleaseStore(root: dir + "/store")
            let added = try store.add(tree: dir + "/tree", name: "web", version: "1.0", created: 5,
                                      configuration: .init(sourceDateEpoch: 5), signingKey: key)
            #expect(added.outcome == .added)
            #expect(added.signed)
            #expect(try store.versions(of: "web") == ["1.0"])

            let loaded = try store.release(name: "web", version: "1.0")
            #expect(loaded.manifest == added.release.manifest)
            #expect(loaded.archivePath == dir + "/store/web/1.0/rootfs.tar.xz")
            let verification = try ReleaseVerifier.verify(loaded, trust: key.publicKey)
            #expect(verification.isValid)
            #expect(verification.signature == .verified)

            #expect(loaded.manifest.entries.map(\.path) == [ArchivePath("a")])
            let again = try store.add(tree: dir + "/tree", name: "web", version: "1.0", created: 6,
                                      configuration: .init(sourceDateEpoch: 5), signingKey: nil)
            #expect(again.outcome == .alreadyPresent)
            try content("two")
            #expect(throws: ReleaseError.versionExists(name: "web", version: "1.0", path: dir + "/store/web/1.0")) {
                try store.add(tree: dir + "/tree", name: "web", version: "1.0", created: 6,
                              configuration: .init(sourceDateEpoch: 5), signingKey: nil)
            }
            _ = try store.add(tree: dir + "/tree", name: "web", version: "0.9", created: 7,
                              configuration: .init(compression: .zstd), signingKey: nil)
            // Newest last means the order they were added in, not version order.
            #expect(try store.versions(of: "web") == ["1.0", "0.9"])
            #expect(FileManager.default.fileExists(atPath: dir + "/store/web/0.9/rootfs.tar.zst"))
            #expect(try leftovers(dir + "/store/web").isEmpty)
        }
    }

    @Test("a failed add leaves no assembly directory behind")
    func failedAddCleansUp() throws {
        struct Boom: Error {}
        try withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/tree", withIntermediateDirectories: true)
            let store = ReleaseStore(root: dir + "/store")
            #expect(throws: Boom.self) {
                try store.add(tree: dir + "/tree", name: "web", version: "1.0", created: 0, configuration: .init(),
                              signingKey: nil, packer: { _, archive, _ in
                                  try Data("partial".utf8).write(to: URL(fileURLWithPath: archive))
                                  throw Boom()
                              })
            }
            #expect(try leftovers(dir + "/store/web").isEmpty)
            #expect(!FileManager.default.fileExists(atPath: dir + "/store/web/1.0"))
            #expect(throws: ReleaseError.storeInsideTree(store: dir + "/tree/./store", tree: dir + "/tree")) {
                try ReleaseStore(root: dir + "/tree/./store").add(tree: dir + "/tree", name: "web", version: "1.0", created: 0)
            }
            #expect(!FileManager.default.fileExists(atPath: dir + "/tree/store"))
            #expect(throws: ReleaseError.treeNotFound(path: dir + "/nope")) {
                try store.add(tree: dir + "/nope", name: "web", version: "1.0", created: 0)
            }
        }
    }

    @Test("missing releases and damaged stores are clear errors")
    func loadErrors() throws {
        try withTemporaryDirectory { dir in
            let store = ReleaseStore(root: dir)
            #expect(throws: ReleaseError.releaseNotFound(name: "web", version: "1.0", store: dir, known: [])) {
                try store.release(name: "web", version: "1.0")
            }
            let releaseDir = try storeRelease(in: dir, name: "web", version: "2.0")
            // The manifest claims another version: someone moved directories around.
            try FileManager.default.moveItem(atPath: releaseDir, toPath: dir + "/web/3.0")
            #expect(throws: ReleaseError.manifestMismatch(path: dir + "/web/3.0/manifest.json", expected: "web@3.0", found: "web@2.0")) {
                try store.release(name: "web", version: "3.0")
            }
            let other = try storeRelease(in: dir, name: "web", version: "4.0")
            try FileManager.default.removeItem(atPath: other + "/rootfs.tar.xz")
            #expect(throws: ReleaseError.archiveMissing(path: other + "/rootfs.tar.xz")) {
                try store.release(name: "web", version: "4.0")
            }
        }
    }

    @Test("the verifier catches a changed archive and a missing or wrong signature")
    func verifier() throws {
        try withTemporaryDirectory { dir in
            try ReleaseSigning.generateKey(at: dir + "/key")
            try ReleaseSigning.generateKey(at: dir + "/other")
            let key = try ReleaseSigning.loadSigningKey(path: dir + "/key")
            let other = try ReleaseSigning.loadPublicKey(path: dir + "/other.pub")
            let store = ReleaseStore(root: dir + "/store")
            let signedDir = try storeRelease(in: store.root, version: "1.0", key: key)
            try storeRelease(in: store.root, version: "2.0")

            let unsigned = try ReleaseVerifier.verify(try store.release(name: "web", version: "2.0"))
            #expect(unsigned.isValid)
            #expect(unsigned.signature == .absent)
            let required = try ReleaseVerifier.verify(try store.release(name: "web", version: "2.0"), trust: key.publicKey)
            #expect(required.signature == .absent)
            #expect(!required.isValid)

            let unchecked = try ReleaseVerifier.verify(try store.release(name: "web", version: "1.0"))
            #expect(unchecked.signature == .unchecked)
            let wrong = try ReleaseVerifier.verify(try store.release(name: "web", version: "1.0"), trust: other)
            #expect(wrong.signature == .invalid)
            #expect(wrong.problems == [.signatureMismatch(path: signedDir + "/manifest.sig", keyID: other.keyID)])

            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: signedDir + "/rootfs.tar.xz"))
            try handle.seek(toOffset: 100)
            try handle.write(contentsOf: Data([0xFF, 0xFF]))
            try handle.close()
            let damaged = try ReleaseVerifier.verify(try store.release(name: "web", version: "1.0"), trust: key.publicKey)
            #expect(damaged.signature == .verified)
            #expect(!damaged.archiveOK)
            #expect(throws: ReleaseError.self) { try damaged.requireValid() }
            let inspection = ReleaseInspection(release: try store.release(name: "web", version: "1.0"), verification: damaged)
            #expect(inspection.textLines.contains("archive hash: MISMATCH"))
            #expect(inspection.problems.count == 1)
        }
    }

    @Test("add packs a real tree with the archive engine")
    func addWithRealPacker() throws {
        try withTemporaryDirectory { dir in
            let tree = dir + "/tree"
            try FileManager.default.createDirectory(atPath: tree + "/etc", withIntermediateDirectories: true)
            try writeFile(tree + "/etc/motd", "hello\n")
            try FileManager.default.createSymbolicLink(atPath: tree + "/motd", withDestinationPath: "etc/motd")
            let store = ReleaseStore(root: dir + "/store")
            let configuration = ArchiveWriterConfiguration(sourceDateEpoch: 1_700_000_000)
            let added = try store.add(tree: tree, name: "web", version: "1.0", created: 1_700_000_000, configuration: configuration)
            #expect(added.outcome == .added)
            let paths = added.release.manifest.entries.map(\.path.description)
            #expect(paths == ["etc", "etc/motd", "motd"])
            let motd = try #require(added.release.manifest.entries.first { $0.path == ArchivePath("etc/motd") })
            #expect(motd.sha256 == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03")
            #expect(try ReleaseVerifier.verify(try store.release(name: "web", version: "1.0")).isValid)
            // Reproducible packing makes storing the same tree again a no-op.
            let again = try store.add(tree: tree, name: "web", version: "1.0", created: 1_700_000_000, configuration: configuration)
            #expect(again.outcome == .alreadyPresent)
            try writeFile(tree + "/etc/motd", "changed\n")
            #expect(throws: ReleaseError.versionExists(name: "web", version: "1.0", path: dir + "/store/web/1.0")) {
                try store.add(tree: tree, name: "web", version: "1.0", created: 1_700_000_000, configuration: configuration)
            }
            #expect(try leftovers(dir + "/store/web").isEmpty)
        }
    }

    private func leftovers(_ appDir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: appDir).filter { $0.hasPrefix(".tmp-") || $0.contains(".tmp-") }
    }
}

// Issue 13: names that command lines misread, and default versions that collide.
extension ReleaseStoreTests {
    /// `slipway push web@-rf` ended as `ssh … -rf`: a leading '-' is refused everywhere a
    /// name or version is checked (pack, build, references, the store).
    @Test("a name or version starting with '-' is refused", arguments: ["-rf", "--force", "-", "-1.0"])
    func dashIsRefused(value: String) throws {
        let reason = "it starts with '-', which a command line would take for an option"
        #expect(throws: ReleaseError.invalidName(what: "app name", value: value, reason: reason)) { try ReleaseStore.validate(name: value) }
        #expect(throws: ReleaseError.invalidName(what: "version", value: value, reason: reason)) { try ReleaseStore.validate(version: value) }
        #expect(throws: ReleaseError.self) { try ReleaseReference(parsing: "web@\(value)") }
        #expect(throws: ReleaseError.self) { try ReleaseReference(parsing: "\(value)@1.0") }
        try withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/tree", withIntermediateDirectories: true)
            let store = ReleaseStore(root: dir + "/store")
            #expect(throws: ReleaseError.self) { try store.add(tree: dir + "/tree", name: value, version: "1", created: 0) }
            #expect(throws: ReleaseError.self) { try store.add(tree: dir + "/tree", name: "web", version: value, created: 0) }
            #expect(!FileManager.default.fileExists(atPath: dir + "/store/\(value)"))
        }
        // Inside a name a '-' stays fine.
        try ReleaseStore.validate(name: "web-\(value)")
        try ReleaseStore.validate(version: "1.0\(value)")
    }

    @Test("builds that reserve the same default version get base, base.2, base.3 while they hold them")
    func reservationsAreDistinct() throws {
        try withTemporaryDirectory { dir in
            let store = ReleaseStore(root: dir + "/store")
            let first = try store.reserveVersion(name: "web", base: "20250101T120000Z")
            let second = try store.reserveVersion(name: "web", base: "20250101T120000Z")
            let third = try store.reserveVersion(name: "web", base: "20250101T120000Z")
            #expect([first.version, second.version, third.version] == ["20250101T120000Z", "20250101T120000Z.2", "20250101T120000Z.3"])
            // Another app, or another second, is not affected.
            #expect(try store.reserveVersion(name: "api", base: "20250101T120000Z").version == "20250101T120000Z")
            #expect(try store.reserveVersion(name: "web", base: "20250101T120001Z").version == "20250101T120001Z")
            // Released, the version is free again; .building files go with the holds.
            second.release()
            #expect(try store.reserveVersion(name: "web", base: "20250101T120000Z").version == "20250101T120000Z.2")
            first.release()
            third.release()
            let left = try FileManager.default.contentsOfDirectory(atPath: dir + "/store/web").filter { $0.hasPrefix(".building-") }
            #expect(left.isEmpty, "\(left)")
        }
    }

    @Test("a stored version is never reserved, and a dead build's reservation is taken over")
    func reservationsSkipStoredVersions() throws {
        try withTemporaryDirectory { dir in
            let store = ReleaseStore(root: dir + "/store")
            try FileManager.default.createDirectory(atPath: dir + "/tree", withIntermediateDirectories: true)
            _ = try store.add(tree: dir + "/tree", name: "web", version: "20250101T120000Z", created: 0)
            let held = try store.reserveVersion(name: "web", base: "20250101T120000Z")
            #expect(held.version == "20250101T120000Z.2")
            held.release()
            // What a kill -9 leaves: the file, unlocked. It neither blocks nor stays.
            let stale = dir + "/store/web/.building-20250101T120000Z.2"
            #expect(FileManager.default.createFile(atPath: stale, contents: nil))
            let next = try store.reserveVersion(name: "web", base: "20250101T120000Z")
            #expect(next.version == "20250101T120000Z.2")
            next.release()
            #expect(!FileManager.default.fileExists(atPath: stale))
            #expect(try store.versions(of: "web") == ["20250101T120000Z"], "a reservation is no version")
        }
    }
}
