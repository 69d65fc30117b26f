import Foundation
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Removes what an interrupted command left behind and brings the journal in line with what
/// the backend holds. Runs first in every mutating command, under the app's lock, so a node
/// never needs an operator after a crash; idempotent.
///
/// Removed: the backend's staging trees (`.partial-*`, `.removing-*` or its equivalent),
/// `current.new`, temporary journal and manifest files, manifests of versions that never
/// landed, and in `incoming/` temporary files and uploads untouched for a week (younger ones
/// stay so an upload can resume). The journal gains a `recovered` entry for a version that
/// landed just before a crash, and loses the versions that are gone. When schroot is on,
/// its file is rewritten if a crash left it naming another version than `current`. A pending
/// confirmation past its deadline switches back (see `NodeConfirm`), so a node that rebooted
/// while its watcher waited still does; one whose version is not current is dropped.
public enum NodeRecovery {
    /// Uploads in `incoming/` older than this are abandoned.
    public static let incomingMaxAge: Double = 7 * 24 * 3600

    /// What recovery did.
    public struct Result: Codable, Sendable, Equatable {
        public var app: String
        /// Paths removed.
        public var removed: [String] = []
        /// Versions added to the journal (landed before a crash, not yet journaled).
        public var journalAdded: [String] = []
        /// Versions dropped from the journal (no longer landed).
        public var journalDropped: [String] = []
        /// The schroot file was rewritten to match `current`.
        public var schrootRewritten: Bool = false
        /// Problems recovery cannot fix alone.
        public var problems: [String] = []
        /// The version switched back from because its activation was not confirmed in time.
        public var unconfirmed: String?
        /// The node protocol of the slipway that replied (`NodeWire.version`).
        public var protocolVersion: Int? = NodeWire.version
        /// What recovery found, for the command that runs next under the same lock (so a
        /// switch asks the backend and reads the journal once, not three times).
        var landed: [String] = []
        var state: NodeState?

        private enum CodingKeys: String, CodingKey {
            case app, removed, journalAdded, journalDropped, schrootRewritten, problems, unconfirmed, protocolVersion
        }

        public static func == (a: Result, b: Result) -> Bool {
            (a.app, a.removed, a.journalAdded, a.journalDropped, a.schrootRewritten, a.problems)
                == (b.app, b.removed, b.journalAdded, b.journalDropped, b.schrootRewritten, b.problems) && a.unconfirmed == b.unconfirmed
        }
    }

    /// `slipway node recover APP`: takes the lock and recovers.
    public static func recover(app: String, context: NodeContext) throws -> Result {
        try context.mutating(app) { _, result in result }
    }

    static func run(_ context: NodeContext, layout: NodeLayout) throws -> Result {
        var result = Result(app: layout.app)
        let before = Set(NodeFiles.names(layout.releases).filter { $0.hasPrefix(".") })
        let landedList = try context.backend.recoverListingLanded(layout: layout)
        let after = Set(NodeFiles.names(layout.releases).filter { $0.hasPrefix(".") })
        result.removed += before.subtracting(after).sorted().map { "\(layout.releases)/\($0)" }

        if NodeFiles.exists(layout.currentNew) {
            unlink(layout.currentNew)
            result.removed.append(layout.currentNew)
        }
        for name in NodeFiles.names(layout.appDirectory) where name.hasPrefix("state.json.tmp-") || name.hasPrefix("confirm.json.tmp-") || name.hasPrefix("current.new") {
            NodeFiles.removeTree("\(layout.appDirectory)/\(name)")
            result.removed.append("\(layout.appDirectory)/\(name)")
        }

        let landed = Set(landedList)
        result.landed = landedList
        for name in NodeFiles.names(layout.manifests) {
            let version = name.hasSuffix(".json") ? String(name.dropLast(5)) : name.hasSuffix(".sig") ? String(name.dropLast(4))
                : name.hasSuffix(".spdx") ? String(name.dropLast(5)) : nil
            if name.contains(".tmp-") || version.map({ !landed.contains($0) }) ?? true {
                NodeFiles.removeTree("\(layout.manifests)/\(name)")
                result.removed.append("\(layout.manifests)/\(name)")
            }
        }

        let now = NodeFiles.now()
        for name in NodeFiles.names(layout.incoming) {
            let path = "\(layout.incoming)/\(name)"
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            let age = now - Double(st.st_mtim.tv_sec)
            if name.hasPrefix(".") || name.contains(".tmp-") || age > incomingMaxAge {
                NodeFiles.removeTree(path)
                result.removed.append(path)
            }
        }

        var state = try NodeState.load(layout)
        let journaled = Set(state.versions)
        for version in state.versions where !landed.contains(version) {
            result.journalDropped.append(version)
        }
        state.releases.removeAll { !landed.contains($0.version) }
        for version in landed.subtracting(journaled).sorted() {
            let sha = (try? ReleaseManifest.read(path: layout.manifest(version)))?.manifest.archive.sha256
            state.recordLanded(version, archiveSHA256: sha, origin: .recovered)
            result.journalAdded.append(version)
        }
        if !result.journalAdded.isEmpty || !result.journalDropped.isEmpty { try state.save(layout) }
        if let expiry = try NodeConfirm.expire(context, layout: layout, landed: landed, state: &state) {
            result.unconfirmed = expiry.switchedBack
            if expiry.switchedBack == nil, let removed = expiry.removed { result.removed.append(removed) }
            if let problem = expiry.problem { result.problems.append(problem) }
        }
        result.state = state

        let current = layout.currentVersion
        if NodeFiles.exists(layout.current) {
            if let current, !landed.contains(current) {
                result.problems.append("current points at \(current), which is not landed; activate a landed version")
            } else if current == nil {
                result.problems.append("\(layout.current) is not a symlink; move it away and activate a version")
            }
        }
        if context.settings.schrootEnabled {
            let schroot = context.schroot
            try schroot.recover(layout: layout)
            if let current, landed.contains(current), schroot.installedVersion(layout: layout) != current {
                try schroot.write(layout: layout, version: current, settings: try context.backend.schrootSettings(version: current, layout: layout))
                result.schrootRewritten = true
            }
        }
        return result
    }
}
