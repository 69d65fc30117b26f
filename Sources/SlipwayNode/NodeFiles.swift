import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The node's small file-system operations, each mapping failures to `NodeError.system`.
enum NodeFiles {
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
    }

    /// `mkdir -p` with mode 0755 for the directories it creates.
    static func makeDirectories(_ path: String) throws {
        if let failure = makeDirectoryPath(path) {
            throw NodeError.system(operation: "create directory", path: failure.prefix, errno: failure.errno)
        }
    }

    /// Removes `path` and everything below it without following symlinks; absent is fine.
    static func removeTree(_ path: String) {
        PosixPath.removeTree(path)
    }

    /// The names in a directory, without `.` and `..`; empty when it does not exist.
    static func names(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    /// The target of a symlink, or nil.
    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n >= 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Appends `line` and a newline to `path` (created 0640 when missing).
    static func appendLine(_ path: String, _ line: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw NodeError.system(operation: "open", path: path, errno: errno) }
        defer { close(fd) }
        let failure = Data((line + "\n").utf8).withUnsafeBytes { writeFully(fd, $0) }
        if failure != 0 { throw NodeError.system(operation: "write", path: path, errno: failure) }
    }

    static func fsyncDirectory(_ path: String) throws {
        try SystemError.rethrow({ () throws(SystemError) in try Durable.syncDirectory(path) }, as: NodeError.system)
    }

    /// Flushes the whole file system holding `path` (one call instead of an fsync per file
    /// of a freshly extracted tree).
    static func syncFileSystem(of path: String) throws {
        try SystemError.rethrow({ () throws(SystemError) in try Durable.syncFileSystem(of: path) }, as: NodeError.system)
    }

    /// Writes `data` to `path` through a temporary file in the same directory: write, fsync,
    /// rename, fsync the directory. A crash leaves the old file or the new one (and maybe a
    /// `.tmp-*` file, which recovery removes).
    static func writeAtomically(_ path: String, _ data: Data, mode: mode_t = 0o644) throws {
        try SystemError.rethrow({ () throws(SystemError) in try Durable.replace(path, with: data, mode: mode) }, as: NodeError.system)
    }

    /// The `f_type` magic number of the file system holding `path` (statfs(2)), or nil with
    /// errno set.
    static func fileSystemMagic(_ path: String) -> UInt32? {
        // struct statfs starts with `__fsword_t f_type` (a long on 64-bit Linux) and is 120
        // bytes on x86_64 and aarch64; the buffer is larger to be safe.
        var buffer = [Int](repeating: 0, count: 64)
        let status = buffer.withUnsafeMutableBytes { slipway_statfs(path, $0.baseAddress!) }
        guard status == 0 else { return nil }
        return UInt32(truncatingIfNeeded: buffer[0])
    }

    /// Reads a whole (small) file.
    static func read(_ path: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw NodeError.system(operation: "read", path: path, errno: errno == 0 ? ENOENT : errno)
        }
        return data
    }

    /// Seconds since 1970, now.
    static func now() -> Double { Date().timeIntervalSince1970 }
}

extension NodeLayout {
    /// `manifests/<version>.json` (+ `.sig`): the manifest each landed release is verified and
    /// activated by (its `[service]`), kept beside the releases so the node needs nothing else.
    public var manifests: String { "\(appDirectory)/manifests" }
    public func manifest(_ version: String) -> String { "\(manifests)/\(version).json" }
    public func signature(_ version: String) -> String { "\(manifests)/\(version).sig" }
    /// The SBOM (SPDX JSON) a version was sent with; `.spdx` so no version's manifest name
    /// can be another's SBOM name.
    public func sbom(_ version: String) -> String { "\(manifests)/\(version).spdx" }

    /// Creates the app's directories (releases/, shared/, incoming/, manifests/).
    func prepare() throws {
        for directory in [releases, shared, incoming, manifests] { try NodeFiles.makeDirectories(directory) }
    }

    /// The version `current` points at, if any.
    public var currentVersion: String? {
        guard let target = NodeFiles.readLink(current) else { return nil }
        let name = (target as NSString).lastPathComponent
        return name.isEmpty ? nil : name
    }
}

/// statfs(2): Glibc's module map does not include <sys/vfs.h>.
@_silgen_name("statfs")
private func slipway_statfs(_ path: UnsafePointer<CChar>, _ buffer: UnsafeMutableRawPointer) -> Int32

