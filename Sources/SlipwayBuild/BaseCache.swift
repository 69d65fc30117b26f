import Crypto
import Foundation
import Glibc
import SlipwayRecipe
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Bootstrapped Debian base trees, kept unpacked under `<cache>/bases/<key>/` with a
/// `<key>.json` beside. The key hashes the `[base]` section, the mirror arguments (and the
/// contents of source files among them) and the date of the mirror's Release file, so a new
/// point release or a changed recipe bootstraps afresh.
///
/// A cached tree is never written once stored: builds lay an overlay on it (or copy it), so
/// it can be shared by concurrent builds. It is bootstrapped into `.partial-<key>-<pid>/`,
/// fingerprinted, and renamed in before its metadata, which is what makes an entry exist;
/// every use first checks the fingerprint (the type, mode, owner, size, mtime, ctime and
/// inode of every entry — any write, chmod, rename, added or removed file, or a file
/// truncated by a crash, changes it), so a partial or altered tree is never used.
struct BaseCache {
    /// The layout of entries; entries of another format are not found (their key differs).
    static let format = 2

    /// What is recorded beside a cached base.
    struct Metadata: Codable {
        var key: String
        var description: String
        var tool: String
        var created: Int64
        /// The base's own SOURCE_DATE_EPOCH: the Release file's date, else the bootstrap time.
        var sourceDateEpoch: Int64
        var entries: Int
        var fingerprint: String
    }

    /// What a look-up found.
    enum Lookup {
        case valid(Metadata)
        case missing
        /// An entry that exists but must not be used; `reason` says why.
        case invalid(reason: String)
    }

    let directory: String

    init(cacheDirectory: String) { directory = cacheDirectory + "/bases" }

    func treePath(_ key: String) -> String { "\(directory)/\(key)" }
    func metadataPath(_ key: String) -> String { "\(directory)/\(key).json" }
    /// Where this process bootstraps `key` before renaming it in.
    func partialPath(_ key: String) -> String { "\(directory)/.partial-\(key)-\(getpid())" }

    /// The key text (hashed) for a Debian base.
    static func keyText(_ base: DebianBase, tool: String, mirrors: [String], releaseDate: String?) -> String {
        var lines = [
            "slipway base cache \(format)", "tool=\(tool)", "suite=\(base.suite)", "variant=\(base.variant)",
            "include=\(base.include.sorted().joined(separator: ","))", "exclude=\(base.exclude.sorted().joined(separator: ","))",
            "components=\(base.components.joined(separator: ","))", "architecture=\(base.architecture ?? "host")",
        ]
        for mirror in mirrors {
            if mirror.hasPrefix("/"), let data = FileManager.default.contents(atPath: mirror) {
                lines.append("mirror-file=\(mirror) sha256=\(FileHasher.hex(SHA256.hash(data: data)))")
            } else {
                lines.append("mirror=\(mirror)")
            }
        }
        lines.append("release-date=\(releaseDate ?? "unknown")")
        return lines.joined(separator: "\n")
    }

    static func key(_ text: String) -> String { FileHasher.hex(SHA256.hash(data: Data(text.utf8))) }

    /// The entry of `key`, checked against its fingerprint. Call it holding the key's lock.
    func lookup(_ key: String) -> Lookup {
        guard let data = FileManager.default.contents(atPath: metadataPath(key)) else { return .missing }
        guard let metadata = try? JSONDecoder().decode(Metadata.self, from: data), metadata.key == key else {
            return .invalid(reason: "its metadata \(metadataPath(key)) is unreadable")
        }
        let found: (entries: Int, fingerprint: String)
        do {
            found = try Self.fingerprint(tree: treePath(key))
        } catch {
            return .invalid(reason: "its tree cannot be read (\(Output.message(for: error)))")
        }
        guard found.entries == metadata.entries, found.fingerprint == metadata.fingerprint else {
            let count = found.entries == metadata.entries ? "" : " (\(metadata.entries) entries stored, \(found.entries) now)"
            return .invalid(reason: "its tree changed since it was stored\(count)")
        }
        return .valid(metadata)
    }

    /// Removes the entry of `key` and partial bootstraps of it left by killed builds.
    /// Call it holding the key's lock exclusively (no build is using the tree then).
    func remove(_ key: String) throws {
        unlink(metadataPath(key))
        var doomed = [treePath(key)]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(".partial-\(key)-") {
            doomed.append("\(directory)/\(name)")
        }
        for path in doomed where access(path, F_OK) == 0 {
            BuildCleanup.killProcesses(inside: path)
            for point in Mounts.mountPoints(under: path) { Mounts.unmount(point) }
            try Mounts.removeTree(path)
        }
    }

    /// Stores the tree bootstrapped at `partial` as the entry of `metadata.key`: fingerprinted,
    /// renamed in, then its metadata written and renamed in (the entry exists from then on).
    func commit(partial: String, metadata: Metadata) throws {
        var metadata = metadata
        // The fingerprint leaves out the tree's own directory, whose ctime the rename changes.
        (metadata.entries, metadata.fingerprint) = try Self.fingerprint(tree: partial)
        let tree = treePath(metadata.key)
        guard rename(partial, tree) == 0 else { throw BuildError.system(operation: "rename into place", path: tree, errno: errno) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let path = metadataPath(metadata.key)
        let temporary = path + ".partial-\(getpid())"
        defer { unlink(temporary) }
        guard FileManager.default.createFile(atPath: temporary, contents: try encoder.encode(metadata)) else {
            throw BuildError.system(operation: "write", path: temporary, errno: errno)
        }
        guard rename(temporary, path) == 0 else { throw BuildError.system(operation: "rename into place", path: path, errno: errno) }
    }

    /// The number of entries below `tree` and a digest of what lstat says about each (not
    /// their contents: reading 200 MB on every build would cost seconds; a change through
    /// the file system always moves the ctime, which userspace cannot set).
    static func fingerprint(tree: String) throws -> (entries: Int, fingerprint: String) {
        var hasher = SHA256()
        var count = 0
        var pending: [[UInt8]] = [[]]
        let root = Array(tree.utf8)
        while let relative = pending.popLast() {
            let directoryPath = PosixPath.join(root, relative)
            let fd = PosixPath.withCString(directoryPath) { open($0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            guard fd >= 0 else { throw BuildError.system(operation: "open", path: PosixPath.display(directoryPath), errno: errno) }
            defer { close(fd) }
            // directoryNames closes the descriptor it is given; fstatat needs one too.
            let names = try PosixPath.directoryNames(fd: PosixPath.duplicate(fd), path: directoryPath).sorted { $0.lexicographicallyPrecedes($1) }
            for name in names {
                var info = stat()
                let path = PosixPath.join(relative, name)
                guard PosixPath.withCString(name, { fstatat(fd, $0, &info, AT_SYMLINK_NOFOLLOW) }) == 0 else {
                    throw BuildError.system(operation: "lstat", path: PosixPath.display(PosixPath.join(root, path)), errno: errno)
                }
                hasher.update(data: path + [0])
                let fields = [UInt64(info.st_mode), UInt64(info.st_uid), UInt64(info.st_gid), UInt64(info.st_size),
                              UInt64(bitPattern: Int64(info.st_mtim.tv_sec)), UInt64(info.st_mtim.tv_nsec),
                              UInt64(bitPattern: Int64(info.st_ctim.tv_sec)), UInt64(info.st_ctim.tv_nsec),
                              UInt64(info.st_ino), UInt64(info.st_nlink), UInt64(info.st_rdev)]
                fields.map(\.littleEndian).withUnsafeBytes { hasher.update(bufferPointer: $0) }
                count += 1
                if (info.st_mode & S_IFMT) == S_IFDIR { pending.append(path) }
            }
        }
        return (count, FileHasher.hex(hasher.finalize()))
    }

    /// The lock of `key`: shared while a build uses the cached tree, exclusive while one
    /// bootstraps, replaces or removes it. Held until released or the process ends.
    final class Lock {
        let path: String
        private let fd: Int32

        init(path: String) throws {
            self.path = path
            fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw BuildError.system(operation: "open lock", path: path, errno: errno) }
        }

        deinit { close(fd) }

        /// Takes the lock shared or exclusive (a held lock is converted); `waiting` is
        /// called once when another build holds it.
        func acquire(exclusive: Bool, waiting: () -> Void) throws {
            let operation = exclusive ? LOCK_EX : LOCK_SH
            if flock(fd, operation | LOCK_NB) == 0 { return }
            guard errno == EWOULDBLOCK || errno == EINTR else { throw BuildError.system(operation: "lock", path: path, errno: errno) }
            waiting()
            while flock(fd, operation) != 0 {
                if errno != EINTR { throw BuildError.system(operation: "lock", path: path, errno: errno) }
            }
        }

        func release() { _ = flock(fd, LOCK_UN) }
    }

    func lock(_ key: String) throws -> Lock {
        try BuildFiles.makeDirectories(directory)
        return try Lock(path: "\(directory)/\(key).lock")
    }

    /// The `Date:` field of the first repository's `dists/<suite>/InRelease` (only its first
    /// few kB are asked for), as text and as seconds since 1970; nil when no mirror answers.
    static func releaseDate(entries: [HostAptSources.Entry], suite: String) -> (text: String, epoch: Int64)? {
        for entry in entries where entry.suites.contains(suite) && (entry.uri.hasPrefix("http://") || entry.uri.hasPrefix("https://")) {
            let base = entry.uri.hasSuffix("/") ? String(entry.uri.dropLast()) : entry.uri
            guard let head = fetchHead("\(base)/dists/\(suite)/InRelease") else { continue }
            for line in head.split(separator: "\n") where line.hasPrefix("Date:") {
                let text = line.dropFirst(5).trimmingCharacters(in: .whitespaces)
                if let epoch = parseHTTPDate(text) { return (text, epoch) }
            }
        }
        return nil
    }

    /// The first 4 kB of `url` through `curl` (Foundation's networking would make slipway
    /// link libcurl and pay for it at every start); nil on any failure, curl missing included.
    private static func fetchHead(_ url: String) -> String? {
        let command = Command(["curl", "-fsS", "-r", "0-4095", "--max-time", "10", "--proto", "=http,https", "--url", url],
                              timeout: .seconds(15))
        guard let result = try? CommandRunner().run(command) else { return nil }
        return String(decoding: result.standardOutput.prefix(8192), as: UTF8.self)
    }

    static func parseHTTPDate(_ text: String) -> Int64? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        if let date = formatter.date(from: text) { return Int64(date.timeIntervalSince1970) }
        formatter.dateFormat = "EEE, d MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text).map { Int64($0.timeIntervalSince1970) }
    }
}
