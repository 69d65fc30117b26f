/// Where a node keeps its versions (docs/node.md "Backends"): a directory per version, a
/// btrfs subvolume, a ZFS dataset or an LVM volume. node.toml and the inventories name them.
public enum BackendKind: String, WireWord, CaseIterable {
    case dir, btrfs, zfs, lvm

    /// The names node.toml and the inventories accept, in the order messages list them.
    public static let names = allCases.map(\.rawValue)
}
