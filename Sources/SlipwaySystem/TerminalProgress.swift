import Foundation
import Synchronization

/// Shows archive progress on stderr: a one-line bar (bytes, rate, ETA) redrawn at most ten
/// times a second when stderr is a terminal; otherwise a plain log line at most every five
/// seconds and one at the end, so CI logs stay short. Safe to call from any thread.
public final class TerminalProgress: ArchiveProgress, Sendable {
    /// How progress is shown.
    public enum Style: Sendable {
        /// A bar redrawn in place (a terminal).
        case bar
        /// Occasional log lines (a pipe or a file).
        case lines
        /// Nothing.
        case silent
    }

    /// A reporter that prints nothing (`--quiet`).
    public static var quiet: TerminalProgress { TerminalProgress(style: .silent) }

    public let style: Style
    private let fd: Int32
    private let barInterval: Duration
    private let lineInterval: Duration
    private let state = Mutex(State())

    private struct State {
        var operation = ""
        var total: UInt64?
        var done: UInt64 = 0
        var start: ContinuousClock.Instant?
        var lastShown: ContinuousClock.Instant?
        /// A bar is on screen without its final newline.
        var barOpen = false
    }

    /// `style` defaults to a bar when `fd` is a terminal and log lines otherwise.
    public init(style: Style? = nil, fd: Int32 = 2, barInterval: Duration = .milliseconds(100), lineInterval: Duration = .seconds(5)) {
        self.fd = fd
        self.style = style ?? (isatty(fd) == 1 ? .bar : .lines)
        self.barInterval = barInterval
        self.lineInterval = lineInterval
    }

    public func begin(_ operation: String, total: UInt64?) {
        guard style != .silent else { return }
        let now = ContinuousClock.now
        state.withLock { s in
            s.operation = operation
            s.total = total
            s.done = 0
            s.start = now
            s.lastShown = now
            if style == .bar { draw(&s, now: now) }
        }
    }

    public func advance(to done: UInt64) {
        guard style != .silent else { return }
        let now = ContinuousClock.now
        state.withLock { s in
            s.done = done
            guard s.start != nil else { return }
            let interval = style == .bar ? barInterval : lineInterval
            if let last = s.lastShown, now - last < interval { return }
            s.lastShown = now
            if style == .bar { draw(&s, now: now) } else { logLine(s, now: now, final: false) }
        }
    }

    public func end() {
        guard style != .silent else { return }
        let now = ContinuousClock.now
        state.withLock { s in
            guard s.start != nil else { return }
            if style == .bar {
                draw(&s, now: now)
                Output.write(fd, "\n")
                s.barOpen = false
            } else if s.done > 0 {
                // Nothing done means the operation failed at once; its error says enough.
                logLine(s, now: now, final: true)
            }
            s.start = nil
        }
    }

    /// Ends a bar that is on screen with a newline, so an error message that follows starts
    /// on its own line (after an interrupt or a failure).
    public func closeLine() {
        state.withLock { s in
            if s.barOpen {
                Output.write(fd, "\n")
                s.barOpen = false
            }
        }
    }

    // MARK: Rendering

    private func draw(_ s: inout State, now: ContinuousClock.Instant) {
        var parts = [s.operation]
        if let total = s.total, total > 0 {
            let fraction = min(1, Double(s.done) / Double(total))
            let width = 24
            let filled = Int(fraction * Double(width))
            parts.append("[" + String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled) + "]")
            parts.append(String(format: "%3d%%", Int(fraction * 100)))
            parts.append("\(ByteCount.format(s.done)) / \(ByteCount.format(total))")
        } else {
            parts.append(ByteCount.format(s.done))
        }
        if let rate = rate(s, now: now) {
            parts.append(ByteCount.rate(rate))
            if let total = s.total, total > s.done, rate > 0 {
                parts.append("ETA " + Self.clock(Double(total - s.done) / rate))
            }
        }
        Output.write(fd, "\r" + parts.joined(separator: "  ") + "\u{1B}[K")
        s.barOpen = true
    }

    private func logLine(_ s: State, now: ContinuousClock.Instant, final: Bool) {
        var line = "\(s.operation): \(ByteCount.format(s.done))"
        if !final, let total = s.total { line += " of \(ByteCount.format(total))" }
        if final, let start = s.start {
            line += String(format: " in %.1f s", Self.seconds(now - start))
        }
        if let rate = rate(s, now: now) { line += ", " + ByteCount.rate(rate) }
        Output.write(fd, line + "\n")
    }

    private func rate(_ s: State, now: ContinuousClock.Instant) -> Double? {
        guard let start = s.start else { return nil }
        let elapsed = Self.seconds(now - start)
        return elapsed > 0.05 ? Double(s.done) / elapsed : nil
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// `m:ss` or `h:mm:ss`.
    static func clock(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds < 360_000 else { return "--:--" }
        let total = Int(seconds.rounded(.up))
        let h = total / 3600, m = (total / 60) % 60, sec = total % 60
        return h > 0 ? String(format: "%d:%02d:%02d", h, m, sec) : String(format: "%d:%02d", m, sec)
    }
}
