import Crypto
import Foundation
import Glibc

/// Bootstrapped Debian base trees, kept as zstd tarballs under `<cache>/bases/<key>.tar.zst`
/// with a `<key>.json` beside. The key hashes the `[base]` section, the mirror arguments
/// (and the contents of source files among them) and the date of the mirror's Release
/// file, so a new point release or a changed recipe bootstraps afresh.
struct BaseCache {
    /// What is recorded beside a cached base.
    struct Metadata: Codable {
        var key: String
        var description: String
        var tool: String
        var created: Int64
        /// The base's own SOURCE_DATE_EPOCH: the Release file's date, else the bootstrap time.
        var sourceDateEpoch: Int64
    }

    let directory: String

    init(cacheDirectory: String) { directory = cacheDirectory + "/bases" }

    func archivePath(_ key: String) -> String { "\(directory)/\(key).tar.zst" }
    func metadataPath(_ key: String) -> String { "\(directory)/\(key).json" }

    /// The key text (hashed) for a Debian base.
    static func keyText(_ base: DebianBase, tool: String, mirrors: [String], releaseDate: String?) -> String {
        var lines = [
            "slipway base cache 1", "tool=\(tool)", "suite=\(base.suite)", "variant=\(base.variant)",
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

    func metadata(_ key: String) -> Metadata? {
        guard access(archivePath(key), R_OK) == 0, let data = FileManager.default.contents(atPath: metadataPath(key)) else { return nil }
        return try? JSONDecoder().decode(Metadata.self, from: data)
    }

    /// Runs `body` holding the cache lock of `key`, so concurrent builds bootstrap a base once.
    func withLock<T>(_ key: String, _ body: () throws -> T) throws -> T {
        try BuildFiles.makeDirectories(directory)
        let path = "\(directory)/\(key).lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BuildError.system(operation: "open lock", path: path, errno: errno) }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR { throw BuildError.system(operation: "lock", path: path, errno: errno) }
        }
        return try body()
    }

    /// Packs `tree` into the cache under `key`: written beside, then renamed in, so an
    /// interrupted build never leaves a half cache entry.
    func store(tree: String, metadata: Metadata) throws {
        let archive = archivePath(metadata.key)
        let partial = archive + ".partial-\(getpid())"
        defer { unlink(partial) }
        _ = try ArchiveWriter.pack(tree: tree, to: partial, configuration: ArchiveWriterConfiguration(compression: .zstd, level: 3))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let metaPartial = metadataPath(metadata.key) + ".partial-\(getpid())"
        defer { unlink(metaPartial) }
        guard FileManager.default.createFile(atPath: metaPartial, contents: try encoder.encode(metadata)) else {
            throw BuildError.system(operation: "write", path: metaPartial, errno: errno)
        }
        guard rename(partial, archive) == 0 else { throw BuildError.system(operation: "rename into place", path: archive, errno: errno) }
        guard rename(metaPartial, metadataPath(metadata.key)) == 0 else {
            throw BuildError.system(operation: "rename into place", path: metadataPath(metadata.key), errno: errno)
        }
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
