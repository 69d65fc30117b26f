import CArchive
import Glibc
import SlipwaySystem

/// Extended attributes of files, read without following symlinks.
enum Xattrs {
    /// The sorted names of the extended attributes of `path`.
    static func names(_ path: UnsafePointer<CChar>, display: String) throws -> [String] {
        var size = llistxattr(path, nil, 0)
        if size < 0 {
            if errno == ENOTSUP || errno == ENODATA { return [] }
            throw ArchiveError.system(operation: "llistxattr", path: display, errno: errno)
        }
        if size == 0 { return [] }
        var buffer = [CChar](repeating: 0, count: size)
        size = llistxattr(path, &buffer, size)
        guard size >= 0 else { throw ArchiveError.system(operation: "llistxattr", path: display, errno: errno) }
        return buffer[0..<size]
            .split(separator: 0, omittingEmptySubsequences: true)
            .map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
            .sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    /// The value of attribute `name` of `path`.
    static func value(_ path: UnsafePointer<CChar>, name: String, display: String) throws -> [UInt8] {
        while true {
            let size = lgetxattr(path, name, nil, 0)
            guard size >= 0 else { throw ArchiveError.system(operation: "lgetxattr \(name)", path: display, errno: errno) }
            var buffer = [UInt8](repeating: 0, count: size)
            let got = lgetxattr(path, name, &buffer, size)
            if got < 0, errno == ERANGE { continue }  // it grew in between
            guard got >= 0 else { throw ArchiveError.system(operation: "lgetxattr \(name)", path: display, errno: errno) }
            return Array(buffer[0..<got])
        }
    }
}
