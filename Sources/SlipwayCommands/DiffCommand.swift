import ArgumentParser
import SlipwaySystem
import SlipwayArchive
import SlipwayRelease
import SlipwayRecipe
import SlipwayBuild
import SlipwayExport
import SlipwayNodeProtocol
import SlipwayNode
import SlipwayFleet

/// `slipway diff NAME@A NAME@B`: entries added, removed and changed from A to B.
struct Diff: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "List the files (or, with --packages, the packages) added, removed and changed between two releases."
    )

    @Argument(help: ArgumentHelp("The old release.", valueName: "NAME@A"))
    var old: String

    @Argument(help: ArgumentHelp("The new release.", valueName: "NAME@B"))
    var new: String

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "List the Debian and Python packages added, removed and upgraded (from the releases' SBOMs) instead of the files.")
    var packages = false

    @Flag(help: "Also make (or reuse) the delta archive from A to B in the store: store/NAME/B/deltas/A.tar.xz.")
    var emitDelta = false

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var global: GlobalOptions

    var wantsJSON: Bool { json }

    func validate() throws {
        _ = try parseReference(old)
        _ = try parseReference(new)
        if packages && emitDelta { throw ValidationError("--packages and --emit-delta exclude each other.") }
    }

    func run(_ context: CommandContext) throws {
        let store = storeOptions.releaseStore
        let before = try store.release(try parseReference(old))
        let after = try store.release(try parseReference(new))
        if packages {
            let changes = PackageChanges(old: try before.packages(), new: try after.packages())
            try context.output.result(changes, text: changes.textLines)
            return
        }
        let diff = ManifestDiff(from: before.manifest, to: after.manifest)
        guard emitDelta else {
            try context.output.result(diff, text: diff.textLines)
            return
        }
        let made = try ReleaseDelta.make(store: store, from: before.reference, to: after.reference)
        struct Reply: Encodable {
            var diff: ManifestDiff
            var delta: String
            var metadata: String
            var sha256: String?
            var size: UInt64?
            var removals: Int
            var entries: Int
            var cached: Bool
        }
        let meta = made.metadata
        try context.output.result(
            Reply(diff: diff, delta: made.archivePath, metadata: made.metadataPath, sha256: meta.archiveSHA256, size: meta.archiveSize,
                  removals: meta.removals.count, entries: meta.entries, cached: made.cached),
            text: diff.textLines + ["delta: \(made.archivePath) (\(ByteCount.format(meta.archiveSize ?? 0)), \(meta.entries) entries, \(meta.removals.count) removals\(made.cached ? ", cached" : ""))"])
    }
}
