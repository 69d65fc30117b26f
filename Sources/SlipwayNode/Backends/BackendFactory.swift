import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The backend the settings name, with its parameters (the `[btrfs]`, `[zfs]` … table),
/// running its commands through `runner` (the node context's).
public func makeBackend(_ settings: NodeSettings, runner: CommandRunner = CommandRunner()) throws -> any NodeBackend {
    switch settings.backend {
    case .dir: return try DirBackend(settings: settings.backendParameters, runner: runner)
    case .btrfs: return try BtrfsBackend(settings: settings.backendParameters, runner: runner)
    case .zfs: return try ZFSBackend(settings: settings.backendParameters, runner: runner)
    case .lvm: return try LVMBackend(settings: settings.backendParameters, runner: runner)
    }
}
