import Foundation
import Glibc
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The filesystem images `export` writes.
public enum ImageFormat: String, Codable, Sendable, CaseIterable {
    /// Writable ext4 with free space (`--size`).
    case ext4
    /// Read-only, zstd-compressed squashfs.
    case squashfs
    /// An OCI image layout (a directory) with the tree as one layer (docs/export.md).
    case oci

    /// The formats that are file system images (not `oci`, a directory).
    public static let filesystems: [ImageFormat] = [.ext4, .squashfs]

    /// The programs the format needs, with the Debian package of each.
    var tools: [(program: String, package: String)] {
        switch self {
        case .ext4: [("mke2fs", "e2fsprogs"), ("debugfs", "e2fsprogs"), ("dumpe2fs", "e2fsprogs"), ("e2fsck", "e2fsprogs")]
        case .squashfs: [("mksquashfs", "squashfs-tools")]
        case .oci: []
        }
    }
}

/// What `export` is asked to make.
public struct ExportRequest: Sendable {
    public var format: ImageFormat
    /// The image file to write.
    public var output: String
    /// The ext4 image's size in bytes (`ImageSize.parse`); nil for the default.
    public var size: UInt64?
    /// Replace an existing `output`.
    public var force: Bool
    /// Also require a valid signature under this key.
    public var trust: ReleasePublicKey?
    /// Unpacking and mksquashfs threads (0: one per core); the image does not depend on it.
    public var threads: Int
    public var progress: (any ArchiveProgress)?

    public init(format: ImageFormat, output: String, size: UInt64? = nil, force: Bool = false,
                trust: ReleasePublicKey? = nil, threads: Int = 0, progress: (any ArchiveProgress)? = nil) {
        self.format = format
        self.output = output
        self.size = size
        self.force = force
        self.trust = trust
        self.threads = threads
        self.progress = progress
    }
}

/// What `export` wrote.
public struct ExportResult: Codable, Sendable {
    /// `NAME@VERSION`.
    public var release: String
    public var format: ImageFormat
    public var path: String
    /// Bytes of the image file.
    public var size: UInt64
    /// Lowercase hex SHA-256 of the image: the same release gives the same image.
    public var sha256: String
    /// ext4: the filesystem UUID (derived from the release).
    public var uuid: String?
    /// ext4: bytes free for unprivileged users, as df shows them once mounted (without the
    /// 5 % reserved for root and the ext4 driver's own reserve).
    public var freeBytes: UInt64?
    /// squashfs: the compressor.
    public var compression: String?
    /// Wall-clock seconds of the whole export.
    public var seconds: Double

    /// The human-readable report.
    public var textLines: [String] {
        if format == .oci {
            let version = release.split(separator: "@").last.map(String.init) ?? ""
            return ["\(release) exported to \(path) (an OCI image layout)",
                    "layer \(ImageSize.format(size)) (\(size) bytes)" + (compression.map { ", \($0)-compressed" } ?? ", uncompressed tar"),
                    "manifest sha256 \(sha256); try it: podman run --rm -it oci:\(path):\(version)"]
        }
        var detail = "\(format.rawValue), \(ImageSize.format(size)) (\(size) bytes)"
        if let freeBytes { detail += ", \(ImageSize.format(freeBytes)) free" }
        if let uuid { detail += ", uuid \(uuid)" }
        if let compression { detail += ", \(compression)-compressed" }
        return ["\(release) exported to \(path)", detail, "sha256 \(sha256)"]
    }
}

/// Writes a stored release as a filesystem image (docs/export.md): verifies the release,
/// unpacks it with the safe extractor into a working directory beside the output, makes the
/// image there under a temporary name and renames it to the output only when complete. The
/// working directory is registered with `InterruptedWork`, so neither an error nor Ctrl-C
/// leaves a partial image or tree behind.
public struct ReleaseExporter: Sendable {
    public var runner: CommandRunner
    public var output: Output
    /// Whether a program is installed; tests swap it.
    public var isInstalled: @Sendable (String) -> Bool

    public init(runner: CommandRunner = .init(), output: Output = .init(),
                isInstalled: @escaping @Sendable (String) -> Bool = { CommandRunner.isInstalled($0) }) {
        self.runner = runner
        self.output = output
        self.isInstalled = isInstalled
    }

    /// The size an ext4 image of `release` gets without `--size`.
    public static func defaultExt4Size(_ release: StoredRelease) -> UInt64 {
        ImageSize.defaultSize(ImageSize.usage(release.manifest))
    }

    public func export(_ release: StoredRelease, _ request: ExportRequest) throws -> ExportResult {
        let clock = ContinuousClock()
        let start = clock.now
        let reference = release.reference.description

        // Everything that can be refused without work, first.
        if request.format != .ext4, request.size != nil { throw ExportError.sizeNotApplicable(format: request.format) }
        if request.format == .oci {
            // A directory of blobs, no file system to make: no root needed.
            try ReleaseVerifier.verify(release, trust: request.trust).requireValid()
            let written = try OCILayout.write(release, to: request.output, force: request.force, runner: runner)
            return ExportResult(release: reference, format: .oci, path: request.output, size: written.layerSize,
                                sha256: String(written.manifestDigest.dropFirst("sha256:".count)), uuid: nil, freeBytes: nil,
                                compression: written.layerType.hasSuffix("+zstd") ? "zstd" : nil,
                                seconds: Self.seconds(clock.now - start))
        }
        if let size = request.size, size < ImageSize.minimum {
            throw ExportError.invalidSize(ImageSize.format(size), reason: "an ext4 image needs at least \(ImageSize.format(ImageSize.minimum))")
        }
        for tool in request.format.tools where !isInstalled(tool.program) {
            throw ExportError.toolMissing(program: tool.program, package: tool.package)
        }
        guard geteuid() == 0 else { throw ExportError.needsRoot }
        let directory = try Self.checkOutput(request.output, force: request.force)
        let usage = ImageSize.usage(release.manifest)
        var ext4Size: UInt64 = 0
        if request.format == .ext4 {
            ext4Size = request.size ?? ImageSize.defaultSize(usage)
            if let requested = request.size, requested < ImageSize.required(size: requested, usage: usage) {
                throw ExportError.sizeTooSmall(release: reference, requested: requested,
                                               defaultSize: ImageSize.defaultSize(usage), detail: nil)
            }
        }

        var step = clock.now
        func lap(_ what: String) {
            let now = clock.now
            output.verbose("\(what) in \(Self.seconds(now - step)) s")
            step = now
        }

        let verification = try ReleaseVerifier.verify(release, trust: request.trust)
        try verification.requireValid()
        lap("verified \(reference) (archive sha256 \(verification.actualSHA256))")

        let work = directory + "/.slipway-export-" + String(format: "%08x", UInt32.random(in: .min ... .max))
        guard mkdir(work, 0o700) == 0 else { throw ExportError.system(operation: "create directory", path: work, errno: errno) }
        InterruptedWork.register(work)
        defer {
            // Whatever happened; after success only the emptied directory is left to remove.
            PosixPath.removeTree(work)
            InterruptedWork.unregister(work)
        }
        let tree = work + "/tree"
        let image = work + "/image"

        _ = try ArchiveExtractor.extract(archive: release.archivePath, into: tree,
                                         options: ExtractOptions(threads: request.threads, restoreOwners: true, progress: request.progress))
        try Self.settleRoot(tree, created: release.manifest.created)
        lap("unpacked \(release.manifest.entries.count) entries")
        try InterruptedWork.checkpoint()

        let made: Ext4Image.Made?
        do {
            made = try makeImage(request.format, tree: tree, image: image, work: work, release: release,
                                 ext4Size: ext4Size, usage: usage, threads: request.threads)
        } catch {
            // Ctrl-C reaches the tool too: its death by SIGINT is the interruption, not a failure.
            if InterruptedWork.isInterrupted { throw ArchiveError.interrupted }
            throw error
        }
        lap("made the \(request.format.rawValue) image")
        try InterruptedWork.checkpoint()
        // The tree is no longer needed: free its space before the image is hashed.
        PosixPath.removeTree(tree)

        try Self.finish(image)
        let (sha256, size) = try FileHasher.sha256(path: image)
        lap("hashed the image (\(ImageSize.format(size)))")
        try InterruptedWork.checkpoint()
        try Self.install(image, at: request.output, force: request.force)
        try Self.syncDirectory(directory)

        return ExportResult(
            release: reference, format: request.format, path: request.output, size: size, sha256: sha256,
            uuid: made?.uuid, freeBytes: made?.freeBytes,
            compression: request.format == .squashfs ? SquashfsImage.compressor : nil,
            seconds: Self.seconds(clock.now - start))
    }

    // MARK: Steps

    /// Runs the format's tools on the unpacked tree; for ext4, returns its UUID and free space.
    private func makeImage(_ format: ImageFormat, tree: String, image: String, work: String, release: StoredRelease,
                           ext4Size: UInt64, usage: ImageSize.TreeUsage, threads: Int) throws -> Ext4Image.Made? {
        let reference = release.reference.description
        switch format {
        case .ext4:
            output.log("making a \(ImageSize.format(ext4Size)) ext4 image of \(reference) (mke2fs)")
            do {
                return try Ext4Image.make(
                    tree: tree, image: image, work: work, size: ext4Size,
                    inodes: ImageSize.inodeCount(size: ext4Size, usage: usage), release: release, runner: runner)
            } catch let error as Ext4Image.OutOfSpace {
                throw ExportError.sizeTooSmall(release: reference, requested: ext4Size,
                                               defaultSize: ImageSize.defaultSize(usage), detail: error.detail)
            }
        case .squashfs:
            output.log("making a squashfs image of \(reference) (mksquashfs, \(SquashfsImage.compressor))")
            try SquashfsImage.make(tree: tree, image: image, created: release.manifest.created, threads: threads, runner: runner)
            return nil
        case .oci:
            preconditionFailure("an OCI layout is written by OCILayout, before any tree is unpacked")
        }
    }

    /// Refuses an output that exists (without `force`) or is a directory; returns the
    /// directory the image goes into, which must exist.
    static func checkOutput(_ path: String, force: Bool) throws -> String {
        var st = stat()
        if lstat(path, &st) == 0 {
            if st.st_mode & S_IFMT == S_IFDIR { throw ExportError.outputIsDirectory(path: path) }
            if !force { throw ExportError.outputExists(path: path) }
        }
        var directory = (path as NSString).deletingLastPathComponent
        if directory.isEmpty { directory = "." }
        guard stat(directory, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw ExportError.outputDirectoryMissing(path: directory)
        }
        return directory
    }

    /// The root directory of a release is not in its archive; the extractor made it. Give it
    /// what every root has (root:root, 0755) and the release's time, so the image does not
    /// carry the moment of unpacking.
    static func settleRoot(_ tree: String, created: Int64) throws {
        guard chown(tree, 0, 0) == 0 else { throw ExportError.system(operation: "chown", path: tree, errno: errno) }
        guard chmod(tree, 0o755) == 0 else { throw ExportError.system(operation: "chmod", path: tree, errno: errno) }
        var times = [timespec(tv_sec: Int(created), tv_nsec: 0), timespec(tv_sec: Int(created), tv_nsec: 0)]
        guard utimensat(AT_FDCWD, tree, &times, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw ExportError.system(operation: "set the times of", path: tree, errno: errno)
        }
    }

    /// Mode 0644 and fsync, whatever the tool left.
    static func finish(_ image: String) throws {
        let fd = open(image, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ExportError.system(operation: "open", path: image, errno: errno) }
        defer { close(fd) }
        guard fchmod(fd, 0o644) == 0 else { throw ExportError.system(operation: "chmod", path: image, errno: errno) }
        guard fsync(fd) == 0 else { throw ExportError.system(operation: "fsync", path: image, errno: errno) }
    }

    /// Moves the finished image to `path`: over an existing file with `force`, else with
    /// link(2), which refuses atomically should the path have appeared meanwhile.
    static func install(_ image: String, at path: String, force: Bool) throws {
        if force {
            guard rename(image, path) == 0 else { throw ExportError.system(operation: "rename \(image) to", path: path, errno: errno) }
            return
        }
        guard link(image, path) == 0 else {
            if errno == EEXIST { throw ExportError.outputExists(path: path) }
            throw ExportError.system(operation: "link \(image) to", path: path, errno: errno)
        }
        unlink(image)
    }

    static func syncDirectory(_ path: String) throws {
        try SystemError.rethrow({ () throws(SystemError) in try Durable.syncDirectory(path) }, as: ExportError.system)
    }

    /// Seconds to the millisecond.
    static func seconds(_ duration: Duration) -> Double {
        let (whole, attoseconds) = duration.components
        return Double(whole * 1000 + Int64((Double(attoseconds) / 1e15).rounded())) / 1000
    }
}
