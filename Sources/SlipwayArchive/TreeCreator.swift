import CArchive
import Glibc
import SlipwaySystem

/// Creates a tree inside an open target directory, entry by entry, only through `*at`
/// calls with `O_NOFOLLOW`, so nothing can be written through a symlink, and with the
/// archive's own structure checked first: every parent must be a directory of this archive
/// (or created for it), every path new, every hardlink aimed at an earlier file, device or
/// fifo (never a directory or a symlink).
final class TreeCreator {
    private enum Seen { case implicitDirectory, directory, symlink, other }

    private struct DeferredDirectory {
        var path: [UInt8]
        var header: TarHeader
    }

    private let rootFD: Int32
    private let restoreOwners: Bool
    private var seen: [[UInt8]: Seen] = [:]
    private var directories: [DeferredDirectory] = []
    private var openDirectories: [[UInt8]: Int32] = [:]
    private var lastParent: (path: [UInt8], fd: Int32)?
    private let writer: ParallelFileWriter?

    /// `writers` > 0: files up to `ParallelFileWriter.largestQueuedFile` are created by that
    /// many worker threads.
    init(rootFD: Int32, restoreOwners: Bool, writers: Int = 0) {
        self.rootFD = rootFD
        self.restoreOwners = restoreOwners
        writer = writers > 0 ? ParallelFileWriter(workers: writers, restoreOwners: restoreOwners) : nil
    }

    deinit {
        writer?.stop()
        closeDirectories()
    }

    /// Waits for the files being written and ends the workers, so that nothing more is
    /// created in the tree; before a failed extraction's tree is removed.
    func abandon() {
        writer?.stop()
    }

    /// Creates the entry of `header`; `content` streams a regular file's bytes.
    func create(_ header: TarHeader, content: ((UnsafeRawBufferPointer, Int64) throws -> Void) throws -> Void) throws {
        if header.isRoot {
            guard seen[[]] == nil else { throw ArchiveError.refused(entry: header.storedName, reason: "a duplicate root entry") }
            seen[[]] = .directory
            directories.append(DeferredDirectory(path: [], header: header))
            return
        }
        let slash = header.path.lastIndex(of: UInt8(ascii: "/"))
        let parentPath = slash.map { Array(header.path[..<$0]) } ?? []
        let name = slash.map { Array(header.path[($0 + 1)...]) } ?? header.path
        let previous = seen[header.path]
        if let previous, !(previous == .implicitDirectory && header.kind == .directory) {
            throw ArchiveError.refused(entry: header.storedName, reason: "a duplicate of an earlier entry")
        }
        let parentFD = try parent(parentPath, of: header)
        try PosixPath.withCString(name) { cName in
            switch header.kind {
            case .directory:
                if previous == nil { try call(mkdirat(parentFD, cName, 0o700), "mkdir", header) }
                seen[header.path] = .directory
                directories.append(DeferredDirectory(path: header.path, header: header))
                return
            case .file:
                if let writer, header.size <= ParallelFileWriter.largestQueuedFile {
                    try queue(header, name: name, parentFD: parentFD, writer: writer, content: content)
                    break
                }
                try EntryMetadata.createFile(parentFD: parentFD, name: cName, header, restoreOwners: restoreOwners, fill: content)
            case .symlink:
                try PosixPath.withCString(header.linkTarget ?? []) { target in
                    try call(symlinkat(target, parentFD, cName), "symlink", header)
                }
                try applyMetadata(parentFD: parentFD, name: cName, header)
                seen[header.path] = .symlink
                return
            case .hardlink:
                let target = header.linkTarget ?? []
                switch seen[target] {
                case .other: break
                case .symlink:
                    // linkat would link the symlink itself; the writer stores such links as
                    // symlinks of their own, so only a hand-made archive has one.
                    throw ArchiveError.refused(
                        entry: header.storedName,
                        reason: "a hardlink to \(PosixPath.display(target)), which is a symlink (a hardlink must point at a file, device or fifo)")
                default:
                    throw ArchiveError.refused(
                        entry: header.storedName,
                        reason: "a hardlink to \(PosixPath.display(target)), which is not an earlier file of this archive")
                }
                // The target may still be queued: every queued file exists after this.
                try writer?.drain()
                let targetSlash = target.lastIndex(of: UInt8(ascii: "/"))
                let targetParent = try directoryFD(targetSlash.map { Array(target[..<$0]) } ?? [], for: header)
                let targetName = targetSlash.map { Array(target[($0 + 1)...]) } ?? target
                try PosixPath.withCString(targetName) { cTarget in
                    try call(linkat(targetParent, cTarget, parentFD, cName, 0), "link", header)
                }
            case .characterDevice, .blockDevice, .fifo:
                let type = TarFileType.bits(of: header.kind)
                let device = DeviceNumber.make(major: header.deviceMajor, minor: header.deviceMinor)
                try call(mknodat(parentFD, cName, mode_t(type | 0o600), dev_t(device)), "mknod", header)
                try applyMetadata(parentFD: parentFD, name: cName, header)
            }
            seen[header.path] = .other
        }
    }

    /// Sets the directories' owners, modes, xattrs and times, deepest first, once every
    /// entry exists (a read-only directory must not block its own children).
    func finish() throws {
        try writer?.drain()
        writer?.stop()
        for directory in directories.reversed() {
            let fd = try directoryFD(directory.path, for: directory.header)
            try EntryMetadata.apply(fd: fd, directory.header, restoreOwners: restoreOwners)
        }
        closeDirectories()
    }

    // MARK: - Parents

    /// The parent directory of an entry, checked against the archive and created if the
    /// archive did not list it.
    private func parent(_ path: [UInt8], of header: TarHeader) throws -> Int32 {
        if let lastParent, lastParent.path == path { return lastParent.fd }
        var prefix: [UInt8] = []
        for component in path.split(separator: UInt8(ascii: "/")) {
            let parentFD = try directoryFD(prefix, for: header)
            prefix = PosixPath.join(prefix, Array(component))
            switch seen[prefix] {
            case .directory, .implicitDirectory: continue
            case .other, .symlink:
                throw ArchiveError.refused(
                    entry: header.storedName,
                    reason: "it would be written through \(PosixPath.display(prefix)), which is not a directory of this archive (a symlink or a file)")
            case nil:
                try PosixPath.withCString(Array(component)) { try call(mkdirat(parentFD, $0, 0o755), "mkdir", header) }
                seen[prefix] = .implicitDirectory
            }
        }
        let fd = try directoryFD(path, for: header)
        lastParent = (path, fd)
        return fd
    }

    /// An open descriptor of a directory of the tree, opened component by component without
    /// following symlinks.
    private func directoryFD(_ path: [UInt8], for header: TarHeader) throws -> Int32 {
        if path.isEmpty { return rootFD }
        if let fd = openDirectories[path] { return fd }
        let slash = path.lastIndex(of: UInt8(ascii: "/"))
        let parentFD = try directoryFD(slash.map { Array(path[..<$0]) } ?? [], for: header)
        let name = slash.map { Array(path[($0 + 1)...]) } ?? path
        let fd = PosixPath.withCString(name) { openat(parentFD, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        if fd < 0 {
            throw ArchiveError.refused(
                entry: header.storedName,
                reason: "its directory \(PosixPath.display(path)) cannot be opened without following a symlink (\(String(cString: strerror(errno))))")
        }
        if openDirectories.count >= 256 { closeDirectories() }
        openDirectories[path] = fd
        return fd
    }

    private func closeDirectories() {
        for fd in openDirectories.values { close(fd) }
        openDirectories.removeAll(keepingCapacity: true)
        lastParent = nil
    }

    // MARK: - Metadata

    /// The same for entries that cannot be opened (symlinks, devices, fifos).
    private func applyMetadata(parentFD: Int32, name: UnsafePointer<CChar>, _ header: TarHeader) throws {
        if restoreOwners { try call(fchownat(parentFD, name, header.uid, header.gid, AT_SYMLINK_NOFOLLOW), "chown", header) }
        if header.kind != .symlink { try call(fchmodat(parentFD, name, mode_t(header.mode), 0), "chmod", header) }
        if !header.xattrs.isEmpty {
            // lsetxattr through the parent's /proc link: no fd can be opened on these kinds.
            let path = "/proc/self/fd/\(parentFD)/" + String(cString: name)
            for (xName, value) in header.xattrs {
                let status = value.withUnsafeBytes { lsetxattr(path, xName, $0.baseAddress, $0.count, 0) }
                try call(status, "set xattr \(xName) on", header)
            }
        }
        try call(utimensat(parentFD, name, EntryMetadata.times(header), AT_SYMLINK_NOFOLLOW), "set times of", header)
    }

    private func call(_ status: Int32, _ operation: String, _ header: TarHeader) throws {
        try EntryMetadata.check(status, operation, header)
    }

    // MARK: - Queued files

    /// Collects a small file's bytes (hashed by `content`'s caller as they pass) and hands
    /// them to the workers with a descriptor of the parent of their own.
    private func queue(_ header: TarHeader, name: [UInt8], parentFD: Int32, writer: ParallelFileWriter,
                       content: ((UnsafeRawBufferPointer, Int64) throws -> Void) throws -> Void) throws {
        var data: [UInt8] = []
        data.reserveCapacity(Int(header.size))
        var segments: [ParallelFileWriter.Segment] = []
        try content { chunk, offset in
            guard offset >= 0, UInt64(offset) + UInt64(chunk.count) <= header.size, UInt64(data.count + chunk.count) <= header.size else {
                throw ArchiveError.refused(entry: header.storedName, reason: "its content runs past its size")
            }
            segments.append(.init(offset: offset, start: data.count, count: chunk.count))
            data.append(contentsOf: chunk)
        }
        let fd = fcntl(parentFD, F_DUPFD_CLOEXEC, 0)
        try call(fd, "open the directory of", header)
        try writer.submit(.init(parentFD: fd, name: name, header: header, data: data, segments: segments))
    }
}
