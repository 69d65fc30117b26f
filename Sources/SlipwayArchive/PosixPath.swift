import Glibc
import SlipwaySystem

/// Low-level helpers over raw byte paths: the engine never turns a file name into a Swift
/// `String`, so names that are not UTF-8 pass through untouched.
package enum PosixPath {
    /// `base/name` as bytes.
    package static func join(_ base: [UInt8], _ name: [UInt8]) -> [UInt8] {
        base.isEmpty ? name : base + [UInt8(ascii: "/")] + name
    }

    /// A duplicate of `fd` that is close-on-exec, as every descriptor slipway opens: dup(2)
    /// drops the flag, and a child that another thread spawns at that moment (a test process
    /// runs many at once; a node command runs zfs, sync and hooks) would inherit the directory
    /// and keep it open for its whole life: under zfs-fuse that left a landed dataset "busy"
    /// for good, so it could be neither unmounted for real nor mounted again (the CI flake of
    /// the ZFS crash test).
    package static func duplicate(_ fd: Int32) -> Int32 { fcntl(fd, F_DUPFD_CLOEXEC, 0) }

    /// Calls `body` with `bytes` as a NUL-terminated C string.
    package static func withCString<R>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        var copy = bytes.map { CChar(bitPattern: $0) }
        copy.append(0)
        return try copy.withUnsafeBufferPointer { try body($0.baseAddress!) }
    }

    /// The bytes of a NUL-terminated C string.
    static func bytes(_ cString: UnsafePointer<CChar>) -> [UInt8] {
        let length = strlen(cString)
        return cString.withMemoryRebound(to: UInt8.self, capacity: length) {
            Array(UnsafeBufferPointer(start: $0, count: length))
        }
    }

    /// For messages: the path shown as text.
    package static func display(_ bytes: [UInt8]) -> String { ArchivePath(bytes: bytes).description }

    /// The names of the entries of the open directory `fd` (not `.` and `..`), unsorted.
    /// Takes ownership of `fd`.
    package static func directoryNames(fd: Int32, path: [UInt8]) throws -> [[UInt8]] {
        guard let dir = fdopendir(fd) else {
            let code = errno
            close(fd)
            throw ArchiveError.system(operation: "opendir", path: display(path), errno: code)
        }
        defer { closedir(dir) }
        // A dup'd descriptor shares its offset with the original: start from the top.
        rewinddir(dir)
        var names: [[UInt8]] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw ArchiveError.system(operation: "readdir", path: display(path), errno: errno) }
                break
            }
            let name: [UInt8] = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: CChar.self, capacity: 256) { bytes($0) }
            }
            if name == [0x2E] || name == [0x2E, 0x2E] { continue }
            names.append(name)
        }
        return names
    }

    /// Removes `name` in directory `parentFD` and everything below it, never following symlinks.
    package static func removeTree(parentFD: Int32, name: [UInt8]) {
        withCString(name) { cName in
            if unlinkat(parentFD, cName, 0) == 0 || errno == ENOENT { return }
            guard errno == EISDIR else { return }
            let fd = openat(parentFD, cName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if fd >= 0 {
                removeContents(directoryFD: fd)
                close(fd)
            }
            unlinkat(parentFD, cName, AT_REMOVEDIR)
        }
    }

    /// Removes `path` and everything below it, never following symlinks.
    package static func removeTree(_ path: String) {
        var bytes = Array(path.utf8)
        while bytes.count > 1, bytes.last == UInt8(ascii: "/") { bytes.removeLast() }
        let slash = bytes.lastIndex(of: UInt8(ascii: "/"))
        let parent = slash.map { $0 == 0 ? "/" : String(decoding: bytes[..<$0], as: UTF8.self) } ?? "."
        let name = slash.map { Array(bytes[($0 + 1)...]) } ?? bytes
        let parentFD = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard parentFD >= 0, !name.isEmpty else { return }
        defer { close(parentFD) }
        removeTree(parentFD: parentFD, name: name)
    }

    /// Empties the directory `directoryFD` (which stays open and owned by the caller).
    package static func removeContents(directoryFD: Int32) {
        let copy = duplicate(directoryFD)
        guard copy >= 0, let names = try? directoryNames(fd: copy, path: []) else { return }
        for name in names { removeTree(parentFD: directoryFD, name: name) }
    }
}

/// libarchive converts names through the calling thread's locale; in the "C" locale it
/// cannot handle UTF-8 names at all. The engine runs its libarchive calls under C.UTF-8 on
/// the calling thread only, whatever the process locale is.
enum ArchiveLocale {
    nonisolated(unsafe) private static let utf8: locale_t? = newlocale(Int32(1) << LC_CTYPE, "C.UTF-8", nil)

    static func withUTF8<R>(_ body: () throws -> R) rethrows -> R {
        guard let utf8 else { return try body() }
        let previous = uselocale(utf8)
        defer { uselocale(previous) }
        return try body()
    }
}
