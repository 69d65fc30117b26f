// Temporary signatures; replaced by the real engine files.
import Foundation

/// How a tree is packed.
public struct ArchiveWriterConfiguration: Sendable {
    public var compression: ArchiveCompression
    /// xz preset (0…9, default 6) or zstd level (1…19, default 9).
    public var level: Int?
    /// Compression threads; the bytes do not depend on it.
    public var threads: Int
    /// When set, every mtime later than it is clamped to it (reproducible builds).
    public var sourceDateEpoch: Int64?
    public var progress: (any ArchiveProgress)?

    public init(compression: ArchiveCompression = .xz, level: Int? = nil, threads: Int = 0,
                sourceDateEpoch: Int64? = nil, progress: (any ArchiveProgress)? = nil) {
        self.compression = compression
        self.level = level
        self.threads = threads
        self.sourceDateEpoch = sourceDateEpoch
        self.progress = progress
    }
}

/// What packing produced.
public struct PackResult: Sendable {
    /// One record per archive entry, in archive order.
    public var entries: [EntryRecord]
    public var archiveSHA256: String
    public var archiveSize: UInt64
    /// Size of the uncompressed tar stream.
    public var tarSize: UInt64
}

/// How an archive is extracted.
public struct ExtractOptions: Sendable {
    /// Decompression threads (0: one per core).
    public var threads: Int
    /// Restore numeric owners (default: when running as root).
    public var restoreOwners: Bool
    public var progress: (any ArchiveProgress)?
    public init(threads: Int = 0, restoreOwners: Bool = geteuid() == 0, progress: (any ArchiveProgress)? = nil) {
        self.threads = threads
        self.restoreOwners = restoreOwners
        self.progress = progress
    }
}

/// What extraction produced.
public struct ExtractResult: Sendable {
    public var entryCount: Int
    public var tarSize: UInt64
}

/// Packs a directory tree into a reproducible archive.
public enum ArchiveWriter {
    /// Packs every entry under `tree` (not the root directory itself) into `archive`,
    /// written to a temporary file beside it and renamed into place when complete.
    public static func pack(tree: String, to archive: String, configuration: ArchiveWriterConfiguration = .init()) throws -> PackResult {
        throw ArchiveError.system(operation: "pack (not yet implemented)", path: tree, errno: ENOSYS)
    }
}

/// Extracts archives safely.
public enum ArchiveExtractor {
    /// Extracts `archive` (tar.xz, tar.zst or tar, detected by content) into `target`, which must
    /// not exist or be an empty directory. On any error nothing is left in `target`.
    public static func extract(archive: String, into target: String, options: ExtractOptions = .init()) throws -> ExtractResult {
        throw ArchiveError.system(operation: "extract (not yet implemented)", path: archive, errno: ENOSYS)
    }
}

/// Reads an archive's entries without extracting it.
public enum ArchiveReader {
    /// The entry records of `archive`, with the SHA-256 of each regular file's content.
    public static func records(archive: String, threads: Int = 0) throws -> [EntryRecord] {
        throw ArchiveError.system(operation: "read (not yet implemented)", path: archive, errno: ENOSYS)
    }
}

/// Walks a tree on disk the way the writer does.
public enum TreeWalker {
    /// The records of every entry under `root` (not `root` itself), in bytewise path order;
    /// the first path of a hardlinked file is a `file`, the others `hardlink`s to it.
    public static func records(root: String, hashing: Bool = true) throws -> [EntryRecord] {
        throw ArchiveError.system(operation: "walk (not yet implemented)", path: root, errno: ENOSYS)
    }
}
