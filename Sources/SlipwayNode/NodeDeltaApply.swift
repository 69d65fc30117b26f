import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Applies a delta archive over a staged copy of its base: extracts it into a scratch
/// directory inside the staging tree (same file system, so entries move by rename), removes
/// the removals, then renames every entry into place. The extractor's safety holds for the
/// scratch directory; every move resolves its destination's parents without following
/// symlinks, so a hostile delta cannot reach outside the staging tree.
enum NodeDeltaApply {
    static let scratchName = ".slipway-delta-tmp"

    /// Applies `delta` to `staging`; returns the delta's metadata and the paths it wrote.
    static func apply(delta: String, staging: String, expect: (app: String, base: String, version: String, targetSHA256: String)) throws -> (meta: DeltaMetadata, touched: Set<ArchivePath>) {
        let scratch = staging + "/" + scratchName
        if NodeFiles.exists(scratch) { NodeFiles.removeTree(scratch) }
        _ = try ArchiveExtractor.extract(archive: delta, into: scratch)
        defer { NodeFiles.removeTree(scratch) }

        let metaPath = scratch + "/" + DeltaMetadata.entryName
        guard NodeFiles.exists(metaPath), let data = FileManager.default.contents(atPath: metaPath),
              let meta = try? JSONDecoder().decode(DeltaMetadata.self, from: data)
        else {
            throw NodeError.deltaInvalid(path: delta, detail: "it carries no readable \(DeltaMetadata.entryName); it is not a slipway delta")
        }
        unlink(metaPath)
        guard meta.name == expect.app, meta.to == expect.version else {
            throw NodeError.deltaInvalid(path: delta, detail: "it makes \(meta.name)@\(meta.to), not \(expect.app)@\(expect.version)")
        }
        guard meta.from == expect.base else {
            throw NodeError.deltaInvalid(path: delta, detail: "it is against \(meta.from), not the base \(expect.base) given")
        }
        guard meta.toArchiveSHA256 == expect.targetSHA256 else {
            throw NodeError.deltaInvalid(path: delta, detail: "it was made for another build of \(meta.name)@\(meta.to) (archive \(meta.toArchiveSHA256), manifest says \(expect.targetSHA256))")
        }

        guard meta.formatVersion <= 2 else {
            throw NodeError.deltaInvalid(path: delta, detail: "it has format \(meta.formatVersion); this slipway reads up to 2 (update slipway on the node)")
        }

        let rootFD = open(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard rootFD >= 0 else { throw NodeError.system(operation: "open", path: staging, errno: errno) }
        defer { close(rootFD) }

        // Patched files first, while the base's files are still in place.
        if let patched = meta.patched, !patched.isEmpty {
            let scratchFD = open(scratch, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard scratchFD >= 0 else { throw NodeError.system(operation: "open", path: scratch, errno: errno) }
            defer { close(scratchFD) }
            for path in patched {
                try unpatch(path, scratchFD: scratchFD, rootFD: rootFD, staging: staging, delta: delta)
            }
        }

        // Removals deepest first (a removed directory's entries are listed too).
        for path in meta.removals.sorted(by: >) {
            let (parent, name) = try openParent(rootFD: rootFD, path: path, staging: staging, delta: delta)
            defer { close(parent) }
            PosixPath.removeTree(parentFD: parent, name: name)
        }

        let entries = try TreeWalker.records(root: scratch, hashing: false)
        let touched = Set(entries.map(\.path))
        for entry in entries {
            let source = Array(scratch.utf8) + [UInt8(ascii: "/")] + entry.path.bytes
            var sourceStat = stat()
            // Gone already: it moved along with its directory.
            guard PosixPath.withCString(source, { lstat($0, &sourceStat) }) == 0 else { continue }
            let (parent, name) = try openParent(rootFD: rootFD, path: entry.path, staging: staging, delta: delta)
            defer { close(parent) }
            var targetStat = stat()
            let exists = PosixPath.withCString(name) { fstatat(parent, $0, &targetStat, AT_SYMLINK_NOFOLLOW) } == 0
            let targetIsDirectory = exists && targetStat.st_mode & S_IFMT == S_IFDIR
            let display = staging + "/" + entry.path.description
            if entry.kind == .directory && targetIsDirectory {
                // The directory stays (it holds the base's entries); only its attributes change.
                try PosixPath.withCString(name) { cName in
                    if fchownat(parent, cName, sourceStat.st_uid, sourceStat.st_gid, AT_SYMLINK_NOFOLLOW) != 0 && geteuid() == 0 {
                        throw NodeError.system(operation: "chown", path: display, errno: errno)
                    }
                    if fchmodat(parent, cName, sourceStat.st_mode & 0o7777, 0) != 0 {
                        throw NodeError.system(operation: "chmod", path: display, errno: errno)
                    }
                }
                continue
            }
            if exists && (targetIsDirectory || entry.kind == .directory) {
                PosixPath.removeTree(parentFD: parent, name: name)
            }
            let moved = PosixPath.withCString(source) { s in PosixPath.withCString(name) { renameat(AT_FDCWD, s, parent, $0) } }
            guard moved == 0 else { throw NodeError.system(operation: "move the delta's entry into", path: display, errno: errno) }
        }
        return (meta, touched)
    }

    /// Replaces the patch the delta carries at `path` (in the scratch tree) by the file it
    /// encodes, decoded against the base's file at the same path; the entry keeps the mode,
    /// owner and mtime the delta gave it. Neither side is reached through a symlink.
    private static func unpatch(_ path: ArchivePath, scratchFD: Int32, rootFD: Int32, staging: String, delta: String) throws {
        func openFile(_ rootFD: Int32, flags: Int32, label: String) throws -> (fd: Int32, info: stat) {
            let (parent, name) = try openParent(rootFD: rootFD, path: path, staging: staging, delta: delta)
            defer { close(parent) }
            // The type is checked before the open: opening a device node (a hostile delta's
            // entry) or a FIFO (which blocks) must not happen, even to refuse it afterwards.
            var before = stat()
            guard PosixPath.withCString(name, { fstatat(parent, $0, &before, AT_SYMLINK_NOFOLLOW) }) == 0,
                  before.st_mode & S_IFMT == S_IFREG else {
                throw NodeError.deltaInvalid(path: delta, detail: "\(path) is patched, but \(label) is not a regular file")
            }
            let fd = PosixPath.withCString(name) { openat(parent, $0, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
            var info = stat()
            guard fd >= 0, fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
                if fd >= 0 { close(fd) }
                throw NodeError.deltaInvalid(path: delta, detail: "\(path) is patched, but \(label) is not a regular file")
            }
            return (fd, info)
        }
        func readAll(_ fd: Int32, _ label: String) throws -> Data {
            try readFully(fd).mapError { NodeError.system(operation: "read", path: label, errno: $0.code) }.get()
        }
        let base = try openFile(rootFD, flags: O_RDONLY, label: "the base's \(staging)/\(path)")
        defer { close(base.fd) }
        let prefix = try readAll(base.fd, staging + "/" + path.description)
        let carried = try openFile(scratchFD, flags: O_RDWR, label: "the delta's entry")
        defer { close(carried.fd) }
        let patch = try readAll(carried.fd, "the delta's \(path)")
        let content: Data
        do {
            content = try ZstdData.decompress(patch, source: path.description, limit: ReleaseDelta.patchLimit, prefix: prefix)
        } catch {
            throw NodeError.deltaInvalid(path: delta, detail: "the patch of \(path) does not apply to the base's file (\(Output.message(for: error)))")
        }
        let display = staging + "/" + path.description
        guard ftruncate(carried.fd, 0) == 0, lseek(carried.fd, 0, SEEK_SET) == 0 else {
            throw NodeError.system(operation: "rewrite", path: display, errno: errno)
        }
        try writeAll(carried.fd, content, path: display)
        var times = [carried.info.st_atim, carried.info.st_mtim]
        guard futimens(carried.fd, &times) == 0 else { throw NodeError.system(operation: "set the times of", path: display, errno: errno) }
    }

    /// Opens the parent directory of `path` inside the tree, refusing symlinks and `..` on
    /// the way; returns it with the last component.
    private static func openParent(rootFD: Int32, path: ArchivePath, staging: String, delta: String) throws -> (Int32, [UInt8]) {
        let components = path.components.map(Array.init)
        guard let name = components.last, !components.contains(where: { $0.isEmpty || $0 == [0x2E] || $0 == [0x2E, 0x2E] }) else {
            throw NodeError.deltaInvalid(path: delta, detail: "it names the path '\(path)', which is not a plain relative path")
        }
        var fd = PosixPath.duplicate(rootFD)
        for component in components.dropLast() {
            let next = PosixPath.withCString(component) { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            let code = errno
            close(fd)
            guard next >= 0 else {
                throw NodeError.deltaInvalid(path: delta, detail: "\(staging)/\(path): a parent is missing or is not a directory (\(String(cString: strerror(code)))); the base does not match the delta")
            }
            fd = next
        }
        return (fd, name)
    }
}
