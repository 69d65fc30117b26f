import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The plain-directory backend: each version is `releases/<version>`, staged as
/// `releases/.partial-<version>` and committed by rename(2). A delta's base copy is
/// `cp -a --reflink=auto` (a reflink clone on XFS/btrfs, a real copy elsewhere), or with
/// `[dir] link_unchanged = true`, `cp -a --link`: new directories, every other entry a
/// hardlink to the base's (the delta then replaces what changed by rename, never in place).
/// A pruned version is first renamed to `releases/.removing-<version>`, so it disappears at
/// once and a crash mid-removal leaves only a leftover that recovery deletes.
public struct DirBackend: NodeBackend {
    public var kind: BackendKind { .dir }
    let runner: CommandRunner
    /// `[dir] link_unchanged`: a delta's staged copy hardlinks the base's files instead of
    /// copying them (docs/backends.md "dir").
    let linkUnchanged: Bool

    public init(runner: CommandRunner = CommandRunner(), linkUnchanged: Bool = false) {
        self.runner = runner
        self.linkUnchanged = linkUnchanged
    }

    /// The backend with node.toml's `[dir]` table.
    public init(settings: [String: String], runner: CommandRunner = CommandRunner()) throws {
        for key in settings.keys where key != "link_unchanged" {
            throw NodeError.invalidArgument("[dir] \(key): unknown setting; [dir] takes link_unchanged (true or false)")
        }
        switch settings["link_unchanged"] {
        case nil, "false": self.init(runner: runner)
        case "true": self.init(runner: runner, linkUnchanged: true)
        case let other?: throw NodeError.invalidArgument("[dir] link_unchanged = \(other): expected true or false")
        }
    }

    public func createStaging(_ request: StagingRequest, layout: NodeLayout) throws -> String {
        guard let base = request.base else { return try createEmptyStaging(version: request.version, layout: layout) }
        return try createStagingCopy(version: request.version, from: base, layout: layout)
    }

    func createEmptyStaging(version: String, layout: NodeLayout) throws -> String {
        let staging = layout.partial(version)
        NodeFiles.removeTree(staging)
        try NodeFiles.makeDirectories(layout.releases)
        guard mkdir(staging, 0o755) == 0 else { throw NodeError.system(operation: "create staging directory", path: staging, errno: errno) }
        return staging
    }

    func createStagingCopy(version: String, from base: String, layout: NodeLayout) throws -> String {
        let staging = layout.partial(version)
        NodeFiles.removeTree(staging)
        let source = layout.release(base)
        guard NodeFiles.isDirectory(source) else {
            throw NodeError.baseMissing(app: layout.app, base: base, landed: (try? landedVersions(layout: layout)) ?? [])
        }
        do {
            let how = linkUnchanged ? "--link" : "--reflink=auto"
            try runner.run(Command(["cp", "-a", how, "--no-target-directory", source, staging]))
        } catch {
            NodeFiles.removeTree(staging)
            throw error
        }
        return staging
    }

    public func commit(version: String, layout: NodeLayout) throws {
        let staging = layout.partial(version)
        let target = layout.release(version)
        try NodeFiles.syncFileSystem(of: staging)
        guard rename(staging, target) == 0 else {
            throw NodeError.system(operation: "rename \(staging) to", path: target, errno: errno)
        }
        try NodeFiles.fsyncDirectory(layout.releases)
    }

    public func remove(version: String, layout: NodeLayout) throws {
        let target = layout.release(version)
        guard NodeFiles.exists(target) else { return }
        let doomed = "\(layout.releases)/.removing-\(version)"
        NodeFiles.removeTree(doomed)
        guard rename(target, doomed) == 0 else { throw NodeError.system(operation: "rename \(target) to", path: doomed, errno: errno) }
        try NodeFiles.fsyncDirectory(layout.releases)
        NodeFiles.removeTree(doomed)
    }

    public func recover(layout: NodeLayout) throws {
        for name in NodeFiles.names(layout.releases) where name.hasPrefix(".partial-") || name.hasPrefix(".removing-") {
            NodeFiles.removeTree("\(layout.releases)/\(name)")
        }
    }

    public func landedVersions(layout: NodeLayout) throws -> [String] {
        NodeFiles.names(layout.releases).filter { !$0.hasPrefix(".") && NodeFiles.isDirectory("\(layout.releases)/\($0)") }
    }

    public func schrootSettings(version: String, layout: NodeLayout) throws -> [(key: String, value: String)] {
        [("type", "directory"), ("directory", layout.release(version))]
    }
}
