import Foundation
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

/// `slipway deploy NAME@V --on SEL`: push, then switch in rolling batches.
struct Deploy: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "deploy",
        abstract: "Push a release, then switch nodes to it in rolling batches, each confirmed; stop and switch back on failure.")

    @Argument(help: ArgumentHelp("The release.", valueName: "NAME@V")) var reference: String
    @OptionGroup var fleet: FleetOptions
    @OptionGroup var rollout: RolloutOptions
    @OptionGroup var transfer: TransferOptions
    @Option(help: ArgumentHelp("Seconds a node waits for the controller's confirmation before it switches itself back (0: no confirmation).", valueName: "SECONDS"))
    var confirmTimeout: Double = 60
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Show what would happen on each node (current → target, delta or full and bytes, batch, hooks, signature, space) and change nothing; exit non-zero when it could not proceed.")
    var plan = false
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws {
        _ = try parseReference(reference)
        guard confirmTimeout >= 0 else { throw ValidationError("--confirm-timeout must be 0 or more seconds.") }
    }

    func run(_ context: CommandContext) throws {
        let nodes = try fleet.nodes(output: context.output)
        let pool = try TransportPool()
        defer { pool.close(nodes) }
        let push = try transfer.push(reference: try parseReference(reference), store: storeOptions.releaseStore, fleet: fleet,
                                     pool: pool, nodes: nodes, output: context.output)
        if plan { return try finish(push.plan(nodes, activate: try rollout.policy(parallel: fleet.parallel, nodes: nodes.count)), output: context.output) }
        let deploy = RollingDeploy(push: push, policy: try rollout.policy(parallel: fleet.parallel, nodes: nodes.count),
                                   confirmTimeout: confirmTimeout > 0 ? confirmTimeout : nil)
        try finish(deploy.run(nodes), output: context.output) { nodes in
            ["deploy", reference] + fleet.arguments(on: nodes) + rollout.arguments + transfer.arguments
                + (confirmTimeout != 60 ? ["--confirm-timeout", String(format: "%g", confirmTimeout)] : [])
                + (storeOptions.store.map { ["--store", $0] } ?? [])
        }
    }
}
