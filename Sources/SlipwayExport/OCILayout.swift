import Foundation
import Glibc
import Crypto
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// `export --format oci`: the release as an OCI image layout (image-spec 1.1) in a directory,
/// one layer holding the release's tree, so `skopeo copy oci:DIR:V …` and podman take it and
/// the release can run as a container for a local try-out (docs/export.md, "OCI image
/// layout"). A zstd release's archive is the layer as it is (`tar+zstd`); an xz or plain one
/// becomes an uncompressed `tar` layer (OCI has no xz layers). The layout is assembled in a
/// dot-directory beside the output and renamed into place; the same release always gives the
/// same bytes.
enum OCILayout {
    static let manifestType = "application/vnd.oci.image.manifest.v1+json"
    static let indexType = "application/vnd.oci.image.index.v1+json"
    static let configType = "application/vnd.oci.image.config.v1+json"

    struct Descriptor: Codable {
        var mediaType: String
        var digest: String
        var size: UInt64
        var annotations: [String: String]?
    }

    struct ImageConfig: Codable {
        struct Config: Codable {
            var Env: [String]
            var Cmd: [String]?
            var User: String?
            var WorkingDir: String?
            var ExposedPorts: [String: [String: String]]?
            var Labels: [String: String]?
        }

        struct RootFS: Codable {
            var type = "layers"
            var diff_ids: [String]
        }

        var created: String
        var architecture: String
        var os = "linux"
        var config: Config
        var rootfs: RootFS
    }

    struct Manifest: Codable {
        var schemaVersion = 2
        var mediaType = OCILayout.manifestType
        var config: Descriptor
        var layers: [Descriptor]
        var annotations: [String: String]
    }

    struct Index: Codable {
        var schemaVersion = 2
        var mediaType = OCILayout.indexType
        var manifests: [Descriptor]
    }

    /// What was written: the manifest's digest and the layer's size and type.
    struct Written {
        var manifestDigest: String
        var layerSize: UInt64
        var layerType: String
    }

    static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }

    static func digest(_ data: Data) -> String { "sha256:" + FileHasher.hex(SHA256.hash(data: data)) }

    /// The Go architecture name of this machine (`amd64`, `arm64`, …).
    static var architecture: String {
        var names = utsname()
        uname(&names)
        let machine = withUnsafeBytes(of: &names.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return ["x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"][machine] ?? machine
    }

    /// Writes the layout of `release` into `output` (a directory that must not exist, or,
    /// with `force`, is replaced).
    static func write(_ release: StoredRelease, to output: String, force: Bool, runner: CommandRunner) throws -> Written {
        var st = stat()
        if lstat(output, &st) == 0, !force { throw ExportError.outputExists(path: output) }
        var parent = (output as NSString).deletingLastPathComponent
        if parent.isEmpty { parent = "." }
        guard stat(parent, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { throw ExportError.outputDirectoryMissing(path: parent) }
        let work = parent + "/.slipway-oci-" + String(format: "%08x", UInt32.random(in: .min ... .max))
        guard mkdir(work, 0o755) == 0 else { throw ExportError.system(operation: "create directory", path: work, errno: errno) }
        InterruptedWork.register(work)
        defer {
            PosixPath.removeTree(work)
            InterruptedWork.unregister(work)
        }
        let blobs = work + "/blobs/sha256"
        try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
        func put(_ data: Data) throws -> Descriptor {
            let digest = digest(data)
            try data.write(to: URL(fileURLWithPath: blobs + "/" + digest.dropFirst(7)))
            return Descriptor(mediaType: "", digest: digest, size: UInt64(data.count))
        }

        // The layer and its diff_id (the digest of the uncompressed tar).
        let tar = work + "/layer.tar"
        let decompress: [String]? = switch release.manifest.compression {
        case .xz: ["xz", "-dc", "--", release.archivePath]
        case .zstd: ["zstd", "-dcq", "--", release.archivePath]
        case .none: nil
        }
        if let decompress {
            let program = decompress[0]
            guard CommandRunner.isInstalled(program) else {
                throw ExportError.toolMissing(program: program, package: program == "xz" ? "xz-utils" : "zstd")
            }
            _ = try runner.run(Command(decompress, output: .file(tar)))
        } else {
            try FileManager.default.copyItem(atPath: release.archivePath, toPath: tar)
        }
        let diffID = "sha256:" + (try FileHasher.sha256(path: tar)).hex
        var layer: Descriptor
        if release.manifest.compression == .zstd {
            // The archive is the layer: its digest is the manifest's archive digest.
            unlink(tar)
            let name = blobs + "/" + release.manifest.archive.sha256
            try FileManager.default.copyItem(atPath: release.archivePath, toPath: name)
            layer = Descriptor(mediaType: "application/vnd.oci.image.layer.v1.tar+zstd", digest: "sha256:" + release.manifest.archive.sha256,
                               size: release.manifest.archive.size)
        } else {
            let hashed = try FileHasher.sha256(path: tar)
            guard rename(tar, blobs + "/" + hashed.hex) == 0 else { throw ExportError.system(operation: "rename", path: tar, errno: errno) }
            layer = Descriptor(mediaType: "application/vnd.oci.image.layer.v1.tar", digest: "sha256:" + hashed.hex, size: hashed.size)
        }

        let reference = release.reference
        let created = release.manifest.createdTimestamp
        let service = release.manifest.service
        let labels = ["org.opencontainers.image.title": reference.name, "org.opencontainers.image.version": reference.version]
        let config = ImageConfig(
            created: created, architecture: architecture,
            config: .init(Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                          Cmd: service?.command.map { ["/bin/sh", "-c", $0] }, User: service?.user, WorkingDir: "/",
                          ExposedPorts: service?.port.map { ["\($0)/tcp": [:]] }, Labels: labels),
            rootfs: .init(diff_ids: [diffID]))
        var configDescriptor = try put(try encode(config))
        configDescriptor.mediaType = configType
        let manifest = Manifest(config: configDescriptor, layers: [layer],
                                annotations: labels.merging(["org.opencontainers.image.created": created]) { $1 })
        let manifestBytes = try encode(manifest)
        var manifestDescriptor = try put(manifestBytes)
        manifestDescriptor.mediaType = manifestType
        manifestDescriptor.annotations = ["org.opencontainers.image.ref.name": reference.version]
        try encode(Index(manifests: [manifestDescriptor])).write(to: URL(fileURLWithPath: work + "/index.json"))
        try Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8).write(to: URL(fileURLWithPath: work + "/oci-layout"))

        // Whole, then into place.
        sync()
        if lstat(output, &st) == 0 { PosixPath.removeTree(output) }
        guard rename(work, output) == 0 else { throw ExportError.system(operation: "rename \(work) to", path: output, errno: errno) }
        return Written(manifestDigest: manifestDescriptor.digest, layerSize: layer.size, layerType: layer.mediaType)
    }
}
