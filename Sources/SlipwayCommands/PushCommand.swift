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
import SlipwayRegistry

/// `slipway push NAME@V --on SEL`: land a release on nodes without switching.
struct Push: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Send a release to nodes (delta when they have an older version) and land it, without switching.")

    @Argument(help: ArgumentHelp("The release.", valueName: "NAME@V")) var reference: String
    @OptionGroup var fleet: FleetOptions
    @OptionGroup var transfer: TransferOptions
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Show what would happen on each node (current → target, delta or full and bytes, batch, hooks, signature, space) and change nothing; exit non-zero when it could not proceed.")
    var plan = false
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws { _ = try parseReference(reference) }

    func run(_ context: CommandContext) throws {
        let nodes = try fleet.nodes(output: context.output)
        let pool = try TransportPool()
        defer { pool.close(nodes) }
        let push = try transfer.push(reference: try parseReference(reference), store: storeOptions.releaseStore, fleet: fleet,
                                     pool: pool, nodes: nodes, output: context.output)
        if plan { return try finish(push.plan(nodes, activate: nil), output: context.output) }
        let outcomes = push.push(nodes).map(\.outcome)
        push.progress.finish()
        try finish(outcomes, output: context.output) { nodes in
            ["push", reference] + fleet.arguments(on: nodes) + transfer.arguments + (storeOptions.store.map { ["--store", $0] } ?? [])
        }
    }
}

/// How release bytes travel: `--pull-from`, `--full`, `--slipway-binary`.
struct TransferOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Nodes fetch the release from this HTTP store (the store directory served as is), or from the OCI registry where it is published (oci://HOST[:PORT]/REPO, oci+http://…).", valueName: "URL"))
    var pullFrom: String?

    @Flag(help: "Always send the full archive, never a delta.")
    var full = false

    @Option(help: ArgumentHelp("The slipway installed on nodes that lack it (default: this one; build it with --static-swift-stdlib).", valueName: "FILE"))
    var slipwayBinary: String?

    func validate() throws {
        if let pullFrom, RegistryLocation.isRegistry(pullFrom) {
            _ = try RegistryLocation(parsing: pullFrom)
        } else if let pullFrom, !(pullFrom.hasPrefix("http://") || pullFrom.hasPrefix("https://")) {
            throw ValidationError("--pull-from takes an http:// or https:// URL or an oci:// registry location, not '\(pullFrom)'.")
        }
    }

    /// These options again, as given.
    var arguments: [String] {
        (pullFrom.map { ["--pull-from", $0] } ?? []) + (full ? ["--full"] : []) + (slipwayBinary.map { ["--slipway-binary", $0] } ?? [])
    }

    func push(reference: ReleaseReference, store: ReleaseStore, fleet: FleetOptions, pool: TransportPool, nodes: [FleetNode],
              output: Output) throws -> FleetPush {
        var options = PushOptions(store: store, reference: reference)
        options.parallel = fleet.parallel
        options.pullFrom = pullFrom
        options.fullOnly = full
        options.slipwayBinary = slipwayBinary
        return try FleetPush(options: options, pool: pool, progress: fleet.progress(nodes, output: output),
                             log: { output.log($0) })
    }
}
