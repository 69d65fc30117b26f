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

/// `slipway status [NAME] --on SEL` (the fleet) or `--local` (this machine).
struct Status: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show which versions nodes run, and drift (--local: this machine).")

    @Argument(help: ArgumentHelp("The app (default: every app).", valueName: "NAME")) var app: String?
    @Flag(help: "This machine, not the fleet.") var local = false
    @Flag(help: "With --local: the Debian and Python packages of each app's current version, from its SBOM.") var packages = false
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var fleet: FleetOptions
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws {
        guard local != (fleet.on != nil) else { throw ValidationError("Give --on SELECTOR for the fleet, or --local for this machine.") }
        if packages && !local { throw ValidationError("--packages goes with --local (run it on the node, or `slipway diff A B --packages` here).") }
    }

    func run(_ context: CommandContext) throws {
        if local { return try printStatus(app: app, node: node, packages: packages, output: context.output) }
        let nodes = try fleet.nodes(output: context.output)
        let pool = try TransportPool()
        defer { pool.close(nodes) }
        let status = FleetStatus.gather(app: app, nodes: nodes, pool: pool, parallel: fleet.parallel)
        try context.output.result(status, text: status.textLines)
    }
}
