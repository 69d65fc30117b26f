import Foundation
import Testing
@testable import SlipwayRelease
@testable import SlipwayArchive
@testable import SlipwaySystem
@testable import SlipwayTestSupport

@Suite("SBOM and provenance")
struct SBOMTests {
    @Test("a tree's packages come from dpkg's status, its copyright files, os-release and dist-info")
    func readsTheTree() throws {
        try withTemporaryDirectory { tree in
            try makeDebianLikeTree(at: tree)
            let contents = try ReleaseContents.read(tree: tree)
            #expect(contents.debian.map(\.name) == ["base-files", "libfoo1", "tzdata"], "config-files is not installed")
            let foo = try #require(contents.debian.first { $0.name == "libfoo1" })
            #expect(foo.architecture == "i386" && foo.source == "foo" && foo.sourceVersion == "1:2.3+dfsg-1" && foo.version == "1:2.3+dfsg-1+b1")
            #expect(foo.license == nil, "a copyright file that is not machine-readable gives no license")
            #expect(contents.debian.first?.license == "GPL-2+ or Artistic")
            #expect(contents.debian.last?.source == "tzdata" && contents.debian.last?.sourceVersion == "2024a-0+deb12u1")
            #expect(contents.python == [.init(name: "Flask-Login", version: "0.6.3",
                                              location: "opt/app/venv/lib/python3.11/site-packages/Flask_Login-0.6.3.dist-info")],
                    "Debian's own dist-packages are the Debian packages' business")
            #expect(contents.distribution == "debian-12")
        }
    }

    @Test("Debian license names become SPDX expressions, or a declared LicenseRef")
    func licenses() {
        #expect(SBOM.licenseExpression("GPL-2+ or Artistic").expression == "GPL-2.0-or-later OR Artistic-1.0")
        #expect(SBOM.licenseExpression("Expat").expression == "MIT")
        #expect(SBOM.licenseExpression("bsd-3-clause").expression == "BSD-3-Clause")
        let odd = SBOM.licenseExpression("GPL-2+ with OpenSSL exception")
        #expect(odd.expression == "LicenseRef-debian-GPL-2--with-OpenSSL-exception" && odd.ref?.name == "GPL-2+ with OpenSSL exception")
        #expect(SBOM.licenseExpression("or").ref != nil)
    }

    @Test("package URLs are percent-encoded; Python names are normalised")
    func packageURLs() {
        let package = ReleaseContents.DebianPackage(name: "libfoo1", version: "1:2.3+dfsg-1", architecture: "i386", source: "foo", sourceVersion: "1")
        #expect(SBOM.purl(package, distribution: "debian-12") == "pkg:deb/debian/libfoo1@1%3A2.3%2Bdfsg-1?arch=i386&distro=debian-12")
        #expect(SBOM.purl(.init(name: "Flask_Login", version: "0.6.3", location: "x")) == "pkg:pypi/flask-login@0.6.3")
        #expect(SBOM.normalizedPythonName("Zope.Interface__x") == "zope-interface-x")
    }

    @Test("the SBOM goes into the store beside the archive, the signed manifest vouches for it, and it reads back")
    func storedAndVerified() throws {
        try withTemporaryDirectory { dir in
            let tree = dir + "/tree"
            try makeDebianLikeTree(at: tree)
            try FileManager.default.createDirectory(atPath: tree + "/etc/app", withIntermediateDirectories: true)
            try writeFile(tree + "/etc/app/app.conf", "port = 8000\n")
            let store = ReleaseStore(root: dir + "/store")
            let key = try ReleaseSigning.loadSigningKey(path: try ReleaseSigning.generateKey(at: dir + "/key").privateKeyPath)
            func add() throws -> ReleaseStore.AddResult {
                try store.add(tree: tree, name: "web", version: "1.0", created: 1_700_000_000, signingKey: key) { packed in
                    var contents = try ReleaseContents.read(tree: tree, entries: packed.entries)
                    contents = ReleaseContents(debian: contents.debian, python: contents.python,
                                               files: try ReleaseContents.addedFiles(destinations: ["/etc/app/"], entries: packed.entries, tree: tree),
                                               distribution: contents.distribution)
                    let subject = SBOM.Subject(name: "web", version: "1.0", created: 1_700_000_000, archiveSHA256: packed.archiveSHA256)
                    return try SBOM.attachments(contents, subject: subject)
                }
            }
            let added = try add()
            let release = added.release
            #expect(release.manifest.attachments?.map(\.file) == ["sbom.cdx.json", "sbom.spdx.json"])
            let packages = try release.packages()
            #expect(packages.map(\.displayName) == ["base-files", "libfoo1:i386", "tzdata", "Flask-Login (pypi)"])
            let spdx = try readText(release.directory + "/sbom.spdx.json")
            #expect(spdx.contains("\"fileName\" : \"./etc/app/app.conf\"") && spdx.contains("\"licenseDeclared\" : \"GPL-2.0-or-later OR Artistic-1.0\""))
            #expect(spdx.contains("\"created\" : \"2023-11-14T22:13:20Z\""), "the creation time is the release's")
            // The same tree again: the same bytes, so the store says it has it.
            #expect(try add().outcome == .alreadyPresent)
            let trust = key.publicKey
            #expect(try ReleaseVerifier.verify(release, trust: trust).isValid)
            // A changed SBOM no longer matches the signed manifest.
            try writeFile(release.directory + "/sbom.spdx.json", spdx.replacingOccurrences(of: "tzdata", with: "tzdatb"))
            let verification = try ReleaseVerifier.verify(release, trust: trust)
            #expect(!verification.isValid && verification.problems.contains { "\($0)".contains("sbom.spdx.json") }, "\(verification.problems)")
            #expect(throws: ReleaseError.self) { try release.packages() }
        }
    }

    @Test("an attachment's name is a plain file name of the release, not a path or one of its own files",
          arguments: ["../x", "a/b", ".hidden", "manifest.json", "manifest.sig", "rootfs.tar.xz", "deltas", "", "UPPER"])
    func attachmentNames(name: String) {
        #expect(throws: ReleaseError.self) { try ReleaseStore.validate(attachment: name, source: "m") }
    }

    @Test("package changes: added, removed, upgraded, in one line and in a list")
    func changes() {
        let old = [PackageRecord(ecosystem: .deb, name: "openssl", version: "3.0.11", architecture: "amd64"),
                   PackageRecord(ecosystem: .deb, name: "gone", version: "1", architecture: "amd64"),
                   PackageRecord(ecosystem: .pypi, name: "Flask_Login", version: "0.6.2")]
        let new = [PackageRecord(ecosystem: .deb, name: "openssl", version: "3.0.13", architecture: "amd64"),
                   PackageRecord(ecosystem: .deb, name: "netbase", version: "6.4", architecture: "all"),
                   PackageRecord(ecosystem: .deb, name: "curl", version: "7.88", architecture: "amd64"),
                   PackageRecord(ecosystem: .pypi, name: "flask-login", version: "0.6.3")]
        let changes = PackageChanges(old: old, new: new)
        #expect(changes.added.map(\.name) == ["curl", "netbase"])
        #expect(changes.removed.map(\.name) == ["gone"])
        #expect(changes.upgraded.map { "\($0.name) \($0.from)→\($0.to)" } == ["openssl 3.0.11→3.0.13", "flask-login 0.6.2→0.6.3"])
        #expect(changes.summary() == "openssl 3.0.11 → 3.0.13, flask-login (pypi) 0.6.2 → 0.6.3, 2 added, 1 removed")
        #expect(changes.textLines.last == "2 added, 1 removed, 2 upgraded")
        #expect(PackageChanges(old: old, new: old).summary() == "no package changes")
    }

    @Test("the provenance is a DSSE envelope that verifies with the release key only, and names its subjects")
    func provenance() throws {
        try withTemporaryDirectory { dir in
            let key = try ReleaseSigning.loadSigningKey(path: try ReleaseSigning.generateKey(at: dir + "/key").privateKeyPath)
            let other = try ReleaseSigning.loadSigningKey(path: try ReleaseSigning.generateKey(at: dir + "/other").privateKeyPath)
            let statement = try Provenance.statement(
                subjects: [.init(name: "rootfs.tar.xz", digest: .init(sha256: String(repeating: "ab", count: 32)))],
                inputs: .init(recipe: .init(name: "web.toml", digest: .init(sha256: String(repeating: "cd", count: 32))),
                              baseKey: "k", baseDescription: "suite=bookworm", sourceDateEpoch: 1, resolved: [], architecture: "x86_64"))
            let envelope = try Provenance.envelope(statement, key: key)
            #expect(try Provenance.verify(envelope, publicKey: key.publicKey, source: "p") == statement)
            #expect(try Provenance.envelope(statement, key: key) == envelope, "Ed25519 signing is deterministic: a rebuild gives the same bytes")
            #expect(Provenance.subjects(of: statement).first?.digest?.sha256 == String(repeating: "ab", count: 32))
            let text = String(decoding: statement, as: UTF8.self)
            #expect(text.contains("\"predicateType\":\"https://slsa.dev/provenance/v1\"") && text.contains("\"_type\":\"https://in-toto.io/Statement/v1\""))
            #expect(throws: ReleaseError.self) { try Provenance.verify(envelope, publicKey: other.publicKey, source: "p") }
            // Another statement under the same signature.
            var decoded = try JSONDecoder().decode(Provenance.Envelope.self, from: envelope)
            decoded.payload = Data(text.replacingOccurrences(of: "x86_64", with: "aarch64").utf8).base64EncodedString()
            #expect(throws: ReleaseError.self) { try Provenance.verify(try JSONEncoder().encode(decoded), publicKey: key.publicKey, source: "p") }
        }
    }
}
