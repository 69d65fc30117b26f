import SlipwaySystem
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
    /// Hash each regular file's bytes as they are written (`ExtractResult.fileHashes`), so a
    /// caller can check them against a manifest without reading the tree back.
    public var hashContents: Bool
    /// Worker threads that create the small regular files (0: the reading thread writes
    /// every file). Worth it where each file system call waits on a daemon (zfs-fuse).
    public var writers: Int
    public init(threads: Int = 0, restoreOwners: Bool = geteuid() == 0, progress: (any ArchiveProgress)? = nil,
                hashContents: Bool = false, writers: Int = 0) {
        self.threads = threads
        self.restoreOwners = restoreOwners
        self.progress = progress
        self.hashContents = hashContents
        self.writers = writers
    }
}

/// What extraction produced.
public struct ExtractResult: Sendable {
    public var entryCount: Int
    public var tarSize: UInt64
    /// With `ExtractOptions.hashContents`: the SHA-256 (hex) of the bytes written to each
    /// regular file, holes of a sparse entry as zeros (hardlinks have none of their own).
    public var fileHashes: [ArchivePath: String] = [:]
}
