import Foundation
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// One node's line of a plan (`deploy|push|rollback --plan`, docs/fleet.md "Plans").
public struct NodePlan: Codable, Sendable {
    public var node: String
    public var from: String?
    public var to: String?
    /// What the command would do here: `land and activate`, `activate` (landed already),
    /// `land`, `switch`, or `nothing` (with the reason in `note`).
    public var action: String
    public var note: String?
    /// `full`, `delta from V`, `pull full`, `pull delta from V`; nil when nothing travels.
    public var method: String?
    /// Release bytes that would travel (manifest, signature, archive or delta), less what
    /// the node holds of an interrupted upload.
    public var bytes: UInt64 = 0
    /// The rollout batch (1 is the canary batch when there is one); nil when the node is
    /// not switched.
    public var batch: Int?
    public var canary = false
    /// The release's hooks the switch would run, in order, with their commands.
    public var hooks: [String] = []
    /// The node's signature policy against the release.
    public var signature: String?
    /// Free space where the version would land, and what it needs.
    public var space: String?
    public var availableBytes: UInt64?
    /// The unpacked release (its tar size) and the upload beside it: an upper bound.
    public var neededBytes: UInt64?
    /// Versions a prune would remove, oldest first.
    public var removes: [String]?
    /// What would happen to the node's slipway first (installed, upgraded).
    public var slipway: String?
    /// The package changes from `from` to `to`, from the store's SBOMs (docs/sbom.md).
    public var packages: String?
    public var packageChanges: PackageChanges?
    /// Why the command could not proceed on this node; empty when it could.
    public var blockers: [String] = []

    public init(node: String, from: String? = nil, to: String? = nil, action: String) {
        self.node = node
        self.from = from
        self.to = to
        self.action = action
    }
}

/// What a fleet command would do, asked of every selected node; nothing on any node is
/// changed. The controller may make and cache the delta it would send (as the command would).
public struct FleetPlan: Codable, Sendable {
    public struct Totals: Codable, Sendable, Equatable {
        public var nodes = 0
        /// Nodes that would receive the release.
        public var land = 0
        /// Nodes that would switch.
        public var switchNodes = 0
        public var full = 0
        public var delta = 0
        public var bytes: UInt64 = 0
        public var batches = 0
        public var blocked = 0

        enum CodingKeys: String, CodingKey {
            case nodes, land, switchNodes = "switch", full, delta, bytes, batches, blocked
        }
    }

    /// `deploy`, `push` or `rollback`.
    public var command: String
    /// `NAME@V`, or `NAME` for a rollback.
    public var target: String
    public var nodes: [NodePlan]
    public var totals: Totals
    /// Whether the command could proceed: no node has a blocker.
    public var canProceed: Bool

    init(command: String, target: String, nodes: [NodePlan]) {
        self.command = command
        self.target = target
        self.nodes = nodes
        var totals = Totals()
        totals.nodes = nodes.count
        totals.land = nodes.filter { $0.method != nil && $0.blockers.isEmpty }.count
        totals.switchNodes = nodes.filter { $0.batch != nil && $0.action != "nothing" }.count
        totals.full = nodes.filter { $0.blockers.isEmpty && ($0.method?.hasSuffix("full") ?? false) }.count
        totals.delta = nodes.filter { $0.blockers.isEmpty && ($0.method?.contains("delta") ?? false) }.count
        totals.bytes = nodes.filter(\.blockers.isEmpty).reduce(0) { $0 + $1.bytes }
        totals.batches = Set(nodes.compactMap(\.batch)).count
        totals.blocked = nodes.filter { !$0.blockers.isEmpty }.count
        self.totals = totals
        canProceed = totals.blocked == 0
    }

    /// The plan as text: a table, each node's hooks and blockers beneath, the totals.
    public var textLines: [String] {
        var table = [["NODE", "BATCH", "FROM", "TO", "ACTION", "METHOD", "BYTES", "SIGNATURE"]]
        for plan in nodes {
            let batch = plan.batch.map { "\($0)" + (plan.canary ? " canary" : "") } ?? "-"
            let action = plan.blockers.isEmpty ? plan.action + (plan.note.map { " (\($0))" } ?? "") : "blocked"
            table.append([plan.node, batch, plan.from ?? "-", plan.to ?? "-", action,
                          plan.method ?? "-", plan.method == nil ? "-" : ByteCount.format(plan.bytes), plan.signature ?? "-"])
        }
        var lines = TextTable.render(table)
        for plan in nodes {
            var details: [String] = []
            if let slipway = plan.slipway { details.append("slipway: \(slipway)") }
            if let packages = plan.packages { details.append("packages: \(packages)") }
            if let space = plan.space { details.append("space: \(space)") }
            details += plan.hooks.map { "hook: \($0)" }
            if let removes = plan.removes, !removes.isEmpty { details.append("removes: \(removes.joined(separator: ", "))") }
            details += plan.blockers.map { "BLOCKED: \($0)" }
            if !details.isEmpty { lines.append("\(plan.node):"); lines += details.map { "  \($0)" } }
        }
        let t = totals
        var summary = "\(command) \(target): \(t.nodes) node\(t.nodes == 1 ? "" : "s")"
        if command == "deploy" || command == "push" {
            summary += ", \(t.land) to land (\(t.full) full, \(t.delta) delta, \(ByteCount.format(t.bytes)))"
        }
        if command == "prune" {
            let count = nodes.reduce(0) { $0 + ($1.removes?.count ?? 0) }
            summary += ", \(count) version\(count == 1 ? "" : "s") to remove"
        } else if command != "push" {
            summary += ", \(t.switchNodes) to switch in \(t.batches) batch\(t.batches == 1 ? "" : "es")"
        }
        summary += canProceed ? "; nothing was changed; it can proceed"
            : "; nothing was changed; it cannot proceed: \(t.blocked) node\(t.blocked == 1 ? "" : "s") blocked (\(nodes.filter { !$0.blockers.isEmpty }.map(\.node).joined(separator: ", ")))"
        lines.append(summary)
        return lines
    }
}

extension FleetPush {
    /// The plan of `push` (`activate` false) or `deploy` (with the rollout `policy`):
    /// every node is asked what it has, what it demands and how much space it has; nothing
    /// is sent and nothing on a node changes.
    public func plan(_ nodes: [FleetNode], activate policy: RolloutPolicy?) -> FleetPlan {
        var plans = ParallelWork.map(nodes, width: options.parallel) { node in self.plan(node, activate: policy != nil) }
        if let policy {
            Self.assignBatches(&plans, policy: policy)
        }
        progress.finish()
        return FleetPlan(command: policy == nil ? "push" : "deploy", target: "\(options.reference.name)@\(options.reference.version)",
                         nodes: plans)
    }

    /// Numbers the batches as the rollout would cut them: over the nodes that would go on,
    /// in selection order, the canary batch first.
    static func assignBatches(_ plans: inout [NodePlan], policy: RolloutPolicy) {
        // The rollout cuts batches over every node that would go on, current ones included.
        let ready = plans.indices.filter { plans[$0].blockers.isEmpty }
        for (number, batch) in policy.batches(ready).enumerated() {
            for index in batch {
                plans[index].batch = number + 1
                plans[index].canary = policy.canary > 0 && number == 0
            }
        }
    }

    func plan(_ node: FleetNode, activate: Bool) -> NodePlan {
        let reference = options.reference
        var plan = NodePlan(node: node.name, to: reference.version, action: activate ? "land and activate" : "land")
        let client = NodeClient(transport: pool.transport(for: node))
        progress.state(node.name, "asking what it has")
        var status: NodeStatus?
        var action = SlipwayAction.keep
        do {
            if node.transport == .ssh {
                action = try slipwayAction(client)
                plan.slipway = action.describe(path: node.slipwayPath)
            }
            if action != .install {
                status = try client.status(app: reference.name)
            }
        } catch let FleetError.nodeSlipway(_, detail) where action.isUpgrade {
            // An older slipway that cannot answer this protocol: the upgrade comes first.
            plan.note = "its releases are known after the upgrade (\(detail))"
        } catch {
            plan.action = "nothing"
            plan.blockers.append(Output.message(for: error))
            progress.state(node.name, "blocked")
            return plan
        }
        plan.from = status?.current
        let landed = status?.hasLanded(reference.version) ?? false
        if status?.current == reference.version {
            plan.action = "nothing"
            plan.note = "current already"
        } else if landed {
            plan.action = activate ? "activate" : "nothing"
            plan.note = "landed already"
        }
        if !landed {
            // A node without slipway has nothing landed and nothing in incoming/.
            let known = status ?? NodeStatus(app: reference.name, root: node.root ?? "", backend: node.backend ?? .dir, releases: [],
                                             activations: [], leftovers: [], incoming: [])
            do {
                let transfer = try transfer(for: known)
                plan.method = transfer.method
                plan.bytes = transfer.bytesToSend(status: known)
            } catch {
                plan.blockers.append("cannot prepare what to send: \(Output.message(for: error))")
            }
            plan.signature = signatureVerdict(status?.signaturePolicy, known: status != nil, blockers: &plan.blockers)
            if let space = status?.space {
                // Landing needs the unpacked tree; the upload lands in incoming/ beside it.
                let needed = release.manifest.tarSize + plan.bytes
                plan.availableBytes = space.availableBytes
                plan.neededBytes = needed
                plan.space = "\(ByteCount.format(space.availableBytes)) free on \(space.location); needs about \(ByteCount.format(needed))"
                if space.availableBytes < needed {
                    plan.blockers.append("not enough space: \(ByteCount.format(space.availableBytes)) free on \(space.location), the release needs about \(ByteCount.format(needed)); prune old versions (slipway node prune \(reference.name)) or grow it")
                }
            } else if status != nil {
                plan.space = "unknown (the node's slipway does not report it)"
            }
        }
        if plan.action != "nothing" || !landed, status?.current != reference.version {
            let summary = packages(from: status?.current)
            plan.packages = summary.line
            plan.packageChanges = summary.changes
        }
        if activate, plan.action != "nothing" {
            plan.hooks = Self.activationHooks(release.manifest.service, previous: status?.current)
        }
        progress.state(node.name, plan.blockers.isEmpty ? "planned: \(plan.action)" : "blocked")
        return plan
    }

    /// What the node's policy makes of the release; a refusal is also a blocker.
    func signatureVerdict(_ policy: NodeSignature.Policy?, known: Bool, blockers: inout [String]) -> String {
        let signed = release.signatureFile != nil
        guard let policy else {
            return known ? "checked at apply (the node's slipway does not report its policy)" : "checked once slipway is installed"
        }
        if let refusal = NodeSignature.refusal(of: policy, manifest: release.manifest, manifestBytes: release.manifestBytes, signature: signatureBytes) {
            blockers.append("refuses the release: \(refusal)")
            return "refused"
        }
        if policy.required { return "accepted (trusted key)" }
        return signed ? "not required (signed)" : "not required (unsigned)"
    }

    /// The hooks an activation runs, in order (docs/service.md), with their commands: the
    /// pre-activate hook, then either the service started beside the old one and checked,
    /// or `start` (first activation) or `reload`, then the health check. A previous version
    /// whose service the node ran makes it `start`; the plan cannot see that and says
    /// `reload`.
    static func activationHooks(_ service: ServiceSpec?, previous: String?) -> [String] {
        guard let service else { return [] }
        var hooks: [String] = []
        if let command = service.preActivate { hooks.append("pre_activate: \(command)") }
        if let command = service.command {
            hooks.append("start beside \(previous ?? "nothing") on a private port: \(command)" + (service.user.map { " (as \($0))" } ?? ""))
            if let health = service.health { hooks.append("health: \(health.command ?? health.url ?? "")") }
            if let previous { hooks.append("stop \(previous) once the new version serves") }
        } else {
            let name = previous == nil ? "start" : "reload"
            if let command = previous == nil ? service.start : service.reload { hooks.append("\(name): \(command)") }
            if let health = service.health { hooks.append("health: \(health.command ?? health.url ?? "")") }
        }
        return hooks
    }
}

extension FleetRollback {
    /// The plan of a fleet rollback: each node's current version and the one it would go
    /// back to; nothing changes.
    public func plan(_ nodes: [FleetNode]) -> FleetPlan {
        var plans = ParallelWork.map(nodes, width: policy.parallel) { node -> NodePlan in
            var plan = NodePlan(node: node.name, action: "switch")
            progress.state(node.name, "asking what it has")
            do {
                let status = try NodeClient(transport: pool.transport(for: node)).status(app: app)
                plan.from = status.current
                plan.to = to ?? status.previous
                let landed = Set(status.releases.filter(\.landed).map(\.version))
                if let target = plan.to {
                    if target == status.current {
                        plan.action = "nothing"
                        plan.note = "current already"
                    } else if !landed.contains(target) {
                        plan.blockers.append("\(target) is not landed here (landed: \(landed.isEmpty ? "none" : landed.sorted().joined(separator: ", ")))")
                    }
                } else {
                    plan.blockers.append(status.current == nil ? "no version of \(app) is active here"
                                         : "no previous version of \(app) to go back to; name a landed one with --to")
                }
            } catch {
                plan.action = "nothing"
                plan.blockers.append(Output.message(for: error))
            }
            progress.state(node.name, plan.blockers.isEmpty ? "planned: \(plan.action)" : "blocked")
            return plan
        }
        FleetPush.assignBatches(&plans, policy: policy)
        progress.finish()
        return FleetPlan(command: "rollback", target: app, nodes: plans)
    }
}

/// `prune APP --on SEL [--keep N]`: `slipway node prune` on every node, `parallel` at a
/// time; each node keeps the newest N (its node.toml's `keep` without `--keep`), never its
/// current or previous version.
public struct FleetPrune: Sendable {
    public var app: String
    public var keep: Int?
    public var parallel: Int
    public var pool: TransportPool
    public var progress: FleetProgress

    public init(app: String, keep: Int?, parallel: Int, pool: TransportPool, progress: FleetProgress) {
        self.app = app
        self.keep = keep
        self.parallel = parallel
        self.pool = pool
        self.progress = progress
    }

    public func run(_ nodes: [FleetNode]) -> [NodeOutcome] {
        let outcomes = ParallelWork.map(nodes, width: parallel) { node -> NodeOutcome in
            let started = ContinuousClock.now
            var outcome = NodeOutcome(node: node.name, result: .failed)
            progress.state(node.name, "pruning")
            do {
                let result = try NodeClient(transport: pool.transport(for: node)).prune(app: app, keep: keep, dryRun: false)
                outcome.result = .pruned
                outcome.detail = result.removed.isEmpty ? "nothing to prune" : "removed \(result.removed.joined(separator: ", "))"
                progress.state(node.name, outcome.detail ?? "")
            } catch {
                outcome.detail = Output.message(for: error)
                progress.state(node.name, "failed: \(outcome.detail ?? "")")
            }
            outcome.seconds = (ContinuousClock.now - started).seconds
            return outcome
        }
        progress.finish()
        return outcomes
    }

    /// What each node would remove (`node prune --dry-run`: no lock, no recovery).
    public func plan(_ nodes: [FleetNode]) -> FleetPlan {
        let plans = ParallelWork.map(nodes, width: parallel) { node -> NodePlan in
            var plan = NodePlan(node: node.name, action: "prune")
            progress.state(node.name, "asking what it would remove")
            do {
                let client = NodeClient(transport: pool.transport(for: node))
                let result = try client.prune(app: app, keep: keep, dryRun: true)
                // A slipway without --dry-run refuses the flag; a reply that is not a dry
                // run is never shown as a plan.
                guard result.dryRun == true else {
                    throw FleetError.nodeSlipway(node: node.name, detail: "its slipway does not know `node prune --dry-run`")
                }
                plan.removes = result.removed
                if result.removed.isEmpty {
                    plan.action = "nothing"
                    plan.note = "nothing to prune"
                }
            } catch {
                plan.action = "nothing"
                plan.blockers.append(Output.message(for: error))
            }
            progress.state(node.name, plan.blockers.isEmpty ? "planned: \(plan.action)" : "blocked")
            return plan
        }
        progress.finish()
        return FleetPlan(command: "prune", target: app, nodes: plans)
    }
}
