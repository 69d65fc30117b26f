import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem
/// Switches back to the previous version from the journal, or to `--to V`: the same switch
/// as activate (reload and health check included, pre-activate skipped), with no transfer
/// and no unpack.
public enum NodeRollback {
    public static func rollback(app: String, to version: String? = nil, context: NodeContext) throws -> NodeActivate.Result {
        if let version { try ReleaseStore.validate(version: version) }
        return try context.mutating(app) { layout, recovered in
            let landed = Set(recovered.landed)
            let target: String
            if let version {
                target = version
            } else {
                let state = try recovered.state ?? NodeState.load(layout)
                guard let previous = state.previous(current: layout.currentVersion, landed: landed) else {
                    throw NodeError.noPreviousVersion(app: app)
                }
                target = previous
            }
            var result = try NodeActivate.switchTo(target, kind: .rollback, layout: layout, context: context, recovered: recovered)
            result.recovered = recovered.removed
            return result
        }
    }
}
