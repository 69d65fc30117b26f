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

/// `slipway unpack ARCHIVE DEST`: safe extraction of any tar.xz, tar.zst or tar.
struct Unpack: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "unpack",
        abstract: "Extract a tar.xz, tar.zst or tar archive safely into a new or empty directory."
    )

    @Argument(help: ArgumentHelp("The archive to extract.", valueName: "ARCHIVE"))
    var archive: String

    @Argument(help: ArgumentHelp("The target directory; must not exist or be empty.", valueName: "DEST"))
    var dest: String

    @Option(help: "xz decompression threads (default: one per core).")
    var threads: Int = 0

    @OptionGroup var global: GlobalOptions

    func run(_ context: CommandContext) throws {
        let progress = context.output.progress()
        let result: ExtractResult
        do {
            result = try ArchiveExtractor.extract(archive: archive, into: dest, options: ExtractOptions(threads: max(0, threads), progress: progress))
        } catch {
            progress.closeLine()
            throw error
        }
        context.output.result("unpacked \(result.entryCount) entries (\(ByteCount.format(result.tarSize)) of tar) into \(dest)")
    }
}
