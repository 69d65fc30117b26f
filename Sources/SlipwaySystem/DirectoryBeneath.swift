import Foundation
import Glibc

/// Opens directories below a root without following any symlink on the way: each component
/// is opened with `openat(…, O_NOFOLLOW | O_DIRECTORY)` relative to the one before, so a
/// symlink placed anywhere under the root (by a release, a recipe, or a process that can
/// write there) can never send a path outside it. The resulting descriptor names the
/// directory itself; `/proc/PID/fd/N` reaches it without resolving the path again, from this
/// process and from the commands it runs. The build's mount points and the node's shared
/// directories are opened this way (docs/security.md).
package struct DirectoryBeneath {
    /// Why a path below the root cannot be used.
    package enum Failure: Error {
        /// `path` (root + the components walked) is not a real directory: `found` says what
        /// it is ("a symlink to /x", "a regular file" …); `relative` is the path below the root.
        case notADirectory(path: String, relative: String, found: String)
        case system(operation: String, path: String, errno: Int32)
    }

    /// The open directory; close it with `close()`.
    package let fd: Int32
    /// Its path as the caller named it (root + components), for messages.
    let path: String

    /// `/proc/PID/fd/N`: the directory itself, for this process and its children (the
    /// descriptor is close-on-exec, so a child reaches it through its parent's pid).
    package var procPath: String { "/proc/\(getpid())/fd/\(fd)" }

    package func close() { _ = Glibc.close(fd) }

    /// Opens `root/components…`, creating missing components as real directories with
    /// `mode` when `create` is set.
    package static func open(root: String, components: [String], create: Bool, mode: mode_t = 0o755) throws(Failure) -> DirectoryBeneath {
        var fd = Glibc.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .system(operation: "open directory", path: root, errno: errno) }
        var relative = ""
        for component in components {
            relative += "/" + component
            let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
            var next = openat(fd, component, flags)
            if next < 0, errno == ENOENT, create {
                if mkdirat(fd, component, mode) != 0 && errno != EEXIST {
                    let code = errno
                    Glibc.close(fd)
                    throw .system(operation: "create directory", path: root + relative, errno: code)
                }
                next = openat(fd, component, flags)
            }
            if next < 0 {
                let code = errno
                defer { Glibc.close(fd) }
                var info = stat()
                if fstatat(fd, component, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & S_IFMT != S_IFDIR {
                    throw .notADirectory(path: root + relative, relative: relative, found: describe(info, at: component, in: fd))
                }
                throw .system(operation: "open directory", path: root + relative, errno: code)
            }
            Glibc.close(fd)
            fd = next
        }
        return DirectoryBeneath(fd: fd, path: root + relative)
    }

    /// "a symlink to TARGET", "a regular file", … for what `fstatat` found.
    static func describe(_ info: stat, at name: String, in directory: Int32) -> String {
        switch info.st_mode & S_IFMT {
        case S_IFLNK:
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let count = readlinkat(directory, name, &buffer, buffer.count - 1)
            return count >= 0 ? "a symlink to \(String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self))" : "a symlink"
        case S_IFREG: return "a regular file"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        default: return "not a directory"
        }
    }
}

extension DirectoryBeneath.Failure: CustomStringConvertible {
    package var description: String {
        switch self {
        case let .notADirectory(path, _, found): "\(path) is \(found)"
        case let .system(operation, path, code): "\(operation) \(path): \(String(cString: strerror(code)))"
        }
    }
}
