import Foundation
import Glibc
import SlipwayRelease

/// A deploy's record of where each node stands, kept in the controller's store
/// (`STORE/.rollouts/NAME@V.json`) and rewritten, atomically, after the push phase and after
/// every batch. A controller that dies leaves it behind; `deploy NAME@V --resume` then works
/// only on the nodes it does not record as done (docs/fleet.md, "Resuming a rollout").
public struct RolloutState: Codable, Sendable {
    public var formatVersion = 1
    public var release: String
    public var started: String
    public var updated: String
    /// Whether the deploy ran to its end (done or stopped), rather than dying on the way.
    public var ended: Bool
    public var nodes: [NodeOutcome]

    public init(release: String, started: String, updated: String, ended: Bool, nodes: [NodeOutcome]) {
        self.release = release
        self.started = started
        self.updated = updated
        self.ended = ended
        self.nodes = nodes
    }

    /// Results after which a node needs nothing more.
    public static let done: Set<FleetResult> = [.activated, .alreadyCurrent]

    /// The nodes not recorded as done.
    public var unfinished: [String] { nodes.filter { !Self.done.contains($0.result) }.map(\.node) }

    public static func path(store: ReleaseStore, reference: ReleaseReference) -> String {
        "\(store.root)/.rollouts/\(reference.name)@\(reference.version).json"
    }

    public static func load(store: ReleaseStore, reference: ReleaseReference) throws -> RolloutState? {
        let path = path(store: store, reference: reference)
        guard access(path, F_OK) == 0 else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FleetError.invalidArgument("cannot read the rollout state \(path)")
        }
        do {
            return try JSONDecoder().decode(RolloutState.self, from: data)
        } catch {
            throw FleetError.invalidArgument("the rollout state \(path) is damaged (\(error)); deploy without --resume to start over")
        }
    }

    /// Writes the state: a new file renamed over the old one, so a kill leaves either.
    public func save(store: ReleaseStore, reference: ReleaseReference) throws {
        let path = Self.path(store: store, reference: reference)
        let directory = (path as NSString).deletingLastPathComponent
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw FleetError.invalidArgument("cannot create \(directory): \(String(cString: strerror(errno)))")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let temp = path + ".tmp-\(getpid())"
        do {
            try encoder.encode(self).write(to: URL(fileURLWithPath: temp))
        } catch {
            throw FleetError.invalidArgument("cannot write the rollout state \(temp): \(error)")
        }
        guard rename(temp, path) == 0 else {
            let code = errno
            unlink(temp)
            throw FleetError.invalidArgument("cannot rename \(temp) to \(path): \(String(cString: strerror(code)))")
        }
    }
}
