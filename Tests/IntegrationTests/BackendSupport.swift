import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif
@testable import SlipwayCommands
@testable import SlipwaySystem
@testable import SlipwayArchive
@testable import SlipwayRelease
@testable import SlipwayRecipe
@testable import SlipwayBuild
@testable import SlipwayExport
@testable import SlipwayNodeProtocol
@testable import SlipwayNode
@testable import SlipwayFleet

// Shared helpers of the btrfs / ZFS / schroot backend tests: a btrfs filesystem on a loop
// file, a zfs-fuse daemon and a pool on a file, and a tiny release tree that schroot can
// enter (cat, sh and the libraries they need).

/// Whether the kernel has btrfs; the module may load on first mount, so it is asked for
/// (quietly) when /proc/filesystems lacks it. Found once, when a btrfs test first runs.
let btrfsInKernel: Bool = {
    func listed() -> Bool { ((try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8)) ?? "").contains("btrfs") }
    if listed() { return true }
    _ = try? run("modprobe", ["btrfs"])
    return listed()
}()

extension Requirement {
    /// What the btrfs backend tests need: root, btrfs-progs, loop devices and a kernel with btrfs.
    static let btrfs = Requirement(all: [
        .tools(["btrfs", "mkfs.btrfs", "losetup", "mount", "umount"], root: true),
        .that(access("/dev/loop-control", F_OK) == 0, "no /dev/loop-control (loop devices unavailable in this container)"),
        .deferred("the kernel has no btrfs support (not in /proc/filesystems)") { btrfsInKernel },
    ])

    /// What the ZFS backend tests need: root, zfs-fuse and FUSE.
    static let zfs = Requirement(all: [
        .tools(["zfs-fuse", "zfs", "zpool"], root: true),
        .that(access("/dev/fuse", F_OK) == 0, "no /dev/fuse (FUSE unavailable in this container)"),
    ])

    /// What the schroot tests need: root, schroot and a writable /etc/schroot/chroot.d.
    static let schroot = Requirement(all: [
        .tools(["schroot"], root: true),
        .that(access("/etc/schroot/chroot.d", W_OK) == 0, "/etc/schroot/chroot.d is not writable"),
    ])
}

/// A btrfs filesystem on a sparse 1 GiB loop file, mounted under a test's temporary dir.
struct BtrfsLoop {
    let image: String
    let mount: String

    static func make(in dir: TempDir) throws -> BtrfsLoop {
        let loop = BtrfsLoop(image: dir.sub("btrfs.img"), mount: dir.sub("mnt"))
        try runChecked("truncate", ["-s", "1G", loop.image])
        try runChecked("mkfs.btrfs", ["-q", loop.image])
        try FileManager.default.createDirectory(atPath: loop.mount, withIntermediateDirectories: true)
        try runChecked("mount", ["-o", "loop", loop.image, loop.mount])
        return loop
    }

    /// Unmounts and detaches the loop device; safe to call when half made.
    func tearDown() {
        let devices = (try? run("losetup", ["-j", image]).out) ?? ""
        if (try? run("umount", [mount]).ok) != true { _ = try? run("umount", ["-l", mount]) }
        for line in devices.split(separator: "\n") {
            if let device = line.split(separator: ":").first { _ = try? run("losetup", ["-d", String(device)]) }
        }
    }
}

/// A zfs-fuse daemon for one test: run in the foreground (`--no-daemon`) as our own child,
/// so that we hold its pid and reap it; stopped by that pid (SIGTERM, then SIGKILL), never
/// by name. When a daemon already answers (the host's own), it is used and left alone.
final class ZFSFuseDaemon {
    let process: Process?
    let scratch: TempDir
    private var watchdog: ZFSFuseWatchdog?

    init() throws {
        scratch = try TempDir("slipway-zfsfuse")
        if ZFSFuseDaemon.answers() {
            process = nil
            return
        }
        guard let executable = toolPath("zfs-fuse") else { throw TestSupportError.toolMissing("zfs-fuse") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["--no-daemon", "--no-kstat-mount", "--pidfile", scratch.sub("zfs-fuse.pid")]
        process.standardInput = FileHandle.nullDevice
        let log = scratch.sub("zfs-fuse.log")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        try? handle.close()
        self.process = process
        for _ in 0..<100 {
            if ZFSFuseDaemon.answers() {
                watchdog = ZFSFuseWatchdog(pid: process.processIdentifier)
                return
            }
            if !process.isRunning { break }
            usleep(100_000)
        }
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let how = process.isRunning ? "did not answer within 10 s" : "exited at start-up (status \(process.terminationStatus))"
        terminate()
        throw TestSupportError.commandFailed("zfs-fuse --no-daemon", 1, "the daemon \(how): \(output)")
    }

    static func answers() -> Bool {
        // `zpool list` exits 0 only when it reached the daemon's socket.
        (try? run("zpool", ["list", "-H"]))?.ok == true
    }

    /// Stops the daemon we started, by its pid, and reaps it.
    func stop() {
        watchdog?.stop()
        if let process, !process.isRunning {
            // It died under the tests (their ZFS errors follow from this): say how.
            let log = (try? String(contentsOfFile: scratch.sub("zfs-fuse.log"), encoding: .utf8)) ?? ""
            print("zfs-fuse exited on its own (status \(process.terminationStatus)) while tests used it; its log ends: " +
                  log.split(separator: "\n").suffix(10).joined(separator: " | "))
        }
        terminate()
    }

    /// Ends the daemon we started (SIGTERM, then SIGKILL), reaps it and removes its files.
    private func terminate() {
        defer { scratch.remove() }
        guard let process, process.isRunning else { return }
        let pid = process.processIdentifier
        kill(pid, SIGTERM)
        for _ in 0..<100 where process.isRunning { usleep(100_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }
}

/// zfs-fuse (userspace ZFS, the stand-in for the kernel module this host lacks) once
/// deadlocked under a CPU hog during the kill -9 trials: 225 threads waiting on futexes, the
/// test blocked in a FUSE open, no output for 8 minutes, until it was killed by hand. This
/// watchdog asks the daemon `zpool list` every 30 s; when it has not answered for 5 minutes
/// (a busy machine answers in seconds), it prints where the daemon's threads wait and kills
/// the daemon by its pid. The tests' ZFS calls then fail at once ("Software caused connection
/// abort", "Transport endpoint is not connected") instead of hanging until CI's time limit.
final class ZFSFuseWatchdog: @unchecked Sendable {
    private let pid: Int32
    private let done = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    static let interval = 30
    static let limit = 300

    init(pid: Int32) {
        self.pid = pid
        Thread.detachNewThread { [self] in watch() }
    }

    func stop() {
        done.signal()
        finished.wait()
    }

    private func watch() {
        defer { finished.signal() }
        var lastAnswer = ContinuousClock.now
        while done.wait(timeout: .now() + .seconds(Self.interval)) == .timedOut {
            if (try? run("timeout", ["\(Self.interval)", "zpool", "list", "-H"]))?.ok == true {
                lastAnswer = .now
                continue
            }
            let silent = (ContinuousClock.now - lastAnswer).components.seconds
            guard silent >= Self.limit else { continue }
            print("zfs-fuse (pid \(pid)) has not answered `zpool list` for \(silent) s; its threads wait in: \(threadStates()); killing it")
            kill(pid, SIGKILL)
            return
        }
    }

    /// The kernel functions the daemon's threads sleep in, counted (`/proc/PID/task/*/wchan`).
    private func threadStates() -> String {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        var counts: [String: Int] = [:]
        for task in tasks {
            let wchan = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/wchan", encoding: .utf8)) ?? "?"
            counts[wchan.isEmpty || wchan == "0" ? "running" : wchan, default: 0] += 1
        }
        return counts.sorted { $0.value > $1.value }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
    }
}

/// The one zfs-fuse daemon of this test process, shared by every test that uses ZFS (in any
/// suite, possibly in parallel): the first `acquire` starts it, the last `release` stops it
/// by pid. Tests run in parallel across suites, so per-test daemons would stop each other's.
final class SharedZFSFuse: @unchecked Sendable {
    static let shared = SharedZFSFuse()
    private let lock = NSLock()
    private var users = 0
    private var daemon: ZFSFuseDaemon?

    func acquire() throws {
        lock.lock()
        defer { lock.unlock() }
        if users == 0 { daemon = try ZFSFuseDaemon() }
        users += 1
    }

    func release() {
        lock.lock()
        defer { lock.unlock() }
        users -= 1
        if users == 0 {
            daemon?.stop()
            daemon = nil
        }
    }
}

/// A pool on a sparse file (512 MiB unless told), with a unique name.
struct ZFSTestPool {
    let name: String
    let file: String

    static func make(in dir: TempDir, size: String = "512M") throws -> ZFSTestPool {
        let pool = ZFSTestPool(name: "slw\(UUID().uuidString.prefix(8).lowercased())", file: dir.sub("pool.img"))
        try runChecked("truncate", ["-s", size, pool.file])
        try runChecked("zpool", ["create", "-m", "none", pool.name, pool.file])
        return pool
    }

    func destroy() {
        // Children first; zfs-fuse reports "busy" for a moment after a dataset was used.
        let datasets = (try? run("zfs", ["list", "-H", "-o", "name", "-r", name]).out) ?? ""
        for dataset in datasets.split(separator: "\n").reversed() { _ = try? run("zfs", ["umount", String(dataset)]) }
        for _ in 0..<20 {
            if (try? run("zpool", ["destroy", "-f", name]).ok) == true { return }
            usleep(250_000)
        }
        if (try? run("zpool", ["destroy", "-f", name]).ok) != true {
            _ = try? run("zpool", ["export", "-f", name])
        }
    }

    func property(_ property: String, _ dataset: String) throws -> String {
        try runChecked("zfs", ["get", "-H", "-o", "value", property, dataset]).out
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Runs `body` with a zfs-fuse daemon and a fresh pool, cleaning both up in all cases.
func withZFSPool(_ body: (TempDir, ZFSTestPool) throws -> Void) throws {
    let dir = try TempDir("slipway-zfs")
    defer { dir.remove() }
    try SharedZFSFuse.shared.acquire()
    defer { SharedZFSFuse.shared.release() }
    let pool = try ZFSTestPool.make(in: dir)
    defer { pool.destroy() }
    try body(dir, pool)
}

/// Runs `body` with a mounted btrfs loop filesystem, cleaning it up in all cases.
func withBtrfs(_ body: (TempDir, BtrfsLoop) throws -> Void) throws {
    let dir = try TempDir("slipway-btrfs")
    defer { dir.remove() }
    let loop = try BtrfsLoop.make(in: dir)
    defer { loop.tearDown() }
    try body(dir, loop)
}

// MARK: - Release trees

/// A minimal root filesystem of `app` at `version`: `/etc/<app>-version`, `cat` and `sh`
/// with their libraries (so `schroot … -- cat` works), `/proc` and `/sys` for schroot's
/// bind mounts, and a file per version.
func makeReleaseTree(at root: String, app: String, version: String) throws {
    let fm = FileManager.default
    for dir in ["etc", "bin", "proc", "sys", "dev", "tmp", "srv"] {
        try fm.createDirectory(atPath: "\(root)/\(dir)", withIntermediateDirectories: true)
    }
    try "\(version)\n".write(toFile: "\(root)/etc/\(app)-version", atomically: false, encoding: .utf8)
    try "payload of \(version)\n".write(toFile: "\(root)/srv/only-in-\(version)", atomically: false, encoding: .utf8)
    var libraries = Set<String>()
    for program in ["cat", "sh"] {
        guard let path = toolPath(program) else { continue }
        try runChecked("cp", ["-L", path, "\(root)/bin/\(program)"])
        for line in try runChecked("ldd", [path]).out.split(separator: "\n") {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            for word in line.split(whereSeparator: { $0 == " " || $0 == "\t" }) where word.hasPrefix("/") { libraries.insert(String(word)) }
        }
    }
    for library in libraries {
        let target = root + library
        try fm.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try runChecked("cp", ["-L", library, target])
    }
}

/// Packs a release tree of `version` into `<dir>/<version>.tar.xz` and returns the archive.
func packRelease(in dir: TempDir, app: String, version: String) throws -> String {
    let tree = dir.sub("tree-\(version)")
    try makeReleaseTree(at: tree, app: app, version: version)
    let archive = dir.sub("\(app)-\(version).tar.xz")
    _ = try ArchiveWriter.pack(tree: tree, to: archive, configuration: .init(level: 0, sourceDateEpoch: 1_700_000_000))
    return archive
}

/// Expects the landed tree at `path` to hold exactly what `archive` holds.
func expectTreeMatchesArchive(_ path: String, _ archive: String, _ label: String,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
    let expected = try ArchiveReader.records(archive: archive)
    let actual = try TreeWalker.records(root: path)
    expectSameRecords(actual, expected, label, sourceLocation: sourceLocation)
}

/// Whether creating a file in `directory` fails with EROFS (a landed, read-only version).
func isReadOnly(_ directory: String) -> Bool {
    let fd = open("\(directory)/.slipway-write-probe", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    if fd >= 0 {
        close(fd)
        unlink("\(directory)/.slipway-write-probe")
        return false
    }
    return errno == EROFS
}

/// A unique app name, so concurrent tests (and the real /etc/schroot/chroot.d) never clash.
func uniqueApp(_ label: String) -> String { "\(label)\(UUID().uuidString.prefix(8).lowercased())" }

/// Writes the real chroot.d file for `version`, runs `schroot -c slipway-<app> -- cat
/// /etc/<app>-version` and returns what it printed; the file is removed afterwards.
func schrootPrintsVersion(layout: NodeLayout, backend: any NodeBackend, version: String) throws -> String {
    let config = SchrootConfig()
    try config.write(layout: layout, version: version, settings: try backend.schrootSettings(version: version, layout: layout))
    defer { try? config.remove(layout: layout) }
    let result = try run("schroot", ["-d", "/", "-c", SchrootConfig.chrootName(app: layout.app), "--", "cat", "/etc/\(layout.app)-version"])
    guard result.ok else {
        throw TestSupportError.commandFailed("schroot -c \(SchrootConfig.chrootName(app: layout.app))", result.status, result.err)
    }
    return result.out.trimmingCharacters(in: .whitespacesAndNewlines)
}
