import Foundation
import Glibc
import SlipwayArchive
import SlipwaySystem

/// What a delta archive carries besides its entries: which release it turns into which, and
/// the paths to remove. Stored as `.slipway-delta.json` at the root of the delta archive (so
/// one file travels to the node) and as `deltas/<from>.json` beside it in the store.
public struct DeltaMetadata: Codable, Sendable, Equatable {
    /// The name of the metadata entry inside a delta archive.
    public static let entryName = ".slipway-delta.json"

    public var formatVersion: Int = 1
    public var name: String
    public var from: String
    public var to: String
    /// The full archives of the two releases, so a node can tell the delta belongs to them.
    public var fromArchiveSHA256: String
    public var toArchiveSHA256: String
    /// Paths in `from` that are not in `to`, sorted.
    public var removals: [ArchivePath]
    /// Entries added or changed from `from` to `to`, and the entries carried along for them
    /// (parent directories, hardlink partners).
    public var entries: Int
    /// Changed files carried as a zstd patch against the same path's file in `from` (its
    /// bytes as the patch's prefix) instead of their content; sorted. Format 2.
    public var patched: [ArchivePath]? = nil
    /// The delta archive file, once packed (absent inside the archive itself).
    public var archiveSHA256: String?
    public var archiveSize: UInt64?
}

/// Deltas between two releases of the store (docs/archive-format.md "Store layout"):
/// `store/<app>/<B>/deltas/<A>.tar.xz` (`.tar.zst` when B is a zstd release) holds the
/// entries of B that are new or changed against A (with their parent directories and
/// hardlink partners, so the archive is a tree of its own) plus `.slipway-delta.json`;
/// `deltas/<A>.json` is the same metadata with the archive's hash. Made once, then served
/// from the cache.
public enum ReleaseDelta {
    /// A delta is compressed like its release: zstd for a zstd release (whose owner chose
    /// unpacking speed: xz decoding was a third of a delta apply's CPU on a 2 GB tree, for a
    /// delta 3.5 % smaller), xz otherwise.
    public static func compression(forRelease release: ArchiveCompression) -> ArchiveCompression {
        release == .zstd ? .zstd : .xz
    }

    /// The cached delta archive from `from` to `to`, compressed with `compression`.
    public static func archivePath(store: ReleaseStore, name: String, from: String, to: String,
                                   compression: ArchiveCompression = .xz) -> String {
        store.releaseDirectory(ReleaseReference(name: name, version: to)) + "/deltas/\(from).\(compression.fileExtension)"
    }

    /// The cached delta's metadata file.
    public static func metadataPath(store: ReleaseStore, name: String, from: String, to: String) -> String {
        store.releaseDirectory(ReleaseReference(name: name, version: to)) + "/deltas/\(from).json"
    }

    /// How a delta's metadata is written, inside the delta and in the cache.
    static var metadataEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// The cached delta from `old` to `new`, when the cache holds one made from these very
    /// archives (its metadata, written last, marks a complete entry).
    public static func cached(store: ReleaseStore, from old: StoredRelease, to new: StoredRelease) -> Made? {
        let (name, from, to) = (new.reference.name, old.reference.version, new.reference.version)
        let archive = archivePath(store: store, name: name, from: from, to: to, compression: compression(forRelease: new.manifest.compression))
        let metaPath = metadataPath(store: store, name: name, from: from, to: to)
        guard access(archive, F_OK) == 0, let data = FileManager.default.contents(atPath: metaPath),
              let meta = try? JSONDecoder().decode(DeltaMetadata.self, from: data),
              meta.toArchiveSHA256 == new.manifest.archive.sha256, meta.fromArchiveSHA256 == old.manifest.archive.sha256
        else { return nil }
        return Made(archivePath: archive, metadataPath: metaPath, metadata: meta, cached: true)
    }

    /// Puts a delta archive made elsewhere (a registry's) to `new` (the store's release
    /// `metadata.to`) into the cache: the archive by rename, then its metadata, last.
    public static func adopt(archive path: String, metadata: DeltaMetadata, to new: StoredRelease, store: ReleaseStore) throws {
        let name = metadata.name, from = metadata.from, to = metadata.to
        let archive = archivePath(store: store, name: name, from: from, to: to, compression: compression(forRelease: new.manifest.compression))
        guard rename(path, archive) == 0 else { throw ReleaseError.system(operation: "rename \(path) to", path: archive, errno: errno) }
        try writeFileAtomically(metadataPath(store: store, name: name, from: from, to: to), try metadataEncoder.encode(metadata) + Data("\n".utf8))
    }

    /// What `make` produced.
    public struct Made: Sendable {
        public var archivePath: String
        public var metadataPath: String
        public var metadata: DeltaMetadata
        /// Whether it came from the cache.
        public var cached: Bool
    }

    /// The delta from `from` to `to`, made and cached on first use.
    public static func make(store: ReleaseStore, from: ReleaseReference, to: ReleaseReference,
                            configuration: ArchiveWriterConfiguration = .init()) throws -> Made {
        guard from.name == to.name else {
            throw ReleaseError.invalidReference("\(from) → \(to)", reason: "a delta joins two versions of the same app")
        }
        guard from.version != to.version else {
            throw ReleaseError.invalidReference("\(from) → \(to)", reason: "a delta needs two different versions")
        }
        let old = try store.release(from)
        let new = try store.release(to)
        if let made = cached(store: store, from: old, to: new) { return made }
        let compression = compression(forRelease: new.manifest.compression)
        let archive = archivePath(store: store, name: to.name, from: from.version, to: to.version, compression: compression)
        let metaPath = metadataPath(store: store, name: to.name, from: from.version, to: to.version)
        // The new tree is unpacked once, next to the cache, and the delta's tree is made of
        // hardlinks into it: no content is copied.
        let deltas = new.directory + "/deltas"
        if mkdir(deltas, 0o755) != 0 && errno != EEXIST {
            throw ReleaseError.system(operation: "create directory", path: deltas, errno: errno)
        }
        let work = deltas + "/.tmp-\(from.version)-" + String(format: "%08x", UInt32.random(in: .min ... .max))
        guard mkdir(work, 0o700) == 0 else { throw ReleaseError.system(operation: "create directory", path: work, errno: errno) }
        InterruptedWork.register(work)
        defer {
            try? FileManager.default.removeItem(atPath: work)
            InterruptedWork.unregister(work)
        }
        let full = work + "/full"
        let subset = work + "/subset"
        _ = try ArchiveExtractor.extract(archive: new.archivePath, into: full)
        let (paths, removals) = entriesToShip(old: old.manifest.entries, new: new.manifest.entries)
        if paths.contains(ArchivePath(DeltaMetadata.entryName)) {
            throw ReleaseError.invalidReference(to.description, reason: "the release holds \(DeltaMetadata.entryName), the name a delta reserves")
        }
        try buildSubset(full: full, subset: subset, paths: paths)
        let patched = try patchChangedFiles(old: old, new: new.manifest.entries, subset: subset, work: work)
        var meta = DeltaMetadata(name: to.name, from: from.version, to: to.version,
                                 fromArchiveSHA256: old.manifest.archive.sha256, toArchiveSHA256: new.manifest.archive.sha256,
                                 removals: removals, entries: paths.count)
        if !patched.isEmpty {
            meta.formatVersion = 2
            meta.patched = patched
        }
        let encoder = metadataEncoder
        let inner = subset + "/" + DeltaMetadata.entryName
        guard FileManager.default.createFile(atPath: inner, contents: try encoder.encode(meta), attributes: [.posixPermissions: 0o644]) else {
            throw ReleaseError.system(operation: "write", path: inner, errno: errno)
        }
        let packedPath = work + "/delta." + compression.fileExtension
        var config = configuration
        config.compression = compression
        let packed = try ArchiveWriter.pack(tree: subset, to: packedPath, configuration: config)
        meta.archiveSHA256 = packed.archiveSHA256
        meta.archiveSize = packed.archiveSize
        // The archive first, its metadata last: the metadata's presence marks a complete cache entry.
        guard rename(packedPath, archive) == 0 else { throw ReleaseError.system(operation: "rename \(packedPath) to", path: archive, errno: errno) }
        // A delta of the other compression (an older slipway's) no longer has its metadata.
        for other in [ArchiveCompression.xz, .zstd] where other != compression {
            unlink(archivePath(store: store, name: to.name, from: from.version, to: to.version, compression: other))
        }
        try writeFileAtomically(metaPath, try encoder.encode(meta) + Data("\n".utf8))
        return Made(archivePath: archive, metadataPath: metaPath, metadata: meta, cached: false)
    }

    /// Files up to this size may travel as patches (both versions are held in memory).
    public static let patchLimit = 64 << 20

    /// Replaces, in `subset`, every changed file that a zstd patch against its old content
    /// carries in well under half the bytes of its compressed content, by that patch (mode,
    /// owner and mtime kept); returns their paths. Files with xattrs or other hardlinks keep
    /// their content. The old release is unpacked only when there is a candidate.
    static func patchChangedFiles(old: StoredRelease, new: [EntryRecord], subset: String, work: String) throws -> [ArchivePath] {
        var oldFiles: [ArchivePath: EntryRecord] = [:]
        for entry in old.manifest.entries where entry.kind == .file { oldFiles[entry.path] = entry }
        let linked = Set(new.filter { $0.kind == .hardlink }.flatMap { [$0.path] + ($0.linkTarget.map { [$0] } ?? []) })
        let candidates = new.filter { entry in
            guard entry.kind == .file, (entry.xattrs ?? []).isEmpty, !linked.contains(entry.path), entry.size <= UInt64(patchLimit),
                  let before = oldFiles[entry.path], before.sha256 != entry.sha256, before.size <= UInt64(patchLimit) else { return false }
            return entry.size >= 512
        }
        guard !candidates.isEmpty else { return [] }
        let base = work + "/base"
        _ = try ArchiveExtractor.extract(archive: old.archivePath, into: base)
        var patched: [ArchivePath] = []
        for entry in candidates {
            let target = subset + "/" + entry.path.description
            let content = try readFile(bytes: Array(subset.utf8) + [UInt8(ascii: "/")] + entry.path.bytes)
            let prefix = try readFile(bytes: Array(base.utf8) + [UInt8(ascii: "/")] + entry.path.bytes)
            let patch = try ZstdData.compress(content, level: 12, prefix: prefix)
            guard patch.count * 2 < (try ZstdData.compress(content, level: 12)).count else { continue }
            // A new file with the patch as content and the original's attributes; the
            // original (a hardlink into the unpacked new tree) is left alone.
            let bytes = Array(subset.utf8) + [UInt8(ascii: "/")] + entry.path.bytes
            var st = stat()
            guard PosixPath.withCString(bytes, { lstat($0, &st) }) == 0 else { throw ReleaseError.system(operation: "lstat", path: target, errno: errno) }
            let temporary = bytes + Array(".slipway-patch".utf8)
            let fd = PosixPath.withCString(temporary) { open($0, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
            guard fd >= 0 else { throw ReleaseError.system(operation: "create", path: target + ".slipway-patch", errno: errno) }
            defer { close(fd) }
            try writeAll(fd, patch, path: target)
            var times = [st.st_atim, st.st_mtim]
            guard fchown(fd, st.st_uid, st.st_gid) == 0 || geteuid() != 0, fchmod(fd, st.st_mode & 0o7777) == 0,
                  futimens(fd, &times) == 0 else {
                throw ReleaseError.system(operation: "set the attributes of", path: target, errno: errno)
            }
            let renamed = PosixPath.withCString(temporary) { t in PosixPath.withCString(bytes) { rename(t, $0) } }
            guard renamed == 0 else { throw ReleaseError.system(operation: "rename into", path: target, errno: errno) }
            patched.append(entry.path)
        }
        return patched.sorted()
    }

    /// The content of the file at `bytes` (a path that need not be UTF-8).
    static func readFile(bytes: [UInt8]) throws -> Data {
        let fd = PosixPath.withCString(bytes) { open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else { throw ReleaseError.system(operation: "open", path: PosixPath.display(bytes), errno: errno) }
        defer { close(fd) }
        return try readFully(fd).mapError { ReleaseError.system(operation: "read", path: PosixPath.display(bytes), errno: $0.code) }.get()
    }

    /// The paths of `new` a delta must carry (added and changed entries, their parent
    /// directories, and every hardlink partner of any of them), sorted, and the paths of
    /// `old` that `new` lacks.
    public static func entriesToShip(old: [EntryRecord], new: [EntryRecord]) -> (paths: [ArchivePath], removals: [ArchivePath]) {
        let diff = ManifestDiff(old: old, new: new)
        var need = Set(diff.added.map(\.path) + diff.changed.map(\.path))
        // A changed file's hardlinks must move with it, or they would keep the old inode.
        let links = new.filter { $0.kind == .hardlink }
        var grew = true
        while grew {
            grew = false
            for link in links {
                guard let target = link.linkTarget else { continue }
                if need.contains(link.path) && !need.contains(target) { need.insert(target); grew = true }
                if need.contains(target) && !need.contains(link.path) { need.insert(link.path); grew = true }
            }
        }
        var withParents = need
        for path in need {
            var components = path.components.dropLast()
            while !components.isEmpty {
                withParents.insert(ArchivePath(bytes: Array(components.joined(separator: [UInt8(ascii: "/")]))))
                components = components.dropLast()
            }
        }
        return (withParents.sorted(), diff.removed.map(\.path))
    }

    /// Makes `subset` a tree of `paths` from `full`: directories recreated with their mode
    /// and owner, everything else hardlinked (so hardlink groups stay groups).
    private static func buildSubset(full: String, subset: String, paths: [ArchivePath]) throws {
        guard mkdir(subset, 0o755) == 0 else { throw ReleaseError.system(operation: "create directory", path: subset, errno: errno) }
        // Directories get their mode once their children are in (a 0555 one would refuse them).
        var directories: [(path: [UInt8], mode: mode_t)] = []
        for path in paths {
            let sourceBytes = Array(full.utf8) + [UInt8(ascii: "/")] + path.bytes
            let targetBytes = Array(subset.utf8) + [UInt8(ascii: "/")] + path.bytes
            let target = subset + "/" + path.description
            var st = stat()
            guard PosixPath.withCString(sourceBytes, { lstat($0, &st) }) == 0 else {
                throw ReleaseError.system(operation: "lstat", path: full + "/" + path.description, errno: errno)
            }
            if st.st_mode & S_IFMT == S_IFDIR {
                guard PosixPath.withCString(targetBytes, { mkdir($0, 0o700) }) == 0 else {
                    throw ReleaseError.system(operation: "create directory", path: target, errno: errno)
                }
                if PosixPath.withCString(targetBytes, { lchown($0, st.st_uid, st.st_gid) }) != 0 && geteuid() == 0 {
                    throw ReleaseError.system(operation: "chown", path: target, errno: errno)
                }
                directories.append((targetBytes, st.st_mode & 0o7777))
            } else {
                let linked = PosixPath.withCString(sourceBytes) { s in PosixPath.withCString(targetBytes) { t in linkat(AT_FDCWD, s, AT_FDCWD, t, 0) } }
                guard linked == 0 else { throw ReleaseError.system(operation: "hardlink into", path: target, errno: errno) }
            }
        }
        for directory in directories.reversed() {
            guard PosixPath.withCString(directory.path, { chmod($0, directory.mode) }) == 0 else {
                throw ReleaseError.system(operation: "chmod", path: PosixPath.display(directory.path), errno: errno)
            }
        }
    }
}
