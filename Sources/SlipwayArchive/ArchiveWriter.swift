import CArchive
import Crypto
import Foundation
import Glibc
import SlipwaySystem

/// Packs a directory tree into a reproducible archive: pax tar, entries in bytewise path
/// order, numeric owners, mtimes clamped to SOURCE_DATE_EPOCH, no atime/ctime, then xz
/// (multi-threaded, fixed blocks), zstd or nothing.
public enum ArchiveWriter {
    /// Packs every entry under `tree` (not the root directory itself) into `archive`,
    /// written to a temporary file beside it and renamed into place when complete.
    public static func pack(tree: String, to archive: String, configuration: ArchiveWriterConfiguration = .init()) throws -> PackResult {
        try ArchiveLocale.withUTF8 { try packTree(tree, to: archive, configuration: configuration) }
    }

    private static func packTree(_ tree: String, to archive: String, configuration: ArchiveWriterConfiguration) throws -> PackResult {
        let entries = try TreeWalker.walk(root: tree)
        let temporary = archive + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            let result = try write(entries, to: temporary, configuration: configuration)
            guard rename(temporary, archive) == 0 else {
                throw ArchiveError.system(operation: "rename to", path: archive, errno: errno)
            }
            return result
        } catch {
            unlink(temporary)
            throw error
        }
    }

    private static func write(_ entries: [WalkedEntry], to path: String, configuration: ArchiveWriterConfiguration) throws -> PackResult {
        let output = try ArchiveOutputFile(path: path)
        let threads = configuration.threads > 0 ? configuration.threads : ProcessInfo.processInfo.activeProcessorCount
        let compressor: any StreamCompressor
        switch configuration.compression {
        case .xz:
            compressor = try XZCompressor(
                preset: UInt32(configuration.level ?? Int(XZParameters.defaultPreset)), threads: threads, output: output)
        case .zstd:
            compressor = try ZstdCompressor(level: configuration.level ?? ZstdCompressor.defaultLevel, threads: threads, output: output)
        case .none:
            compressor = PassthroughCompressor(output: output)
        }
        let tar = try TarWriter(compressor: compressor)
        let total = entries.reduce(UInt64(0)) { $0 + ($1.record.kind == .file ? $1.record.size : 0) }
        configuration.progress?.begin("pack", total: total)
        defer { configuration.progress?.end() }

        var records: [EntryRecord] = []
        records.reserveCapacity(entries.count)
        var done: UInt64 = 0
        for entry in entries {
            try InterruptedWork.checkpoint()
            var record = entry.record
            var mtime = entry.mtime
            if let epoch = configuration.sourceDateEpoch, mtime > epoch { mtime = epoch }
            let xattrs = try PosixPath.withCString(entry.diskPath) { cPath in
                try (record.xattrs ?? []).map { name in
                    (name, try Xattrs.value(cPath, name: name, display: PosixPath.display(entry.diskPath)))
                }
            }
            try tar.writeHeader(record, mtime: mtime, xattrs: xattrs)
            if record.kind == .file {
                record.sha256 = try tar.writeContent(of: entry.diskPath, size: record.size) { read in
                    done += UInt64(read)
                    configuration.progress?.advance(to: done)
                }
            }
            records.append(record)
        }
        try tar.close()
        try compressor.finish()
        let sha256 = try output.finish()
        return PackResult(entries: records, archiveSHA256: sha256, archiveSize: output.size, tarSize: tar.bytesWritten)
    }
}

/// libarchive's restricted pax writer, writing into a `StreamCompressor`.
final class TarWriter {
    private let archive: OpaquePointer
    private let entry: OpaquePointer
    private let compressor: any StreamCompressor
    private let buffer: UnsafeMutableRawBufferPointer
    fileprivate var callbackError: (any Error)?
    fileprivate(set) var bytesWritten: UInt64 = 0
    private var closed = false

    init(compressor: any StreamCompressor) throws {
        guard let archive = archive_write_new(), let entry = archive_entry_new() else {
            throw ArchiveError.libarchive(operation: "archive_write_new", code: ARCHIVE_FATAL, message: "out of memory")
        }
        self.archive = archive
        self.entry = entry
        self.compressor = compressor
        buffer = .allocate(byteCount: 1 << 20, alignment: 16)
        try check(archive_write_set_format_pax_restricted(archive), "select the pax format")
        // SCHILY.xattr only: GNU tar warns about the LIBARCHIVE.xattr duplicates.
        try check(archive_write_set_format_option(archive, "pax", "xattrheader", "SCHILY"), "select SCHILY xattr records")
        try check(archive_write_set_bytes_per_block(archive, 10240), "set the block size")
        let opened = archive_write_open(archive, Unmanaged.passUnretained(self).toOpaque(), nil, { _, client, data, length in
            let writer = Unmanaged<TarWriter>.fromOpaque(client!).takeUnretainedValue()
            do {
                try writer.compressor.write(UnsafeRawBufferPointer(start: data, count: length))
                writer.bytesWritten += UInt64(length)
                return la_ssize_t(length)
            } catch {
                writer.callbackError = error
                return -1
            }
        }, nil)
        try check(opened, "open the tar writer")
    }

    deinit {
        if !closed { archive_write_close(archive) }
        archive_write_free(archive)
        archive_entry_free(entry)
        buffer.deallocate()
    }

    func writeHeader(_ record: EntryRecord, mtime: Int64, xattrs: [(String, [UInt8])]) throws {
        archive_entry_clear(entry)
        setPath(record.path.bytes, utf8: archive_entry_update_pathname_utf8, raw: archive_entry_copy_pathname)
        archive_entry_set_filetype(entry, TarFileType.bits(of: record.kind))
        archive_entry_set_perm(entry, record.mode)
        archive_entry_set_uid(entry, la_int64_t(record.uid))
        archive_entry_set_gid(entry, la_int64_t(record.gid))
        archive_entry_set_mtime(entry, time_t(mtime), 0)
        switch record.kind {
        case .file: archive_entry_set_size(entry, la_int64_t(record.size))
        case .symlink:
            setPath(record.linkTarget?.bytes ?? [], utf8: archive_entry_update_symlink_utf8, raw: archive_entry_copy_symlink)
        case .hardlink:
            setPath(record.linkTarget?.bytes ?? [], utf8: archive_entry_update_hardlink_utf8, raw: archive_entry_copy_hardlink)
        case .characterDevice, .blockDevice:
            archive_entry_set_rdevmajor(entry, dev_t(record.deviceMajor ?? 0))
            archive_entry_set_rdevminor(entry, dev_t(record.deviceMinor ?? 0))
        case .directory, .fifo: break
        }
        for (name, value) in xattrs {
            value.withUnsafeBytes { archive_entry_xattr_add_entry(entry, name, $0.baseAddress, $0.count) }
        }
        // libarchive reads errno after a name it cannot convert (one that is not UTF-8, which
        // pax then stores with hdrcharset=BINARY): a stale ENOMEM left by any earlier call on
        // this thread makes it fail with "Can't allocate memory for Pathname". Clear it.
        errno = 0
        try check(archive_write_header(archive, entry), "write the header of \(record.path)")
    }

    /// Streams a file's content into the archive and returns its SHA-256.
    func writeContent(of diskPath: [UInt8], size: UInt64, progress: (Int) -> Void) throws -> String {
        let display = PosixPath.display(diskPath)
        let fd = PosixPath.withCString(diskPath) { open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else { throw ArchiveError.system(operation: "open", path: display, errno: errno) }
        defer { Glibc.close(fd) }
        var hasher = SHA256()
        var remaining = size
        while remaining > 0 {
            let n = read(fd, buffer.baseAddress, Int(min(UInt64(buffer.count), remaining)))
            if n < 0 {
                if errno == EINTR { continue }
                throw ArchiveError.system(operation: "read", path: display, errno: errno)
            }
            if n == 0 { throw ArchiveError.system(operation: "read (the file shrank while packing)", path: display, errno: EIO) }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            hasher.update(bufferPointer: chunk)
            let written = archive_write_data(archive, chunk.baseAddress, n)
            if written != n { try check(Int32(ARCHIVE_FATAL), "write the content of \(display)") }
            remaining -= UInt64(n)
            progress(n)
        }
        return FileHasher.hex(hasher.finalize())
    }

    func close() throws {
        closed = true
        try check(archive_write_close(archive), "finish the tar stream")
    }

    private func setPath(
        _ bytes: [UInt8], utf8: (OpaquePointer?, UnsafePointer<CChar>?) -> Int32,
        raw: (OpaquePointer?, UnsafePointer<CChar>?) -> Void
    ) {
        // Valid UTF-8 is handed over as UTF-8 so the header does not depend on the locale;
        // other bytes are stored as they are (pax hdrcharset=BINARY).
        PosixPath.withCString(bytes) { cString in
            if String(validating: bytes, as: UTF8.self) != nil {
                _ = utf8(entry, cString)
            } else {
                raw(entry, cString)
            }
        }
    }

    private func check(_ status: Int32, _ operation: String) throws {
        if status == ARCHIVE_OK { return }
        if let callbackError { throw callbackError }
        let message = archive_error_string(archive).map { String(cString: $0) } ?? "unknown error"
        if status == ARCHIVE_WARN { return }
        throw ArchiveError.libarchive(operation: operation, code: status, message: message)
    }
}
