import ArgumentParser
import SlipwaySystem
import SlipwayFleet

/// `slipway prune NAME --on SEL [--keep N] [--plan]`: old versions off every node.
struct Prune: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove the oldest versions of an app on nodes, keeping N (never the current or previous one); `slipway node prune` on this machine.")

    @Argument(help: ArgumentHelp("The app.", valueName: "NAME")) var app: String
    @Option(help: ArgumentHelp("Versions each node keeps (default: its node.toml's keep, else 5).", valueName: "N")) var keep: Int?
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Show what each node would remove and change nothing; exit non-zero when a node cannot say.")
    var plan = false
    @OptionGroup var fleet: FleetOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws {
        if let keep, keep < 1 { throw ValidationError("--keep must be at least 1.") }
    }

    func run(_ context: CommandContext) throws {
        let nodes = try fleet.nodes(output: context.output)
        let pool = try TransportPool()
        defer { pool.close(nodes) }
        let prune = FleetPrune(app: app, keep: keep, parallel: fleet.parallel, pool: pool,
                               progress: fleet.progress(nodes, output: context.output))
        if plan { return try finish(prune.plan(nodes), output: context.output) }
        try finish(prune.run(nodes), output: context.output) { nodes in
            ["prune", app] + (keep.map { ["--keep", String($0)] } ?? []) + fleet.arguments(on: nodes)
        }
    }
}
