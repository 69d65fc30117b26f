import ArgumentParser
import SlipwaySystem
import SlipwayArchive
import SlipwayRelease
import SlipwayRecipe
import SlipwayBuild
import SlipwayExport
import SlipwayNodeProtocol
import SlipwayNode
import SlipwayFleet

/// `slipway export NAME@V --format ext4|squashfs|oci --out FILE|DIR`: a release as a filesystem
/// image or an OCI image layout.
struct Export: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a release as an ext4 or squashfs filesystem image, or as an OCI image layout.",
        discussion: """
            ext4 is writable, with free space: --size (e.g. 512M, 2G), by default the tree plus 30 % \
            and at least 64 MiB. squashfs is read-only and zstd-compressed. Exporting the same \
            release again gives a byte-identical image. Needs root, and e2fsprogs or squashfs-tools. \
            oci writes a directory (an OCI image layout, the tree as one layer) that skopeo and \
            podman take: podman run --rm -it oci:DIR:VERSION. See docs/export.md.
            """
    )

    @Argument(help: ArgumentHelp("The release.", valueName: "NAME@V"))
    var release: String

    @Option(help: "ext4 (writable), squashfs (read-only, compressed) or oci (an image layout directory).")
    var format: ImageFormat

    @Option(help: ArgumentHelp("The image file to write (oci: the layout directory).", valueName: "FILE|DIR"))
    var out: String

    @Option(help: ArgumentHelp("ext4 only: the image size, e.g. 512M or 2G (default: the tree plus 30 %, at least 64M).", valueName: "SIZE"))
    var size: String?

    @Flag(help: "Replace an existing --out.")
    var force = false

    @Option(help: ArgumentHelp("Also require a valid signature under this public key.", valueName: "FILE.pub"))
    var trust: String?

    @Option(help: "Unpacking and mksquashfs threads (default: one per core); the image does not depend on it.")
    var threads: Int = 0

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var global: GlobalOptions

    var wantsJSON: Bool { json }

    func validate() throws {
        _ = try parseReference(release)
        if threads < 0 { throw ValidationError("--threads is 0 (one per core) or more.") }
        if out.isEmpty { throw ValidationError("--out needs a file name.") }
        if let size {
            if format != .ext4 { throw ValidationError(Output.message(for: ExportError.sizeNotApplicable(format: format))) }
            do {
                _ = try ImageSize.parse(size)
            } catch {
                throw ValidationError(Output.message(for: error))
            }
        }
    }

    func run(_ context: CommandContext) throws {
        let reference = try parseReference(release)
        let key = try trust.map { try ReleaseSigning.loadPublicKey(path: $0) }
        let stored = try storeOptions.releaseStore.release(reference)
        let progress = context.output.progress()
        let request = ExportRequest(
            format: format, output: out, size: try size.map { try ImageSize.parse($0) }, force: force,
            trust: key, threads: threads, progress: progress)
        let result: ExportResult
        do {
            result = try ReleaseExporter(output: context.output).export(stored, request)
        } catch {
            progress.closeLine()
            throw error
        }
        try context.output.result(result, text: result.textLines)
    }
}

extension ImageFormat: ExpressibleByArgument {}
