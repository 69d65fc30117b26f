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

/// `slipway verify NAME@V --trust FILE.pub`: signature and archive hash, or a non-zero exit.
struct Verify: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify a release's signature against a trusted key and re-hash its archive."
    )

    @Argument(help: ArgumentHelp("The release.", valueName: "NAME@V"))
    var release: String

    @Option(help: ArgumentHelp("The public key the release must be signed with.", valueName: "FILE.pub"))
    var trust: String

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws { _ = try parseReference(release) }

    func run(_ context: CommandContext) throws {
        let reference = try parseReference(release)
        let key = try ReleaseSigning.loadPublicKey(path: trust)
        let stored = try storeOptions.releaseStore.release(reference)
        let verification = try ReleaseVerifier.verify(stored, trust: key)
        try verification.requireValid()
        context.output.result("\(reference): OK (signature verified with key \(key.keyID); archive sha256 \(verification.actualSHA256), \(ByteCount.format(verification.actualSize)))")
    }
}
