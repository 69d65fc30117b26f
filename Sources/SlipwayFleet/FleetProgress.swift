import Foundation
import Synchronization
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Per-node progress on stderr: on a terminal, one line per node (state and bytes) redrawn
/// in place, or for a fleet taller than that one summary line of counts by state (failures
/// are logged as they come); otherwise a plain log line whenever a node's state changes; or
/// (`--progress json`) one JSON object per line per change (docs/fleet.md, "Progress").
public final class FleetProgress: Sendable {
    /// `--progress`.
    public enum Mode: String, Sendable, CaseIterable {
        /// A terminal's view on a terminal, else lines.
        case auto
        /// A plain log line per change.
        case lines
        /// A JSON object per change: `{"time", "node", "state"[, "total"]}`.
        case json
    }

    /// `date` in ISO 8601, UTC, with milliseconds: the time of a progress event or of a
    /// rollout state (`RolloutState`).
    public static func timestamp(_ date: Date = Date()) -> String { makeFormatter().string(from: date) }

    static func makeFormatter() -> ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }

    /// Nodes above which a terminal shows counts instead of a line per node.
    static let summaryAbove = 40

    private struct Line {
        var state = "waiting"
        var bytes: UInt64 = 0
        var total: UInt64 = 0
    }

    private struct State {
        var lines: [String: Line] = [:]
        var drawn = 0
        var lastDraw: ContinuousClock.Instant?
        /// Made once for every `--progress json` event (a 10,000-node rollout has 50,000).
        let formatter = FleetProgress.makeFormatter()
        let encoder: JSONEncoder = {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return encoder
        }()
    }

    private let order: [String]
    private let terminal: Bool
    private let json: Bool
    private let silent: Bool
    private let width: Int
    private let state = Mutex(State())

    public init(nodes: [String], output: Output, mode: Mode = .auto) {
        order = nodes
        json = mode == .json
        silent = output.verbosity == .quiet && !json
        terminal = !silent && mode == .auto && isatty(2) == 1
        width = nodes.map(\.count).max() ?? 4
    }

    /// One event of `--progress json`.
    struct Event: Encodable {
        var time: String
        var node: String
        var state: String
        var total: UInt64?
    }

    /// A node entered a new state ("sending delta from 1.0", "applying", "activating").
    public func state(_ node: String, _ text: String, total: UInt64 = 0) {
        guard !silent else { return }
        state.withLock { s in
            var line = s.lines[node] ?? Line()
            line.state = text
            line.bytes = 0
            line.total = total
            s.lines[node] = line
            if json {
                let event = Event(time: s.formatter.string(from: Date()), node: node, state: text, total: total > 0 ? total : nil)
                if let data = try? s.encoder.encode(event) { Output.write(2, String(decoding: data, as: UTF8.self) + "\n") }
            } else if terminal {
                if order.count > Self.summaryAbove, text.hasPrefix("failed") {
                    // Above the summary line, so it stays on screen.
                    Output.write(2, "\r\u{1B}[2K\(node): \(text)\n")
                    s.drawn = 0
                }
                draw(&s, force: order.count <= Self.summaryAbove)
            } else {
                Output.write(2, "\(node): \(text)\n")
            }
        }
    }

    /// Bytes of the node's current transfer.
    public func bytes(_ node: String, _ bytes: UInt64) {
        guard terminal else { return }
        state.withLock { s in
            s.lines[node, default: Line()].bytes = bytes
            draw(&s, force: false)
        }
    }

    /// Leaves the last picture on screen.
    public func finish() {
        guard terminal else { return }
        state.withLock { s in draw(&s, force: true) }
    }

    private func draw(_ s: inout State, force: Bool) {
        let now = ContinuousClock.now
        if !force, let last = s.lastDraw, now - last < .milliseconds(150) { return }
        s.lastDraw = now
        if order.count > Self.summaryAbove {
            // One line: how many nodes are in each state (its first word: sending, applying,
            // activated, failed…), in the order states first appear.
            var counts: [String: Int] = [:]
            var kinds: [String] = []
            for node in order {
                let state = s.lines[node]?.state ?? "waiting"
                let kind = String(state.split(separator: " ", maxSplits: 1).first ?? "waiting").trimmingCharacters(in: CharacterSet(charactersIn: ":"))
                if counts[kind] == nil { kinds.append(kind) }
                counts[kind, default: 0] += 1
            }
            let line = "\(order.count) nodes: " + kinds.map { "\(counts[$0]!) \($0)" }.joined(separator: " · ")
            Output.write(2, (s.drawn > 0 ? "\u{1B}[1A" : "") + "\r\u{1B}[2K" + line + "\n")
            s.drawn = 1
            return
        }
        var text = s.drawn > 0 ? "\u{1B}[\(s.drawn)A" : ""
        for node in order {
            let line = s.lines[node] ?? Line()
            var shown = line.state
            if line.total > 0 {
                shown += "  \(ByteCount.format(line.bytes)) / \(ByteCount.format(line.total))"
            }
            text += "\r\u{1B}[2K" + node.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + shown + "\n"
        }
        s.drawn = order.count
        Output.write(2, text)
    }
}
