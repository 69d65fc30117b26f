import ArgumentParser
import Foundation
import SlipwaySystem
import SlipwayArchive
import SlipwayRelease
import SlipwayRecipe
import SlipwayBuild
import SlipwayExport
import SlipwayNodeProtocol
import SlipwayNode
import SlipwayFleet

/// Node settings flags: node.toml, then these over it.
struct NodeOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Node settings file (default: /etc/slipway/node.toml when present).", valueName: "FILE"))
    var config: String?

    @Option(help: ArgumentHelp("Where the apps live (default: /var/lib/slipway).", valueName: "DIR"))
    var root: String?

    @Option(help: ArgumentHelp("dir, btrfs, zfs or lvm (default: dir).", valueName: "NAME"))
    var backend: BackendKind?

    @Option(name: .customLong("trust"), help: ArgumentHelp("A trusted public key file (repeatable).", valueName: "FILE.pub"))
    var trustedKeys: [String] = []

    @Flag(help: "Refuse unsigned releases (needs a trusted key; listing one already implies this).")
    var requireSignature = false

    @Flag(help: "With trusted keys, still land unsigned releases (warns on every use).")
    var allowUnsigned = false

    @Option(help: ArgumentHelp("Seconds to wait for the app's lock.", valueName: "SECONDS"))
    var lockTimeout: Double?

    @Flag(inversion: .prefixedNo, help: "Write /etc/schroot/chroot.d/slipway-<app> on every switch.")
    var schroot: Bool?

    @Option(help: ArgumentHelp("Where the schroot file goes (default: /etc/schroot/chroot.d).", valueName: "DIR"))
    var schrootDirectory: String?

    func settings() throws -> NodeSettings {
        var settings = try NodeSettings.load(path: config)
        if let root { settings.root = root.hasPrefix("/") ? root : FileManager.default.currentDirectoryPath + "/" + root }
        if let backend { settings.backend = backend }
        if !trustedKeys.isEmpty { settings.trustedKeys += trustedKeys }
        if requireSignature { settings.requireSignature = true }
        if allowUnsigned { settings.allowUnsigned = true }
        if let lockTimeout { settings.lockTimeout = lockTimeout }
        if let schroot { settings.schrootEnabled = schroot }
        if let schrootDirectory { settings.schrootDirectory = schrootDirectory }
        try settings.validate()
        return settings
    }

    func context(_ output: Output) throws -> NodeContext {
        try NodeContext(settings: try settings(), log: { output.log($0) })
    }

    /// These flags again, paths made absolute, for another slipway process that must see the
    /// same settings (the confirmation watcher).
    var arguments: [String] {
        func absolute(_ path: String) -> String { path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path }
        var arguments: [String] = []
        if let config { arguments += ["--config", absolute(config)] }
        if let root { arguments += ["--root", absolute(root)] }
        if let backend { arguments += ["--backend", backend.rawValue] }
        for key in trustedKeys { arguments += ["--trust", absolute(key)] }
        if requireSignature { arguments.append("--require-signature") }
        if allowUnsigned { arguments.append("--allow-unsigned") }
        if let lockTimeout { arguments += ["--lock-timeout", String(lockTimeout)] }
        if let schroot { arguments.append(schroot ? "--schroot" : "--no-schroot") }
        if let schrootDirectory { arguments += ["--schroot-directory", absolute(schrootDirectory)] }
        return arguments
    }
}

/// `slipway node <verb>`: the node side, as the controller calls it over SSH (`--json`).
struct Node: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Land, switch, roll back and inspect releases on this node (what the controller runs over SSH).",
        subcommands: [NodeApplyCommand.self, NodeActivateCommand.self, NodeConfirmCommand.self, NodeRollbackCommand.self,
                      NodeStatusCommand.self, NodePruneCommand.self, NodeRecoverCommand.self, NodeReceiveCommand.self,
                      NodeFetchCommand.self, NodeConfirmWatchCommand.self]
    )
}

/// Parses `NAME@VERSION` for node verbs.
func nodeReference(_ text: String) throws -> ReleaseReference { try parseReference(text) }

struct NodeApplyCommand: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Verify a release and land it (full archive, or a delta against a landed base).")

    @Option(help: ArgumentHelp("The release archive (rootfs.tar.xz).", valueName: "FILE")) var archive: String?
    @Option(help: ArgumentHelp("A delta archive (made by slipway diff --emit-delta).", valueName: "FILE")) var delta: String?
    @Option(help: ArgumentHelp("The landed version the delta is against.", valueName: "V")) var base: String?
    @Option(help: ArgumentHelp("The delta archive's expected SHA-256.", valueName: "HEX")) var sha256: String?
    @Option(help: ArgumentHelp("The release's manifest.json.", valueName: "FILE")) var manifest: String
    @Option(help: ArgumentHelp("The release's manifest.sig.", valueName: "FILE")) var signature: String?
    @Option(help: ArgumentHelp("The release's SBOM (sbom.spdx.json), checked against the manifest and kept beside it.", valueName: "FILE")) var sbom: String?
    @Flag(help: "Read every landed file back from the disk and hash it, besides the hashes taken as the bytes were written (node.toml: verify_landed).")
    var verifyLanded = false
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws {
        switch (archive, delta, base) {
        case (_?, nil, nil), (nil, _?, _?): break
        case (nil, _?, nil): throw ValidationError("--delta needs --base V, the landed version it is against.")
        case (nil, nil, _): throw ValidationError("Give --archive FILE, or --delta FILE --base V.")
        default: throw ValidationError("--archive and --delta exclude each other.")
        }
    }

    func run(_ context: CommandContext) throws {
        let source: NodeApply.Request.Source = if let archive { .full(archive: archive) } else { .delta(archive: delta ?? "", base: base ?? "") }
        let result = try NodeApply.apply(.init(source: source, manifestPath: manifest, signaturePath: signature, deltaSHA256: sha256, sbomPath: sbom, verifyLanded: verifyLanded),
                                         context: try node.context(context.output))
        try context.output.result(result, text: ["\(result.app)@\(result.version): \(result.outcome)" +
            (result.outcome == .landed ? " (\(result.origin)\(result.base.map { " from \($0)" } ?? ""), \(result.entries) entries, \(fixedPoint(result.seconds, decimals: 2)) s)" : "")])
    }
}

struct NodeActivateCommand: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "activate",
        abstract: "Switch the app to a landed version; a failed health check switches back.")

    @Argument(help: ArgumentHelp("The version to switch to.", valueName: "NAME@V")) var reference: String
    @Option(help: ArgumentHelp("Switch back unless `slipway node confirm NAME@V` comes within this many seconds.",
                               valueName: "SECONDS"))
    var confirmTimeout: Double?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws {
        _ = try nodeReference(reference)
        if let confirmTimeout, !(confirmTimeout > 0) { throw ValidationError("--confirm-timeout must be more than 0 seconds.") }
    }

    func run(_ context: CommandContext) throws {
        let ref = try nodeReference(reference)
        let confirm = confirmTimeout.map {
            NodeConfirm.Request(timeout: $0, watcherProgram: "/proc/self/exe",
                                watcherArguments: [CommandLine.arguments.first ?? "slipway", "node", "confirm-watch", ref.name] + node.arguments)
        }
        let result = try NodeActivate.activate(app: ref.name, version: ref.version, confirm: confirm, context: try node.context(context.output))
        var text = switchText(result)
        if let deadline = result.confirmDeadline {
            text += "; confirm by \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: deadline))) with `slipway node confirm \(ref)`"
        }
        try context.output.result(result, text: [text])
    }
}

struct NodeConfirmCommand: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "confirm",
        abstract: "Confirm an activation made with --confirm-timeout, so the node keeps it.")

    @Argument(help: ArgumentHelp("The version activated.", valueName: "NAME@V")) var reference: String
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws { _ = try nodeReference(reference) }

    func run(_ context: CommandContext) throws {
        let ref = try nodeReference(reference)
        let result = try NodeConfirm.confirm(app: ref.name, version: ref.version, context: try node.context(context.output))
        try context.output.result(result, text: ["\(ref): " + (result.outcome == "confirmed" ? "confirmed" : "already confirmed (nothing was pending)")])
    }
}

/// The detached watcher `node activate --confirm-timeout` starts; not for people.
struct NodeConfirmWatchCommand: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "confirm-watch",
        abstract: "Switch back at the deadline of a pending confirmation (started by activate --confirm-timeout).",
        shouldDisplay: false)

    @Argument(help: ArgumentHelp("The app.", valueName: "NAME")) var app: String
    @Option(help: ArgumentHelp("The pending confirmation's token.", valueName: "T")) var token: String
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions

    func run(_ context: CommandContext) throws {
        try NodeConfirm.watch(app: app, token: token, context: try node.context(context.output))
    }
}

func switchText(_ result: NodeActivate.Result) -> String {
    result.outcome == .alreadyCurrent ? "\(result.app)@\(result.version) is already current"
        : "\(result.app): \(result.previous ?? "none") → \(result.version) (\(fixedPoint(result.seconds, decimals: 3)) s)"
}

/// `value` with `decimals` digits after the point, as `%.Nf` prints a duration, without
/// String(format:): its C varargs cost a protocol-conformance scan of the whole binary on
/// the first call, paid by every `node activate` (docs/engineering.md, "Start-up").
func fixedPoint(_ value: Double, decimals: Int) -> String {
    guard value.isFinite, value >= 0, value < 1e12 else { return value.description }
    var scale = 1
    for _ in 0..<decimals { scale *= 10 }
    let units = Int((value * Double(scale)).rounded(.toNearestOrEven))
    guard decimals > 0 else { return String(units) }
    let fraction = String(units % scale)
    return "\(units / scale)." + String(repeating: "0", count: decimals - fraction.count) + fraction
}

struct NodeRollbackCommand: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Switch back to the previous version (from the journal), or to --to V.")

    @Argument(help: ArgumentHelp("The app.", valueName: "NAME")) var app: String
    @Option(help: ArgumentHelp("A landed version to switch to.", valueName: "V")) var to: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func run(_ context: CommandContext) throws {
        let result = try NodeRollback.rollback(app: app, to: to, context: try node.context(context.output))
        try context.output.result(result, text: [switchText(result)])
    }
}

struct NodeStatusCommand: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the landed versions, current and previous, and the last switches.")

    @Argument(help: ArgumentHelp("The app (default: every app under the root).", valueName: "NAME")) var app: String?
    @Flag(help: "The Debian and Python packages of the current version, from its SBOM.") var packages = false
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func run(_ context: CommandContext) throws {
        try printStatus(app: app, node: node, packages: packages, output: context.output)
    }
}

/// Status of one app, or of every app (as a JSON array) under the root.
func printStatus(app: String?, node: NodeOptions, packages: Bool = false, output: Output) throws {
    let nodeContext = try node.context(output)
    if packages {
        let apps = app.map { [$0] } ?? NodeStatus.apps(context: nodeContext)
        let all = try apps.map { try NodePackages.read(app: $0, context: nodeContext) }
        if app != nil, let one = all.first { return try output.result(one, text: one.textLines) }
        return try output.result(all, text: all.isEmpty ? ["no apps under \(nodeContext.settings.root)"] : all.flatMap(\.textLines))
    }
    if let app {
        let status = try NodeStatus.read(app: app, context: nodeContext)
        try output.result(status, text: status.textLines)
    } else {
        let all = try NodeStatus.apps(context: nodeContext).map { try NodeStatus.read(app: $0, context: nodeContext) }
        try output.result(all, text: all.isEmpty ? ["no apps under \(nodeContext.settings.root)"] : all.flatMap(\.textLines))
    }
}

struct NodePruneCommand: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove the oldest releases, keeping N (never the current or previous one).")

    @Argument(help: ArgumentHelp("The app.", valueName: "NAME")) var app: String
    @Option(help: ArgumentHelp("Releases to keep (default: keep from node.toml, else 5).", valueName: "N")) var keep: Int?
    @Flag(help: "Say what would be removed; change nothing (no lock, no recovery).") var dryRun = false
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func run(_ context: CommandContext) throws {
        let nodeContext = try node.context(context.output)
        let keep = keep ?? nodeContext.settings.keep
        if dryRun {
            let result = try NodePrune.dryRun(app: app, keep: keep, context: nodeContext)
            return try context.output.result(result, text: [result.removed.isEmpty ? "\(app): nothing to prune" : "\(app): would remove \(result.removed.joined(separator: ", "))"])
        }
        let result = try NodePrune.prune(app: app, keep: keep, context: nodeContext)
        try context.output.result(result, text: [result.removed.isEmpty ? "\(app): nothing to prune" : "\(app): removed \(result.removed.joined(separator: ", "))"])
    }
}

struct NodeRecoverCommand: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "recover",
        abstract: "Remove what an interrupted command left behind (every mutating command does this first).")

    @Argument(help: ArgumentHelp("The app.", valueName: "NAME")) var app: String
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func run(_ context: CommandContext) throws {
        let result = try NodeRecovery.recover(app: app, context: try node.context(context.output))
        var lines = result.removed.map { "removed \($0)" }
        lines += result.journalAdded.map { "journaled \($0) (landed before an interruption)" }
        if let version = result.unconfirmed { lines.append("switched back from \(version): its activation was not confirmed in time") }
        lines += result.problems.map { "problem: \($0)" }
        if lines.isEmpty { lines = ["\(app): nothing to recover"] }
        try context.output.result(result, text: lines)
    }
}

struct NodeReceiveCommand: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "receive",
        abstract: "Write release bytes from stdin into incoming/, resumable with --offset.")

    @Argument(help: ArgumentHelp("The release being received.", valueName: "NAME@V")) var reference: String
    @Option(help: ArgumentHelp("File name in incoming/ (default: V.tar.xz).", valueName: "NAME")) var file: String?
    @Option(help: ArgumentHelp("Bytes already received; the input continues from there.", valueName: "N")) var offset: UInt64 = 0
    @Option(help: ArgumentHelp("The whole file's size.", valueName: "N")) var size: UInt64?
    @Option(help: ArgumentHelp("The whole file's SHA-256, checked once complete.", valueName: "HEX")) var sha256: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws { _ = try nodeReference(reference) }

    func run(_ context: CommandContext) throws {
        let ref = try nodeReference(reference)
        let result = try NodeReceive.receive(app: ref.name, fileName: file ?? "\(ref.version).tar.xz", offset: offset, size: size,
                                             sha256: sha256, context: try node.context(context.output))
        try context.output.result(result, text: ["\(result.path): \(result.bytes) bytes" + (result.complete ? " (complete)" : " (partial; resume with --offset \(result.bytes))")])
    }
}

struct NodeFetchCommand: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "fetch",
        abstract: "Download release bytes over HTTP into incoming/, resuming a partial file (pull mode).")

    @Argument(help: ArgumentHelp("The release being fetched.", valueName: "NAME@V")) var reference: String
    @Option(help: ArgumentHelp("Where to fetch it (http:// or https://).", valueName: "URL")) var url: String
    @Option(help: ArgumentHelp("File name in incoming/ (default: V.tar.xz).", valueName: "NAME")) var file: String?
    @Option(help: ArgumentHelp("The whole file's size.", valueName: "N")) var size: UInt64
    @Option(help: ArgumentHelp("The whole file's SHA-256, checked once complete.", valueName: "HEX")) var sha256: String
    @Option(help: ArgumentHelp("Give up on a transfer that moves no byte for this long (default: \(Int(NodeFetch.defaultStallTimeout))).",
                               valueName: "SECONDS"))
    var timeout: Double = NodeFetch.defaultStallTimeout
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var node: NodeOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws {
        _ = try nodeReference(reference)
        guard timeout >= 1 else { throw ValidationError("--timeout must be at least 1 second.") }
    }

    func run(_ context: CommandContext) throws {
        let ref = try nodeReference(reference)
        let request = NodeFetch.Request(app: ref.name, fileName: file ?? "\(ref.version).tar.xz", url: url, size: size, sha256: sha256,
                                        stallTimeout: timeout)
        let result = try NodeFetch.fetch(request, context: try node.context(context.output))
        try context.output.result(result, text: ["\(result.path): \(result.bytes) bytes (complete, \(result.received) fetched now)"])
    }
}
