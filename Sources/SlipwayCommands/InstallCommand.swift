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

/// `slipway install NAME@V`: this machine as the node; apply from the local store, then activate.
struct Install: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Land a release from the local store on this machine and switch to it.")

    @Argument(help: ArgumentHelp("The release.", valueName: "NAME@V")) var reference: String
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws { _ = try parseReference(reference) }

    /// The JSON reply: what apply and activate did.
    struct Reply: Encodable {
        var apply: NodeApply.Result
        var activate: NodeActivate.Result
    }

    func run(_ context: CommandContext) throws {
        let release = try storeOptions.releaseStore.release(try parseReference(reference))
        let nodeContext = try node.context(context.output)
        let applied = try NodeApply.apply(
            .init(source: .full(archive: release.archivePath), manifestPath: release.manifestPath,
                  signaturePath: release.signatureFile == nil ? nil : release.signaturePath),
            context: nodeContext)
        let activated = try NodeActivate.activate(app: release.reference.name, version: release.reference.version, context: nodeContext)
        try context.output.result(Reply(apply: applied, activate: activated),
                                  text: ["\(applied.app)@\(applied.version): \(applied.outcome)", switchText(activated)])
    }
}
