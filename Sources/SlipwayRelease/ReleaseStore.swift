import Crypto
import Foundation
import Synchronization
import SlipwayArchive
import SlipwaySystem

/// A `NAME@VERSION` reference to a release.
public struct ReleaseReference: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var name: String
    public var version: String

    public init(name: String, version: String) {
        self.name = name
        self.version = version
    }

    /// Parses `NAME@VERSION`, validating both parts.
    public init(parsing text: String) throws {
        guard let at = text.firstIndex(of: "@") else {
            throw ReleaseError.invalidReference(text, reason: "it has no '@'")
        }
        let name = String(text[..<at])
        let version = String(text[text.index(after: at)...])
        guard !name.isEmpty else { throw ReleaseError.invalidReference(text, reason: "the name before '@' is empty") }
        guard !version.isEmpty else { throw ReleaseError.invalidReference(text, reason: "the version after '@' is empty") }
        try ReleaseStore.validate(name: name)
        try ReleaseStore.validate(version: version)
        self.init(name: name, version: version)
    }

    public var description: String { "\(name)@\(version)" }
}

/// A release as it sits in the store.
public struct StoredRelease: Sendable {
    public var reference: ReleaseReference
    /// `store/<app>/<version>`.
    public var directory: String
    public var manifestPath: String
    public var archivePath: String
    public var signaturePath: String
    public var manifest: ReleaseManifest
    /// The manifest exactly as stored: what the signature covers.
    public var manifestBytes: Data
    /// The contents of `manifest.sig`, or nil when the release is not signed.
    public var signatureFile: Data?
}

extension StoredRelease {
    /// The bytes of the attachment `file`, checked against the manifest's digest; nil when the
    /// manifest lists no such attachment.
    public func attachment(_ file: String) throws -> Data? {
        guard let listed = manifest.attachment(file) else { return nil }
        try ReleaseStore.validate(attachment: file, source: manifestPath)
        let path = directory + "/" + file
        guard access(path, F_OK) == 0 else { throw ReleaseError.archiveMissing(path: path) }
        let data = try readFile(path)
        let digest = FileHasher.hex(SHA256.hash(data: data))
        guard digest == listed.sha256, UInt64(data.count) == listed.size else {
            throw ReleaseError.archiveMismatch(path: path, expectedSHA256: listed.sha256, actualSHA256: digest,
                                                expectedSize: listed.size, actualSize: UInt64(data.count))
        }
        return data
    }
}

/// The local release store (docs/archive-format.md, "Store layout"):
///
///     <root>/<app>/<version>/rootfs.tar.xz|rootfs.tar.zst  manifest.json  manifest.sig
///     <root>/<app>/index.json     versions, newest last
///
/// A release is assembled in `<root>/<app>/.tmp-<version>-<random>/` and renamed into place
/// only when complete, so a reader never sees half a release; once there it is never changed.
public struct ReleaseStore: Sendable {
    public static let manifestFileName = "manifest.json"
    public static let signatureFileName = "manifest.sig"
    public static let indexFileName = "index.json"

    /// The store's root directory.
    public var root: String

    public init(root: String) { self.root = root }

    /// The store named by `--store`, else `$SLIPWAY_STORE`, else `./store`.
    public init(root: String?, environment: [String: String] = ProcessInfo.processInfo.environment) {
        if let root, !root.isEmpty {
            self.root = root
        } else if let env = environment["SLIPWAY_STORE"], !env.isEmpty {
            self.root = env
        } else {
            self.root = "store"
        }
    }

    /// The archive's file name for a compression: `rootfs.tar.xz`, `rootfs.tar.zst`, `rootfs.tar`.
    public static func archiveFileName(_ compression: ArchiveCompression) -> String {
        "rootfs.\(compression.fileExtension)"
    }

    public func appDirectory(_ name: String) -> String { root + "/" + name }
    public func releaseDirectory(_ reference: ReleaseReference) -> String {
        appDirectory(reference.name) + "/" + reference.version
    }

    // MARK: Validation

    /// Checks that `name` can be an app's directory in the store.
    public static func validate(name: String) throws { try validateComponent(name, what: "app name") }

    /// Checks that `version` can be a release's directory in the store.
    public static func validate(version: String) throws {
        try validateComponent(version, what: "version")
        if version == indexFileName {
            throw ReleaseError.invalidName(what: "version", value: version, reason: "the name is reserved for the store's index")
        }
    }

    /// Whether `name` is a plain file name a release directory may hold (the rules of a name
    /// or version: no '/', no leading '.' or '-', portable characters, at most 200 bytes).
    public static func isPlainFileName(_ name: String) -> Bool { (try? validateComponent(name, what: "file name")) != nil }

    private static func validateComponent(_ value: String, what: String) throws {
        if value.isEmpty { throw ReleaseError.invalidName(what: what, value: value, reason: "it is empty") }
        if value.contains("/") { throw ReleaseError.invalidName(what: what, value: value, reason: "it contains '/'") }
        if value.hasPrefix(".") { throw ReleaseError.invalidName(what: what, value: value, reason: "it starts with '.'") }
        // A name or version is passed as an argument to ssh, tar and the node's commands,
        // where a leading '-' would be taken for an option ("-rf").
        if value.hasPrefix("-") {
            throw ReleaseError.invalidName(what: what, value: value, reason: "it starts with '-', which a command line would take for an option")
        }
        if value.utf8.count > 200 { throw ReleaseError.invalidName(what: what, value: value, reason: "it is longer than 200 bytes") }
        let allowed: Set<UInt8> = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+~-".utf8)
        if let bad = value.unicodeScalars.first(where: { !$0.isASCII || !allowed.contains(UInt8($0.value)) }) {
            let shown = bad.value < 0x20 || bad.value == 0x7F ? String(format: "\\x%02X", bad.value) : String(bad)
            throw ReleaseError.invalidName(what: what, value: value, reason: "it contains '\(shown)'")
        }
    }

    // MARK: Adding

    /// What `add` did.
    public enum AddOutcome: String, Sendable, Codable {
        /// The release was packed and stored.
        case added
        /// The version was already stored with the same archive; nothing changed.
        case alreadyPresent
    }

    /// The result of `add`.
    public struct AddResult: Sendable {
        public var outcome: AddOutcome
        public var release: StoredRelease
        /// Whether the stored release carries a signature.
        public var signed: Bool { release.signatureFile != nil }
    }

    /// What packs a tree into an archive file; the real one is `ArchiveWriter.pack`.
    typealias Packer = @Sendable (_ tree: String, _ archive: String, _ configuration: ArchiveWriterConfiguration) throws -> PackResult

    /// Packs `tree` into a new release `name@version`, writes its manifest and, when a key is
    /// given, its signature. Storing a version that exists with the same archive is a no-op
    /// (`alreadyPresent`); with other content it is an error. On failure nothing is left.
    public func add(
        tree: String, name: String, version: String, created: Int64,
        configuration: ArchiveWriterConfiguration = .init(), signingKey: ReleaseSigningKey? = nil,
        service: ServiceSpec? = nil, attachments: AttachmentMaker? = nil
    ) throws -> AddResult {
        try add(tree: tree, name: name, version: version, created: created, configuration: configuration,
                signingKey: signingKey, service: service, attachments: attachments,
                packer: { try ArchiveWriter.pack(tree: $0, to: $1, configuration: $2) })
    }

    /// A file to store beside the archive and list in the manifest (`ReleaseManifest.Attachment`).
    public struct AttachmentContent: Sendable {
        public var file: String
        public var mediaType: String
        public var data: Data

        public init(file: String, mediaType: String, data: Data) {
            self.file = file
            self.mediaType = mediaType
            self.data = data
        }
    }

    /// Makes the attachments once the archive is packed (an SBOM names the archive's digest
    /// and the files' hashes).
    public typealias AttachmentMaker = (_ packed: PackResult) throws -> [AttachmentContent]

    func add(
        tree: String, name: String, version: String, created: Int64,
        configuration: ArchiveWriterConfiguration, signingKey: ReleaseSigningKey?, service: ServiceSpec? = nil,
        attachments makeAttachments: AttachmentMaker? = nil, packer: Packer
    ) throws -> AddResult {
        try Self.validate(name: name)
        try Self.validate(version: version)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: tree, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ReleaseError.treeNotFound(path: tree)
        }
        let reference = ReleaseReference(name: name, version: version)
        let appDir = appDirectory(name)
        // A store inside the tree would pack its own half-written archive.
        let treeReal = URL(fileURLWithPath: tree).resolvingSymlinksInPath().path
        let storeReal = URL(fileURLWithPath: root).resolvingSymlinksInPath().path
        if storeReal == treeReal || storeReal.hasPrefix(treeReal == "/" ? "/" : treeReal + "/") {
            throw ReleaseError.storeInsideTree(store: root, tree: tree)
        }
        try makeDirectories(appDir)

        let temp = appDir + "/.tmp-\(version)-" + String(format: "%08x", UInt32.random(in: .min ... .max))
        guard mkdir(temp, 0o755) == 0 else { throw ReleaseError.system(operation: "create directory", path: temp, errno: errno) }
        InterruptedWork.register(temp)
        defer {
            // Removes the assembly directory whatever happened; after a successful rename it
            // no longer exists and this does nothing.
            removeTree(temp)
            InterruptedWork.unregister(temp)
        }

        let archiveName = Self.archiveFileName(configuration.compression)
        let packed = try packer(tree, temp + "/" + archiveName, configuration)
        try syncFile(temp + "/" + archiveName)

        var attachments: [ReleaseManifest.Attachment] = []
        for content in try makeAttachments?(packed) ?? [] {
            try Self.validate(attachment: content.file, source: "attachment")
            try writeNewFile(temp + "/" + content.file, content.data)
            attachments.append(.init(file: content.file, mediaType: content.mediaType,
                                     sha256: FileHasher.hex(SHA256.hash(data: content.data)), size: UInt64(content.data.count)))
        }
        let manifest = ReleaseManifest(
            name: name, version: version, created: created, compression: configuration.compression,
            archive: .init(sha256: packed.archiveSHA256, size: packed.archiveSize),
            tarSize: packed.tarSize, entries: packed.entries, service: service,
            attachments: attachments.isEmpty ? nil : attachments.sorted { $0.file < $1.file })
        let manifestBytes = try manifest.encoded()
        try writeNewFile(temp + "/" + Self.manifestFileName, manifestBytes)
        var signatureFile: Data?
        if let signingKey {
            let file = ReleaseSigning.signatureFile(try ReleaseSigning.sign(manifestBytes, with: signingKey))
            try writeNewFile(temp + "/" + Self.signatureFileName, file)
            signatureFile = file
        }
        try syncDirectory(temp)

        let target = releaseDirectory(reference)
        // The lock makes check, rename and index update one step against a concurrent add.
        return try withAppLock(appDir) {
            if FileManager.default.fileExists(atPath: target) {
                let existing = try release(reference)
                guard existing.manifest.archive.sha256 == packed.archiveSHA256, existing.manifest.service == service,
                      existing.manifest.attachments == manifest.attachments else {
                    throw ReleaseError.versionExists(name: name, version: version, path: target)
                }
                try appendToIndex(reference)
                return AddResult(outcome: .alreadyPresent, release: existing)
            }
            guard rename(temp, target) == 0 else {
                if errno == EEXIST || errno == ENOTEMPTY {
                    throw ReleaseError.versionExists(name: name, version: version, path: target)
                }
                throw ReleaseError.system(operation: "rename \(temp) to", path: target, errno: errno)
            }
            try syncDirectory(appDir)
            try appendToIndex(reference)
            let stored = StoredRelease(
                reference: reference, directory: target,
                manifestPath: target + "/" + Self.manifestFileName,
                archivePath: target + "/" + archiveName,
                signaturePath: target + "/" + Self.signatureFileName,
                manifest: manifest, manifestBytes: manifestBytes, signatureFile: signatureFile)
            return AddResult(outcome: .added, release: stored)
        }
    }

    // MARK: Adopting a release made elsewhere

    /// Moves a complete release directory that was fetched from elsewhere (`slipway pull`)
    /// into the store, after the checks `verify` makes: the manifest names `reference`, the
    /// archive and every attachment have the manifest's digests, and with `trust` the
    /// signature verifies with that key (a release without one is then refused). Only the
    /// release's own files may be there. `directory` must be on the store's file system (a
    /// dot-directory of the app's): it is renamed into place, so a reader never sees half a
    /// release. A version stored with the same archive is `alreadyPresent` and `directory`
    /// is removed; with another archive it is an error.
    public func adopt(directory: String, reference: ReleaseReference, trust: ReleasePublicKey? = nil) throws -> AddResult {
        try Self.validate(name: reference.name)
        try Self.validate(version: reference.version)
        let manifestPath = directory + "/" + Self.manifestFileName
        let (manifest, bytes) = try ReleaseManifest.read(path: manifestPath)
        guard manifest.name == reference.name, manifest.version == reference.version else {
            throw ReleaseError.manifestMismatch(path: manifestPath, expected: reference.description, found: manifest.reference)
        }
        let archiveName = Self.archiveFileName(manifest.compression)
        let signaturePath = directory + "/" + Self.signatureFileName
        let signature = access(signaturePath, F_OK) == 0 ? try readFile(signaturePath) : nil
        let allowed = Set([Self.manifestFileName, archiveName, Self.signatureFileName] + (manifest.attachments ?? []).map(\.file))
        let present = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        if let stray = present.sorted().first(where: { !allowed.contains($0) }) {
            throw ReleaseError.manifestMalformed(path: directory + "/" + stray, detail: "the file is not one of the release's (its manifest does not list it)")
        }
        let staged = StoredRelease(reference: reference, directory: directory, manifestPath: manifestPath,
                                   archivePath: directory + "/" + archiveName, signaturePath: signaturePath,
                                   manifest: manifest, manifestBytes: bytes, signatureFile: signature)
        try ReleaseVerifier.verify(staged, trust: trust).requireValid()
        for file in present { try syncFile(directory + "/" + file) }
        try syncDirectory(directory)

        let appDir = appDirectory(reference.name)
        let target = releaseDirectory(reference)
        return try withAppLock(appDir) {
            if FileManager.default.fileExists(atPath: target) {
                let existing = try release(reference)
                guard existing.manifest.archive.sha256 == manifest.archive.sha256 else {
                    throw ReleaseError.versionExists(name: reference.name, version: reference.version, path: target)
                }
                removeTree(directory)
                try appendToIndex(reference)
                return AddResult(outcome: .alreadyPresent, release: existing)
            }
            guard rename(directory, target) == 0 else {
                throw ReleaseError.system(operation: "rename \(directory) to", path: target, errno: errno)
            }
            try syncDirectory(appDir)
            try appendToIndex(reference)
            return AddResult(outcome: .added, release: try release(reference))
        }
    }

    // MARK: Attachments

    /// Checks that an attachment's file name is a plain file name of the release's directory
    /// that is not one of the release's own files.
    public static func validate(attachment file: String, source: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789.-_".utf8)
        guard !file.isEmpty, file.utf8.count <= 100, file.utf8.allSatisfy(allowed.contains), !file.hasPrefix("."),
              file != manifestFileName, file != signatureFileName, !file.hasPrefix("rootfs."), file != "deltas"
        else {
            throw ReleaseError.manifestMalformed(path: source, detail: "attachment file name '\(file)' is not a plain file name of a release")
        }
    }

    // MARK: Reserving a version

    /// A version held by a build in progress (`reserveVersion`): a `.building-<version>` file
    /// in the app's directory with an exclusive flock on it. The kernel drops the lock when
    /// the process ends, also by kill -9, so a crashed build never holds a version (its file
    /// is removed by the next reservation).
    public final class VersionReservation: Sendable {
        public let version: String
        let path: String
        /// The locked descriptor, -1 once released.
        private let lock: Mutex<Int32>

        init(version: String, path: String, descriptor: Int32) {
            self.version = version
            self.path = path
            lock = Mutex(descriptor)
        }

        /// Removes the file and drops the lock (once), under the app's lock so that no
        /// reservation in progress opens the file being removed.
        public func release() {
            let appDir = (path as NSString).deletingLastPathComponent
            _ = try? ReleaseStore.withAppLock(appDir) {
                lock.withLock { descriptor in
                    guard descriptor >= 0 else { return }
                    unlink(path)
                    close(descriptor)
                    descriptor = -1
                }
            }
        }

        deinit { release() }
    }

    /// The first of `base`, `base.2`, `base.3`, … that is neither stored nor held by another
    /// build, held until `release()`, the reservation's end or the process's. Two builds that default
    /// to the same timestamp thus get distinct versions, in the order they reserved them
    /// (`sort -V` and dpkg order them so). Reservations left by dead builds are removed.
    public func reserveVersion(name: String, base: String) throws -> VersionReservation {
        try Self.validate(name: name)
        try Self.validate(version: base)
        let appDir = appDirectory(name)
        try makeDirectories(appDir)
        return try withAppLock(appDir) {
            for stale in ((try? FileManager.default.contentsOfDirectory(atPath: appDir)) ?? []) where stale.hasPrefix(Self.reservationPrefix) {
                let path = appDir + "/" + stale
                let fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
                guard fd >= 0 else { continue }
                if flock(fd, LOCK_EX | LOCK_NB) == 0 { unlink(path) }
                close(fd)
            }
            for number in 1...999 {
                let version = number == 1 ? base : "\(base).\(number)"
                try Self.validate(version: version)
                if access(releaseDirectory(ReleaseReference(name: name, version: version)), F_OK) == 0 { continue }
                let path = appDir + "/" + Self.reservationPrefix + version
                let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
                guard fd >= 0 else { throw ReleaseError.system(operation: "create", path: path, errno: errno) }
                if flock(fd, LOCK_EX | LOCK_NB) == 0 { return VersionReservation(version: version, path: path, descriptor: fd) }
                close(fd)
            }
            throw ReleaseError.invalidName(what: "version", value: base, reason: "\(base) to \(base).999 are all stored or being built")
        }
    }

    static let reservationPrefix = ".building-"

    // MARK: Reading

    /// Loads a stored release: its manifest, archive path and signature if any.
    public func release(_ reference: ReleaseReference) throws -> StoredRelease {
        let directory = releaseDirectory(reference)
        let manifestPath = directory + "/" + Self.manifestFileName
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue,
              FileManager.default.fileExists(atPath: manifestPath)
        else {
            throw ReleaseError.releaseNotFound(name: reference.name, version: reference.version, store: root,
                                               known: (try? versions(of: reference.name)) ?? [])
        }
        let (manifest, bytes) = try ReleaseManifest.read(path: manifestPath)
        guard manifest.name == reference.name, manifest.version == reference.version else {
            throw ReleaseError.manifestMismatch(path: manifestPath, expected: reference.description, found: manifest.reference)
        }
        let archivePath = directory + "/" + Self.archiveFileName(manifest.compression)
        guard FileManager.default.fileExists(atPath: archivePath) else { throw ReleaseError.archiveMissing(path: archivePath) }
        let signaturePath = directory + "/" + Self.signatureFileName
        var signature: Data?
        if access(signaturePath, F_OK) == 0 { signature = try readFile(signaturePath) }
        return StoredRelease(reference: reference, directory: directory, manifestPath: manifestPath,
                             archivePath: archivePath, signaturePath: signaturePath,
                             manifest: manifest, manifestBytes: bytes, signatureFile: signature)
    }

    /// Loads `name@version`.
    public func release(name: String, version: String) throws -> StoredRelease {
        try Self.validate(name: name)
        try Self.validate(version: version)
        return try release(ReleaseReference(name: name, version: version))
    }

    /// The versions of `name` in the order they were added (newest last), from the index;
    /// without an index (a store copied by hand), the release directories in name order.
    public func versions(of name: String) throws -> [String] {
        if let index = try readIndex(name) { return index.versions }
        let appDir = appDirectory(name)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: appDir) else { return [] }
        return names.filter { !$0.hasPrefix(".") && access("\(appDir)/\($0)/\(Self.manifestFileName)", F_OK) == 0 }.sorted()
    }

    // MARK: Index

    /// `store/<app>/index.json`.
    struct Index: Codable {
        var formatVersion: Int = 1
        var name: String
        var versions: [String]
    }

    private func readIndex(_ name: String) throws -> Index? {
        let path = appDirectory(name) + "/" + Self.indexFileName
        guard access(path, F_OK) == 0 else { return nil }
        let data = try readFile(path)
        do {
            return try JSONDecoder().decode(Index.self, from: data)
        } catch {
            throw ReleaseError.manifestMalformed(path: path, detail: "the store index is damaged: \(ReleaseManifest.describe(error))")
        }
    }

    private func appendToIndex(_ reference: ReleaseReference) throws {
        var index = try readIndex(reference.name) ?? Index(name: reference.name, versions: [])
        guard !index.versions.contains(reference.version) else { return }
        index.versions.append(reference.version)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        try writeFileAtomically(appDirectory(reference.name) + "/" + Self.indexFileName, try encoder.encode(index) + Data("\n".utf8))
    }

    // MARK: Files

    private func withAppLock<T>(_ appDir: String, _ body: () throws -> T) throws -> T {
        try Self.withAppLock(appDir, body)
    }

    private static func withAppLock<T>(_ appDir: String, _ body: () throws -> T) throws -> T {
        let path = appDir + "/.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ReleaseError.system(operation: "open lock", path: path, errno: errno) }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR { throw ReleaseError.system(operation: "lock", path: path, errno: errno) }
        }
        return try body()
    }
}

/// `mkdir -p`.
private func makeDirectories(_ path: String) throws {
    if let failure = makeDirectoryPath(path) {
        throw ReleaseError.system(operation: "create directory", path: failure.prefix, errno: failure.errno)
    }
}

private func removeTree(_ path: String) {
    PosixPath.removeTree(path)
}

/// Creates `path` (which must not exist), writes `data`, fsyncs.
private func writeNewFile(_ path: String, _ data: Data) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw ReleaseError.system(operation: "create", path: path, errno: errno) }
    defer { close(fd) }
    try writeAll(fd, data, path: path)
    guard fsync(fd) == 0 else { throw ReleaseError.system(operation: "fsync", path: path, errno: errno) }
}

/// Replaces `path` with `data` by writing a temporary file, fsyncing and renaming it.
package func writeFileAtomically(_ path: String, _ data: Data) throws {
    try SystemError.rethrow({ () throws(SystemError) in try Durable.replace(path, with: data) }, as: ReleaseError.system)
}

private func syncFile(_ path: String) throws {
    try SystemError.rethrow({ () throws(SystemError) in try Durable.syncFile(path) }, as: ReleaseError.system)
}

private func syncDirectory(_ path: String) throws {
    try SystemError.rethrow({ () throws(SystemError) in try Durable.syncDirectory(path) }, as: ReleaseError.system)
}
