import Foundation

/// The node's journal for one app (`state.json`): which releases it holds, in the order they
/// landed, and every switch between them. Releases are ordered by this journal, never by
/// file times. Written whole through a temporary file, fsync and rename, so a crash leaves
/// the old journal or the new one; recovery reconciles it with what the backend holds.
public struct NodeState: Codable, Sendable, Equatable {
    /// How a release reached the node.
    public struct Origin: Codable, Sendable, Equatable {
        /// `full`, `delta`, or `recovered` (found landed by recovery after a crash between the
        /// commit and the journal write).
        public var kind: String
        /// The base version of a delta.
        public var base: String?

        public init(kind: String, base: String? = nil) {
            self.kind = kind
            self.base = base
        }
        public static let full = Origin(kind: "full")
        public static func delta(from base: String) -> Origin { Origin(kind: "delta", base: base) }
        public static let recovered = Origin(kind: "recovered")
    }

    /// One landed release.
    public struct Release: Codable, Sendable, Equatable {
        public var version: String
        /// Seconds since 1970 when it landed.
        public var receivedAt: Double
        /// The SHA-256 of the full release archive (from its manifest).
        public var archiveSHA256: String?
        public var origin: Origin

        public init(version: String, receivedAt: Double, archiveSHA256: String?, origin: Origin) {
            self.version = version
            self.receivedAt = receivedAt
            self.archiveSHA256 = archiveSHA256
            self.origin = origin
        }
    }

    /// One switch of `current` (activate or rollback) and how it ended.
    public struct Activation: Codable, Sendable, Equatable {
        /// `activate` or `rollback`.
        public var kind: String
        public var from: String?
        public var to: String
        /// Seconds since 1970.
        public var at: Double
        /// `activated`, `rolled-back` (health failed, switched back to `from`), or `failed`
        /// (a hook failed before the switch; nothing changed).
        public var result: String
        public var detail: String?

        public init(kind: String, from: String?, to: String, at: Double, result: String, detail: String? = nil) {
            self.kind = kind
            self.from = from
            self.to = to
            self.at = at
            self.result = result
            self.detail = detail
        }

        public var succeeded: Bool { result == "activated" }
    }

    public var formatVersion: Int = 1
    public var app: String
    /// Landed releases, oldest first.
    public var releases: [Release]
    /// Every switch, oldest first (the last 200 are kept).
    public var activations: [Activation]

    static let historyLimit = 200

    public init(app: String, releases: [Release] = [], activations: [Activation] = []) {
        self.app = app
        self.releases = releases
        self.activations = activations
    }

    /// Loads the journal of `layout`'s app; absent means empty.
    public static func load(_ layout: NodeLayout) throws -> NodeState {
        guard NodeFiles.exists(layout.stateFile) else { return NodeState(app: layout.app) }
        let data = try NodeFiles.read(layout.stateFile)
        do {
            return try JSONDecoder().decode(NodeState.self, from: data)
        } catch {
            throw NodeError.settings(path: layout.stateFile,
                                     detail: "the journal is damaged (\(ReleaseManifest.describe(error))); move it away and run `slipway node recover \(layout.app)` to rebuild it from the landed releases")
        }
    }

    /// Writes the journal durably (temp file, fsync, rename, fsync of the directory).
    public func save(_ layout: NodeLayout) throws {
        var copy = self
        if copy.activations.count > Self.historyLimit {
            copy.activations.removeFirst(copy.activations.count - Self.historyLimit)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try NodeFiles.writeAtomically(layout.stateFile, try encoder.encode(copy) + Data("\n".utf8))
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
