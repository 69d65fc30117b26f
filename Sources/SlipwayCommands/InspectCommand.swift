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

/// `slipway inspect NAME@V`: the manifest's summary and whether the release checks out.
struct Inspect: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a release's manifest summary and verify its archive (and signature with --trust).",
        discussion: "Exits non-zero when the archive or the signature does not match."
    )

    @Argument(help: ArgumentHelp("The release.", valueName: "NAME@V"))
    var release: String

    @Option(help: ArgumentHelp("Also check the signature against this public key.", valueName: "FILE.pub"))
    var trust: String?

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var global: GlobalOptions

    var wantsJSON: Bool { json }

    func validate() throws { _ = try parseReference(release) }

    func run(_ context: CommandContext) throws {
        let reference = try parseReference(release)
        let key = try trust.map { try ReleaseSigning.loadPublicKey(path: $0) }
        let stored = try storeOptions.releaseStore.release(reference)
        let verification = try ReleaseVerifier.verify(stored, trust: key)
        let inspection = ReleaseInspection(release: stored, verification: verification)
        try context.output.result(inspection, text: inspection.textLines)
        try verification.requireValid()
    }
}
