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

// Shared helpers of the integration tests: temporary roots, external commands, and byte-path
// file system calls (names that are not UTF-8 cannot go through Foundation's String paths).
// What a test needs of the machine (tools, root) is a condition trait: Requirements.swift.

/// A temporary directory unique to one test; `remove()` it in a `defer`.
struct TempDir {
    let path: String

    init(_ label: String = "slipway-it") throws {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(label)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func sub(_ name: String) -> String { path + "/" + name }

    /// Removes the directory, first making every directory in it writable so that trees
    /// holding read-only directories (a test fixture) can go when not running as root.
    func remove() {
        _ = try? run("chmod", ["-R", "u+rwX", path])
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// What an external command did.
struct CommandResult {
    var status: Int32
    var stdout: Data
    var stderr: Data
    var out: String { String(decoding: stdout, as: UTF8.self) }
    var err: String { String(decoding: stderr, as: UTF8.self) }
    var ok: Bool { status == 0 }
}

enum TestSupportError: Error, CustomStringConvertible {
    case toolMissing(String)
    case commandFailed(String, Int32, String)
    case syscall(String, String, Int32)

    var description: String {
        switch self {
        case let .toolMissing(tool): return "\(tool) is not installed"
        case let .commandFailed(command, status, stderr):
            return "\(command) exited with \(status): \(stderr.suffix(2000))"
        case let .syscall(op, path, code): return "\(op) \(path): \(String(cString: strerror(code)))"
        }
    }
}

/// The full path of `tool`, looked up in PATH and the sbin directories (setcap and getcap
/// live there and a non-root PATH often lacks them).
func toolPath(_ tool: String) -> String? {
    if tool.hasPrefix("/") { return access(tool, X_OK) == 0 ? tool : nil }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    let dirs = path.split(separator: ":").map(String.init) + ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
    for dir in dirs where access(dir + "/" + tool, X_OK) == 0 {
        return dir + "/" + tool
    }
    return nil
}

/// Runs `tool` with `arguments` and returns its exit status and output; stdout and stderr go
/// through files so that a chatty command cannot fill a pipe and block.
@discardableResult
func run(_ tool: String, _ arguments: [String], cwd: String? = nil,
         environment: [String: String] = [:]) throws -> CommandResult {
    guard let executable = toolPath(tool) else { throw TestSupportError.toolMissing(tool) }
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("slipway-run-\(UUID().uuidString)")
    let outURL = scratch.appendingPathExtension("out")
    let errURL = scratch.appendingPathExtension("err")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    defer {
        try? FileManager.default.removeItem(at: outURL)
        try? FileManager.default.removeItem(at: errURL)
    }
    let outHandle = try FileHandle(forWritingTo: outURL)
    let errHandle = try FileHandle(forWritingTo: errURL)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = outHandle
    process.standardError = errHandle
    try process.run()
    process.waitUntilExit()
    try outHandle.close()
    try errHandle.close()
    return CommandResult(status: process.terminationStatus,
                         stdout: (try? Data(contentsOf: outURL)) ?? Data(),
                         stderr: (try? Data(contentsOf: errURL)) ?? Data())
}

/// Runs a command that must succeed; throws with its stderr otherwise.
@discardableResult
func runChecked(_ tool: String, _ arguments: [String], cwd: String? = nil,
                environment: [String: String] = [:]) throws -> CommandResult {
    let result = try run(tool, arguments, cwd: cwd, environment: environment)
    guard result.ok else {
        throw TestSupportError.commandFailed(([tool] + arguments).joined(separator: " "), result.status, result.err)
    }
    return result
}

var isRoot: Bool { geteuid() == 0 }

// MARK: - Byte paths

/// Joins a directory (a String) and a relative byte path.
func bytePath(_ root: String, _ relative: ArchivePath) -> ArchivePath {
    ArchivePath(bytes: Array(root.utf8) + [UInt8(ascii: "/")] + relative.bytes)
}

func check(_ result: Int32, _ op: String, _ path: ArchivePath) throws {
    if result != 0 { throw TestSupportError.syscall(op, path.description, errno) }
}

func mkdirBytes(_ path: ArchivePath, mode: mode_t = 0o755) throws {
    try check(path.withCString { mkdir($0, mode) }, "mkdir", path)
}

func writeFileBytes(_ path: ArchivePath, _ content: [UInt8]) throws {
    let fd = path.withCString { open($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
    guard fd >= 0 else { throw TestSupportError.syscall("open", path.description, errno) }
    defer { close(fd) }
    var offset = 0
    while offset < content.count {
        let n = content[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw TestSupportError.syscall("write", path.description, errno)
        }
        offset += n
    }
}

func symlinkBytes(_ target: String, _ path: ArchivePath) throws {
    try check(path.withCString { symlink(target, $0) }, "symlink", path)
}

func hardlinkBytes(_ existing: ArchivePath, _ path: ArchivePath) throws {
    try check(existing.withCString { e in path.withCString { link(e, $0) } }, "link", path)
}

func chmodBytes(_ path: ArchivePath, _ mode: mode_t) throws {
    try check(path.withCString { chmod($0, mode) }, "chmod", path)
}

func chownBytes(_ path: ArchivePath, _ uid: uid_t, _ gid: gid_t) throws {
    try check(path.withCString { lchown($0, uid, gid) }, "lchown", path)
}

func lstatBytes(_ path: ArchivePath) -> stat? {
    var st = stat()
    return path.withCString { lstat($0, &st) } == 0 ? st : nil
}

func exists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

/// Sets the access and modification time of `path` (not following a symlink).
func setTimes(_ path: ArchivePath, atime: Int, mtime: Int) throws {
    var times = [timespec(tv_sec: atime, tv_nsec: 0), timespec(tv_sec: mtime, tv_nsec: 0)]
    try check(path.withCString { utimensat(AT_FDCWD, $0, &times, AT_SYMLINK_NOFOLLOW) }, "utimensat", path)
}

/// The names in a directory (byte strings), without `.` and `..`.
func directoryEntries(_ path: ArchivePath) throws -> [[UInt8]] {
    guard let dir = path.withCString({ opendir($0) }) else {
        throw TestSupportError.syscall("opendir", path.description, errno)
    }
    defer { closedir(dir) }
    var names: [[UInt8]] = []
    while let entry = readdir(dir) {
        let name: [UInt8] = withUnsafeBytes(of: &entry.pointee.d_name) { raw in
            Array(raw.prefix { $0 != 0 })
        }
        if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
        names.append(name)
    }
    return names.sorted { $0.lexicographicallyPrecedes($1) }
}

/// Every path under `root` (relative, not `root` itself), depth first in bytewise order,
/// with its lstat; does not follow symlinks.
func walk(_ root: String) throws -> [(path: ArchivePath, stat: stat)] {
    var out: [(ArchivePath, stat)] = []
    func visit(_ relative: ArchivePath) throws {
        let absolute = relative.bytes.isEmpty ? ArchivePath(root) : bytePath(root, relative)
        for name in try directoryEntries(absolute) {
            let child = relative.appending(name)
            guard let st = lstatBytes(bytePath(root, child)) else {
                throw TestSupportError.syscall("lstat", child.description, errno)
            }
            out.append((child, st))
            if st.st_mode & S_IFMT == S_IFDIR { try visit(child) }
        }
    }
    try visit(ArchivePath(bytes: []))
    return out
}

/// The mtime of every entry under `root`, by relative path.
func mtimes(_ root: String) throws -> [ArchivePath: Int] {
    var out: [ArchivePath: Int] = [:]
    for (path, st) in try walk(root) { out[path] = st.st_mtim.tv_sec }
    return out
}

/// Whether a directory is empty (false when it does not exist).
func isEmptyDirectory(_ path: String) -> Bool {
    (try? directoryEntries(ArchivePath(path)).isEmpty) ?? false
}

// MARK: - Data

/// `count` bytes from the kernel's random source.
func randomBytes(_ count: Int) -> [UInt8] {
    // /dev/urandom always exists on Linux; an empty result would only make a test fail.
    guard let handle = FileHandle(forReadingAtPath: "/dev/urandom") else { return [] }
    defer { try? handle.close() }
    return Array(handle.readData(ofLength: count))
}

/// `count` bytes that differ everywhere but compress about sixteenfold (4 KiB random
/// chunks, each repeated 16 times): archives with several xz blocks that xz still packs
/// in seconds (base64 of random data takes minutes at preset 6).
func compressibleBytes(_ count: Int) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(count + (64 << 10))
    let random = randomBytes((count / 16) + 4096)
    var offset = 0
    while out.count < count {
        let chunk = random[offset..<(offset + 4096)]
        for _ in 0..<16 { out.append(contentsOf: chunk) }
        offset += 4096
    }
    return Array(out.prefix(count))
}

// MARK: - Record comparison

/// Compares two record lists and records one readable issue per differing entry (a plain
/// `#expect(a == b)` on thousands of fields is unreadable).
func expectSameRecords(_ actual: [EntryRecord], _ expected: [EntryRecord], _ label: String,
                       ignoring: (inout EntryRecord) -> Void = { _ in },
                       sourceLocation: SourceLocation = #_sourceLocation) {
    let a = actual.map { var r = $0; ignoring(&r); return r }
    let e = expected.map { var r = $0; ignoring(&r); return r }
    if a == e { return }
    let actualByPath = Dictionary(a.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
    let expectedByPath = Dictionary(e.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
    var problems: [String] = []
    for record in e {
        guard let other = actualByPath[record.path] else { problems.append("missing \(record.path)"); continue }
        if other != record { problems.append("differs \(record.path):\n    expected \(record)\n    actual   \(other)") }
    }
    for record in a where expectedByPath[record.path] == nil { problems.append("unexpected \(record)") }
    if problems.isEmpty { problems.append("same records in a different order: \(a.map(\.path)) vs \(e.map(\.path))") }
    let details = problems.prefix(25).joined(separator: "\n  ")
    Issue.record("\(label): \(problems.count) difference(s)\n  \(details)",
                 sourceLocation: sourceLocation)
}

/// The SHA-256 of a file, or nil when it cannot be read.
func sha256(_ path: String) -> String? { try? FileHasher.sha256(path: path).hex }

/// Stops a daemon a test started, by its pid: `signal`, then SIGKILL after 5 s; waits for it.
func stopDaemon(_ process: Process, signal: Int32 = SIGTERM) {
    guard process.isRunning else { return }
    kill(process.processIdentifier, signal)
    let deadline = Date().addingTimeInterval(5)
    while process.isRunning, Date() < deadline { usleep(20_000) }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
}
