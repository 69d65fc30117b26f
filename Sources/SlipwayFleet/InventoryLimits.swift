/// Bounds on what one Ansible inventory may make slipway expand (docs/fleet.md): host ranges
/// multiply and YAML aliases repeat, so a few lines could otherwise name billions of hosts.
/// Every command reads with `standard`; the fuzz targets read with smaller bounds, so that an
/// input naming 100,000 hosts (10 s under the sanitizers) does not take the place of
/// thousands of others (docs/fuzzing.md).
public struct InventoryLimits: Sendable {
    /// The most hosts one pattern may name, all its ranges multiplied.
    public var hostsPerPattern: Int
    /// The most host entries (a host counted once per line naming it) one inventory may hold.
    public var hostEntries: Int
    /// The most group definitions a YAML inventory may hold, aliases expanded.
    public var groupVisits: Int

    public init(hostsPerPattern: Int, hostEntries: Int, groupVisits: Int) {
        self.hostsPerPattern = hostsPerPattern
        self.hostEntries = hostEntries
        self.groupVisits = groupVisits
    }

    /// What slipway's commands read with.
    public static let standard = InventoryLimits(hostsPerPattern: 100_000, hostEntries: 1_000_000, groupVisits: 100_000)
}
