import CLibFuzzer
import Foundation
import Glibc
@testable import SlipwayArchive
import SlipwayRelease

/// Two versions of a small tree with an entry of each kind the archive keeps (files,
/// directories, a symlink, a hardlink, a fifo, setuid and private modes, an xattr, a name
/// that is not UTF-8, a path longer than 255 bytes), from which the targets make their
/// fixtures and seeds. Version 2 changes, adds and removes entries, and changes a few lines
/// of a large file, so that the delta from 1 to 2 carries a zstd patch (delta format 2).
public enum SeedTree {
    /// mtime of every entry, so that the archives do not depend on when they were made.
    public static let mtime: Int64 = 1_700_000_000

    public static func make(at root: String, version: Int) throws {
        let v2 = version >= 2
        try directory(root, 0o755)
        try directory(root + "/etc", 0o755)
        try file(root + "/etc/app.conf", "name = \"demo\"\nversion = \(version)\n", 0o644)
        let lines = (1...240).map { n in
            v2 && (100...103).contains(n) ? "line \(n): changed in version 2\n" : "line \(n): the quick brown fox jumps over the lazy dog \(n * 7919 % 1000)\n"
        }
        try file(root + "/etc/big.txt", lines.joined(), 0o644)
        try file(root + "/etc/tagged.txt", "a file with an extended attribute\n", 0o644)
        _ = setxattr(root + "/etc/tagged.txt", "user.slipway.fuzz", "seed", 4, 0)  // not every file system has user xattrs
        try directory(root + "/bin", 0o755)
        try file(root + "/bin/tool", "#!/bin/sh\necho tool \(version)\n", 0o755)
        try check(link(root + "/bin/tool", root + "/bin/tool-again"), "link", root + "/bin/tool-again")
        try check(symlink(v2 ? "tool-again" : "tool", root + "/bin/sh"), "symlink", root + "/bin/sh")
        try directory(root + "/sbin", 0o755)
        try file(root + "/sbin/setuid", "setuid\n", v2 ? 0o755 : 0o4755)
        try directory(root + "/private", 0o700)
        try file(root + "/private/secret", "secret\n", 0o600)
        try directory(root + "/var", 0o755)
        try directory(root + "/var/empty", 0o755)
        if !v2 { try check(mkfifo(root + "/var/pipe", 0o644), "mkfifo", root + "/var/pipe") }
        let long = root + "/share/" + String(repeating: "d", count: 120)
        try directory(root + "/share", 0o755)
        try directory(long, 0o755)
        try file(long + "/" + String(repeating: "n", count: 150) + ".txt", "a long path\n", 0o644)
        try directory(root + "/data", 0o755)
        let name = Array((root + "/data/caf").utf8) + [0xE9, 0xFF]  // Latin-1 é and a stray byte
        let fd = PosixPath.withCString(name) { open($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        try check(fd >= 0 ? 0 : -1, "create", root + "/data/caf\\xE9\\xFF")
        close(fd)
        if v2 {
            try directory(root + "/new", 0o755)
            try directory(root + "/new/dir", 0o750)
            try file(root + "/new/dir/file.txt", "new in version 2\n", 0o640)
        }
        try setTimes(root)
    }

    private static func directory(_ path: String, _ mode: mode_t) throws {
        if mkdir(path, mode) != 0 && errno != EEXIST { try check(-1, "mkdir", path) }
        try check(chmod(path, mode), "chmod", path)
    }

    private static func file(_ path: String, _ text: String, _ mode: mode_t) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else { try check(-1, "create", path); return }
        try check(chmod(path, mode), "chmod", path)
    }

    private static func check(_ result: Int32, _ operation: String, _ path: String) throws {
        if result != 0 { throw ArchiveError.system(operation: operation, path: path, errno: errno) }
    }

    /// Sets every entry's mtime (and atime) to `mtime`, children before their directory.
    private static func setTimes(_ path: String) throws { try setTimes(bytes: Array(path.utf8)) }

    private static func setTimes(bytes: [UInt8]) throws {
        var info = stat()
        guard PosixPath.withCString(bytes, { lstat($0, &info) }) == 0 else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            let fd = PosixPath.withCString(bytes) { open($0, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
            if fd >= 0 {  // directoryNames takes the descriptor
                for name in try PosixPath.directoryNames(fd: fd, path: bytes) { try setTimes(bytes: bytes + [UInt8(ascii: "/")] + name) }
            }
        }
        let time = timespec(tv_sec: Int(mtime), tv_nsec: 0)
        var times = [time, time]
        _ = PosixPath.withCString(bytes) { utimensat(AT_FDCWD, $0, &times, AT_SYMLINK_NOFOLLOW) }
    }
}
