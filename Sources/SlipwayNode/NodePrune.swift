import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Removes old releases: keeps the newest `keep` by the journal's landing order (never by
/// file times), and never the current or the previous version, whatever `keep` says.
/// Oldest first, journaled after each removal.
extension NodePrune {
    /// The landed versions in landing order, and those prune removes: all but the newest
    /// `keep`, never the current or previous one. Reads only.
    static func selection(_ layout: NodeLayout, state: NodeState, context: NodeContext, keep: Int) throws -> (ordered: [String], remove: [String]) {
        let landedList = try context.landed(layout)
        let landed = Set(landedList)
        let current = layout.currentVersion
        let previous = state.previous(current: current, landed: landed)
        // Recovery journals every landed version; a dry run, which recovers nothing, puts
        // the unjournaled ones last, as recovery would.
        let ordered = state.versions.filter { landed.contains($0) } + landedList.filter { !state.versions.contains($0) }
        let protected = Set([current, previous].compactMap { $0 })
        let newest = Set(ordered.suffix(keep))
        return (ordered, ordered.filter { !newest.contains($0) && !protected.contains($0) })
    }

    /// What `prune` would remove, changing nothing: no lock, no recovery.
    public static func dryRun(app: String, keep: Int, context: NodeContext) throws -> Result {
        guard keep >= 1 else { throw NodeError.invalidKeep(keep) }
        try ReleaseStore.validate(name: app)
        let layout = context.layout(app)
        let (ordered, remove) = try selection(layout, state: try NodeState.load(layout), context: context, keep: keep)
        return Result(app: app, removed: remove, kept: ordered.filter { !remove.contains($0) }, recovered: [], dryRun: true)
    }

    public static func prune(app: String, keep: Int, context: NodeContext) throws -> Result {
        guard keep >= 1 else { throw NodeError.invalidKeep(keep) }
        return try context.mutating(app) { layout, recovered in
            var state = try NodeState.load(layout)
            let (ordered, remove) = try selection(layout, state: state, context: context, keep: keep)
            var removed: [String] = []
            for version in remove {
                // Nothing of a pruned version may keep running (its root would be gone under it).
                let running = NodeService.processes(layout, version)
                if !running.isEmpty {
                    context.log("\(app)@\(version) still runs (pid\(running.count == 1 ? "" : "s") \(running.map(String.init).joined(separator: ", "))); stopping it before removing it")
                    NodeService.stop(version, spec: NodeActivate.serviceSpec(layout, version), layout: layout, context: context)
                }
                context.log("removing \(app)@\(version)")
                try context.backend.remove(version: version, layout: layout)
                unlink(NodeService.instancePath(layout, version))
                state.releases.removeAll { $0.version == version }
                try state.save(layout)
                NodeFiles.removeTree(layout.manifest(version))
                NodeFiles.removeTree(layout.signature(version))
                NodeFiles.removeTree(layout.sbom(version))
                removed.append(version)
            }
            return Result(app: app, removed: removed, kept: ordered.filter { !removed.contains($0) }, recovered: recovered.removed)
        }
    }
}
