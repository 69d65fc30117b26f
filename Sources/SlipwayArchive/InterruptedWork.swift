import Glibc
import Synchronization
import SlipwaySystem

/// Trees being assembled (a release being added, an archive being unpacked into a new
/// directory); removed when the process is interrupted, so a Ctrl-C leaves nothing half-made.
///
/// The signal handler runs beside the thread doing the work: it raises `isInterrupted`,
/// which the long loops check between entries and answer by throwing and cleaning up
/// their own tree; whatever is still registered after a grace period is removed here.
public enum InterruptedWork {
    private static let paths = Mutex<Set<String>>([])
    private static let interrupted = Atomic<Bool>(false)

    public static func register(_ path: String) { paths.withLock { _ = $0.insert(path) } }
    public static func unregister(_ path: String) { paths.withLock { _ = $0.remove(path) } }

    /// True once the process was told to stop.
    public static var isInterrupted: Bool { interrupted.load(ordering: .relaxed) }

    /// Throws `ArchiveError.interrupted` once the process was told to stop.
    public static func checkpoint() throws {
        if isInterrupted { throw ArchiveError.interrupted }
    }

    /// Called on SIGINT/SIGTERM before exit: stops the work, gives it up to `grace` to clean
    /// up after itself, then removes every assembly directory still registered.
    public static func removeAll(grace: Duration = .seconds(5)) {
        interrupted.store(true, ordering: .relaxed)
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline, !paths.withLock({ $0.isEmpty }) {
            usleep(20_000)
        }
        let pending = paths.withLock { current in
            let copy = current
            current.removeAll()
            return copy
        }
        for path in pending { PosixPath.removeTree(path) }
    }
}
