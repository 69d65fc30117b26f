import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Checks a landed tree against its manifest, and links a release's shared directories.
enum NodeTreeCheck {
    /// Which files of a staged tree have their contents hashed.
    enum Contents {
        /// Every file (a full apply, or a delta over a writable copy of its base).
        case all
        /// A delta over a snapshot or clone of a landed base whose contents cannot have
        /// changed since they were verified (btrfs: a read-only subvolume; ZFS: a clone of the
        /// `@landed` snapshot): only the files the delta wrote, and files whose expected hash
        /// differs from the base's, are hashed; every other file still has its kind, mode,
        /// owners, size, xattr names and place checked, and its content is the base's
        /// verified content. See docs/node.md "A delta".
        case changedSince(base: ReleaseManifest, touched: Set<ArchivePath>)
        /// A full apply: each file's hash as the extractor computed it over the bytes it
        /// wrote (`ExtractResult.fileHashes`); the tree is not read back. Every entry still
        /// has its kind, mode, owners, size, link target, xattr names and place checked from
        /// the disk. A file with no recorded hash is hashed from the disk.
        case written(hashes: [ArchivePath: String])
    }

    /// The differences between the tree at `root` and `manifest`, one line each (empty when
    /// they match): kinds, modes, owners, sizes, file hashes, link targets, xattr names and
    /// device numbers, and the release root itself (see `rootDifferences`). A shared
    /// directory must be a symlink into `shared/` instead of its manifest entries. Owners are
    /// only compared when running as root (nobody else can restore them).
    static func differences(root: String, manifest: ReleaseManifest, layout: NodeLayout, contents: Contents = .all) throws -> [String] {
        let actual = try records(root: root, manifest: manifest, contents: contents)
        let shared = sharedPaths(manifest)
        var expected: [ArchivePath: EntryRecord] = [:]
        for entry in manifest.entries where !shared.contains(where: { entry.path.isStrictlyBelow($0) }) {
            expected[entry.path] = entry
        }
        let compareOwners = geteuid() == 0
        var problems: [String] = []
        var seen = Set<ArchivePath>()
        for entry in actual {
            seen.insert(entry.path)
            if shared.contains(entry.path) {
                // The mount point of shared/<path>: an empty directory in the release, with its
                // manifest's metadata when the release had one.
                guard entry.kind == .directory else {
                    problems.append("\(entry.path): expected a directory (shared directory, bound from \(layout.shared)/\(entry.path))")
                    continue
                }
                guard let want = expected[entry.path] else { continue }
                if let problem = fieldProblem(want, entry, compareOwners: compareOwners) { problems.append(problem) }
                continue
            }
            if shared.contains(where: { entry.path.isStrictlyBelow($0) }) {
                problems.append("\(entry.path): below a shared directory, which stays empty in the release")
                continue
            }
            guard let want = expected[entry.path] else {
                problems.append("\(entry.path): not in the manifest")
                continue
            }
            if let problem = fieldProblem(want, entry, compareOwners: compareOwners) { problems.append(problem) }
        }
        for path in expected.keys.sorted() where !seen.contains(path) && !shared.contains(path) { problems.append("\(path): missing") }
        for path in shared.sorted() where !seen.contains(path) { problems.append("\(path): missing (shared directory)") }
        return rootDifferences(root: root, compareOwners: compareOwners) + problems
    }

    /// The differences a full `differences` would find, for a delta applied over a snapshot
    /// or clone of a landed base that nothing can have changed (`Contents.changedSince`),
    /// found by looking only at the paths that can differ from the base's verified tree:
    /// what the delta wrote (`touched`) or removed, every path whose record differs between
    /// the two manifests or that only one of them has, the shared directories (which must
    /// be empty), the delta's scratch directory, and the release root. Every other path is
    /// the base's, verified when the base landed and unchanged since. So the check costs
    /// what the delta changed, not the size of the tree.
    ///
    /// nil when only a full walk can say: the two releases do not share the same shared
    /// directories, a path involved in a hardlink is among those to look at (a hardlink's
    /// record depends on every other path of its inode), a path is not UTF-8, or so many
    /// paths are to be looked at that a walk is cheaper.
    static func deltaDifferences(root: String, manifest: ReleaseManifest, base: ReleaseManifest, touched: Set<ArchivePath>,
                                 removals: [ArchivePath]) throws -> [String]? {
        let shared = sharedPaths(manifest)
        guard shared == sharedPaths(base) else { return nil }
        var baseOnly = [ArchivePath: EntryRecord](minimumCapacity: base.entries.count)
        for entry in base.entries { baseOnly[entry.path] = entry }
        var paths = touched.union(removals).union(shared)
        paths.insert(ArchivePath(NodeDeltaApply.scratchName))
        var expected: [ArchivePath: EntryRecord] = [:]
        var hardlinked = Set<ArchivePath>()
        for entry in manifest.entries {
            if entry.kind == .hardlink, let target = entry.linkTarget { hardlinked.insert(entry.path); hardlinked.insert(target) }
            if let before = baseOnly.removeValue(forKey: entry.path), before == entry { continue }
            paths.insert(entry.path)
            expected[entry.path] = entry
        }
        paths.formUnion(baseOnly.keys)
        for entry in base.entries where entry.kind == .hardlink {
            if let target = entry.linkTarget { hardlinked.insert(entry.path); hardlinked.insert(target) }
        }
        guard paths.count <= max(64, manifest.entries.count / 4), paths.isDisjoint(with: hardlinked) else { return nil }
        // Expected records of touched or removed paths whose record did not change.
        let byPath = Dictionary(manifest.entries.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })

        let compareOwners = geteuid() == 0
        var problems: [String] = []
        for path in paths.sorted() {
            guard String(validating: path.bytes, as: UTF8.self) != nil else { return nil }
            if shared.contains(where: { path.isStrictlyBelow($0) }) { continue }  // the emptiness check below covers it
            let want = expected[path] ?? byPath[path]
            switch try TreeWalker.lookup(root: root, relative: path) {
            case .missing, .parentNotDirectory:
                if shared.contains(path) { problems.append("\(path): missing (shared directory)") }
                else if want != nil { problems.append("\(path): missing") }
            case .entry(var actual, let isHardlinked):
                guard !isHardlinked else { return nil }
                if shared.contains(path) {
                    guard actual.kind == .directory else {
                        problems.append("\(path): expected a directory (shared directory)")
                        continue
                    }
                    let fd = open(root + "/" + path.description, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    guard fd >= 0 else { throw NodeError.system(operation: "open", path: root + "/" + path.description, errno: errno) }
                    for name in try PosixPath.directoryNames(fd: fd, path: Array((root + "/" + path.description).utf8)).sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                        problems.append("\(path.appending(name)): below a shared directory, which stays empty in the release")
                    }
                    guard let want else { continue }
                    if let problem = fieldProblem(want, actual, compareOwners: compareOwners) { problems.append(problem) }
                    continue
                }
                guard let want else {
                    problems.append("\(path): not in the manifest")
                    continue
                }
                if actual.kind == .file {
                    let disk = root + "/" + path.description
                    actual.sha256 = try PosixPath.withCString(Array(disk.utf8)) { try FileHasher.sha256($0, display: disk, flags: O_NOFOLLOW).hex }
                }
                if let problem = fieldProblem(want, actual, compareOwners: compareOwners) { problems.append(problem) }
            }
        }
        return rootDifferences(root: root, compareOwners: compareOwners) + problems
    }

    /// "PATH: mode, size differ" when `actual` differs from `want` (owners only when
    /// `compareOwners`); nil when they match. Both checks' one wording.
    static func fieldProblem(_ want: EntryRecord, _ actual: EntryRecord, compareOwners: Bool) -> String? {
        let fields = ManifestDiff.differences(want, actual).filter { compareOwners || ($0 != .uid && $0 != .gid) }
        return fields.isEmpty ? nil : "\(actual.path): \(fields.map(\.rawValue).joined(separator: ", ")) differ"
    }

    /// The mode of every release root.
    static let rootMode: mode_t = 0o755

    /// The release root is the node's, not the archive's: a manifest has no entry for it (the
    /// writer stores none), so an archive entry `.` must not change it. It must be a directory
    /// of mode 0755 owned by the node's user and group, as `prepareRoot` makes it.
    static func rootDifferences(root: String, compareOwners: Bool) -> [String] {
        var st = stat()
        guard lstat(root, &st) == 0 else { return [". (the release root): cannot be read: \(String(cString: strerror(errno)))"] }
        var fields: [String] = []
        if st.st_mode & S_IFMT != S_IFDIR { fields.append("kind") }
        if st.st_mode & 0o7777 != rootMode { fields.append("mode") }
        if compareOwners, st.st_uid != geteuid() { fields.append("uid") }
        if compareOwners, st.st_gid != getegid() { fields.append("gid") }
        guard !fields.isEmpty else { return [] }
        return [". (the release root): \(fields.joined(separator: ", ")) differ: mode \(String(st.st_mode & 0o7777, radix: 8)), "
            + "owner \(st.st_uid):\(st.st_gid); a release root is a directory of mode \(String(rootMode, radix: 8)) owned by the node "
            + "(an archive entry '.' must not change it)"]
    }

    /// Gives a staged release root the node's mode and owner, whatever the backend, the umask
    /// or the base copied made of it; an archive entry `.` extracted after this is caught by
    /// `rootDifferences`.
    static func prepareRoot(_ root: String) throws {
        if geteuid() == 0, chown(root, geteuid(), getegid()) != 0 {
            throw NodeError.system(operation: "chown", path: root, errno: errno)
        }
        guard chmod(root, rootMode) == 0 else { throw NodeError.system(operation: "chmod", path: root, errno: errno) }
    }

    /// The tree's records, with content hashes as `contents` asks.
    static func records(root: String, manifest: ReleaseManifest, contents: Contents) throws -> [EntryRecord] {
        let known: (ArchivePath) -> String?
        switch contents {
        case .all:
            return try TreeWalker.records(root: root, hashing: true)
        case let .written(hashes):
            known = { hashes[$0] }
        case let .changedSince(base, touched):
            var baseFiles: [ArchivePath: String] = [:]
            for entry in base.entries where entry.kind == .file { baseFiles[entry.path] = entry.sha256 }
            var wanted: [ArchivePath: String] = [:]
            for entry in manifest.entries where entry.kind == .file { wanted[entry.path] = entry.sha256 }
            known = { path in
                // Untouched since the base was verified: the base's hash is this file's.
                guard !touched.contains(path), let hash = baseFiles[path], wanted[path] == hash else { return nil }
                return hash
            }
        }
        var records = try TreeWalker.records(root: root, hashing: false)
        for index in records.indices where records[index].kind == .file {
            let path = records[index].path
            if let hash = known(path) {
                records[index].sha256 = hash
                continue
            }
            let disk = root + "/" + path.description
            records[index].sha256 = try PosixPath.withCString(Array(disk.utf8)) { cPath in
                try FileHasher.sha256(cPath, display: disk, flags: O_NOFOLLOW).hex
            }
        }
        return records
    }

    /// The release's shared directories as archive paths.
    static func sharedPaths(_ manifest: ReleaseManifest) -> Set<ArchivePath> {
        Set((manifest.service?.sharedDirectories ?? []).compactMap { try? validRelative($0) })
    }

    /// Checks that `path` is a plain relative path (no `..`, no `.`, not absolute, not empty).
    static func validRelative(_ path: String) throws -> ArchivePath {
        let trimmed = path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let parts = trimmed.split(separator: "/", omittingEmptySubsequences: false)
        guard !trimmed.isEmpty, !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            throw NodeError.invalidArgument("'\(path)' is not a plain relative path inside a release")
        }
        return ArchivePath(trimmed)
    }

    /// Empties each shared directory of the staged tree (it stays, as the mount point over
    /// which a service's mount namespace binds `shared/<path>`); the first time,
    /// `shared/<path>` is seeded with the release's own contents of that directory.
    static func linkShared(staging: String, manifest: ReleaseManifest, layout: NodeLayout, runner: CommandRunner) throws {
        for entry in manifest.service?.sharedDirectories ?? [] {
            let relative = try validRelative(entry).description
            let inRelease = staging + "/" + relative
            let target = layout.shared + "/" + relative
            // Every parent inside the release must be a real directory: a symlink there
            // would make the link land outside the tree.
            var prefix = staging
            for component in relative.split(separator: "/").dropLast() {
                prefix += "/" + component
                if !NodeFiles.exists(prefix) { try NodeFiles.makeDirectories(prefix) }
                guard NodeFiles.isDirectory(prefix) else {
                    throw NodeError.invalidArgument("shared directory \(relative): \(prefix) is not a directory in the release")
                }
            }
            // shared/<path> is resolved component by component without following symlinks:
            // an earlier release (or the app itself) may have left a symlink there.
            try NodeFiles.makeDirectories(layout.shared)
            let components = relative.split(separator: "/").map(String.init)
            let parent: DirectoryBeneath
            do {
                parent = try DirectoryBeneath.open(root: layout.shared, components: Array(components.dropLast()), create: true)
            } catch {
                throw NodeError.invalidArgument("shared directory \(relative): \(error); shared paths must stay inside \(layout.shared)")
            }
            defer { parent.close() }
            let name = components[components.count - 1]
            var st = stat()
            if fstatat(parent.fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
                guard st.st_mode & S_IFMT == S_IFDIR else {
                    let what = NodeFiles.readLink(target).map { "a symlink to \($0)" } ?? "not a directory"
                    throw NodeError.invalidArgument("shared directory \(relative): \(target) is \(what); shared paths must stay inside \(layout.shared)")
                }
            } else {
                let seed = name + ".tmp-" + String(format: "%08x", UInt32.random(in: .min ... .max))
                if NodeFiles.isDirectory(inRelease) {
                    try runner.run(Command(["cp", "-a", "--no-target-directory", inRelease, parent.procPath + "/" + seed]))
                } else if mkdirat(parent.fd, seed, 0o755) != 0 {
                    throw NodeError.system(operation: "create directory", path: target + ".tmp", errno: errno)
                }
                guard renameat(parent.fd, seed, parent.fd, name) == 0 else {
                    throw NodeError.system(operation: "rename \(seed) to", path: target, errno: errno)
                }
            }
            // The release keeps the directory itself, emptied: the mount point over which the
            // service's mount namespace binds shared/<path> (docs/service.md).
            if !NodeFiles.exists(inRelease) { try NodeFiles.makeDirectories(inRelease) }
            let mountPoint: DirectoryBeneath
            do {
                mountPoint = try DirectoryBeneath.open(root: staging, components: components, create: false)
            } catch {
                throw NodeError.invalidArgument("shared directory \(relative): \(error) in the release")
            }
            PosixPath.removeContents(directoryFD: mountPoint.fd)
            mountPoint.close()
        }
    }
}

extension ArchivePath {
    /// Whether `self` lies inside the directory `parent` (not equal to it).
    func isStrictlyBelow(_ parent: ArchivePath) -> Bool {
        bytes.count > parent.bytes.count + 1 && bytes.starts(with: parent.bytes) && bytes[parent.bytes.count] == UInt8(ascii: "/")
    }
}
