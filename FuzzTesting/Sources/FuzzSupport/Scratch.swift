import Foundation
import Glibc
@testable import SlipwayArchive

/// The scratch directory of one fuzzing process, `$TMPDIR/slipway-fuzz-XXXXXX`, removed at
/// exit. Inputs that the product reads from a file are written here, and trees are
/// extracted here; every path is removed again after each input.
public final class Scratch: @unchecked Sendable {
    public let root: String

    public init() throws {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((base + "/slipway-fuzz-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw ArchiveError.system(operation: "create the scratch directory in", path: base, errno: errno)
        }
        root = String(cString: made)
        scratchRoots.append(root)
        if scratchRoots.count == 1 {
            atexit { for root in scratchRoots { Scratch.removeTree(root) } }
        }
    }

    /// `root/name`, which does not exist (anything left there is removed first).
    public func path(_ name: String) -> String {
        let path = root + "/" + name
        Scratch.removeTree(path)
        return path
    }

    /// Writes `bytes` to `root/name` and returns its path.
    public func write(_ bytes: UnsafeRawBufferPointer, to name: String) -> String {
        let path = self.path(name)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        precondition(fd >= 0, "cannot create \(path): \(String(cString: strerror(errno)))")
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            precondition(written > 0, "cannot write \(path): \(String(cString: strerror(errno)))")
            offset += written
        }
        return path
    }

    public func write(_ data: Data, to name: String) -> String {
        data.withUnsafeBytes { write($0, to: name) }
    }

    /// Removes `path` and what is below it without following symlinks; directories without
    /// write or search permission (a fuzzed archive makes them) are opened up first.
    public static func removeTree(_ path: String) {
        PosixPath.removeTree(path)
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            openUp(path)
            PosixPath.removeTree(path)
        }
    }

    private static func openUp(_ directory: String) {
        chmod(directory, 0o700)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names {
            var info = stat()
            let path = directory + "/" + name
            if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR { openUp(path) }
        }
    }
}

nonisolated(unsafe) private var scratchRoots: [String] = []
