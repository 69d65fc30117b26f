import Foundation
import SlipwayArchive
import SlipwayRelease

/// A store holding `fuzz@1` and `fuzz@2` (the two `SeedTree` versions, packed as zstd by
/// the real packer) and the delta from 1 to 2 made by `ReleaseDelta.make`, as a controller
/// makes it for a push.
///
/// Only paths and strings are kept: a fixture lives as long as the process, and
/// LeakSanitizer does not see some references inside `Data` values (Swift stores them with
/// tag bits), so it would report a fixture's `Data` as leaked when the fuzzer exits.
public struct SeedReleases: Sendable {
    public static let app = "fuzz"
    public var store: ReleaseStore
    public var tree1: String
    public var tree2: String
    /// The delta archive from 1 to 2 (tar.xz, format 2: it carries a zstd patch).
    public var delta: String
    /// The archive hash of fuzz@2, which the delta names as its target.
    public var targetSHA256: String

    /// Builds everything in `directory` (which must not exist).
    public static func make(in directory: String) throws -> SeedReleases {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        let store = ReleaseStore(root: directory + "/store")
        let configuration = ArchiveWriterConfiguration(compression: .zstd, threads: 1, sourceDateEpoch: SeedTree.mtime)
        var trees: [String] = []
        for version in 1...2 {
            let tree = directory + "/tree\(version)"
            try SeedTree.make(at: tree, version: version)
            _ = try store.add(tree: tree, name: app, version: "\(version)", created: SeedTree.mtime, configuration: configuration)
            trees.append(tree)
        }
        let delta = try ReleaseDelta.make(store: store, from: ReleaseReference(name: app, version: "1"), to: ReleaseReference(name: app, version: "2"),
                                          configuration: ArchiveWriterConfiguration(threads: 1, sourceDateEpoch: SeedTree.mtime))
        guard delta.metadata.formatVersion == 2, delta.metadata.patched?.isEmpty == false else {
            throw ReleaseError.invalidReference("\(app)@2", reason: "the seed delta carries no patch")
        }
        return SeedReleases(store: store, tree1: trees[0], tree2: trees[1], delta: delta.archivePath,
                            targetSHA256: try store.release(name: app, version: "2").manifest.archive.sha256)
    }

    /// `fuzz@version` as stored.
    public func release(_ version: Int) throws -> StoredRelease {
        try store.release(name: Self.app, version: "\(version)")
    }

    /// The entries of `archive` packed again with `compression`, as bytes; `work` is a
    /// directory to use (it must not exist, and is removed).
    public static func repack(_ archive: String, as compression: ArchiveCompression, work: String) throws -> Data {
        defer { Scratch.removeTree(work) }
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: false)
        _ = try ArchiveExtractor.extract(archive: archive, into: work + "/tree")
        let packed = work + "/archive"
        _ = try ArchiveWriter.pack(tree: work + "/tree", to: packed,
                                   configuration: ArchiveWriterConfiguration(compression: compression, threads: 1, sourceDateEpoch: SeedTree.mtime))
        return try Data(contentsOf: URL(fileURLWithPath: packed))
    }
}
