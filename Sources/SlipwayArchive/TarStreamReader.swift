import CArchive
import Glibc
import SlipwaySystem

/// One tar header, its path already checked and normalized.
struct TarHeader {
    /// Normalized relative path: no `./`, no empty or `.` components; empty for the root.
    var path: [UInt8]
    /// The name exactly as stored, for messages.
    var storedName: String
    var kind: EntryRecord.Kind
    var mode: UInt32
    var uid: UInt32
    var gid: UInt32
    var size: UInt64
    var mtime: Int64
    var mtimeNanoseconds: Int
    /// Symlink target as stored, or the normalized path a hardlink points to.
    var linkTarget: [UInt8]?
    var xattrs: [(name: String, value: [UInt8])]
    var deviceMajor: UInt32
    var deviceMinor: UInt32

    var isRoot: Bool { path.isEmpty }
}

/// Reads a tar, tar.xz or tar.zst archive entry by entry: decompression is ours (xz on
/// several threads), tar parsing is libarchive's. Refuses absolute and `..` paths, unknown
/// entry types, corrupt or truncated streams, and anything but zero padding after the end
/// of the archive.
final class TarStreamReader {
    let input: ArchiveInputFile
    private let decompressor: any StreamDecompressor
    private let archive: OpaquePointer
    private var callbackError: (any Error)?
    /// Bytes of the tar stream handed to libarchive so far.
    private(set) var tarBytes: UInt64 = 0
    /// The last two chunks handed out, with their offsets in the tar stream.
    private var recent: [(start: UInt64, chunk: UnsafeRawBufferPointer)] = []
    /// A copy of the (up to 512) bytes of the tar stream just before the latest chunk: with
    /// that chunk they hold the header block libarchive has just consumed, whatever the
    /// chunk sizes.
    private var beforeLatest: [UInt8] = []

    init(path: String, threads: Int, progress: (any ArchiveProgress)?) throws {
        input = try ArchiveInputFile(path: path, progress: progress)
        switch ArchiveCompression.detect(magic: try input.magic()) {
        case .xz: decompressor = try XZDecompressor(threads: threads, input: input)
        case .zstd: decompressor = try ZstdDecompressor(input: input)
        case .none: decompressor = PassthroughDecompressor(input: input)
        }
        guard let archive = archive_read_new() else {
            throw ArchiveError.libarchive(operation: "archive_read_new", code: ARCHIVE_FATAL, message: "out of memory")
        }
        self.archive = archive
        archive_read_support_format_tar(archive)
        let opened = archive_read_open(archive, Unmanaged.passUnretained(self).toOpaque(), nil, { _, client, out in
            let reader = Unmanaged<TarStreamReader>.fromOpaque(client!).takeUnretainedValue()
            do {
                guard let chunk = try reader.decompressor.next() else { return 0 }
                // The previous chunk is still valid until the next call (two buffers).
                if let latest = reader.recent.last { reader.keepTail(of: latest.chunk) }
                reader.recent.append((reader.tarBytes, chunk))
                if reader.recent.count > 2 { reader.recent.removeFirst() }
                reader.tarBytes += UInt64(chunk.count)
                out!.pointee = chunk.baseAddress
                return la_ssize_t(chunk.count)
            } catch {
                reader.callbackError = error
                return -1
            }
        }, nil)
        try check(opened, "open \(path)")
    }

    deinit { archive_read_free(archive) }

    /// The next header, or nil at the end of the archive (after checking what follows it).
    func nextHeader() throws -> TarHeader? {
        var entryPointer: OpaquePointer?
        // As when writing (ArchiveWriter): libarchive reads errno after a name it cannot
        // convert, and a stale ENOMEM would turn a non-UTF-8 name into a fatal error.
        errno = 0
        let status = archive_read_next_header(archive, &entryPointer)
        if status == ARCHIVE_EOF {
            try checkEnd()
            return nil
        }
        try check(status, "read the next header of \(input.path)")
        guard let entry = entryPointer else { return nil }
        return try header(of: entry)
    }

    /// Streams the current entry's content: `body(chunk, offset)`; offsets jump over holes.
    func readContent(_ body: (UnsafeRawBufferPointer, Int64) throws -> Void) throws {
        var block: UnsafeRawPointer?
        var size = 0
        var offset: la_int64_t = 0
        while true {
            let status = archive_read_data_block(archive, &block, &size, &offset)
            if status == ARCHIVE_EOF { return }
            try check(status, "read entry content of \(input.path)")
            if size > 0 { try body(UnsafeRawBufferPointer(start: block, count: size), offset) }
        }
    }

    private func header(of entry: OpaquePointer) throws -> TarHeader {
        let name = Self.bytes(utf8: archive_entry_pathname_utf8(entry), raw: archive_entry_pathname(entry)) ?? []
        let storedName = PosixPath.display(name)
        let path = try Self.normalize(name, entryName: storedName)
        var kind: EntryRecord.Kind
        var linkTarget: [UInt8]?
        if let hardlink = Self.bytes(utf8: archive_entry_hardlink_utf8(entry), raw: archive_entry_hardlink(entry)) {
            kind = .hardlink
            linkTarget = try Self.normalize(hardlink, entryName: storedName)
            if linkTarget!.isEmpty { throw ArchiveError.refused(entry: storedName, reason: "a hardlink to the root directory") }
        } else {
            switch archive_entry_filetype(entry) & TarFileType.mask {
            case TarFileType.regular: kind = .file
            case TarFileType.directory: kind = .directory
            case TarFileType.symlink:
                kind = .symlink
                linkTarget = Self.bytes(utf8: archive_entry_symlink_utf8(entry), raw: archive_entry_symlink(entry)) ?? []
            case TarFileType.character: kind = .characterDevice
            case TarFileType.block: kind = .blockDevice
            case TarFileType.fifo: kind = .fifo
            default: throw ArchiveError.refused(entry: storedName, reason: "an entry type that is not supported")
            }
        }
        // libarchive reads an unknown typeflag as a regular file (POSIX says so); the
        // header block itself says what the entry really is. A sparse entry's last block may
        // be its sparse map instead: its type ('0' or 'S') made libarchive read that map.
        if archive_entry_sparse_count(entry) == 0 {
            try checkTypeflag(entry: storedName)
        }
        if path.isEmpty, kind != .directory {
            throw ArchiveError.refused(entry: storedName, reason: "the archive root is not a directory")
        }
        var xattrs: [(String, [UInt8])] = []
        if archive_entry_xattr_reset(entry) > 0 {
            var xName: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while archive_entry_xattr_next(entry, &xName, &value, &size) == ARCHIVE_OK, let xName {
                xattrs.append((String(cString: xName), Array(UnsafeRawBufferPointer(start: value, count: size))))
            }
        }
        let uid = archive_entry_uid(entry), gid = archive_entry_gid(entry)
        guard (0...Int64(UInt32.max - 1)).contains(uid), (0...Int64(UInt32.max - 1)).contains(gid) else {
            throw ArchiveError.refused(entry: storedName, reason: "an owner id out of range")
        }
        return TarHeader(
            path: path, storedName: storedName, kind: kind, mode: UInt32(archive_entry_perm(entry)) & 0o7777,
            uid: UInt32(uid), gid: UInt32(gid),
            size: kind == .file ? UInt64(max(0, archive_entry_size(entry))) : 0,
            mtime: Int64(archive_entry_mtime(entry)), mtimeNanoseconds: Int(archive_entry_mtime_nsec(entry)),
            linkTarget: linkTarget, xattrs: xattrs,
            deviceMajor: UInt32(truncatingIfNeeded: archive_entry_rdevmajor(entry)),
            deviceMinor: UInt32(truncatingIfNeeded: archive_entry_rdevminor(entry)))
    }

    /// Typeflags of the entry kinds slipway restores: regular files ('0', NUL for old tars,
    /// '7' contiguous, 'S' GNU sparse), hardlinks '1', symlinks '2', devices '3' and '4',
    /// directories '5', fifos '6'.
    static let knownTypeflags: Set<UInt8> = Set(Array("01234567S".utf8) + [0])

    /// Refuses the current entry unless the header block libarchive has just consumed (the
    /// last 512 bytes before the current position: pax and GNU long-name headers come
    /// before it) carries a known typeflag.
    private func checkTypeflag(entry: String) throws {
        guard let block = consumedBlock(), Self.isHeader(block) else {
            throw ArchiveError.refused(entry: entry, reason: "its tar header could not be found to check its type")
        }
        let typeflag = block[156]
        guard Self.knownTypeflags.contains(typeflag) else {
            let shown = (0x21...0x7E).contains(typeflag) ? "'\(Character(Unicode.Scalar(typeflag)))'" : "byte \(typeflag)"
            throw ArchiveError.refused(entry: entry, reason: "an unknown entry type (typeflag \(shown))")
        }
    }

    /// The 512 bytes of the tar stream that end at libarchive's current position.
    private func consumedBlock() -> [UInt8]? {
        guard let latest = recent.last else { return nil }
        let position = UInt64(max(0, archive_filter_bytes(archive, 0)))
        let before = UInt64(beforeLatest.count)
        guard position >= 512, position - 512 + before >= latest.start,
              position <= latest.start + UInt64(latest.chunk.count) else { return nil }
        var block: [UInt8] = []
        block.reserveCapacity(512)
        let from = position - 512
        if from < latest.start { block += beforeLatest[(beforeLatest.count - Int(latest.start - from))...] }
        let chunkFrom = Int(from > latest.start ? from - latest.start : 0)
        block += latest.chunk[chunkFrom..<Int(position - latest.start)]
        return block.count == 512 ? block : nil
    }

    /// Keeps the last bytes before the chunk that comes next (`chunk` is the latest one).
    private func keepTail(of chunk: UnsafeRawBufferPointer) {
        if chunk.count >= 512 {
            beforeLatest = Array(chunk[(chunk.count - 512)...])
        } else {
            beforeLatest = Array((beforeLatest + Array(chunk)).suffix(512))
        }
    }

    /// Whether `block` is a tar header: its checksum field matches its bytes (the checksum
    /// field itself counted as spaces; unsigned, or signed as some old tars computed it).
    static func isHeader(_ block: [UInt8]) -> Bool {
        let field = block[148..<156].filter { $0 != 0x20 && $0 != 0 }
        guard !field.isEmpty, field.allSatisfy({ (0x30...0x37).contains($0) }),
              let stored = Int(String(decoding: field, as: UTF8.self), radix: 8) else { return false }
        var unsigned = 0, signed = 0
        for (index, byte) in block.enumerated() {
            let value = (148..<156).contains(index) ? 0x20 : byte
            unsigned += Int(value)
            signed += Int(Int8(bitPattern: value))
        }
        return stored == unsigned || stored == signed
    }

    /// After the end-of-archive marker only zero padding may follow, up to the end of the
    /// stream (whose own end the decompressors check).
    private func checkEnd() throws {
        let consumed = UInt64(max(0, archive_filter_bytes(archive, 0)))
        for (start, chunk) in recent where start + UInt64(chunk.count) > consumed {
            let from = Int(consumed > start ? consumed - start : 0)
            if chunk[from...].contains(where: { $0 != 0 }) { throw ArchiveError.trailingGarbage(archive: input.path) }
        }
        while let chunk = try decompressor.next() {
            tarBytes += UInt64(chunk.count)
            if chunk.contains(where: { $0 != 0 }) { throw ArchiveError.trailingGarbage(archive: input.path) }
        }
    }

    private func check(_ status: Int32, _ operation: String) throws {
        if status == ARCHIVE_OK || status == ARCHIVE_WARN { return }
        if let callbackError { throw callbackError }
        let message = archive_error_string(archive).map { String(cString: $0) } ?? "unknown error"
        if message.lowercased().contains("truncated") { throw ArchiveError.truncated(archive: input.path) }
        throw ArchiveError.libarchive(operation: operation, code: status, message: message)
    }

    /// Prefers the UTF-8 form (locale-independent), else the raw bytes.
    private static func bytes(utf8: UnsafePointer<CChar>?, raw: UnsafePointer<CChar>?) -> [UInt8]? {
        if let utf8 { return PosixPath.bytes(utf8) }
        if let raw { return PosixPath.bytes(raw) }
        return nil
    }

    /// Checks a stored path and returns its normalized form (empty for the root).
    static func normalize(_ name: [UInt8], entryName: String) throws -> [UInt8] {
        if name.first == UInt8(ascii: "/") {
            throw ArchiveError.refused(entry: entryName, reason: "an absolute path")
        }
        var parts: [ArraySlice<UInt8>] = []
        for part in name.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if part.elementsEqual([0x2E]) { continue }
            if part.elementsEqual([0x2E, 0x2E]) {
                throw ArchiveError.refused(entry: entryName, reason: "a '..' path component")
            }
            parts.append(part)
        }
        return Array(parts.joined(separator: [UInt8(ascii: "/")]))
    }
}
