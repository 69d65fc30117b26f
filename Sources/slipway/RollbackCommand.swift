import ArgumentParser
import SlipwayCore

/// `slipway rollback NAME --local [--to V]`: switch this machine back.
struct Rollback: SlipwayCommand {
    static let configuration = CommandConfiguration(
        abstract: "Switch back to the previous version, or --to V (--local: this machine).")

    @Argument(help: ArgumentHelp("The app.", valueName: "NAME")) var app: String
    @Option(help: ArgumentHelp("A landed version to switch to.", valueName: "V")) var to: String?
    @Flag(help: "This machine, not the fleet.") var local = false
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws {
        guard local else { throw ValidationError("Fleet rollback (--on SELECTOR) is not available yet; use --local for this machine.") }
    }

    func run(_ context: CommandContext) throws {
        let result = try NodeRollback.rollback(app: app, to: to, context: try node.context(context.output))
        try context.output.result(result, text: [switchText(result)])
    }
}
