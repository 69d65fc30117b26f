import Foundation
import Glibc

/// Making writes durable: the one copy of each call (fsync of a file or a directory,
/// syncfs). Every layer calls these and turns a `SystemError` into its own error with
/// `SystemError.rethrow`, so the message names the operation and the path the same way.
package enum Durable {
    /// fsync of the directory `path` ("" is the working directory), after a create, rename
    /// or unlink in it, so the entry itself is durable.
    package static func syncDirectory(_ path: String) throws(SystemError) {
        let fd = open(path.isEmpty ? "." : path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .call(operation: "open directory", path: path, errno: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw .call(operation: "fsync", path: path, errno: errno) }
    }

    /// fsync of the file `path`.
    package static func syncFile(_ path: String) throws(SystemError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .call(operation: "open", path: path, errno: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw .call(operation: "fsync", path: path, errno: errno) }
    }

    /// Replaces `path` with `data` (mode `mode`, whatever the umask) through a temporary file
    /// in the same directory (`temporary`, else `path.tmp-<random>`): write, fsync, rename,
    /// fsync the directory. A crash leaves the old file or the new one, and maybe the
    /// temporary file, which the caller's recovery removes.
    package static func replace(_ path: String, with data: Data, mode: mode_t = 0o644, temporary: String? = nil) throws(SystemError) {
        let temp = temporary ?? path + ".tmp-" + String(format: "%08x", UInt32.random(in: .min ... .max))
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | (temporary == nil ? O_EXCL : 0) | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .call(operation: "create", path: temp, errno: errno) }
        func fail(_ operation: String, _ code: Int32, path failed: String = temp) -> SystemError {
            close(fd)
            unlink(temp)
            return .call(operation: operation, path: failed, errno: code)
        }
        let written = data.withUnsafeBytes { writeFully(fd, $0) }
        guard written == 0 else { throw fail("write", written) }
        guard fchmod(fd, mode) == 0 else { throw fail("chmod", errno) }
        guard fsync(fd) == 0 else { throw fail("fsync", errno) }
        close(fd)
        guard rename(temp, path) == 0 else {
            let code = errno
            unlink(temp)
            throw .call(operation: "rename \(temp) to", path: path, errno: code)
        }
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? ""
        try syncDirectory(path.hasPrefix("/") && directory.isEmpty ? "/" : directory)
    }

    /// syncfs(2) of the file system holding the directory `path`: one call instead of an
    /// fsync per file of a freshly extracted tree.
    package static func syncFileSystem(of path: String) throws(SystemError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .call(operation: "open directory", path: path, errno: errno) }
        defer { close(fd) }
        guard slipway_syncfs(fd) == 0 else { throw .call(operation: "sync the file system of", path: path, errno: errno) }
    }
}

extension SystemError {
    /// Runs `body`; a `SystemError` it throws becomes the caller's own error, made by `wrap`
    /// from (operation, path, errno), e.g. `NodeError.system`.
    package static func rethrow<T>(_ body: () throws(SystemError) -> T, as wrap: (String, String, Int32) -> any Error) throws -> T {
        do {
            return try body()
        } catch let .call(operation, path, code) {
            throw wrap(operation, path, code)
        }
    }
}

/// syncfs(2): Glibc's module map hides it behind _GNU_SOURCE; the symbol is plain C.
@_silgen_name("syncfs")
private func slipway_syncfs(_ fd: Int32) -> Int32
