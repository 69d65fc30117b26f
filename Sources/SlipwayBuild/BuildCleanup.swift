import Foundation
import Glibc
import Synchronization
import SlipwayRecipe
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Mounts and work directories of builds in progress, undone when the process exits —
/// also when SIGINT/SIGTERM end it (the signal handler calls `exit`, which runs the
/// `atexit` hook installed here), so an interrupted build leaves nothing mounted.
public enum BuildCleanup {
    private struct State {
        var mounts: [String] = []
        var workDirectories: [String] = []
        var installed = false
        var exiting = false
    }

    private static let state = Mutex(State())

    /// Installs the exit hook once.
    static func installExitHook() {
        let install = state.withLock { state -> Bool in
            defer { state.installed = true }
            return !state.installed
        }
        if install { atexit { BuildCleanup.cleanUpAtExit() } }
    }

    /// Records a mount point before mounting; refused once the process is exiting.
    static func registerMount(_ path: String) throws {
        let exiting = state.withLock { state -> Bool in
            if !state.exiting { state.mounts.append(path) }
            return state.exiting
        }
        if exiting { throw BuildError.stageFailed(stage: "mount", detail: "the build is being interrupted", hint: "") }
    }

    static func unregisterMount(_ path: String) {
        state.withLock { state in
            if let index = state.mounts.lastIndex(of: path) { state.mounts.remove(at: index) }
        }
    }

    static func registerWorkDirectory(_ path: String) { state.withLock { $0.workDirectories.append(path) } }
    static func unregisterWorkDirectory(_ path: String) { state.withLock { $0.workDirectories.removeAll { $0 == path } } }

    /// True once the exit hook has started; the build's own teardown then leaves the
    /// cleanup to it instead of racing it.
    static var isExiting: Bool { state.withLock { $0.exiting } }

    /// Stops what still runs in the registered work directories (and, after SIGINT/SIGTERM,
    /// this process's children, such as mmdebstrap bootstrapping into the cache), unmounts
    /// what is still mounted (newest first, then anything left below the directories) and
    /// removes the directories.
    public static func cleanUpAtExit() {
        let (mounts, directories) = state.withLock { state in
            state.exiting = true
            defer { state.mounts.removeAll(); state.workDirectories.removeAll() }
            return (state.mounts, state.workDirectories)
        }
        guard !mounts.isEmpty || !directories.isEmpty else { return }
        for directory in directories { killProcesses(inside: directory) }
        if InterruptedWork.isInterrupted {
            stopChildren()
            // What the children started in the meantime (apt under mmdebstrap).
            for directory in directories { killProcesses(inside: directory) }
        }
        for mount in mounts.reversed() { Mounts.unmount(mount) }
        for directory in directories {
            for point in Mounts.mountPoints(under: directory) { Mounts.unmount(point) }
            try? Mounts.removeTree(directory)
        }
    }

    /// SIGKILLs every process whose root, working directory or an open file is `directory`
    /// or below it (commands run in a build tree, daemons a run step left behind, apt
    /// writing into a bootstrap), and waits up to 5 s for them to go, so the tree's mounts
    /// can be unmounted and the tree removed. Returns what was killed.
    @discardableResult
    static func killProcesses(inside directory: String) -> [String] {
        let root = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        func isInside(_ link: String) -> Bool {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link) else { return false }
            return target == root || target.hasPrefix(root + "/")
        }
        func inside(_ pid: Int32) -> Bool {
            if isInside("/proc/\(pid)/root") || isInside("/proc/\(pid)/cwd") { return true }
            let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
            return descriptors.contains { isInside("/proc/\(pid)/fd/\($0)") }
        }
        var killed: [String] = []
        for pid in processes() where pid != getpid() && inside(pid) {
            let name = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            if kill(pid, SIGKILL) == 0 { killed.append("\(name) (pid \(pid))") }
        }
        let deadline = ContinuousClock.now + .seconds(5)
        while !killed.isEmpty, ContinuousClock.now < deadline, processes().contains(where: { $0 != getpid() && inside($0) }) {
            usleep(20_000)
        }
        return killed
    }

    /// SIGTERM to this process's children, SIGKILL to those still running 5 s later. They
    /// are not reaped here: the thread that started each one is waiting for it.
    private static func stopChildren() {
        let me = getpid()
        func children() -> [Int32] {
            processes().filter { pid in
                guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                      let close = stat.lastIndex(of: ")") else { return false }
                // After "pid (comm) ": state, ppid.
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                return fields.count > 1 && fields[0] != "Z" && Int32(fields[1]) == me
            }
        }
        let first = children()
        guard !first.isEmpty else { return }
        for pid in first { kill(pid, SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline, !children().isEmpty { usleep(50_000) }
        for pid in children() { kill(pid, SIGKILL) }
    }

    private static func processes() -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
    }
}

extension Mounts {
    /// Removes a build work directory, refusing while anything is mounted below it (removing
    /// through a bind mount of /dev would delete the host's device nodes).
    static func removeTree(_ path: String) throws {
        guard access(path, F_OK) == 0 else { return }
        let left = mountPoints(under: path)
        guard left.isEmpty else { throw BuildError.mountsLeft(paths: left) }
        try CommandRunner().run(Command(["rm", "-rf", "--one-file-system", "--", path], timeout: .seconds(600)))
    }
}
