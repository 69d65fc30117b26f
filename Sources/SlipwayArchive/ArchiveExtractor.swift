import Foundation
import Glibc
import SlipwaySystem

/// Extracts archives safely.
public enum ArchiveExtractor {
    /// Extracts `archive` (tar.xz, tar.zst or tar, detected by content) into `target`, which must
    /// not exist or be an empty directory. On any error nothing is left in `target`.
    public static func extract(archive: String, into target: String, options: ExtractOptions = .init()) throws -> ExtractResult {
        try ArchiveLocale.withUTF8 { try extractArchive(archive, into: target, options: options) }
    }

    private static func extractArchive(_ archive: String, into target: String, options: ExtractOptions) throws -> ExtractResult {
        let threads = options.threads > 0 ? options.threads : ProcessInfo.processInfo.activeProcessorCount
        let reader = try TarStreamReader(path: archive, threads: threads, progress: options.progress)
        let (rootFD, created) = try openTarget(target)
        if created { InterruptedWork.register(target) }
        defer { if created { InterruptedWork.unregister(target) } }
        options.progress?.begin("unpack", total: reader.input.size)
        defer { options.progress?.end() }
        let creator = TreeCreator(rootFD: rootFD, restoreOwners: options.restoreOwners, writers: options.writers)
        do {
            var count = 0
            var hashes: [ArchivePath: String] = [:]
            while let header = try reader.nextHeader() {
                try InterruptedWork.checkpoint()
                if options.hashContents && header.kind == .file {
                    // The bytes handed to the writer are the bytes hashed: no second read.
                    var hasher = SparseContentHasher()
                    try creator.create(header) { body in
                        try reader.readContent { chunk, offset in
                            hasher.update(chunk, at: offset)
                            try body(chunk, offset)
                        }
                    }
                    hashes[ArchivePath(bytes: header.path)] = hasher.finish(size: header.size)
                } else {
                    try creator.create(header) { body in try reader.readContent(body) }
                }
                count += 1
            }
            try creator.finish()
            close(rootFD)
            return ExtractResult(entryCount: count, tarSize: reader.tarBytes, fileHashes: hashes)
        } catch {
            creator.abandon()
            PosixPath.removeContents(directoryFD: rootFD)
            close(rootFD)
            if created { rmdir(target) }
            throw error
        }
    }

    /// Opens the target directory, creating it when absent; an existing one must be empty.
    private static func openTarget(_ target: String) throws -> (fd: Int32, created: Bool) {
        var created = false
        if mkdir(target, 0o755) == 0 {
            created = true
        } else if errno != EEXIST {
            throw ArchiveError.system(operation: "create the target directory", path: target, errno: errno)
        }
        let fd = open(target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOTDIR || errno == ELOOP { throw ArchiveError.targetNotEmpty(path: target) }
            throw ArchiveError.system(operation: "open the target directory", path: target, errno: errno)
        }
        if !created {
            let copy = PosixPath.duplicate(fd)
            let names = (try? PosixPath.directoryNames(fd: copy, path: Array(target.utf8))) ?? [[]]
            if !names.isEmpty {
                close(fd)
                throw ArchiveError.targetNotEmpty(path: target)
            }
        }
        return (fd, created)
    }
}

/// Reads an archive's entries without extracting it.
public enum ArchiveReader {
    /// The entry records of `archive`, with the SHA-256 of each regular file's content.
    public static func records(archive: String, threads: Int = 0) throws -> [EntryRecord] {
        try ArchiveLocale.withUTF8 { try readRecords(archive, threads: threads) }
    }

    /// The content of the regular file `path` in `archive`, or nil when the archive holds no
    /// regular file of that path or one larger than `limit` bytes. Reads up to that entry only.
    public static func file(_ path: ArchivePath, in archive: String, limit: UInt64 = 16 << 20) throws -> Data? {
        try ArchiveLocale.withUTF8 {
            let reader = try TarStreamReader(path: archive, threads: 1, progress: nil)
            while let header = try reader.nextHeader() {
                guard ArchivePath(bytes: header.path) == path else { continue }
                guard header.kind == .file, header.size <= limit else { return nil }
                var data = Data(count: Int(header.size))
                try reader.readContent { chunk, offset in
                    guard offset >= 0, UInt64(offset) + UInt64(chunk.count) <= header.size else {
                        throw ArchiveError.system(operation: "read \(path) of", path: archive, errno: EINVAL)
                    }
                    data.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: Int(offset)).copyMemory(from: chunk.baseAddress!, byteCount: chunk.count) }
                }
                return data
            }
            return nil
        }
    }

    private static func readRecords(_ archive: String, threads: Int) throws -> [EntryRecord] {
        let reader = try TarStreamReader(
            path: archive, threads: threads > 0 ? threads : ProcessInfo.processInfo.activeProcessorCount, progress: nil)
        var records: [EntryRecord] = []
        while let header = try reader.nextHeader() {
            if header.isRoot { continue }
            var record = EntryRecord(
                path: ArchivePath(bytes: header.path), kind: header.kind, mode: header.mode, uid: header.uid,
                gid: header.gid, size: header.size, linkTarget: header.linkTarget.map { ArchivePath(bytes: $0) },
                xattrs: header.xattrs.isEmpty ? nil : header.xattrs.map(\.name).sorted {
                    Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8))
                })
            if header.kind == .characterDevice || header.kind == .blockDevice {
                record.deviceMajor = header.deviceMajor
                record.deviceMinor = header.deviceMinor
            }
            if header.kind == .file {
                var hasher = SparseContentHasher()
                try reader.readContent { chunk, offset in hasher.update(chunk, at: offset) }
                record.sha256 = hasher.finish(size: header.size)
            }
            records.append(record)
        }
        return records
    }
}
