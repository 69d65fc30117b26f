import Crypto
import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Receives release bytes (a full archive or a delta) into `incoming/<file>`, resumable:
/// `--offset N` continues a partial upload after its first N bytes (anything beyond is
/// dropped). With `--size`, a short upload stays as it is for the next resume; once complete,
/// `--sha256` is checked and a mismatching file is removed; an upload that would grow past
/// `--size` is refused and removed. Uploads of one file are serialized by an flock on the
/// file itself, not the app's lock, so landing or switching is not held up by a slow link.
extension NodeReceive {

    public static func receive(app: String, fileName: String, from input: Int32 = 0, offset: UInt64,
                               size: UInt64?, sha256: String?, context: NodeContext) throws -> Result {
        try ReleaseStore.validate(name: app)
        try ReleaseStore.validate(version: fileName)
        let layout = context.layout(app)
        try NodeFiles.makeDirectories(layout.incoming)
        let path = "\(layout.incoming)/\(fileName)"
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw NodeError.system(operation: "open", path: path, errno: errno) }
        defer { close(fd) }
        try takeOver(fd: fd, path: path, holderFile: holderFile(layout, fileName), timeout: context.settings.lockTimeout)
        let holder = holderFile(layout, fileName)
        try? NodeFiles.writeAtomically(holder, Data("\(getpid())\n".utf8))
        defer { unlink(holder) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw NodeError.system(operation: "stat", path: path, errno: errno) }
        let have = UInt64(st.st_size)
        guard offset <= have else { throw NodeError.badOffset(path: path, offset: offset, have: have) }
        if let size, offset > size {
            unlink(path)
            throw NodeError.invalidArgument("\(path): --offset \(offset) is past the announced --size \(size) bytes; the upload was removed, send it again from --offset 0")
        }
        guard ftruncate(fd, off_t(offset)) == 0 else { throw NodeError.system(operation: "truncate", path: path, errno: errno) }
        guard lseek(fd, off_t(offset), SEEK_SET) >= 0 else { throw NodeError.system(operation: "seek", path: path, errno: errno) }

        var received: UInt64 = 0
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(input, buffer.baseAddress, chunk)
            if n < 0 {
                if errno == EINTR { continue }
                throw NodeError.system(operation: "read the upload from stdin for", path: path, errno: errno)
            }
            if n == 0 { break }
            if let size, offset + received + UInt64(n) > size {
                // Nothing past the announced size is kept: the whole upload goes, as a
                // sender that sends too much cannot be trusted with what it sent before.
                unlink(path)
                throw NodeError.invalidArgument("\(path): received more than the announced --size \(size) bytes; the upload was removed, send it again from --offset 0")
            }
            var written = 0
            while written < n {
                let w = write(fd, buffer.baseAddress! + written, n - written)
                if w < 0 {
                    if errno == EINTR { continue }
                    // What was written stays: the sender resumes from the size status reports.
                    let code = errno
                    _ = fsync(fd)
                    throw NodeError.system(operation: "write", path: path, errno: code)
                }
                written += w
            }
            received += UInt64(n)
        }
        guard fsync(fd) == 0 else { throw NodeError.system(operation: "fsync", path: path, errno: errno) }
        let total = offset + received
        let complete = size.map { total == $0 } ?? true
        var result = Result(path: path, received: received, bytes: total, complete: complete, sha256: nil)
        if complete {
            let actual = try NodeApply.hash(path)
            result.sha256 = actual.hex
            if let sha256, actual.hex != sha256.lowercased() {
                unlink(path)
                throw NodeError.archiveMismatch(path: path, expectedSHA256: sha256, actualSHA256: actual.hex,
                                                expectedSize: size ?? total, actualSize: total)
            }
        }
        return result
    }

    /// Where the pid of the process receiving `fileName` is kept.
    static func holderFile(_ layout: NodeLayout, _ fileName: String) -> String { "\(layout.incoming)/.\(fileName).receiver" }

    /// Locks the upload file. A receive whose connection dropped blocks on its stdin until TCP
    /// gives up, which can take many minutes: a new upload of the same file supersedes it
    /// (SIGTERM to the pid it recorded, checked to be a `slipway node receive` of this file),
    /// then waits for the lock. A fetch holding the file finishes on its own and is waited for.
    static func takeOver(fd: Int32, path: String, holderFile: String, timeout: Double) throws {
        let started = NodeFiles.now()
        var signaled = false
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else { throw NodeError.system(operation: "lock", path: path, errno: errno) }
            if !signaled, let text = try? NodeFiles.read(holderFile),
               let pid = Int32(String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1, pid != getpid(),
               let cmdline = try? NodeFiles.read("/proc/\(pid)/cmdline") {
                let words = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
                if words.contains("receive"), words.contains("node"), words.contains((path as NSString).lastPathComponent) {
                    kill(pid, SIGTERM)
                }
                signaled = true
            }
            if NodeFiles.now() - started >= timeout {
                throw NodeError.invalidArgument("\(path) is being written by another slipway process; waited \(Int(timeout)) s for it")
            }
            usleep(50_000)
        }
    }
}
