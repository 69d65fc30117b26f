import SlipwayFleet

extension InventoryLimits {
    /// What the Ansible inventory targets read with. Under the sanitizers a host costs about
    /// 0.1 ms (a pattern naming the standard 100,000 took 10 s), and libFuzzer's integer
    /// mutations make such patterns of most inputs that hold a range: the target then ran 40
    /// inputs a second instead of thousands. Range expansion, padding, strides and the bound
    /// checks are the same code at any bound (docs/fuzzing.md).
    public static let fuzzing = InventoryLimits(hostsPerPattern: 256, hostEntries: 2_048, groupVisits: 1_024)
}
