import Foundation
import Synchronization
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// How nodes are switched in turn: a canary batch, then batches of a size or a share.
public struct RolloutPolicy: Sendable {
    /// A batch size: a count of nodes or a share of the selection.
    public enum BatchSize: Sendable, Equatable {
        case count(Int)
        case percent(Int)

        /// `N` or `P%`.
        public init(parsing text: String) throws {
            if text.hasSuffix("%"), let value = Int(text.dropLast()), (1...100).contains(value) {
                self = .percent(value)
            } else if let value = Int(text), value >= 1 {
                self = .count(value)
            } else {
                throw FleetError.invalidArgument("--batch '\(text)' is not a batch size: give a number of nodes (5) or a share of them (25%)")
            }
        }

        func nodes(of total: Int) -> Int {
            switch self {
            case let .count(n): max(1, n)
            case let .percent(p): max(1, (total * p + 99) / 100)
            }
        }
    }

    /// `--max-failures K|P%`: a number of nodes, or a share of the selected nodes,
    /// rounded down (5% of 30 nodes tolerates 1 failure; of 10 nodes, none).
    public enum FailureBudget: Sendable, Equatable {
        case count(Int)
        case percent(Int)

        public init(parsing text: String) throws {
            if text.hasSuffix("%"), let value = Int(text.dropLast()), (0...100).contains(value) {
                self = .percent(value)
            } else if let value = Int(text), value >= 0 {
                self = .count(value)
            } else {
                throw FleetError.invalidArgument("--max-failures '\(text)' is not a failure budget: give a number of nodes (2) or a share of the selected nodes (5%)")
            }
        }

        public func allowed(of total: Int) -> Int {
            switch self {
            case let .count(n): n
            case let .percent(p): total * p / 100
            }
        }
    }

    public var canary = 0
    public var batch = BatchSize.percent(100)
    /// Failures tolerated before the rollout stops.
    public var maxFailures = 0
    /// On a stop, also switch back the nodes already done.
    public var rollbackAllOnFailure = false
    public var parallel = 8

    public init() {}

    /// The selection cut into batches, in order.
    public func batches<T>(_ items: [T]) -> [[T]] {
        var batches: [[T]] = []
        var rest = items[...]
        if canary > 0 {
            batches.append(Array(rest.prefix(canary)))
            rest = rest.dropFirst(canary)
        }
        let size = batch.nodes(of: items.count)
        while !rest.isEmpty {
            batches.append(Array(rest.prefix(size)))
            rest = rest.dropFirst(size)
        }
        return batches
    }
}

/// `deploy`: push to every selected node first (nothing switches while bytes travel), then
/// activate batch by batch, each confirmed over a fresh connection (the node switches itself
/// back when no confirmation comes). When failures exceed `maxFailures` the rollout stops:
/// later batches are not touched, failed nodes are switched back, and with
/// `rollbackAllOnFailure` so are the nodes already done.
public struct RollingDeploy: Sendable {
    public var push: FleetPush
    public var policy: RolloutPolicy
    /// Seconds a node waits for the controller's confirmation (nil: no confirmation).
    public var confirmTimeout: Double?
    /// Called with every node's outcome so far: after the push phase and after each batch
    /// (the rollout state file, `RolloutState`).
    public var record: (@Sendable ([NodeOutcome]) -> Void)?

    public init(push: FleetPush, policy: RolloutPolicy, confirmTimeout: Double?, record: (@Sendable ([NodeOutcome]) -> Void)? = nil) {
        self.push = push
        self.policy = policy
        self.confirmTimeout = confirmTimeout
        self.record = record
    }

    public func run(_ nodes: [FleetNode]) -> [NodeOutcome] {
        let reference = push.options.reference
        let progress = push.progress
        let pushed = push.push(nodes)
        var outcomes = pushed.map(\.outcome)
        var failures = outcomes.filter(\.isFailure).count
        let index = Dictionary(uniqueKeysWithValues: nodes.enumerated().map { ($1.name, $0) })
        record?(outcomes)
        if failures > policy.maxFailures {
            push.log("push failed on \(failures) node\(failures == 1 ? "" : "s") (at most \(policy.maxFailures) allowed); nothing was switched")
            for i in outcomes.indices where !outcomes[i].isFailure {
                outcomes[i].result = .notTouched
                outcomes[i].detail = "landed, not activated: the push failed elsewhere"
            }
            return outcomes
        }
        let ready = nodes.filter { !outcomes[index[$0.name]!].isFailure }
        var stopped = false
        for batch in policy.batches(ready) {
            if stopped {
                for node in batch {
                    outcomes[index[node.name]!].result = .notTouched
                    outcomes[index[node.name]!].detail = "landed, not activated: an earlier batch failed"
                }
                continue
            }
            let switched = ParallelWork.map(batch, width: policy.parallel) { node -> NodeOutcome in
                var outcome = pushed[index[node.name]!].outcome
                let started = ContinuousClock.now
                activate(node, reference: reference, outcome: &outcome, progress: progress)
                outcome.seconds += (ContinuousClock.now - started).seconds
                return outcome
            }
            for outcome in switched { outcomes[index[outcome.node]!] = outcome }
            failures += switched.filter(\.isFailure).count
            if failures > policy.maxFailures {
                stopped = true
                push.log("\(failures) node\(failures == 1 ? "" : "s") failed (at most \(policy.maxFailures) allowed); stopping the rollout")
                if policy.rollbackAllOnFailure {
                    let done = outcomes.enumerated().filter { $0.element.result == .activated }.map(\.offset)
                    let snapshot = outcomes
                    let back = ParallelWork.map(done, width: policy.parallel) { i -> NodeOutcome in
                        var outcome = snapshot[i]
                        switchBack(nodes[i], outcome: &outcome, reason: "the rollout failed elsewhere", progress: progress)
                        return outcome
                    }
                    for outcome in back { outcomes[index[outcome.node]!] = outcome }
                }
            }
            record?(outcomes)
        }
        progress.finish()
        return outcomes
    }

    /// Activates and confirms one node; a node that failed is left on its old version.
    func activate(_ node: FleetNode, reference: ReleaseReference, outcome: inout NodeOutcome, progress: FleetProgress) {
        let client = NodeClient(transport: push.pool.transport(for: node))
        progress.state(node.name, "activating")
        do {
            let result = try client.activate(reference, confirmTimeout: confirmTimeout)
            outcome.from = result.previous ?? outcome.from
            if result.outcome == .alreadyCurrent {
                outcome.result = .alreadyCurrent
                progress.state(node.name, "already current")
                return
            }
        } catch let FleetError.nodeCommand(_, _, detail, code) where code.nodeSwitchedBack {
            // The node's own health check failed and it switched itself back.
            outcome.result = .rolledBack
            outcome.detail = detail
            progress.state(node.name, "rolled back: \(detail)")
            return
        } catch {
            outcome.result = .failed
            outcome.detail = Output.message(for: error)
            switchBack(node, outcome: &outcome, reason: outcome.detail ?? "activation failed", progress: progress)
            return
        }
        if confirmTimeout != nil {
            progress.state(node.name, "confirming")
            do {
                try client.confirm(reference)
            } catch let FleetError.nodeCommand(_, _, detail, code) where code == .nothingToConfirm {
                // Another controller switched the node after this activation (concurrent
                // deploys or a rollback): the node serialised them and the later one stands.
                outcome.result = .failed
                outcome.detail = "superseded: another command switched \(node.name) after this activation (\(detail))"
                progress.state(node.name, "superseded")
                return
            } catch {
                outcome.result = .failed
                outcome.detail = "not confirmed (\(Output.message(for: error))); the node switches itself back to \(outcome.from ?? "its previous version") within \(Int(confirmTimeout ?? 0)) s"
                progress.state(node.name, "not confirmed")
                return
            }
        }
        outcome.result = .activated
        progress.state(node.name, "activated \(outcome.from ?? "none") → \(reference.version)")
    }

    /// Puts a node back on the version it ran before (`outcome.from`), when it is not there.
    func switchBack(_ node: FleetNode, outcome: inout NodeOutcome, reason: String, progress: FleetProgress) {
        let client = NodeClient(transport: push.pool.transport(for: node))
        let app = push.options.reference.name
        do {
            let status = try client.status(app: app)
            guard status.current == push.options.reference.version, let from = outcome.from else { return }
            progress.state(node.name, "switching back to \(from)")
            _ = try client.rollback(app: app, to: from)
            outcome.result = .rolledBack
            outcome.detail = "switched back to \(from): \(reason)"
        } catch {
            outcome.result = .failed
            outcome.detail = "\(reason); switching back failed too: \(Output.message(for: error))"
        }
    }
}

/// `rollback NAME --on SEL [--to V]`: every node back to its previous version (or V), in the
/// same batches and with the same stop rule as deploy.
public struct FleetRollback: Sendable {
    public var app: String
    public var to: String?
    public var policy: RolloutPolicy
    public var pool: TransportPool
    public var progress: FleetProgress
    public var log: @Sendable (String) -> Void

    public init(app: String, to: String?, policy: RolloutPolicy, pool: TransportPool, progress: FleetProgress, log: @escaping @Sendable (String) -> Void) {
        self.app = app
        self.to = to
        self.policy = policy
        self.pool = pool
        self.progress = progress
        self.log = log
    }

    public func run(_ nodes: [FleetNode]) -> [NodeOutcome] {
        var outcomes: [NodeOutcome] = []
        var failures = 0
        for batch in policy.batches(nodes) {
            if failures > policy.maxFailures {
                outcomes += batch.map { NodeOutcome(node: $0.name, result: .notTouched, detail: "an earlier batch failed") }
                continue
            }
            let done = ParallelWork.map(batch, width: policy.parallel) { node -> NodeOutcome in
                let started = ContinuousClock.now
                var outcome = NodeOutcome(node: node.name, to: to, result: .failed)
                progress.state(node.name, "switching back")
                do {
                    let result = try NodeClient(transport: pool.transport(for: node)).rollback(app: app, to: to)
                    outcome.from = result.previous
                    outcome.to = result.version
                    outcome.result = result.outcome == .alreadyCurrent ? .alreadyCurrent : .switched
                    progress.state(node.name, "\(result.previous ?? "none") → \(result.version)")
                } catch {
                    outcome.detail = Output.message(for: error)
                    progress.state(node.name, "failed: \(outcome.detail ?? "")")
                }
                outcome.seconds = (ContinuousClock.now - started).seconds
                return outcome
            }
            failures += done.filter(\.isFailure).count
            if failures > policy.maxFailures {
                log("\(failures) node\(failures == 1 ? "" : "s") failed (at most \(policy.maxFailures) allowed); stopping")
            }
            outcomes += done
        }
        progress.finish()
        return outcomes
    }
}
