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
    @Flag(help: "Work only on the nodes the last deploy of this release did not record as done (activated or already current); its state is kept in the store's .rollouts/.")
    var resume = false
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
        let reference = try parseReference(self.reference)
        let store = storeOptions.releaseStore
        var nodes = try fleet.nodes(output: context.output)
        var earlier: [NodeOutcome] = []
        if resume {
            guard let state = try RolloutState.load(store: store, reference: reference) else {
                throw ValidationError("There is no rollout of \(reference) to resume (no \(RolloutState.path(store: store, reference: reference))); deploy without --resume.")
            }
            let unfinished = Set(state.unfinished)
            let recorded = Set(state.nodes.map(\.node))
            earlier = state.nodes.filter { !unfinished.contains($0.node) }
            let skipped = nodes.filter { recorded.contains($0.name) && !unfinished.contains($0.name) }
            // Nodes the earlier rollout did not select are new work too.
            nodes = nodes.filter { unfinished.contains($0.name) || !recorded.contains($0.name) }
            context.output.log("resuming the rollout of \(reference) started \(state.started): \(nodes.count) node\(nodes.count == 1 ? "" : "s") to do, "
                               + "\(skipped.count) done already (not contacted)")
            if nodes.isEmpty {
                return try context.output.result(state.nodes, text: TextTable.outcomes(state.nodes))
            }
        }
        let pool = try TransportPool()
        defer { pool.close(nodes) }
        let push = try transfer.push(reference: reference, store: store, fleet: fleet,
                                     pool: pool, nodes: nodes, output: context.output)
        if plan { return try finish(push.plan(nodes, activate: try rollout.policy(parallel: fleet.parallel, nodes: nodes.count)), output: context.output) }
        // The rollout's state, rewritten as it goes: what --resume reads after a controller died.
        let started = FleetProgress.timestamp()
        let output = context.output
        let kept = earlier
        let save: @Sendable ([NodeOutcome], Bool) -> Void = { outcomes, ended in
            let state = RolloutState(release: reference.description, started: started, updated: FleetProgress.timestamp(), ended: ended,
                                     nodes: kept + outcomes)
            do { try state.save(store: store, reference: reference) } catch { output.log("warning: \(Output.message(for: error))") }
        }
        save(nodes.map { NodeOutcome(node: $0.name, to: reference.version, result: .pending) }, false)
        let deploy = RollingDeploy(push: push, policy: try rollout.policy(parallel: fleet.parallel, nodes: nodes.count),
                                   confirmTimeout: confirmTimeout > 0 ? confirmTimeout : nil, record: { save($0, false) })
        let outcomes = deploy.run(nodes)
        save(outcomes, true)
        try finish(outcomes, output: context.output) { nodes in
            ["deploy", self.reference] + fleet.arguments(on: nodes) + rollout.arguments + transfer.arguments
                + (confirmTimeout != 60 ? ["--confirm-timeout", String(format: "%g", confirmTimeout)] : [])
                + (storeOptions.store.map { ["--store", $0] } ?? [])
        }
    }
}
