import Crypto
import Foundation
import SlipwayArchive
import SlipwaySystem

/// What a release holds, as its SBOM lists it (docs/sbom.md): the Debian packages of the
/// tree's dpkg database, the Python distributions installed outside Debian (a recipe's venv,
/// pip into /usr/local), and the files a recipe put in.
public struct ReleaseContents: Codable, Equatable, Sendable {
    /// A package of the tree's dpkg database.
    public struct DebianPackage: Codable, Equatable, Sendable {
        public var name: String
        public var version: String
        public var architecture: String
        /// The source package and its version (the binary's own when the database names none).
        public var source: String
        public var sourceVersion: String
        /// The `License:` of the `Files: *` paragraph of a machine-readable
        /// `/usr/share/doc/<name>/copyright`, as Debian writes it (`GPL-2+`); nil otherwise.
        public var license: String?

        public init(name: String, version: String, architecture: String, source: String, sourceVersion: String, license: String? = nil) {
            self.name = name
            self.version = version
            self.architecture = architecture
            self.source = source
            self.sourceVersion = sourceVersion
            self.license = license
        }
    }

    /// A Python distribution (`*.dist-info`) that no Debian package owns.
    public struct PythonDistribution: Codable, Equatable, Sendable {
        public var name: String
        public var version: String
        /// The `.dist-info` directory, relative to the tree.
        public var location: String

        public init(name: String, version: String, location: String) {
            self.name = name
            self.version = version
            self.location = location
        }
    }

    /// A regular file a recipe added (`[[files]]`, `[app]`).
    public struct AddedFile: Codable, Equatable, Sendable {
        /// Relative to the tree, as in the manifest.
        public var path: String
        public var sha256: String
        public var sha1: String
        public var size: UInt64

        public init(path: String, sha256: String, sha1: String, size: UInt64) {
            self.path = path
            self.sha256 = sha256
            self.sha1 = sha1
            self.size = size
        }
    }

    /// Sorted by name, then architecture.
    public var debian: [DebianPackage]
    /// Sorted by location.
    public var python: [PythonDistribution]
    /// Sorted by path.
    public var files: [AddedFile]
    /// `ID-VERSION_ID` of the tree's /etc/os-release (`debian-12`), for package URLs.
    public var distribution: String?

    public init(debian: [DebianPackage] = [], python: [PythonDistribution] = [], files: [AddedFile] = [], distribution: String? = nil) {
        self.debian = debian.sorted { ($0.name, $0.architecture) < ($1.name, $1.architecture) }
        self.python = python.sorted { $0.location < $1.location }
        self.files = files.sorted { $0.path < $1.path }
        self.distribution = distribution
    }

    // MARK: Reading a tree

    /// The Debian packages and Python distributions of `tree`. Read before a build's cleanup:
    /// a recipe may remove /usr/share/doc, where the licenses are.
    /// With `entries` (a packed tree's), the Python distributions are found among them
    /// instead of by walking the tree.
    public static func read(tree: String, entries: [EntryRecord]? = nil) throws -> ReleaseContents {
        let root = tree.hasSuffix("/") ? String(tree.dropLast()) : tree
        let debian = try readDebianPackages(tree: root)
        let python = entries.map { readPythonDistributions(tree: root, entries: $0) } ?? readPythonDistributions(tree: root)
        return ReleaseContents(debian: debian, python: python, files: [], distribution: readDistribution(tree: root))
    }

    /// The installed packages of `<tree>/var/lib/dpkg/status` (none when the tree has no dpkg
    /// database), with their licenses. A package counts when dpkg has unpacked it: the states
    /// `dpkg-query -W` lists, less `not-installed` and `config-files`.
    static func readDebianPackages(tree: String) throws -> [DebianPackage] {
        let path = tree + "/var/lib/dpkg/status"
        guard access(path, F_OK) == 0 else { return [] }
        let text = String(decoding: try readFile(path), as: UTF8.self)
        var packages: [DebianPackage] = []
        for stanza in DebianControl.paragraphs(text) {
            guard let name = stanza["Package"], let version = stanza["Version"] else { continue }
            let state = stanza["Status"]?.split(separator: " ").last.map(String.init) ?? ""
            if state == "not-installed" || state == "config-files" || state.isEmpty { continue }
            let architecture = stanza["Architecture"] ?? "all"
            var source = name
            var sourceVersion = version
            if let field = stanza["Source"] {
                let parts = field.split(separator: " ", maxSplits: 1)
                source = String(parts[0])
                if parts.count == 2 {
                    sourceVersion = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "() "))
                }
            }
            let license = readLicense(tree: tree, package: name)
            packages.append(DebianPackage(name: name, version: version, architecture: architecture, source: source,
                                          sourceVersion: sourceVersion, license: license))
        }
        return packages
    }

    /// The `License:` short name of the `Files: *` paragraph of a machine-readable copyright
    /// file (DEP-5), or nil.
    static func readLicense(tree: String, package: String) -> String? {
        let path = "\(tree)/usr/share/doc/\(package)/copyright"
        // A symlinked doc directory points into the tree, not the host: read only real files.
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size < 4 << 20,
              let data = try? readFile(path) else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        let paragraphs = DebianControl.paragraphs(text)
        guard let header = paragraphs.first, let format = header["Format"], format.contains("copyright-format/1.0") else { return nil }
        for paragraph in paragraphs.dropFirst() {
            guard let files = paragraph["Files"], files.split(whereSeparator: \.isWhitespace).contains("*") else { continue }
            guard let license = paragraph["License"]?.split(separator: "\n").first else { return nil }
            let name = license.trimmingCharacters(in: .whitespaces)
            return name.isEmpty ? nil : name
        }
        return nil
    }

    /// `*.dist-info/METADATA` below any `site-packages` or `dist-packages` directory except
    /// Debian's own `/usr/lib/python3/dist-packages`.
    static func readPythonDistributions(tree: String) -> [PythonDistribution] {
        var found: [PythonDistribution] = []
        func walk(_ relative: String, depth: Int) {
            guard depth < 12, let names = try? FileManager.default.contentsOfDirectory(atPath: tree + "/" + relative) else { return }
            for name in names.sorted() {
                let child = relative.isEmpty ? name : relative + "/" + name
                var info = stat()
                guard lstat(tree + "/" + child, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { continue }
                if name == "site-packages" || name == "dist-packages" {
                    if child == "usr/lib/python3/dist-packages" { continue }
                    found += distributions(in: child)
                    continue
                }
                // Where no Python lives.
                if relative.isEmpty, ["proc", "sys", "dev", "run", "tmp", "boot", "var"].contains(name) { continue }
                if child == "usr/share" || child == "usr/include" || child == "etc" { continue }
                walk(child, depth: depth + 1)
            }
        }
        func distributions(in directory: String) -> [PythonDistribution] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: tree + "/" + directory)) ?? []
            return names.filter { $0.hasSuffix(".dist-info") }.sorted().compactMap { distribution(tree: tree, location: directory + "/" + $0) }
        }
        walk("", depth: 0)
        return found
    }

    /// The distributions whose `.dist-info` directories `entries` list.
    static func readPythonDistributions(tree: String, entries: [EntryRecord]) -> [PythonDistribution] {
        entries.compactMap { entry -> String? in
            let path = entry.path.description
            guard entry.kind == .directory, path.hasSuffix(".dist-info") else { return nil }
            let parent = (path as NSString).deletingLastPathComponent
            let parentName = (parent as NSString).lastPathComponent
            guard parentName == "site-packages" || parentName == "dist-packages", parent != "usr/lib/python3/dist-packages" else { return nil }
            return path
        }.sorted().compactMap { distribution(tree: tree, location: $0) }
    }

    /// The name and version in `<location>/METADATA`.
    static func distribution(tree: String, location: String) -> PythonDistribution? {
        guard let data = try? readFile(tree + "/" + location + "/METADATA") else { return nil }
        // The header ends at the first empty line; Name and Version are required there.
        let header = String(decoding: data, as: UTF8.self).components(separatedBy: "\n\n").first ?? ""
        var fields: [String: String] = [:]
        for line in header.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].lowercased()
            if key == "name" || key == "version", fields[key] == nil {
                fields[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        guard let distName = fields["name"], let version = fields["version"] else { return nil }
        return PythonDistribution(name: distName, version: version, location: location)
    }

    /// `ID-VERSION_ID` from the tree's os-release (`debian-12`).
    static func readDistribution(tree: String) -> String? {
        for candidate in ["/etc/os-release", "/usr/lib/os-release"] {
            var info = stat()
            guard lstat(tree + candidate, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG,
                  let data = try? readFile(tree + candidate) else { continue }
            var fields: [String: String] = [:]
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                guard let equals = line.firstIndex(of: "=") else { continue }
                fields[String(line[..<equals])] = line[line.index(after: equals)...].trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            }
            guard let id = fields["ID"] else { return nil }
            return fields["VERSION_ID"].map { "\(id)-\($0)" } ?? id
        }
        return nil
    }

    /// The regular files of `entries` at or below the recipe's destinations, with their
    /// SHA-1 (SPDX 2.3 requires it for a file) read from `tree`.
    public static func addedFiles(destinations: [String], entries: [EntryRecord], tree: String) throws -> [AddedFile] {
        let prefixes = destinations.map { $0.split(separator: "/").joined(separator: "/") }.filter { !$0.isEmpty }
        guard !prefixes.isEmpty else { return [] }
        var files: [AddedFile] = []
        for entry in entries where entry.kind == .file {
            let path = entry.path.description
            guard prefixes.contains(where: { path == $0 || path.hasPrefix($0 + "/") }), let sha256 = entry.sha256 else { continue }
            let sha1 = FileHasher.hex(Insecure.SHA1.hash(data: try readFile(tree + "/" + path)))
            files.append(AddedFile(path: path, sha256: sha256, sha1: sha1, size: entry.size))
        }
        return files
    }
}

/// Debian control-file paragraphs (dpkg's status, DEP-5 copyright files): fields with
/// continuation lines, paragraphs separated by empty lines.
enum DebianControl {
    static func paragraphs(_ text: String) -> [[String: String]] {
        var result: [[String: String]] = []
        var current: [String: String] = [:]
        var lastKey: String?
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if line.allSatisfy(\.isWhitespace) {
                if !current.isEmpty { result.append(current) }
                current = [:]
                lastKey = nil
                continue
            }
            if line.first == " " || line.first == "\t" {
                if let key = lastKey { current[key, default: ""] += "\n" + line.trimmingCharacters(in: .whitespaces) }
                continue
            }
            if line.first == "#" { continue }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = String(line[..<colon])
            current[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            lastKey = key
        }
        if !current.isEmpty { result.append(current) }
        return result
    }
}
