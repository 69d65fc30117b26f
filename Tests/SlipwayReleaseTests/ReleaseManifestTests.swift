import Foundation
import Testing
@testable import SlipwayRelease
@testable import SlipwayArchive
@testable import SlipwaySystem
@testable import SlipwayTestSupport

@Suite("Release manifest")
struct ReleaseManifestTests {
    @Test("encode and decode give back the same manifest, non-UTF-8 path included")
    func roundTrip() throws {
        let manifest = sampleManifest()
        let decoded = try ReleaseManifest.decode(try manifest.encoded())
        #expect(decoded == manifest)
        let odd = try #require(decoded.entries.last)
        #expect(odd.path.bytes == Array("caf".utf8) + [0xE9, 0xFF])
        // The non-UTF-8 name is stored as base64, not mangled into replacement characters.
        let text = String(decoding: try manifest.encoded(), as: UTF8.self)
        #expect(text.contains("{\"base64\":\"Y2Fm6f8=\"}"))
    }

    @Test("the encoding is deterministic: sorted keys, no escaped slashes, same bytes twice")
    func deterministic() throws {
        let a = try sampleManifest().encoded()
        let b = try ReleaseManifest.decode(a).encoded()
        #expect(a == b)
        #expect(try sampleManifest().encoded() == a)
        let text = String(decoding: a, as: UTF8.self)
        #expect(text.hasPrefix("{\"archive\":{\"sha256\":"))
        #expect(text.contains("\"linkTarget\":\"dash\""))
        #expect(!text.contains("\\/"))
    }

    @Test("malformed JSON is a clear error naming the file")
    func malformed() throws {
        #expect(throws: ReleaseError.self) { try ReleaseManifest.decode(Data("{not json".utf8), source: "x/manifest.json") }
        do {
            _ = try ReleaseManifest.decode(Data("{not json".utf8), source: "x/manifest.json")
        } catch {
            #expect("\(error)".contains("x/manifest.json"))
            #expect("\(error)".contains("not a valid slipway manifest"))
        }
        // Right version, missing fields.
        do {
            _ = try ReleaseManifest.decode(Data("{\"formatVersion\":1,\"name\":\"web\"}".utf8), source: "m.json")
            Issue.record("a manifest without its fields was accepted")
        } catch let error as ReleaseError {
            guard case .manifestMalformed(let path, let detail) = error else { Issue.record("wrong error \(error)"); return }
            #expect(path == "m.json")
            #expect(detail.contains("missing field"))
        }
    }

    @Test("an unknown format version is reported as such")
    func wrongFormatVersion() throws {
        var manifest = sampleManifest()
        manifest.formatVersion = 2
        let data = try manifest.encoded()
        #expect(throws: ReleaseError.unsupportedFormatVersion(path: "manifest.json", found: 2, supported: 1)) {
            try ReleaseManifest.decode(data)
        }
    }

    @Test("summary counts entries by kind and file bytes")
    func summary() {
        let summary = sampleManifest().summary
        #expect(summary.entries == 6)
        #expect(summary.files == 3)
        #expect(summary.directories == 1)
        #expect(summary.symlinks == 1)
        #expect(summary.characterDevices == 1)
        #expect(summary.fileBytes == 103)
        #expect(summary.count(of: .file) == 3)
    }

    @Test("SOURCE_DATE_EPOCH sets the creation time; garbage is an error")
    func creationTime() throws {
        let fixed = try ReleaseManifest.creationTime(environment: ["SOURCE_DATE_EPOCH": "1700000000"])
        #expect(fixed.created == 1_700_000_000)
        #expect(fixed.sourceDateEpoch == 1_700_000_000)
        let now = try ReleaseManifest.creationTime(environment: [:])
        #expect(now.sourceDateEpoch == nil)
        #expect(now.created > 1_700_000_000)
        #expect(throws: ReleaseError.invalidSourceDateEpoch("yesterday")) {
            try ReleaseManifest.creationTime(environment: ["SOURCE_DATE_EPOCH": "yesterday"])
        }
    }
}

@Suite("Output helpers")
struct OutputTests {
    @Test("byte counts")
    func bytes() {
        #expect(ByteCount.format(0) == "0 B")
        #expect(ByteCount.format(999) == "999 B")
        #expect(ByteCount.format(1500) == "1.5 kB")
        #expect(ByteCount.format(120_000_000) == "120.0 MB")
        #expect(ByteCount.format(999_999) == "1.0 MB")
        #expect(ByteCount.rate(40_100_000) == "40.1 MB/s")
    }

    @Test("error messages are one line")
    func oneLine() {
        #expect(Output.message(for: ReleaseError.keyExists(path: "k")).contains("k already exists"))
        #expect(!Output.message(for: ReleaseError.manifestMalformed(path: "a", detail: "x\ny")).contains("\n"))
    }

    @Test("log-line progress writes a final line with the rate")
    func progressLines() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/log"
            let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            #expect(fd >= 0)
            let progress = TerminalProgress(style: .lines, fd: fd, lineInterval: .zero)
            progress.begin("pack", total: 3_000_000)
            progress.advance(to: 1_000_000)
            progress.end()
            close(fd)
            let lines = try readText(path).split(separator: "\n")
            #expect(lines.count == 2)
            #expect(lines.first?.hasPrefix("pack: 1.0 MB of 3.0 MB") == true)
            #expect(lines.last?.hasPrefix("pack: 1.0 MB in ") == true)
            TerminalProgress.quiet.begin("x", total: nil)
        }
    }
}
