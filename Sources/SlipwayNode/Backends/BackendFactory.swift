import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem
/// The backend the settings name, with its parameters (the `[btrfs]`, `[zfs]` … table).
public func makeBackend(_ settings: NodeSettings) throws -> any NodeBackend {
    switch settings.backend {
    case "dir":
        return DirBackend()
    case "btrfs", "zfs": return settings.backend == "btrfs" ? try BtrfsBackend(settings: settings.backendParameters) as any NodeBackend : try ZFSBackend(settings: settings.backendParameters)
    // backends engineer: register here.
    case "btrfs":
        return try BtrfsBackend(settings: settings.backendParameters)
    case "zfs":
        return try ZFSBackend(settings: settings.backendParameters)
    case "lvm":
        return try LVMBackend(settings: settings.backendParameters)
    default:
        throw NodeError.backendUnavailable(name: settings.backend, detail: "unknown backend; use one of \(BackendKind.names.joined(separator: ", "))")
    }
}
