import Foundation
import Glibc

/// Opens directories below a root without following any symlink on the way: each component
/// is opened with `openat(…, O_NOFOLLOW | O_DIRECTORY)` relative to the one before, so a
/// symlink placed anywhere under the root (by a release, or by a process that can write
/// there) can never send a path outside it. The resulting descriptor names the directory
/// itself; `/proc/PID/fd/N` reaches it without resolving the path again, from this process
/// and from the commands it runs.
struct DirectoryBeneath {
    /// Why a path below the root cannot be used.
    enum Failure: Error {
        /// `path` (a prefix of the requested path) is a symlink or another non-directory.
        case notADirectory(path: String, symlinkTarget: String?)
        case system(operation: String, path: String, errno: Int32)
    }

    /// The open directory; close it with `close()`.
    let fd: Int32
    /// Its path as the caller named it (root + components), for messages.
    let path: String

    /// `/proc/PID/fd/N`: the directory itself, for this process and its children (the
    /// descriptor is close-on-exec, so a child reaches it through its parent's pid).
    var procPath: String { "/proc/\(getpid())/fd/\(fd)" }

    func close() { _ = Glibc.close(fd) }

    /// Opens `root/components…`, creating missing components as real directories with
    /// `mode` when `create` is set. The root itself must be a real directory too.
    static func open(root: String, components: [String], create: Bool, mode: mode_t = 0o755) throws(Failure) -> DirectoryBeneath {
        var fd = Glibc.open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw failure(root, errno: errno, operation: "open directory") }
        var path = root
        for component in components {
            path += "/" + component
            var next = openat(fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0, errno == ENOENT, create {
                if mkdirat(fd, component, mode) != 0 && errno != EEXIST {
                    let code = errno
                    Glibc.close(fd)
                    throw .system(operation: "create directory", path: path, errno: code)
                }
                next = openat(fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            let code = errno
            if next < 0 {
                let error = failure(path, errno: code, operation: "open directory", parent: fd, name: component)
                Glibc.close(fd)
                throw error
            }
            Glibc.close(fd)
            fd = next
        }
        return DirectoryBeneath(fd: fd, path: path)
    }

    private static func failure(_ path: String, errno code: Int32, operation: String, parent: Int32 = AT_FDCWD,
                                name: String? = nil) -> Failure {
        guard code == ELOOP || code == ENOTDIR else { return .system(operation: operation, path: path, errno: code) }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlinkat(parent, name ?? path, &buffer, buffer.count - 1)
        let target = n >= 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
        return .notADirectory(path: path, symlinkTarget: target)
    }
}

extension DirectoryBeneath.Failure: CustomStringConvertible {
    var description: String {
        switch self {
        case let .notADirectory(path, target?): "\(path) is a symlink to \(target), not a directory"
        case let .notADirectory(path, nil): "\(path) is not a directory"
        case let .system(operation, path, code): "\(operation) \(path): \(String(cString: strerror(code)))"
        }
    }
}
