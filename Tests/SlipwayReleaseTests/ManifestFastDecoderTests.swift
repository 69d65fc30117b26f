import Foundation
import Testing
@testable import SlipwayRelease
@testable import SlipwayArchive
@testable import SlipwayTestSupport

/// The fast entries decoder answers only where JSONDecoder gives the same manifest, and
/// leaves everything else to JSONDecoder.
@Suite("Release manifest: the fast decoder")
struct ManifestFastDecoderTests {
    /// `decode` (fast path first) and JSONDecoder alone agree: same manifest or both an error.
    func agree(_ text: String, fast expectFast: Bool, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
        let data = Data(text.utf8)
        let fast = ManifestFastDecoder.decode(data)
        #expect((fast != nil) == expectFast, comment, sourceLocation: sourceLocation)
        let reference = try? ReleaseManifest.decodeWithFoundation(data)
        if let fast { #expect(fast == reference, comment, sourceLocation: sourceLocation) }
        let decoded = try? ReleaseManifest.decode(data)
        #expect(decoded == reference, comment, sourceLocation: sourceLocation)
    }

    func document(entries: String, rest: String = "") -> String {
        #"{"archive":{"sha256":"ab","size":1},"compression":"xz","created":5,"entries":[\#(entries)],"formatVersion":1,"name":"web","tarSize":10"#
            + rest + #","version":"1"}"#
    }

    @Test("a canonical manifest, a non-UTF-8 path, a service and pretty printing decode fast to what JSONDecoder gives")
    func canonical() throws {
        var manifest = sampleManifest()
        manifest.service = ServiceSpec(start: "/usr/bin/true", reload: "kill -HUP $MAINPID", sharedDirectories: ["var/data"], port: 8080)
        let bytes = try manifest.encoded()
        let fast = try #require(ManifestFastDecoder.decode(bytes))
        #expect(fast == manifest)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        agree(String(decoding: try encoder.encode(manifest), as: UTF8.self), fast: true, "pretty printed")
    }

    @Test("escapes, unicode, surrogate pairs and null optionals decode fast and alike")
    func escapes() {
        let entry = #"{"gid":0,"kind":"file","mode":420,"path":"a\"b\\c\/d\n\u00e9\ud83d\ude00","sha256":null,"size":0,"uid":0,"xattrs":["user.x"],"linkTarget":null}"#
        agree(document(entries: entry), fast: true)
        agree(document(entries: #"{"gid":0,"kind":"file","mode":420,"path":"é😀","size":18446744073709551615,"uid":4294967295}"#), fast: true)
        agree(document(entries: #"{"gid":0,"kind":"symlink","mode":511,"path":{"base64":"Y2Fm6f8="},"linkTarget":{"base64":"/w=="},"size":0,"uid":0}"#), fast: true)
        agree(document(entries: ""), fast: true, "no entries")
    }

    @Test("anything unusual is left to JSONDecoder, whose verdict stands", arguments: [
        #"{"gid":0,"kind":"file","mode":420,"path":"a","size":0,"uid":0,"extra":1}"#,            // unknown key
        #"{"gid":0,"gid":1,"kind":"file","mode":420,"path":"a","size":0,"uid":0}"#,              // repeated key
        #"{"gid":0,"kind":"file","mode":4.2e2,"path":"a","size":0,"uid":0}"#,                    // exponent
        #"{"gid":0,"kind":"file","mode":420.0,"path":"a","size":0,"uid":0}"#,                    // fraction
        #"{"gid":0,"kind":"file","mode":0420,"path":"a","size":0,"uid":0}"#,                     // leading zero
        #"{"gid":-1,"kind":"file","mode":420,"path":"a","size":0,"uid":0}"#,                     // negative
        #"{"gid":0,"kind":"file","mode":4294967296,"path":"a","size":0,"uid":0}"#,               // too big for UInt32
        #"{"gid":0,"kind":"file","mode":420,"path":"\ud83d","size":0,"uid":0}"#,                 // lone surrogate
        #"{"gid":0,"kind":"file","mode":420,"path":"\x","size":0,"uid":0}"#,                     // unknown escape
        #"{"gid":0,"kind":"pipe","mode":420,"path":"a","size":0,"uid":0}"#,                      // unknown kind
        #"{"gid":0,"kind":"file","mode":420,"size":0,"uid":0}"#,                                 // no path
        #"{"gid":0,"kind":"file","mode":null,"path":"a","size":0,"uid":0}"#,                     // null where required
        #"{"gid":0,"kind":"file","mode":420,"path":{"base64":"!!"},"size":0,"uid":0}"#,         // bad base64
        #"{"gid":0,"kind":"file","mode":420,"path":"a","size":0,"uid":0"#,                       // truncated
    ])
    func leftToFoundation(entry: String) {
        agree(document(entries: entry), fast: false, "\(entry)")
    }

    @Test("a document that is not a manifest gets JSONDecoder's error")
    func errors() {
        #expect(ManifestFastDecoder.decode(Data("[]".utf8)) == nil)
        #expect(ManifestFastDecoder.decode(Data(#"{"entries":[]"#.utf8)) == nil)
        agree(document(entries: "", rest: #","tarSize":11"#), fast: false, "repeated top-level key")
        agree(document(entries: "") + " x", fast: false, "trailing bytes")
        #expect(throws: ReleaseError.self) { try ReleaseManifest.decode(Data(#"{"formatVersion":1,"entries":[]}"#.utf8)) }
    }
}
