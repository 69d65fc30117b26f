import SlipwaySystem
/// Errors of the archive engine. Each names the archive or entry and says what went wrong.
public enum ArchiveError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A system call failed on a file of the tree or the target.
    case system(operation: String, path: String, errno: Int32)
    /// libarchive returned an error code.
    case libarchive(operation: String, code: Int32, message: String)
    /// liblzma returned an error code.
    case lzma(operation: String, code: UInt32)
    /// libzstd returned an error.
    case zstd(operation: String, message: String)
    /// The compressed stream ended before its end marker.
    case truncated(archive: String)
    /// Bytes follow the end of the archive.
    case trailingGarbage(archive: String)
    /// The extractor refused an entry; nothing was left behind.
    case refused(entry: String, reason: String)
    /// The archive to read is not a regular file (a directory, a device, a fifo).
    case notAnArchiveFile(path: String, kind: String)
    /// The extraction target exists and is not an empty directory.
    case targetNotEmpty(path: String)
    /// The tree holds a file kind a tar archive cannot carry (a socket).
    case unsupportedEntry(path: String, kind: String)
    /// The process was told to stop (SIGINT/SIGTERM); what was begun is removed.
    case interrupted

    public var description: String {
        switch self {
        case let .system(operation, path, errno):
            return "\(operation) \(path): \(String(cString: strerror(errno)))"
        case let .libarchive(operation, code, message):
            return "\(operation): \(message) (libarchive status \(code))"
        case let .lzma(operation, code):
            return "\(operation): \(LzmaStatus.describe(code)) (liblzma status \(code))"
        case let .zstd(operation, message):
            return "\(operation): \(message)"
        case let .truncated(archive):
            return "\(archive): the compressed stream is truncated"
        case let .trailingGarbage(archive):
            return "\(archive): unexpected data after the end of the archive"
        case let .refused(entry, reason):
            return "refused entry \(entry): \(reason); nothing was extracted"
        case let .notAnArchiveFile(path, kind):
            return "\(path) is \(kind), not an archive: give a regular .tar.xz, .tar.zst or .tar file"
        case let .targetNotEmpty(path):
            return "\(path) exists and is not an empty directory; extract into a new or empty directory"
        case .interrupted:
            return "interrupted; nothing was left behind"
        case let .unsupportedEntry(path, kind):
            return "\(path): a \(kind) cannot be stored in a tar archive; remove it from the tree"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Human text for liblzma's status codes.
enum LzmaStatus {
    static func describe(_ code: UInt32) -> String {
        switch code {
        case 5: "out of memory"
        case 6: "memory limit reached"
        case 7: "not an xz stream"
        case 8: "unsupported xz options"
        case 9: "corrupt xz data"
        case 10: "unexpected end of input"
        case 11: "programming error in the xz call"
        default: "error"
        }
    }
}
