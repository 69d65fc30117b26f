import Foundation
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// What a node holds for an app (the JSON reply of `slipway node status`). Read-only: it
/// takes no lock and changes nothing.
extension NodeStatus {
    /// An app the node has never seen reads as empty (no releases, no current version): the
    /// controller asks this first of a new node.
    public static func read(app: String, context: NodeContext, history: Int = 10) throws -> NodeStatus {
        try ReleaseStore.validate(name: app)
        let layout = context.layout(app)
        let state = try NodeState.load(layout)
        let landed = try context.landed(layout)
        let landedSet = Set(landed)
        let current = layout.currentVersion
        let previous = state.previous(current: current, landed: landedSet)
        var versions = state.versions
        versions += landed.filter { !state.versions.contains($0) }
        let releases = versions.map { version in
            let entry = state.release(version)
            return Release(version: version, landed: landedSet.contains(version), current: version == current,
                           previous: version == previous, receivedAt: entry?.receivedAt, archiveSHA256: entry?.archiveSHA256,
                           origin: entry?.origin)
        }
        var leftovers = NodeFiles.names(layout.releases).filter { $0.hasPrefix(".") }.map { "\(layout.releases)/\($0)" }
        if NodeFiles.exists(layout.currentNew) { leftovers.append(layout.currentNew) }
        return NodeStatus(
            app: app, root: layout.root, backend: context.backend.kind, current: current, previous: previous,
            releases: releases, activations: Array(state.activations.suffix(history)), leftovers: leftovers,
            lockHolder: NodeLock.currentHolder(layout)?.description,
            schroot: context.settings.schrootEnabled ? context.schroot.installedVersion(layout: layout) : nil,
            incoming: NodeFiles.names(layout.incoming).filter { !$0.hasPrefix(".") }.sorted().compactMap { name in
                var st = stat()
                guard lstat("\(layout.incoming)/\(name)", &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
                return IncomingFile(name: name, bytes: UInt64(st.st_size))
            },
            confirmation: ((try? NodeConfirmation.load(layout)) ?? nil).map {
                PendingConfirmation(version: $0.version, previous: $0.previous, deadline: $0.deadline, timeout: $0.timeout,
                                    expired: $0.deadline <= NodeFiles.now())
            },
            signaturePolicy: try NodeSignature.policy(context.settings),
            space: context.backend.availableSpace(layout: layout))
    }

    /// The apps under the node's root (directories holding a journal or releases).
    public static func apps(context: NodeContext) -> [String] {
        NodeFiles.names(context.settings.root).filter {
            !$0.hasPrefix(".") && (NodeFiles.exists("\(context.settings.root)/\($0)/state.json") || NodeFiles.isDirectory("\(context.settings.root)/\($0)/releases"))
        }
    }

    /// The human-readable report.
    public var textLines: [String] {
        var lines = ["\(app): current \(current ?? "none")" + (previous.map { ", previous \($0)" } ?? "") + " (\(backend) backend, \(root))"]
        let formatter = ISO8601DateFormatter()
        for release in releases {
            let mark = release.current ? "*" : release.previous ? "-" : " "
            let when = release.receivedAt.map { formatter.string(from: Date(timeIntervalSince1970: $0)) } ?? "?"
            let origin = release.origin.map { $0.kind.rawValue + ($0.base.map { " from \($0)" } ?? "") } ?? "unjournaled"
            lines.append("  \(mark) \(release.version)  \(release.landed ? "landed \(when)" : "MISSING")  \(origin)")
        }
        for activation in activations.suffix(5) {
            let when = formatter.string(from: Date(timeIntervalSince1970: activation.at))
            lines.append("  \(when) \(activation.kind) \(activation.from ?? "none") → \(activation.to): \(activation.result)" + (activation.detail.map { " (\($0))" } ?? ""))
        }
        if !leftovers.isEmpty { lines.append("  leftovers (removed by the next command): \(leftovers.joined(separator: ", "))") }
        if let lockHolder { lines.append("  locked by \(lockHolder)") }
        if let policy = signaturePolicy {
            lines.append(policy.required ? "  signatures: required (keys \(policy.trustedKeyIDs.joined(separator: ", ")))"
                : policy.allowUnsigned ? "  signatures: checked when present; unsigned releases allowed (allow_unsigned)"
                : "  signatures: not checked (no trusted key)")
        }
        if let schroot { lines.append("  schroot slipway-\(app) → \(schroot)") }
        if let confirmation {
            let when = formatter.string(from: Date(timeIntervalSince1970: confirmation.deadline))
            let back = confirmation.previous ?? "no current version"
            lines.append(confirmation.expired
                ? "  \(confirmation.version) was not confirmed by \(when): the next slipway command switches back to \(back)"
                : "  \(confirmation.version) awaits confirmation until \(when), else the node switches back to \(back)")
        }
        if !incoming.isEmpty {
            lines.append("  incoming: " + incoming.map { "\($0.name) (\($0.bytes) bytes)" }.joined(separator: ", "))
        }
        return lines
    }
}

/// What `status --local --packages` shows for an app: the packages of the version `current`
/// points to, from the SBOM it was landed with (docs/sbom.md).
public struct NodePackages: Codable, Sendable, Equatable {
    public var app: String
    public var version: String?
    /// nil when the version came without an SBOM (`note` says why).
    public var packages: [PackageRecord]?
    public var note: String?

    /// The packages of `app`'s current version.
    public static func read(app: String, context: NodeContext) throws -> NodePackages {
        try ReleaseStore.validate(name: app)
        let layout = context.layout(app)
        guard let version = layout.currentVersion else {
            return NodePackages(app: app, version: nil, packages: nil, note: "no version is current")
        }
        let path = layout.sbom(version)
        guard NodeFiles.exists(path) else {
            return NodePackages(app: app, version: version, packages: nil,
                                note: "\(app)@\(version) was landed without an SBOM (built or pushed by a slipway without SBOMs)")
        }
        return NodePackages(app: app, version: version, packages: try SBOM.packages(spdx: try NodeFiles.read(path), source: path), note: nil)
    }

    public var textLines: [String] {
        guard let version else { return ["\(app): \(note ?? "")"] }
        guard let packages else { return ["\(app)@\(version): \(note ?? "")"] }
        let deb = packages.filter { $0.ecosystem == .deb }.count
        return ["\(app)@\(version): \(deb) Debian package(s), \(packages.count - deb) Python distribution(s)"]
            + packages.map { "  \($0.displayName) \($0.version)" }
    }
}
