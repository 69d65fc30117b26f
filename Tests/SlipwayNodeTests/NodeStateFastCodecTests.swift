import Foundation
import Testing
@testable import SlipwayNode
@testable import SlipwayNodeProtocol
@testable import SlipwayRelease
import SlipwayTestSupport

/// The journal's own writer and reader (NodeStateFastCodec) against JSONEncoder and
/// JSONDecoder: the same bytes written, the same journal read, and nil (JSONDecoder decides)
/// for anything else.
@Suite("Node journal: the fast codec writes and reads as JSONEncoder and JSONDecoder do")
struct NodeStateFastCodecTests {
    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// A journal as nodes write them: versions, timestamps of now and of a few seconds, and
    /// now and then every optional member absent, a path-like detail, a non-ASCII name.
    static func journal(_ generator: inout SeededGenerator, activations: Int, releases: Int, plain: Bool = true) -> NodeState {
        func version() -> String {
            ["1", "2", "1.0.1", "2026.12.07-3", "v10", "café", "a/b", "x_y"].randomElement(using: &generator)!
        }
        func time() -> Double {
            switch Int.random(in: 0..<5, using: &generator) {
            case 0: return 1_796_629_346
            case 1: return Double(Int.random(in: 0..<100, using: &generator))
            case 2: return Double.random(in: 0..<5, using: &generator)
            default: return 1_796_629_346 + Double.random(in: 0..<100_000, using: &generator)
            }
        }
        var state = NodeState(app: plain ? "web" : "w\"eb\n")
        for _ in 0..<releases {
            let origin: NodeState.Origin = Bool.random(using: &generator) ? .full
                : Bool.random(using: &generator) ? .delta(from: version()) : .recovered
            state.releases.append(.init(version: version(), receivedAt: time(),
                                        archiveSHA256: Bool.random(using: &generator) ? String(repeating: "ab", count: 32) : nil,
                                        origin: origin))
        }
        for _ in 0..<activations {
            let detail: String? = switch Int.random(in: 0..<4, using: &generator) {
            case 0: "health check failed: GET http://127.0.0.1:8080/health → 503"
            case 1: "hook /srv/pre-activate exited with status 1 (é)"
            default: nil
            }
            state.activations.append(.init(kind: Bool.random(using: &generator) ? .activate : .rollback,
                                           from: Bool.random(using: &generator) ? version() : nil, to: version(), at: time(),
                                           result: [SwitchResult.activated, .rolledBack, .failed].randomElement(using: &generator)!,
                                           detail: detail))
        }
        return state
    }

    @Test("written: the very bytes JSONEncoder writes; read back: the same journal, as JSONDecoder reads it")
    func writeAndRead() throws {
        var generator = SeededGenerator(seed: 20_261_207)
        for round in 0..<300 {
            let state = Self.journal(&generator, activations: round % 7 == 0 ? 0 : Int.random(in: 1...200, using: &generator),
                                     releases: round % 11 == 0 ? 0 : Int.random(in: 1...6, using: &generator))
            let fast = try #require(NodeStateFastCodec.encode(state), "round \(round)")
            let reference = try Self.encoder().encode(state)
            #expect(fast == reference, "round \(round): \(String(decoding: fast.prefix(400), as: UTF8.self)) vs \(String(decoding: reference.prefix(400), as: UTF8.self))")
            #expect(NodeStateFastCodec.decode(fast) == state, "round \(round)")
            #expect(try JSONDecoder().decode(NodeState.self, from: fast) == state, "round \(round)")
            // Compact, and another key order: still read, the same.
            let compact = try JSONEncoder().encode(state)
            #expect(NodeStateFastCodec.decode(compact) == state, "round \(round), compact")
        }
    }

    @Test("what it does not write itself is left to JSONEncoder: escapes, numbers in exponent form")
    func leftToJSONEncoder() throws {
        var generator = SeededGenerator(seed: 7)
        let quoted = Self.journal(&generator, activations: 3, releases: 1, plain: false)
        #expect(NodeStateFastCodec.encode(quoted) == nil)
        var tiny = Self.journal(&generator, activations: 1, releases: 1)
        tiny.activations[0].at = 1e-7
        #expect(NodeStateFastCodec.encode(tiny) == nil)
        var escaped = Self.journal(&generator, activations: 1, releases: 1)
        escaped.activations[0].detail = "line one\nline \"two\" \\ three"
        #expect(NodeStateFastCodec.encode(escaped) == nil)
        // What JSONEncoder wrote instead is read by the fast reader when it can, the same.
        for state in [quoted, tiny, escaped] {
            let written = try Self.encoder().encode(state)
            #expect(try JSONDecoder().decode(NodeState.self, from: written) == state)
            if let fast = NodeStateFastCodec.decode(written) { #expect(fast == state) }
        }
    }

    @Test("read: never a journal JSONDecoder would not give; nil for unknown, repeated, missing or mistyped members")
    func readNeverDisagrees() throws {
        var generator = SeededGenerator(seed: 99)
        let state = Self.journal(&generator, activations: 4, releases: 2)
        let written = Array(try Self.encoder().encode(state))
        // Hand-made cases where the fast reader must give up.
        let refused = [
            #"{"formatVersion":1,"app":"a","releases":[],"activations":[],"extra":1}"#,
            #"{"formatVersion":1,"app":"a","app":"b","releases":[],"activations":[]}"#,
            #"{"app":"a","releases":[],"activations":[]}"#,
            #"{"formatVersion":1,"app":"a","releases":[],"activations":[{"kind":"activate","to":"1","at":"1","result":"activated"}]}"#,
            #"{"formatVersion":1,"app":"a","releases":[],"activations":[{"kind":"jump","to":"1","at":1,"result":"activated"}]}"#,
            #"{"formatVersion":1,"app":"a","releases":[],"activations":[{"kind":"activate","to":"1","at":01,"result":"activated"}]}"#,
            #"{"formatVersion":1,"app":"a","releases":[],"activations":[{"kind":"activate","to":null,"at":1,"result":"activated"}]}"#,
            #"{"formatVersion":-1,"app":"a","releases":[],"activations":[]}"#,
            #"{"formatVersion":1,"app":"a","releases":[{"version":"1","receivedAt":1e999,"origin":{"kind":"full"}}],"activations":[]}"#,
            #"{"formatVersion":1,"app":"a","releases":[],"activations":[]} x"#,
        ]
        for text in refused {
            #expect(NodeStateFastCodec.decode(Data(text.utf8)) == nil, "\(text)")
        }
        // null for an optional member is nil, as JSONDecoder has it.
        let nulls = #"{"formatVersion":1,"app":"a","releases":[{"version":"1","receivedAt":2.5,"archiveSHA256":null,"origin":{"kind":"delta","base":null}}],"activations":[{"kind":"rollback","from":null,"to":"1","at":3,"result":"rolled-back","detail":null}]}"#
        let decoded = try #require(NodeStateFastCodec.decode(Data(nulls.utf8)))
        #expect(decoded == (try JSONDecoder().decode(NodeState.self, from: Data(nulls.utf8))))
        // Random damage: where the fast reader answers, JSONDecoder answers the same.
        var answered = 0
        for _ in 0..<20_000 {
            var bytes = written
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let at = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes[at] = [UInt8(ascii: "\""), UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "1"), UInt8(ascii: "e"),
                                     UInt8(ascii: "-"), UInt8(ascii: " "), UInt8(ascii: "\\"), 0x00, 0xC3, UInt8(ascii: "n")]
                        .randomElement(using: &generator)!
                case 1: bytes.remove(at: at)
                default: bytes.insert(bytes[Int.random(in: 0..<bytes.count, using: &generator)], at: at)
                }
            }
            guard let fast = NodeStateFastCodec.decode(Data(bytes)) else { continue }
            answered += 1
            let reference = try? JSONDecoder().decode(NodeState.self, from: Data(bytes))
            #expect(fast == reference, "\(String(decoding: bytes, as: UTF8.self))")
        }
        // The damage leaves many documents valid (a digit for a digit, a space for a space).
        #expect(answered > 100, "\(answered)")
    }
}

/// The lock file's record of its holder (NodeLockHolderCodec) against JSONEncoder and
/// JSONDecoder: what it writes, JSONDecoder reads as the same holder; it reads what
/// JSONEncoder wrote (lock files of earlier versions) as the same holder; nil for anything
/// else.
@Suite("Node lock: the holder's record is written and read without JSONEncoder and JSONDecoder")
struct NodeLockHolderCodecTests {
    static func same(_ a: NodeLock.Holder?, _ b: NodeLock.Holder) -> Bool {
        guard let a else { return false }
        return a.pid == b.pid && a.command == b.command && a.since == b.since && a.group == b.group && a.released == b.released
    }

    static func decode(_ data: Data) -> NodeLock.Holder? { data.withUnsafeBytes { NodeLockHolderCodec.decode($0) } }

    @Test("written: JSONDecoder reads the same holder; read: the same holder from its own bytes and from JSONEncoder's")
    func writeAndRead() throws {
        var generator = SeededGenerator(seed: 20_261_207)
        let commands = ["/usr/bin/slipway node activate web@2 --config /etc/slipway/node.toml -q",
                        "slipway node apply --archive /var/lib/slipway/incoming/café 1.tar.xz", "x", ""]
        var written = 0
        for round in 0..<500 {
            let flags: [Bool?] = [nil, true, false]
            let holder = NodeLock.Holder(pid: round == 0 ? Int32.max : Int32.random(in: 1...4_194_304, using: &generator),
                                         command: commands.randomElement(using: &generator)!,
                                         since: round % 3 == 0 ? 1_796_629_346 : 1_796_629_346 + Double.random(in: 0..<100_000, using: &generator),
                                         group: flags.randomElement(using: &generator)!, released: flags.randomElement(using: &generator)!)
            let fast = try #require(NodeLockHolderCodec.encode(holder))
            written += 1
            #expect(Self.same(try JSONDecoder().decode(NodeLock.Holder.self, from: fast), holder), "\(String(decoding: fast, as: UTF8.self))")
            #expect(Self.same(Self.decode(fast), holder), "\(String(decoding: fast, as: UTF8.self))")
            let old = try JSONEncoder().encode(holder)
            #expect(Self.same(Self.decode(old), holder), "\(String(decoding: old, as: UTF8.self))")
        }
        #expect(written == 500)
    }

    @Test("a command with a quote, a backslash or a control character is left to JSONEncoder")
    func leftToJSONEncoder() {
        for command in ["say \"hi\"", "a\\b", "line\nbreak"] {
            #expect(NodeLockHolderCodec.encode(.init(pid: 1, command: command, since: 1, group: nil, released: nil)) == nil)
        }
        #expect(NodeLockHolderCodec.encode(.init(pid: 1, command: "x", since: 1e300, group: nil, released: nil)) == nil)
    }

    @Test("read: nil for unknown, repeated, missing or mistyped members and trailing bytes")
    func refused() {
        let good = #"{"pid":12,"command":"c","since":1.5,"group":true}"#
        #expect(Self.same(Self.decode(Data(good.utf8)), .init(pid: 12, command: "c", since: 1.5, group: true, released: nil)))
        for text in [#"{"pid":12,"command":"c","since":1.5,"owner":1}"#, #"{"pid":12,"pid":13,"command":"c","since":1.5}"#,
                     #"{"command":"c","since":1.5}"#, #"{"pid":-1,"command":"c","since":1.5}"#,
                     #"{"pid":2147483648,"command":"c","since":1.5}"#, #"{"pid":12,"command":"c","since":1.5,"group":"yes"}"#,
                     #"{"pid":12,"command":7,"since":1.5}"#, good + "x", "", "{"] {
            #expect(Self.decode(Data(text.utf8)) == nil, "\(text)")
        }
    }
}
