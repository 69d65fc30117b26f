import ArgumentParser
import SlipwayCore

/// `slipway status [NAME] --local`: the node status of this machine.
struct Status: SlipwayCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show which versions are landed and current (--local: this machine).")

    @Argument(help: ArgumentHelp("The app (default: every app).", valueName: "NAME")) var app: String?
    @Flag(help: "This machine, not the fleet.") var local = false
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws {
        guard local else { throw ValidationError("Fleet status (--on SELECTOR) is not available yet; use --local for this machine.") }
    }

    func run(_ context: CommandContext) throws {
        try printStatus(app: app, node: node, output: context.output)
    }
}
