import Foundation
import Glibc

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

        let rootFD = open(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard rootFD >= 0 else { throw NodeError.system(operation: "open", path: staging, errno: errno) }
        defer { close(rootFD) }

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

    /// Opens the parent directory of `path` inside the tree, refusing symlinks and `..` on
    /// the way; returns it with the last component.
    private static func openParent(rootFD: Int32, path: ArchivePath, staging: String, delta: String) throws -> (Int32, [UInt8]) {
        let components = path.components.map(Array.init)
        guard let name = components.last, !components.contains(where: { $0.isEmpty || $0 == [0x2E] || $0 == [0x2E, 0x2E] }) else {
            throw NodeError.deltaInvalid(path: delta, detail: "it names the path '\(path)', which is not a plain relative path")
        }
        var fd = dup(rootFD)
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
