import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

extension NodeState {
    /// Loads the journal of `layout`'s app; absent means empty.
    public static func load(_ layout: NodeLayout) throws -> NodeState {
        guard NodeFiles.exists(layout.stateFile) else { return NodeState(app: layout.app) }
        let data = try NodeFiles.read(layout.stateFile)
        if let state = NodeStateFastCodec.decode(data) { return state }
        do {
            return try JSONDecoder().decode(NodeState.self, from: data)
        } catch {
            throw NodeError.settings(path: layout.stateFile,
                                     detail: "the journal is damaged (\(ReleaseManifest.describe(error))); move it away and run `slipway node recover \(layout.app)` to rebuild it from the landed releases")
        }
    }

    /// Writes the journal durably (temp file, fsync, rename, fsync of the directory).
    public func save(_ layout: NodeLayout) throws {
        try NodeFiles.writeAtomically(layout.stateFile, try encoded())
    }

    /// The journal as written: the last `historyLimit` activations.
    func encoded() throws -> Data {
        var copy = self
        if copy.activations.count > Self.historyLimit {
            copy.activations.removeFirst(copy.activations.count - Self.historyLimit)
        }
        if let fast = NodeStateFastCodec.encode(copy) { return fast + Data("\n".utf8) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(copy) + Data("\n".utf8)
    }

    /// A journal written in full and synced beside `state.json` but not yet in its place:
    /// a switch writes the journal that records it before it switches, so a full disk stops
    /// the switch before anything changed; putting it in place is then a rename, which needs
    /// no data blocks.
    struct Prepared {
        let path: String
        let layout: NodeLayout

        /// Renames it over `state.json`.
        func commit() throws {
            guard rename(path, layout.stateFile) == 0 else {
                let code = errno
                unlink(path)
                throw NodeError.system(operation: "rename \(path) to", path: layout.stateFile, errno: code)
            }
            try NodeFiles.fsyncDirectory(layout.appDirectory)
        }

        /// Removes it (its blocks are free again for another journal write).
        func discard() { unlink(path) }
    }

    /// Writes this journal to a temporary file beside `state.json` (see `Prepared`).
    func prepare(_ layout: NodeLayout) throws -> Prepared {
        let path = layout.stateFile + ".tmp-next"  // recovery removes state.json.tmp-*
        unlink(path)
        let data = try encoded()
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw NodeError.system(operation: "create", path: path, errno: errno) }
        defer { close(fd) }
        let failure = data.withUnsafeBytes { writeFully(fd, $0) }
        if failure != 0 { unlink(path); throw NodeError.system(operation: "write", path: path, errno: failure) }
        guard fsync(fd) == 0 else { let code = errno; unlink(path); throw NodeError.system(operation: "fsync", path: path, errno: code) }
        return Prepared(path: path, layout: layout)
    }

    /// The journal's versions in landing order.
    public var versions: [String] { releases.map(\.version) }

    public func release(_ version: String) -> Release? { releases.first { $0.version == version } }

    /// The version before `current`: the most recent successful switch target other than
    /// `current` that is still among `landed`. It survives a crash between the switch and the
    /// journal write, because `current` comes from the symlink, not the journal.
    public func previous(current: String?, landed: Set<String>) -> String? {
        for activation in activations.reversed() where activation.succeeded {
            if activation.to != current && landed.contains(activation.to) { return activation.to }
            if let from = activation.from, activation.to == current, from != current, landed.contains(from) { return from }
        }
        return nil
    }

    mutating func recordLanded(_ version: String, archiveSHA256: String?, origin: Origin) {
        releases.removeAll { $0.version == version }
        releases.append(Release(version: version, receivedAt: NodeFiles.now(), archiveSHA256: archiveSHA256, origin: origin))
    }

    mutating func recordActivation(_ activation: Activation) {
        activations.append(activation)
    }
}
