import Foundation
import Testing
import ArgumentParser
@testable import SlipwayCommands
@testable import SlipwayNodeProtocol

/// The fast read of `node activate|confirm|status` must give the command argument-parser
/// gives, and leave every other line to argument-parser.
@Suite("Fast node verbs: the same command as argument-parser, or none")
struct FastNodeVerbsTests {
    /// What a node verb's command holds, as text, from either parse.
    func summary(_ command: any ParsableCommand) -> String? {
        switch command {
        case let c as NodeActivateCommand:
            return "activate \(c.reference) \(c.confirmTimeout.map { String($0) } ?? "-") \(c.json) \(c.node.arguments) \(c.global.verbosity)"
        case let c as NodeConfirmCommand:
            return "confirm \(c.reference) \(c.json) \(c.node.arguments) \(c.global.verbosity)"
        case let c as NodeStatusCommand:
            return "status \(c.app ?? "-") \(c.packages) \(c.json) \(c.node.arguments) \(c.global.verbosity)"
        default:
            return nil
        }
    }

    @Test("plain lines a controller sends: the fast command equals argument-parser's", arguments: [
        ["node", "activate", "web@2"],
        ["node", "activate", "web@2", "--json", "--confirm-timeout", "30", "--config", "/etc/slipway/node.toml"],
        ["node", "activate", "--json", "web@1.0+deb12", "-q", "--lock-timeout", "2.5"],
        ["node", "activate", "web@2", "--root", "/srv/n", "--backend", "btrfs", "--trust", "/a.pub", "--trust", "/b.pub",
         "--require-signature", "--schroot", "--schroot-directory", "/tmp/c", "--verbose"],
        ["node", "activate", "web@2", "--allow-unsigned", "--no-schroot", "-v"],
        ["node", "confirm", "web@2", "--json", "--config", "/n.toml"],
        ["node", "status", "--json", "--config", "/n.toml"],
        ["node", "status", "web", "--packages", "-q"],
    ])
    func sameAsArgumentParser(_ line: [String]) throws {
        let fast = try #require(FastNodeVerbs.parse(line), "the fast read refused \(line)")
        let parsed = try Slipway.parseAsRoot(line)
        #expect(summary(fast) != nil && summary(fast) == summary(parsed))
    }

    @Test("anything else is argument-parser's: help, =, bundled flags, --, unknown, repeated or bad options, other verbs", arguments: [
        ["node", "activate", "web@2", "--help"], ["node", "activate", "-h"], ["node", "activate", "web@2", "--config=/n.toml"],
        ["node", "activate", "web@2", "-qv"], ["node", "activate", "--", "web@2"], ["node", "activate", "web@2", "--colour"],
        ["node", "activate", "web@2", "--config", "/a", "--config", "/b"], ["node", "activate", "web@2", "--confirm-timeout", "soon"],
        ["node", "activate", "web@2", "--confirm-timeout", "0"], ["node", "activate", "web@2", "--confirm-timeout"], ["node", "activate", "web@2", "--lock-timeout", "-1"],
        ["node", "activate", "web"], ["node", "activate", "web@2", "web@3"], ["node", "activate", "web@2", "--packages"],
        ["node", "activate", "web@2", "--backend", "ext9"], ["node", "activate", "web@2", "-q", "-v"],
        ["node", "activate", "web@2", "--schroot", "--no-schroot"], ["node", "confirm", "web@2", "--confirm-timeout", "3"],
        ["node", "status", "web", "extra"], ["node", "apply", "--archive", "a", "--manifest", "m"], ["status", "web"], ["node"],
    ])
    func leftToArgumentParser(_ line: [String]) {
        #expect(FastNodeVerbs.parse(line) == nil, "\(line)")
    }
}
