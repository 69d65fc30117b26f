import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Removes old releases: keeps the newest `keep` by the journal's landing order (never by
/// file times), and never the current or the previous version, whatever `keep` says.
/// Oldest first, journaled after each removal.
public enum NodePrune {
    /// What prune did.
    public struct Result: Codable, Sendable {
        public var app: String
        public var removed: [String]
        public var kept: [String]
        public var recovered: [String]
        /// The node protocol of the slipway that replied (`NodeWire.version`).
        public var protocolVersion: Int? = NodeWire.version
    }

    public static func prune(app: String, keep: Int, context: NodeContext) throws -> Result {
        guard keep >= 1 else { throw NodeError.invalidKeep(keep) }
        return try context.mutating(app) { layout, recovered in
            var state = try NodeState.load(layout)
            let landed = Set(try context.landed(layout))
            let current = layout.currentVersion
            let previous = state.previous(current: current, landed: landed)
            // Recovery journaled every landed version, so the journal orders them all.
            let ordered = state.versions.filter { landed.contains($0) }
            let protected = Set([current, previous].compactMap { $0 })
            let newest = Set(ordered.suffix(keep))
            var removed: [String] = []
            for version in ordered where !newest.contains(version) && !protected.contains(version) {
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
                removed.append(version)
            }
            return Result(app: app, removed: removed, kept: ordered.filter { !removed.contains($0) }, recovered: recovered.removed)
        }
    }
}
