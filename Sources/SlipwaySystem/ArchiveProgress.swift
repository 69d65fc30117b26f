/// Receives progress from long archive operations. Implementations decide how to show it
/// (a bar on a terminal, log lines otherwise); the engine only reports numbers.
public protocol ArchiveProgress: Sendable {
    /// Work starts; `total` is the expected number of bytes when known.
    func begin(_ operation: String, total: UInt64?)
    /// `done` bytes are processed so far. Called often; implementations throttle.
    func advance(to done: UInt64)
    /// Work ended (successfully or not).
    func end()
}
