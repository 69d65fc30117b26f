import Foundation
import Testing
@testable import SlipwayNode
@testable import SlipwayNodeProtocol
@testable import SlipwayRelease
@testable import SlipwayArchive
@testable import SlipwaySystem
@testable import SlipwayTestSupport

@Suite("Node: a manifest's [service] without decoding its entries")
struct NodeJSONMemberTests {
    @Test("finds a top-level member past nested arrays, objects and strings with brackets and escapes")
    func findsMember() throws {
        let json = #"{"entries":[{"path":"a]}\"{[","x":[1,{"service":1}]}],"name":"web","service":{"reload":"kill -HUP \"$(cat pid)\""},"version":"2"}"#
        let found = JSONTopLevelMember.find("service", in: Data(json.utf8))
        #expect(found == .value(Data(#"{"reload":"kill -HUP \"$(cat pid)\""}"#.utf8)))
        let spec = try JSONDecoder().decode(ServiceSpec.self, from: Data(#"{"reload":"kill -HUP \"$(cat pid)\""}"#.utf8))
        #expect(spec.reload == #"kill -HUP "$(cat pid)""#)
    }

    @Test("absent, null, pretty-printed and malformed documents")
    func edgeCases() {
        #expect(JSONTopLevelMember.find("service", in: Data(#"{"entries":[],"name":"web"}"#.utf8)) == .absent)
        #expect(JSONTopLevelMember.find("service", in: Data("{\n  \"service\" : null\n}\n".utf8)) == .value(Data("null".utf8)))
        #expect(JSONTopLevelMember.find("service", in: Data(#"{"entries":[{"a":1}"#.utf8)) == .undecided)
        #expect(JSONTopLevelMember.find("service", in: Data(#"{"\u0073ervice":{}}"#.utf8)) == .undecided)
        #expect(JSONTopLevelMember.find("service", in: Data("[]".utf8)) == .undecided)
    }
}
