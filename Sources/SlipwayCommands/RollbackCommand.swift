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

/// `slipway rollback NAME --on SEL [--to V]` (the fleet) or `--local` (this machine).
struct Rollback: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Switch nodes back to their previous version, or --to V, with no transfer (--local: this machine).")

    @Argument(help: ArgumentHelp("The app.", valueName: "NAME")) var app: String
    @Option(help: ArgumentHelp("A landed version to switch to.", valueName: "V")) var to: String?
    @Flag(help: "This machine, not the fleet.") var local = false
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Show what would happen on each node (current → target, batch) and change nothing; exit non-zero when it could not proceed.")
    var plan = false
    @OptionGroup var fleet: FleetOptions
    @OptionGroup var rollout: RolloutOptions
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws {
        guard local != (fleet.on != nil) else { throw ValidationError("Give --on SELECTOR for the fleet, or --local for this machine.") }
        guard !(local && plan) else { throw ValidationError("--plan is for the fleet (--on SELECTOR); `slipway status --local` shows this machine's versions.") }
    }

    func run(_ context: CommandContext) throws {
        if local {
            let result = try NodeRollback.rollback(app: app, to: to, context: try node.context(context.output))
            return try context.output.result(result, text: [switchText(result)])
        }
        let nodes = try fleet.nodes(output: context.output)
        let pool = try TransportPool()
        defer { pool.close(nodes) }
        let rollback = FleetRollback(app: app, to: to, policy: try rollout.policy(parallel: fleet.parallel, nodes: nodes.count), pool: pool,
                                     progress: fleet.progress(nodes, output: context.output),
                                     log: { [output = context.output] in output.log($0) })
        if plan { return try finish(rollback.plan(nodes), output: context.output) }
        try finish(rollback.run(nodes), output: context.output) { nodes in
            ["rollback", app] + (to.map { ["--to", $0] } ?? []) + fleet.arguments(on: nodes) + rollout.arguments
        }
    }
}
