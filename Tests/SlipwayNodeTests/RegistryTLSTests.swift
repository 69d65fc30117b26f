import Foundation
import Testing
@testable import SlipwayRegistry
@testable import SlipwayTestSupport

@Suite("Registry TLS: certs.d lookup")
struct RegistryTLSTests {
    func make(_ root: String, _ host: String, _ files: [String]) throws {
        try FileManager.default.createDirectory(atPath: "\(root)/\(host)", withIntermediateDirectories: true)
        for file in files { try Data("PEM \(file)\n".utf8).write(to: URL(fileURLWithPath: "\(root)/\(host)/\(file)")) }
    }

    @Test("the first root with the host's directory wins; .crt files are CAs, NAME.cert with NAME.key the client")
    func findsFiles() throws { try withTemporaryDirectory { dir in
        let first = dir + "/first", second = dir + "/second"
        try make(first, "other:5000", ["ca.crt"])
        try make(second, "reg.example:5000", ["b.crt", "a.crt", "node.cert", "node.key"])
        let tls = try #require(try RegistryTLS.find(host: "reg.example:5000", roots: [first, second]))
        #expect(tls.directory == "\(second)/reg.example:5000")
        #expect(tls.authorities == ["\(second)/reg.example:5000/a.crt", "\(second)/reg.example:5000/b.crt"])
        #expect(tls.client?.certificate == "\(second)/reg.example:5000/node.cert" && tls.client?.key == "\(second)/reg.example:5000/node.key")
        #expect(try RegistryTLS.find(host: "reg.example", roots: [first, second]) == nil, "the port is part of the name")
        #expect(try RegistryTLS.find(host: "../first", roots: [second]) == nil)

        // The bundle is the system's CAs and then each .crt; the client pair goes as is.
        let scratch = dir + "/scratch"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let arguments = try tls.curlArguments(scratch: scratch)
        let bundle = try #require(arguments.firstIndex(of: "--cacert").map { arguments[$0 + 1] })
        let text = try String(contentsOfFile: bundle, encoding: .utf8)
        #expect(text.hasSuffix("PEM a.crt\n\nPEM b.crt\n\n"))
        // curl takes `--cert FILE:PASSPHRASE`: the port's colon is escaped there (not in --key).
        #expect(Array(arguments.suffix(4)) == ["--cert", "\(second)/reg.example\\:5000/node.cert", "--key", "\(second)/reg.example:5000/node.key"])
    } }

    @Test("a certificate without its key, a key without its certificate, or two client pairs is an error naming the file")
    func refusesHalfPairs() throws { try withTemporaryDirectory { dir in
        for (files, needle) in [(["x.cert"], "without its key x.key"), (["x.key"], "without its certificate"),
                                (["x.cert", "x.key", "y.cert", "y.key"], "more than one client certificate")] {
            let root = dir + "/" + UUID().uuidString
            try make(root, "h:1", files)
            #expect { try RegistryTLS.find(host: "h:1", roots: [root]) } throws: { "\($0)".contains(needle) }
        }
    } }

    @Test("the host of an https URL; none for http")
    func hostOfURL() {
        #expect(RegistryTLS.host(ofHTTPS: "https://reg.example:5000/v2/a/blobs/sha256:00") == "reg.example:5000")
        #expect(RegistryTLS.host(ofHTTPS: "HTTPS://store.example/x.tar.xz") == "store.example")
        #expect(RegistryTLS.host(ofHTTPS: "http://store.example/x") == nil)
        #expect(RegistryTLS.controllerRoots(environment: ["SLIPWAY_CERTS_D": "/srv/certs.d"]) == ["/srv/certs.d"])
        #expect(RegistryTLS.controllerRoots(environment: [:]) == RegistryTLS.defaultRoots)
    }
}
