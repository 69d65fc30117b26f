import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// A pending confirmation (`<app>/confirm.json`): `activate --confirm-timeout` switched to
/// `version` and the node switches back to `previous` at `deadline` unless `slipway node
/// confirm` comes first. Written temp + fsync + rename like the journal.
public struct NodeConfirmation: Codable, Sendable, Equatable {
    /// The version waiting for confirmation.
    public var version: String
    /// Where the node goes back to; nil after a first activation (current is then removed).
    public var previous: String?
    /// Seconds since 1970 after which the node switches back.
    public var deadline: Double
    /// The `--confirm-timeout` it was given, in seconds.
    public var timeout: Double
    /// Identifies the watcher process of this activation; a watcher that finds another token
    /// belongs to an older activation and exits.
    public var token: String

    static func load(_ layout: NodeLayout) throws -> NodeConfirmation? {
        guard NodeFiles.exists(layout.confirmFile) else { return nil }
        let data = try NodeFiles.read(layout.confirmFile)
        do {
            return try JSONDecoder().decode(NodeConfirmation.self, from: data)
        } catch {
            throw NodeError.settings(path: layout.confirmFile, detail: "the pending confirmation is damaged (\(ReleaseManifest.describe(error)))")
        }
    }

    func save(_ layout: NodeLayout) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try NodeFiles.writeAtomically(layout.confirmFile, try encoder.encode(self) + Data("\n".utf8))
    }

    static func remove(_ layout: NodeLayout) throws {
        guard unlink(layout.confirmFile) == 0 || errno == ENOENT else {
            throw NodeError.system(operation: "remove", path: layout.confirmFile, errno: errno)
        }
        try NodeFiles.fsyncDirectory(layout.appDirectory)
    }

    /// "within 30 s", as journaled and reported.
    var within: String { "not confirmed within \(NodeConfirm.seconds(timeout)) s" }
}

extension NodeLayout {
    /// The pending confirmation of the last `activate --confirm-timeout`, while there is one.
    public var confirmFile: String { "\(appDirectory)/confirm.json" }
}

/// The dead man's switch of an activation. `activate --confirm-timeout S` records a pending
/// confirmation and starts a detached watcher (`slipway node confirm-watch`, in its own
/// session, stdio on /dev/null, so the SSH session ending neither kills it nor waits for it).
/// At the deadline the watcher takes the app's lock, whose recovery finds the expired
/// confirmation and switches back exactly as a failed health check does: `current` to the
/// previous version, its `reload`, a journal entry (kind `rollback`, detail "not confirmed
/// within S s"). `slipway node confirm` removes the pending confirmation first. Because the
/// expiry lives in recovery, a node that rebooted with a confirmation pending (no watcher)
/// switches back in the first mutating command after the deadline.
public enum NodeConfirm {
    /// `activate --confirm-timeout`: how long to wait, and how to start the watcher.
    public struct Request: Sendable {
        /// Seconds after the switch (and its health check) before the node switches back.
        public var timeout: Double
        /// The program the watcher runs (the CLI gives `/proc/self/exe`: the running binary,
        /// even if an upgrade has replaced its file since).
        public var watcherProgram: String
        /// The watcher's argv, argv[0] first (the CLI gives `slipway node confirm-watch APP`
        /// and its node flags); `--token T` is appended.
        public var watcherArguments: [String]

        public init(timeout: Double, watcherProgram: String, watcherArguments: [String]) {
            self.timeout = timeout
            self.watcherProgram = watcherProgram
            self.watcherArguments = watcherArguments
        }
    }

    /// The reply of `slipway node confirm`.
    public struct Result: Codable, Sendable {
        public var app: String
        public var version: String
        /// `confirmed` (a pending confirmation was removed), or `already-confirmed` (nothing
        /// was pending and the version is current).
        public var outcome: String
        /// The deadline that was met, seconds since 1970 (nil for `already-confirmed`).
        public var deadline: Double?
        public var recovered: [String]
        /// The node protocol of the slipway that replied (`NodeWire.version`).
        public var protocolVersion: Int? = NodeWire.version
    }

    /// The journal detail of a switch back for lack of confirmation starts with this.
    static let unconfirmedDetail = "not confirmed within"

    /// `slipway node confirm APP@V`, under the lock (whose recovery switches back first when
    /// the deadline has passed: then this fails saying so).
    public static func confirm(app: String, version: String, context: NodeContext) throws -> Result {
        try ReleaseStore.validate(version: version)
        return try context.mutating(app) { layout, recovered in
            let pending = try NodeConfirmation.load(layout)
            if let pending, pending.version == version {
                try NodeConfirmation.remove(layout)
                context.log("\(app)@\(version) confirmed (\(seconds(pending.deadline - NodeFiles.now())) s before the deadline)")
                return Result(app: app, version: version, outcome: "confirmed", deadline: pending.deadline, recovered: recovered.removed)
            }
            let current = layout.currentVersion
            if pending == nil, current == version {
                return Result(app: app, version: version, outcome: "already-confirmed", deadline: nil, recovered: recovered.removed)
            }
            let state = try recovered.state ?? NodeState.load(layout)
            if let expiry = lastExpiry(of: version, in: state) {
                throw NodeError.confirmationExpired(app: app, version: version, restored: expiry.to == version ? nil : expiry.to,
                                                    detail: expiry.detail ?? unconfirmedDetail, at: expiry.at)
            }
            throw NodeError.nothingToConfirm(app: app, version: version, current: current, pending: pending?.version)
        }
    }

    /// The journal entry of `version`'s switch back for lack of confirmation, when that is the
    /// last thing the journal says about `version`.
    static func lastExpiry(of version: String, in state: NodeState) -> NodeState.Activation? {
        guard let last = state.activations.last(where: { $0.to == version || $0.from == version }) else { return nil }
        return last.kind == .rollback && last.from == version && last.detail?.hasPrefix(unconfirmedDetail) == true ? last : nil
    }

    /// The watcher (`slipway node confirm-watch APP --token T`): waits for the deadline of the
    /// pending confirmation carrying `token`, then runs recovery under the app's lock, which
    /// switches back. Returns as soon as the confirmation is gone or carries another token.
    public static func watch(app: String, token: String, context: NodeContext) throws {
        try ReleaseStore.validate(name: app)
        let layout = context.layout(app)
        var failures = 0
        while true {
            guard let pending = try? NodeConfirmation.load(layout), pending.token == token else { return }
            let left = pending.deadline - NodeFiles.now()
            if left > 0 {
                // Short naps: a confirmation or a newer activation ends the watch promptly.
                usleep(useconds_t(min(left, 1) * 1_000_000) + 1000)
                continue
            }
            do {
                let result = try NodeRecovery.recover(app: app, context: context)
                if let version = result.unconfirmed { context.log("\(app)@\(version) was \(pending.within); switched back") }
                return
            } catch let error as NodeError {
                // A long command holds the lock: its own recovery may already switch back;
                // otherwise try again once it is done.
                if case .locked = error { continue }
                failures += 1
                context.log("\(app): switching back failed: \(error)")
            } catch {
                failures += 1
                context.log("\(app): switching back failed: \(Output.message(for: error))")
            }
            // The next mutating command's recovery tries again; the watcher gives up eventually.
            if failures >= 10 { return }
            sleep(5)
        }
    }

    /// What recovery did about a pending confirmation.
    struct Expiry {
        /// The version switched back from.
        var switchedBack: String?
        var removed: String?
        var problem: String?
    }

    /// Called by recovery (under the lock): an expired confirmation switches back; one whose
    /// version is not current (a crash around a switch, a newer switch) is dropped.
    static func expire(_ context: NodeContext, layout: NodeLayout, landed: Set<String>, state: inout NodeState) throws -> Expiry? {
        let pending: NodeConfirmation
        do {
            guard let found = try NodeConfirmation.load(layout) else { return nil }
            pending = found
        } catch {
            try NodeConfirmation.remove(layout)
            return Expiry(removed: layout.confirmFile, problem: "\(Output.message(for: error)); it was removed, nothing switches back")
        }
        guard layout.currentVersion == pending.version else {
            try NodeConfirmation.remove(layout)
            return Expiry(removed: layout.confirmFile)
        }
        guard pending.deadline <= NodeFiles.now() else { return nil }
        if let previous = pending.previous, !landed.contains(previous) {
            try NodeConfirmation.remove(layout)
            return Expiry(removed: layout.confirmFile,
                          problem: "\(layout.app)@\(pending.version) was \(pending.within), but \(previous) is no longer landed; it stays current")
        }
        try switchBack(pending, detail: pending.within, layout: layout, context: context, state: &state)
        try NodeConfirmation.remove(layout)
        return Expiry(switchedBack: pending.version, removed: layout.confirmFile)
    }

    /// Switches from an unconfirmed version back to its previous one, as a failed health
    /// check does: `current` (and the schroot file), the old version's `reload`, the journal.
    /// After a first activation there is nothing to go back to: `current` is removed and the
    /// version's `stop` runs.
    static func switchBack(_ pending: NodeConfirmation, detail: String, layout: NodeLayout, context: NodeContext,
                           state: inout NodeState) throws {
        let activation: NodeState.Activation
        // The same way back as a failed health check: a service the node runs switches back
        // gracefully (docs/service.md).
        if let previous = pending.previous {
            try NodeActivate.restore(previous, from: pending.version, layout: layout, context: context)
            activation = .init(kind: .rollback, from: pending.version, to: previous, at: NodeFiles.now(), result: .activated, detail: detail)
            context.log("\(layout.app)@\(pending.version) was \(detail); switched back to \(previous)")
        } else {
            try NodeActivate.restore(nil, from: pending.version, layout: layout, context: context)
            activation = .init(kind: .rollback, from: pending.version, to: pending.version, at: NodeFiles.now(), result: .rolledBack,
                               detail: detail + "; there was no previous version, so current was removed")
            context.log("\(layout.app)@\(pending.version) was \(detail); there was no previous version, current removed")
        }
        state.recordActivation(activation)
        try state.save(layout)
    }

    /// A new pending confirmation for a switch from `previous` to `version`.
    static func pending(_ request: Request, version: String, previous: String?) -> NodeConfirmation {
        var generator = SystemRandomNumberGenerator()
        let token = (0..<2).map { _ in String(format: "%016llx", generator.next() as UInt64) }.joined()
        return NodeConfirmation(version: version, previous: previous, deadline: NodeFiles.now() + request.timeout,
                                timeout: request.timeout, token: token)
    }

    /// Starts the watcher detached: posix_spawn in a new session (POSIX_SPAWN_SETSID), signals
    /// at their defaults, stdio on /dev/null and no other descriptor inherited, so neither
    /// this command's caller nor an SSH session waits for it or takes it down. Not waited for:
    /// once this command exits, init reaps it.
    static func spawnWatcher(_ request: Request, app: String, token: String) throws -> pid_t {
        let program = request.watcherProgram
        let arguments = (request.watcherArguments.isEmpty ? [program] : request.watcherArguments) + ["--token", token]
        do {
            return try DetachedSpawn.spawn(program: program, arguments: arguments)
        } catch SystemError.call(_, _, let code) {
            throw NodeError.system(operation: "start the confirmation watcher", path: program, errno: code)
        }
    }

    /// Seconds for messages: "30", "2.5".
    static func seconds(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e9 ? String(Int(value)) : String(format: "%.1f", value)
    }
}
