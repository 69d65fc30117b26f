import ArgumentParser
import Foundation
import SlipwaySystem
import SlipwayArchive
import SlipwayRelease
import SlipwayRecipe
import SlipwayBuild
import SlipwayExport
import SlipwayNodeProtocol
import SlipwayNode
import SlipwayFleet

extension FleetProgress.Mode: ExpressibleByArgument {}

/// `--inventory`, `--on` and `--parallel`: which nodes a fleet command talks to.
struct FleetOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The inventory (default: $SLIPWAY_INVENTORY, else ./inventory.toml; *.ini: Ansible INI).", valueName: "FILE"))
    var inventory: String?

    @Option(help: ArgumentHelp("The nodes: @group, names, globs, comma-separated.", valueName: "SELECTOR"))
    var on: String?

    @Option(help: ArgumentHelp("Nodes worked on at once.", valueName: "N"))
    var parallel: Int = 8

    @Option(help: ArgumentHelp("Progress on stderr: auto (a live view on a terminal, else lines), lines, or json (one object per line per change).", valueName: "auto|lines|json"))
    var progress: FleetProgress.Mode = .auto

    func validate() throws {
        guard parallel >= 1 else { throw ValidationError("--parallel must be at least 1.") }
    }

    /// These options again, selecting `nodes` instead (the retry line of a failed command).
    func arguments(on nodes: [String]) -> [String] {
        ["--on", nodes.joined(separator: ",")] + (inventory.map { ["--inventory", $0] } ?? [])
            + (parallel != 8 ? ["--parallel", String(parallel)] : []) + (progress != .auto ? ["--progress", progress.rawValue] : [])
    }

    /// The progress display for `nodes`.
    func progress(_ nodes: [FleetNode], output: Output) -> FleetProgress {
        FleetProgress(nodes: nodes.map(\.name), output: output, mode: progress)
    }

    /// The selected nodes of the inventory; what it ignores is logged as a warning.
    func nodes(output: Output) throws -> [FleetNode] {
        guard let on else { throw ValidationError("Name the nodes with --on SELECTOR (@group, names, globs).") }
        return try Inventory.load(path: Inventory.path(inventory), warn: { output.log("warning: \($0)") },
                                  note: { output.verbose($0) }).select(on)
    }
}

/// The rollout flags deploy and fleet rollback share.
struct RolloutOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Nodes switched first, as a batch of their own.", valueName: "N"))
    var canary: Int = 0

    @Option(help: ArgumentHelp("Nodes per batch: a number or a share (25%). Default: all at once.", valueName: "N|P%"))
    var batch: String = "100%"

    @Option(help: ArgumentHelp("Failed nodes tolerated before the rollout stops: a number, or a share of the selected nodes (5%, rounded down).", valueName: "K|P%"))
    var maxFailures: String = "0"

    @Flag(help: "When the rollout stops, also switch back the nodes already done.")
    var rollbackAllOnFailure = false

    func validate() throws {
        guard canary >= 0 else { throw ValidationError("--canary must be 0 or more.") }
        do { _ = try RolloutPolicy.FailureBudget(parsing: maxFailures) } catch { throw ValidationError(Output.message(for: error)) }
        do { _ = try RolloutPolicy.BatchSize(parsing: batch) } catch { throw ValidationError(Output.message(for: error)) }
    }

    /// These options again, as given (defaults left out).
    var arguments: [String] {
        (canary > 0 ? ["--canary", String(canary)] : []) + (batch != "100%" ? ["--batch", batch] : [])
            + (maxFailures != "0" ? ["--max-failures", maxFailures] : []) + (rollbackAllOnFailure ? ["--rollback-all-on-failure"] : [])
    }

    /// The policy for a rollout over `nodes` selected nodes (a share of failures is of them).
    func policy(parallel: Int, nodes: Int) throws -> RolloutPolicy {
        var policy = RolloutPolicy()
        policy.canary = canary
        policy.batch = try RolloutPolicy.BatchSize(parsing: batch)
        policy.maxFailures = try RolloutPolicy.FailureBudget(parsing: maxFailures).allowed(of: nodes)
        policy.rollbackAllOnFailure = rollbackAllOnFailure
        policy.parallel = parallel
        return policy
    }
}

/// Prints the end table (or JSON) and fails when any node failed or was rolled back; the
/// last line is then the command that retries only the nodes that did not get there
/// (`retry` gives the command line for a list of node names).
func finish(_ outcomes: [NodeOutcome], output: Output, retry: ([String]) -> [String]) throws {
    try output.result(outcomes, text: TextTable.outcomes(outcomes))
    let bad = outcomes.filter(\.isFailure)
    if !bad.isEmpty {
        // Nodes an earlier failure left untouched are retried with the failed ones.
        let again = outcomes.filter { $0.isFailure || $0.result == .notTouched }.map(\.node)
        let untouched = again.count - bad.count
        output.error("\(bad.count) of \(outcomes.count) node\(outcomes.count == 1 ? "" : "s") failed or rolled back: \(bad.map(\.node).joined(separator: ", ")); "
                     + "to retry \(untouched > 0 ? "them and the \(untouched) not touched" : bad.count == 1 ? "it" : "them"): "
                     + (["slipway"] + retry(again)).map(shellWord).joined(separator: " "))
        throw ExitCode.failure
    }
}

/// `word` as the shell reads it back: bare when it is plain, else in single quotes.
func shellWord(_ word: String) -> String {
    let plain = !word.isEmpty && word.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_./=:,@%+".contains($0)) }
    return plain ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// Prints a plan (text or JSON); fails, with the blocked nodes named, when the command could
/// not proceed.
func finish(_ plan: FleetPlan, output: Output) throws {
    try output.result(plan, text: plan.textLines)
    if !plan.canProceed {
        let blocked = plan.nodes.filter { !$0.blockers.isEmpty }
        output.error("\(plan.command) \(plan.target) cannot proceed: " + blocked.map { "\($0.node): \($0.blockers.joined(separator: "; "))" }.joined(separator: "; "))
        throw ExitCode.failure
    }
}
