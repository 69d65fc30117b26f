import ArgumentParser
import SlipwayCore

/// `slipway diff NAME@A NAME@B`: entries added, removed and changed from A to B.
struct Diff: SlipwayCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the files added, removed and changed between two releases."
    )

    @Argument(help: ArgumentHelp("The old release.", valueName: "NAME@A"))
    var old: String

    @Argument(help: ArgumentHelp("The new release.", valueName: "NAME@B"))
    var new: String

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var global: GlobalOptions

    var wantsJSON: Bool { json }

    func validate() throws {
        _ = try parseReference(old)
        _ = try parseReference(new)
    }

    func run(_ context: CommandContext) throws {
        let store = storeOptions.releaseStore
        let before = try store.release(try parseReference(old))
        let after = try store.release(try parseReference(new))
        let diff = ManifestDiff(from: before.manifest, to: after.manifest)
        try context.output.result(diff, text: diff.textLines)
    }
}
