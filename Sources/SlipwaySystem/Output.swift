import Foundation
import Synchronization

/// Where a command's words go: results on stdout (JSON with `--json`), logs on stderr.
/// A value type, so tests and commands can hold their own.
public struct Output: Sendable {
    /// How much goes to stderr.
    public enum Verbosity: Int, Sendable, Comparable {
        case quiet, normal, verbose
        public static func < (a: Verbosity, b: Verbosity) -> Bool { a.rawValue < b.rawValue }
    }

    public var verbosity: Verbosity
    /// Results are written as JSON instead of text.
    public var json: Bool
    /// Where the words go instead of stdout and stderr (a command run in-process by a test);
    /// nil: the process's own.
    public var capture: OutputCapture?

    public init(verbosity: Verbosity = .normal, json: Bool = false, capture: OutputCapture? = nil) {
        self.verbosity = verbosity
        self.json = json
        self.capture = capture
    }

    /// Writes to stdout (1) or stderr (2), or to the capture.
    package func emit(_ fd: Int32, _ text: String) {
        if let capture { capture.append(fd, text) } else { Self.write(fd, text) }
    }

    /// Writes result lines to stdout.
    public func result(_ lines: [String]) {
        emit(1, lines.map { $0 + "\n" }.joined())
    }

    /// Writes one result line to stdout.
    public func result(_ line: String) { result([line]) }

    /// Writes `value` to stdout as pretty JSON with sorted keys.
    public func resultJSON<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        emit(1, String(decoding: data, as: UTF8.self) + "\n")
    }

    /// Writes `value` as JSON when `--json` was given, else the text lines.
    public func result<T: Encodable>(_ value: T, text: [String]) throws {
        if json { try resultJSON(value) } else { result(text) }
    }

    /// A log line on stderr, unless `--quiet`.
    public func log(_ message: String) {
        if verbosity >= .normal { emit(2, message + "\n") }
    }

    /// A log line on stderr with `--verbose` only.
    public func verbose(_ message: String) {
        if verbosity >= .verbose { emit(2, message + "\n") }
    }

    /// `slipway: error: <message>` on stderr as one line, whatever the verbosity.
    public func error(_ message: String) {
        emit(2, "slipway: error: \(Self.oneLine(message))\n")
    }

    /// The message of any error, on one line.
    public static func message(for error: Error) -> String {
        let text: String
        // The project's errors describe themselves (CustomStringConvertible) or are
        // LocalizedError; String(describing:) gives their description.
        if let localized = (error as? LocalizedError)?.errorDescription {
            text = localized
        } else {
            text = String(describing: error)
        }
        return oneLine(text)
    }

    /// A progress reporter that suits this output: nothing with `--quiet`, else a bar on a
    /// terminal and log lines otherwise.
    /// A captured output shows no progress.
    public func progress() -> TerminalProgress {
        verbosity == .quiet || capture != nil ? .quiet : TerminalProgress()
    }

    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    }

    /// Writes all of `text` to a file descriptor, ignoring failures (a closed stdout must not
    /// turn a finished job into a crash).
    package static func write(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Foundation.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += n
        }
    }
}

/// What a command run in-process wrote to stdout (1) and stderr (2).
public final class OutputCapture: Sendable {
    private let texts = Mutex<[Int32: String]>([:])

    public init() {}

    public func append(_ fd: Int32, _ text: String) { texts.withLock { $0[fd, default: ""] += text } }

    public var standardOutput: String { texts.withLock { $0[1] ?? "" } }
    public var standardError: String { texts.withLock { $0[2] ?? "" } }
}

/// Human byte counts in decimal units: `512 B`, `1.5 kB`, `120.0 MB`, `3.2 GB`.
public enum ByteCount {
    public static func format(_ bytes: UInt64) -> String {
        if bytes < 1000 { return "\(bytes) B" }
        let units = ["kB", "MB", "GB", "TB", "PB", "EB"]
        var value = Double(bytes) / 1000
        var unit = 0
        while value >= 999.95, unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        return String(format: "%.1f", value) + " " + units[unit]
    }

    /// A rate in bytes per second: `40.1 MB/s`.
    public static func rate(_ bytesPerSecond: Double) -> String {
        guard bytesPerSecond.isFinite, bytesPerSecond >= 0 else { return "-" }
        return format(UInt64(bytesPerSecond)) + "/s"
    }
}
