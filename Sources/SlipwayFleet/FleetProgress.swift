import Foundation
import Synchronization
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Per-node progress on stderr: on a terminal, one line per node (state and bytes) redrawn
/// in place; otherwise a plain log line whenever a node's state changes.
public final class FleetProgress: Sendable {
    private struct Line {
        var state = "waiting"
        var bytes: UInt64 = 0
        var total: UInt64 = 0
    }

    private struct State {
        var lines: [String: Line] = [:]
        var drawn = 0
        var lastDraw: ContinuousClock.Instant?
    }

    private let order: [String]
    private let terminal: Bool
    private let silent: Bool
    private let width: Int
    private let state = Mutex(State())

    public init(nodes: [String], output: Output) {
        order = nodes
        silent = output.verbosity == .quiet
        terminal = !silent && isatty(2) == 1
        width = nodes.map(\.count).max() ?? 4
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
            if terminal { draw(&s, force: true) } else { Output.write(2, "\(node): \(text)\n") }
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
