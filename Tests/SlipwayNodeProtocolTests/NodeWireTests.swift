import Foundation
import Testing
@testable import SlipwayNodeProtocol

/// The wire between the controller and a node (docs/architecture.md "The node protocol").
@Suite("Node protocol: words, versions, error documents")
struct NodeWireTests {
    @Test("protocol words are shown and encoded as the wire spells them, never as Swift case names")
    func wireWords() throws {
        #expect("\(SwitchResult.rolledBack)" == "rolled-back" && "\(ApplyOutcome.alreadyLanded)" == "already-landed")
        #expect("\(SignatureStatus.unsignedAllowed)" == "unsigned-allowed" && BackendKind.names == ["dir", "btrfs", "zfs", "lvm"])
        let activation = NodeState.Activation(kind: .rollback, from: "2", to: "1", at: 0, result: .rolledBack)
        let json = String(decoding: try JSONEncoder().encode(activation), as: UTF8.self)
        #expect(json.contains(#""kind":"rollback""#) && json.contains(#""result":"rolled-back""#), "\(json)")
    }

    @Test("an error document round-trips; a code from a newer node decodes as other; a reply without a version is version 1")
    func errorDocuments() throws {
        #expect(NodeErrorCode.rolledBack.nodeSwitchedBack && NodeErrorCode.confirmationExpired.nodeSwitchedBack)
        #expect(!NodeErrorCode.noPreviousVersion.nodeSwitchedBack && !NodeErrorCode.other.nodeSwitchedBack)
        let reply = try JSONDecoder().decode(NodeErrorReply.self, from: Data(#"{"error":{"code":"from-the-future","message":"m"}}"#.utf8))
        #expect(reply.error.code == .other && reply.protocolVersion == nil)
        let encoded = try JSONEncoder().encode(NodeErrorReply(code: .locked, message: "held"))
        #expect(try JSONDecoder().decode(NodeErrorReply.self, from: encoded) == NodeErrorReply(code: .locked, message: "held"))
        let old = try JSONDecoder().decode(NodeReceive.Result.self, from: Data(#"{"path":"p","received":1,"bytes":1,"complete":true}"#.utf8))
        #expect(old.protocolVersion == nil && NodeWire.olderNode(old.protocolVersion).contains("protocol 1"))
    }
}
