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

/// `slipway keygen --out FILE`: a new Ed25519 key pair.
struct Keygen: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Create an Ed25519 key pair: FILE (private, mode 0600) and FILE.pub.",
        discussion: "Never overwrites an existing key."
    )

    @Option(help: ArgumentHelp("The private key file to create; the public key goes to FILE.pub.", valueName: "FILE"))
    var out: String

    @OptionGroup var global: GlobalOptions

    func run(_ context: CommandContext) throws {
        let key = try ReleaseSigning.generateKey(at: out)
        context.output.result([
            "private key: \(key.privateKeyPath) (keep it secret; sign with pack --sign-key)",
            "public key:  \(key.publicKeyPath) (give it to verify --trust)",
            "key id:      \(key.keyID)",
        ])
    }
}
