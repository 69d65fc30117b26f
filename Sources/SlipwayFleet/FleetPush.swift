import Foundation
import Synchronization
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem
import SlipwayRegistry

/// One node's line in the end table of push, deploy and rollback.
/// What a fleet command did on one node, as its JSON and summary say it.
public enum FleetResult: String, WireWord {
    case landed
    case alreadyLanded = "already-landed"
    case activated
    case alreadyCurrent = "already-current"
    /// A fleet rollback switched the node.
    case switched
    /// A fleet prune ran on the node (the detail says what it removed).
    case pruned
    /// The node did not take the new version and is back on the old one (or has none).
    case rolledBack = "rolled-back"
    case failed
    /// An earlier batch failed, or another node refused the release.
    case notTouched = "not-touched"
    /// Surveyed, not yet sent (never in a final result).
    case pending
}

public struct NodeOutcome: Codable, Sendable {
    public var node: String
    public var from: String?
    public var to: String?
    public var result: FleetResult
    public var detail: String?
    /// How the release travelled: `full`, `delta from V`, `pull full`, `pull delta from V`.
    public var method: String?
    public var seconds: Double
    /// Release bytes the controller sent (pull mode: the bytes the node fetched).
    public var bytesSent: UInt64
    /// Whether this slipway's binary was installed on the node first.
    public var installedSlipway: Bool
    /// The package changes from `from` to `to`, from the store's SBOMs (docs/sbom.md):
    /// `openssl 3.0.11 → 3.0.13, 2 added`.
    public var packages: String?

    public init(node: String, from: String? = nil, to: String? = nil, result: FleetResult, detail: String? = nil, method: String? = nil,
                seconds: Double = 0, bytesSent: UInt64 = 0, installedSlipway: Bool = false) {
        self.node = node
        self.from = from
        self.to = to
        self.result = result
        self.detail = detail
        self.method = method
        self.seconds = seconds
        self.bytesSent = bytesSent
        self.installedSlipway = installedSlipway
    }

    /// Results that make the command exit non-zero.
    public var isFailure: Bool { result == .failed || result == .rolledBack }
}

/// What push and deploy share: the release, the store, how to reach and feed the nodes.
public struct PushOptions: Sendable {
    public var store: ReleaseStore
    public var reference: ReleaseReference
    public var parallel: Int = 8
    /// Nodes fetch from this static HTTP store (the store directory served as is), or from
    /// an OCI registry (`oci://HOST[:PORT]/REPO`, `oci+http://…`) where the release is published.
    public var pullFrom: String?
    /// Never send deltas.
    public var fullOnly = false
    /// The slipway binary installed on nodes that lack one (default: this process's own).
    public var slipwayBinary: String?

    public init(store: ReleaseStore, reference: ReleaseReference) {
        self.store = store
        self.reference = reference
    }
}

/// Takes a release to nodes: makes sure each has slipway, asks what it has, sends a delta
/// against a version it already has (when the store has that version too and the delta is
/// smaller) or the full archive, resuming a partial upload from the node's offset, and
/// has the node verify and land it. Idempotent: a node that has the version is skipped.
public final class FleetPush: Sendable {
    public let options: PushOptions
    let release: StoredRelease
    let pool: TransportPool
    public let progress: FleetProgress
    public let log: @Sendable (String) -> Void
    /// Deltas are made once per base, whichever node asks first.
    private let deltas = Mutex<[String: ReleaseDelta.Made]>([:])
    private let deltaLock = Mutex(())
    /// Package changes by the version a node comes from, worked out once per version.
    private let packageChanges = Mutex<[String: PackageSummary]>([:])
    /// With `--pull-from oci://…`: the registry and the release's artifact, resolved once.
    let registry: (client: RegistryClient, pinned: ReleaseRegistry.Pinned)?
    /// The registry's deltas by base (nil: it has none from that base), looked up once.
    private let registryDeltas = Mutex<[String: OCIDescriptor?]>([:])

    public init(options: PushOptions, pool: TransportPool, progress: FleetProgress, log: @escaping @Sendable (String) -> Void) throws {
        self.options = options
        self.release = try options.store.release(options.reference)
        self.pool = pool
        self.progress = progress
        self.log = log
        if let pull = options.pullFrom, RegistryLocation.isRegistry(pull) {
            // The tag is read once and its blobs pinned by digest; the artifact must be the
            // store's release, so what the nodes fetch is what the plan and the checks saw.
            let client = try RegistryClient(location: try RegistryLocation(parsing: pull), scratch: pool.controlDirectory)
            let pinned = try ReleaseRegistry.resolve(options.reference, client: client)
            try ReleaseRegistry.check(pinned, matches: release)
            registry = (client, pinned)
        } else {
            registry = nil
        }
    }

    /// Pushes to every node, `parallel` at a time. Every node is asked what it has and what
    /// it demands first; when any node's signature policy refuses the release, nothing is
    /// sent to any node and those nodes are named.
    public func push(_ nodes: [FleetNode]) -> [(outcome: NodeOutcome, status: NodeStatus?)] {
        let surveyed = ParallelWork.map(nodes, width: options.parallel) { node in self.survey(node) }
        let refusing = surveyed.filter { $0.refusal != nil }
        if !refusing.isEmpty {
            let names = refusing.map(\.outcome.node)
            log("refusing to push \(options.reference.name)@\(options.reference.version): \(names.count) node\(names.count == 1 ? "" : "s") would not accept its signature (\(names.joined(separator: ", "))); nothing was sent")
            return surveyed.map { entry in
                var outcome = entry.outcome
                if let refusal = entry.refusal {
                    outcome.result = .failed
                    outcome.detail = refusal
                } else if !outcome.isFailure {
                    outcome.result = .notTouched
                    outcome.detail = "nothing sent: \(names.joined(separator: ", ")) refuse\(names.count == 1 ? "s" : "") the release's signature"
                }
                progress.state(outcome.node, outcome.result.rawValue + (outcome.detail.map { ": \($0)" } ?? ""))
                return (outcome, entry.status)
            }
        }
        return ParallelWork.map(surveyed, width: options.parallel) { entry in
            guard let status = entry.status, !entry.outcome.isFailure else { return (entry.outcome, entry.status) }
            return self.land(entry.node, status: status, outcome: entry.outcome, started: entry.started)
        }
    }

    /// Pushes to one node; never throws: a failure is the node's outcome.
    public func push(_ node: FleetNode) -> (outcome: NodeOutcome, status: NodeStatus?) {
        push([node])[0]
    }

    /// One node after the first round: its status, and why it would refuse the release.
    struct Surveyed {
        var node: FleetNode
        var outcome: NodeOutcome
        var status: NodeStatus?
        var refusal: String?
        var started: ContinuousClock.Instant
    }

    /// Makes sure the node has slipway, asks what it has and checks its signature policy
    /// against the release. Sends no release bytes.
    func survey(_ node: FleetNode) -> Surveyed {
        let started = ContinuousClock.now
        var entry = Surveyed(node: node, outcome: NodeOutcome(node: node.name, to: options.reference.version, result: .failed),
                             started: started)
        do {
            let client = NodeClient(transport: pool.transport(for: node))
            entry.outcome.installedSlipway = try ensureSlipway(client)
            progress.state(node.name, "asking what it has")
            let current = try client.status(app: options.reference.name)
            entry.status = current
            entry.outcome.from = current.current
            if current.current != options.reference.version { entry.outcome.packages = packages(from: current.current).line }
            entry.outcome.result = .pending
            let landed = current.hasLanded(options.reference.version)
            if !landed, let policy = current.signaturePolicy,
               let refusal = NodeSignature.refusal(of: policy, manifest: release.manifest, manifestBytes: release.manifestBytes, signature: signatureBytes) {
                entry.refusal = "\(node.name) refuses \(options.reference.name)@\(options.reference.version): \(refusal); nothing was sent"
            }
        } catch {
            entry.outcome.result = .failed
            entry.outcome.detail = Output.message(for: error)
            progress.state(node.name, "failed: \(entry.outcome.detail ?? "")")
        }
        entry.outcome.seconds = (ContinuousClock.now - started).seconds
        return entry
    }

    /// What the packages do from `from` to this release, as the plan and the summary say it.
    struct PackageSummary: Sendable {
        var changes: PackageChanges?
        var line: String
    }

    /// The package changes from the node's `from` (nil: nothing current) to the release,
    /// when the store has both SBOMs.
    func packages(from: String?) -> PackageSummary {
        let key = from ?? ""
        if let known = packageChanges.withLock({ $0[key] }) { return known }
        let summary: PackageSummary
        do {
            let new = try release.packages()
            if let from {
                do {
                    let old = try options.store.release(name: options.reference.name, version: from).packages()
                    let changes = PackageChanges(old: old, new: new)
                    summary = PackageSummary(changes: changes, line: changes.summary())
                } catch {
                    summary = PackageSummary(changes: nil, line: "unknown: \(Output.message(for: error))")
                }
            } else {
                let changes = PackageChanges(old: [], new: new)
                summary = PackageSummary(changes: changes, line: "first version: \(new.count) packages")
            }
        } catch {
            summary = PackageSummary(changes: nil, line: "unknown: \(Output.message(for: error))")
        }
        packageChanges.withLock { $0[key] = summary }
        return summary
    }

    /// The release's raw signature, nil when it is unsigned or the file is unreadable.
    var signatureBytes: Data? {
        guard let file = release.signatureFile else { return nil }
        return try? ReleaseSigning.parseSignatureFile(file, source: release.signaturePath)
    }

    /// Lands the release on a surveyed node; never throws.
    func land(_ node: FleetNode, status: NodeStatus, outcome start: NodeOutcome, started: ContinuousClock.Instant)
        -> (outcome: NodeOutcome, status: NodeStatus?) {
        var outcome = start
        do {
            if status.hasLanded(options.reference.version) {
                outcome.result = .alreadyLanded
            } else {
                try land(NodeClient(transport: pool.transport(for: node)), status: status, outcome: &outcome)
                outcome.result = .landed
            }
            progress.state(node.name, outcome.result.rawValue + (outcome.method.map { " (\($0))" } ?? ""))
        } catch {
            outcome.result = .failed
            outcome.detail = Output.message(for: error)
            progress.state(node.name, "failed: \(outcome.detail ?? "")")
        }
        outcome.seconds = (ContinuousClock.now - started).seconds
        return (outcome, status)
    }

    /// What the controller does about a node's slipway.
    enum SlipwayAction: Equatable {
        /// The node's is as new as this one.
        case keep
        case install
        case upgrade(from: String)
        /// Older, but a Debian package owns it: apt upgrades it, the controller does not.
        case packaged(version: String, package: String)

        static func decide(nodeVersion: String?, owner: () throws -> String?) rethrows -> SlipwayAction {
            guard let nodeVersion else { return .install }
            guard SemanticVersion.isOlder(nodeVersion, than: SlipwayVersion.string) else { return .keep }
            if let package = try owner() { return .packaged(version: nodeVersion, package: package) }
            return .upgrade(from: nodeVersion)
        }

        var isUpgrade: Bool { if case .upgrade = self { true } else { false } }

        /// The line a plan or log shows, nil for `keep`.
        func describe(path: String) -> String? {
            switch self {
            case .keep: nil
            case .install: "none at \(path); slipway \(SlipwayVersion.string) would be installed"
            case let .upgrade(from): "\(from) would be upgraded to \(SlipwayVersion.string)"
            case let .packaged(version, package):
                "\(version) from the Debian package '\(package)' is older than \(SlipwayVersion.string); it is not replaced: upgrade it with apt (apt-get install \(package))"
            }
        }
    }

    /// What to do about the node's slipway: its version, and dpkg's owner only when it is older.
    func slipwayAction(_ client: NodeClient) throws -> SlipwayAction {
        try SlipwayAction.decide(nodeVersion: try client.slipwayVersion()) { try client.owningPackage(client.node.slipwayPath) }
    }

    /// Installs this slipway on the node when it has none or an older one that no Debian
    /// package owns (docs/packaging.md).
    func ensureSlipway(_ client: NodeClient) throws -> Bool {
        guard client.node.transport == .ssh else { return false }
        progress.state(client.node.name, "checking slipway")
        let action = try slipwayAction(client)
        if case .packaged = action, let line = action.describe(path: client.node.slipwayPath) {
            log("\(client.node.name): slipway \(line)")
            return false
        }
        if action == .keep { return false }
        let binary = options.slipwayBinary ?? pool.executable
        if case let .upgrade(from) = action {
            progress.state(client.node.name, "upgrading slipway \(from) → \(SlipwayVersion.string)")
        } else {
            progress.state(client.node.name, "installing slipway")
        }
        try client.installSlipway(binary: binary)
        log("\(client.node.name): installed slipway \(SlipwayVersion.string) at \(client.node.slipwayPath)")
        return true
    }

    /// A file to put in the node's incoming/.
    struct Payload {
        var file: String
        var localPath: String
        var urlPath: String
        var size: UInt64
        var sha256: String
    }

    /// What travels to one node, in order: the manifest (as the node will read it), the
    /// signature, and the archive or a delta against `deltaBase`. `deploy --plan` counts the
    /// same payloads that `land` sends.
    struct Transfer {
        var manifest: Payload
        var signature: Payload?
        /// The SBOM (docs/sbom.md), to a node that knows SBOMs.
        var sbom: Payload?
        var body: Payload
        var deltaBase: String?
        /// `full`, `delta from V`, `pull full`, `pull delta from V`.
        var method: String
        var items: [Payload] { [manifest] + (signature.map { [$0] } ?? []) + (sbom.map { [$0] } ?? []) + [body] }

        /// Where each item resumes: the bytes the node's incoming/ holds of it already.
        func offset(of item: Payload, status: NodeStatus) -> UInt64 {
            let have = status.incoming.first { $0.name == item.file }?.bytes ?? 0
            return have <= item.size ? have : 0
        }

        /// The bytes still to send (or fetch).
        func bytesToSend(status: NodeStatus) -> UInt64 {
            items.reduce(0) { $0 + $1.size - offset(of: $1, status: status) }
        }
    }

    /// Chooses what to send to a node with `status`: a delta against a version it has when
    /// the store has that version too and the delta is smaller, else the full archive.
    /// Makes the delta (cached in the store) and the manifest forms (in this run's control
    /// directory) when they are not made yet; sends nothing.
    func transfer(for status: NodeStatus) throws -> Transfer {
        let reference = options.reference
        let version = reference.version
        let directory = "\(reference.name)/\(version)"
        var signature: Payload? = nil
        if release.signatureFile != nil {
            signature = try payload(file: "\(version).manifest.sig", path: release.signaturePath, urlPath: "\(directory)/\(ReleaseStore.signatureFileName)")
        }
        let archiveName = (release.archivePath as NSString).lastPathComponent
        var body = Payload(file: "\(version).\(archiveName.hasSuffix(".zst") ? "tar.zst" : "tar.xz")", localPath: release.archivePath,
                           urlPath: "\(directory)/\(archiveName)", size: release.manifest.archive.size, sha256: release.manifest.archive.sha256)
        var deltaBase: String? = nil
        if !options.fullOnly, let registry, let base = chooseBase(status) {
            // From a registry: the delta published there, if any (its digest pins it).
            if let layer = try registryDelta(from: base, client: registry.client), layer.size < body.size, layer.digest.hasPrefix("sha256:") {
                let compression = ReleaseRegistry.deltaCompression(mediaType: layer.mediaType)
                body = Payload(file: "\(version).from-\(base).\(compression.fileExtension)", localPath: "", urlPath: "", size: layer.size,
                               sha256: String(layer.digest.dropFirst("sha256:".count)))
                deltaBase = base
            }
        } else if !options.fullOnly, let base = chooseBase(status) {
            let made = try delta(from: base)
            if let size = made.metadata.archiveSize, let sha = made.metadata.archiveSHA256, size < body.size {
                let fileName = (made.archivePath as NSString).lastPathComponent  // BASE.tar.xz or BASE.tar.zst
                body = Payload(file: "\(version).from-\(base).\(fileName.dropFirst(base.count + 1))", localPath: made.archivePath,
                               urlPath: "\(directory)/deltas/\(fileName)", size: size, sha256: sha)
                deltaBase = base
            }
        }
        // Over ssh the manifest travels zstd-compressed (it lists every file: next to a small
        // delta it would be most of the bytes), and with a delta as a patch against the
        // base's manifest, when the node's base is the store's (same archive). The node
        // reads every form. Pull mode fetches the store's own file.
        let manifest: Payload
        if options.pullFrom != nil {
            manifest = try payload(file: "\(version).manifest.json", path: release.manifestPath, urlPath: "\(directory)/\(ReleaseStore.manifestFileName)")
        } else if let base = deltaBase, let patch = try manifestPatch(base: base, status: status) {
            manifest = try payload(file: "\(version).manifest.from-\(base).zst", path: patch, urlPath: "")
        } else {
            manifest = try payload(file: "\(version).manifest.json.zst", path: try compressedManifest(), urlPath: "")
        }
        // A node that knows SBOMs reports require_sbom in its policy; it gets the SBOM (over
        // ssh zstd-compressed, as the manifest) and keeps it for `status --packages`.
        var sbom: Payload? = nil
        let sbomFile = SBOM.Format.spdx.fileName
        if status.signaturePolicy?.requireSBOM != nil, release.manifest.attachment(sbomFile) != nil {
            sbom = options.pullFrom != nil
                ? try payload(file: "\(version).sbom.spdx.json", path: release.directory + "/" + sbomFile, urlPath: "\(directory)/\(sbomFile)")
                : try payload(file: "\(version).sbom.spdx.json.zst", path: try compressedSBOM(), urlPath: "")
        }
        let method = (options.pullFrom == nil ? "" : "pull ") + (deltaBase.map { "delta from \($0)" } ?? "full")
        return Transfer(manifest: manifest, signature: signature, sbom: sbom, body: body, deltaBase: deltaBase, method: method)
    }

    /// Sends (or has the node fetch) the manifest, its signature and the archive or delta,
    /// then applies.
    func land(_ client: NodeClient, status: NodeStatus, outcome: inout NodeOutcome) throws {
        let reference = options.reference
        let transfer = try transfer(for: status)
        let (body, deltaBase, pull) = (transfer.body, transfer.deltaBase, options.pullFrom)
        outcome.method = transfer.method
        var remote: [String: String] = [:]
        for item in transfer.items {
            var offset = transfer.offset(of: item, status: status)
            let what = item.file == body.file ? (deltaBase.map { "delta from \($0)" } ?? "archive")
                : item.file.hasSuffix(".sig") ? "signature" : item.file == transfer.sbom?.file ? "SBOM" : "manifest"
            let result: NodeReceive.Result
            if let pull {
                progress.state(client.node.name, "fetching \(what)" + (offset > 0 ? " from byte \(offset)" : ""))
                let url = registry.map { $0.pinned.blobURL(sha256: item.sha256) } ?? Self.join(pull, item.urlPath)
                result = try client.fetch(reference, file: item.file, url: url, size: item.size, sha256: item.sha256)
            } else {
                progress.state(client.node.name, "sending \(what)" + (offset > 0 ? " from byte \(offset)" : ""), total: item.size)
                let name = client.node.name
                var attempts = 0
                while true {
                    do {
                        let start = offset
                        result = try client.receive(reference, file: item.file, path: item.localPath, offset: start, size: item.size,
                                                    sha256: item.sha256, sent: { [progress] in progress.bytes(name, start + $0) })
                        break
                    } catch let FleetError.nodeCommand(_, _, _, code) where code == .badOffset && attempts < 2 {
                        // The upload is not where the status said: another controller pushing
                        // the same version landed it (its apply removed the uploads) or moved
                        // it on. Ask again and go on from there.
                        attempts += 1
                        let now = try client.status(app: reference.name)
                        if now.hasLanded(reference.version) {
                            outcome.detail = "landed meanwhile by another command"
                            return
                        }
                        offset = transfer.offset(of: item, status: now)
                    }
                }
            }
            outcome.bytesSent += result.received
            guard result.complete else {
                throw FleetError.nodeCommand(node: client.node.name, verb: pull == nil ? "receive" : "fetch",
                                             detail: "\(item.file) is incomplete (\(result.bytes) of \(item.size) bytes); run the push again to resume")
            }
            remote[item.file] = result.path
        }
        let manifest = transfer.manifest
        let signature = transfer.signature
        progress.state(client.node.name, "verifying and landing")
        let applied: NodeApply.Result
        do {
            applied = try client.apply(
                archive: deltaBase == nil ? remote[body.file] : nil,
                delta: deltaBase.map { (remote[body.file] ?? "", $0, body.sha256) },
                manifest: remote[manifest.file] ?? "",
                signature: signature.flatMap { remote[$0.file] },
                sbom: transfer.sbom.flatMap { remote[$0.file] })
        } catch {
            // Another controller pushing the same version landed it first and its apply
            // removed the uploads (same names in incoming/) this one was about to apply.
            if let now = try? client.status(app: reference.name),
               now.hasLanded(reference.version) {
                outcome.detail = "landed meanwhile by another command"
                return
            }
            throw error
        }
        if applied.outcome == .alreadyLanded { outcome.detail = "landed meanwhile" }
    }

    /// The release's manifest, zstd-compressed, made once per run beside the control sockets.
    func compressedManifest() throws -> String {
        try deltaLock.withLock { _ in
            let path = "\(pool.controlDirectory)/\(options.reference.name)-\(options.reference.version).manifest.json.zst"
            if access(path, F_OK) == 0 { return path }
            let compressed = try ZstdData.compress(release.manifestBytes)
            try writeFileAtomically(path, compressed)
            return path
        }
    }

    /// The release's SBOM, zstd-compressed, made once per run beside the control sockets.
    func compressedSBOM() throws -> String {
        try deltaLock.withLock { _ in
            let path = "\(pool.controlDirectory)/\(options.reference.name)-\(options.reference.version).sbom.spdx.json.zst"
            if access(path, F_OK) == 0 { return path }
            guard let data = try release.attachment(SBOM.Format.spdx.fileName) else {
                throw ReleaseError.attachmentMissing(release: options.reference.description, file: SBOM.Format.spdx.fileName)
            }
            try writeFileAtomically(path, try ZstdData.compress(data))
            return path
        }
    }

    /// The release's manifest as a patch against `base`'s, made once per base per run; nil
    /// when the node's `base` is not the store's (another archive) or the store lacks it.
    func manifestPatch(base: String, status: NodeStatus) throws -> String? {
        guard let baseRelease = try? options.store.release(name: options.reference.name, version: base),
              status.releases.first(where: { $0.version == base })?.archiveSHA256 == baseRelease.manifest.archive.sha256 else { return nil }
        return try deltaLock.withLock { _ in
            let path = "\(pool.controlDirectory)/\(options.reference.name)-\(options.reference.version).manifest.from-\(base).zst"
            if access(path, F_OK) == 0 { return path }
            let patch = try ManifestPatch.make(manifest: release.manifestBytes, app: options.reference.name, base: base,
                                               baseManifest: baseRelease.manifestBytes)
            try writeFileAtomically(path, patch)
            return path
        }
    }

    /// The registry's delta from `base` to this release, looked up once per base.
    func registryDelta(from base: String, client: RegistryClient) throws -> OCIDescriptor? {
        if let known = registryDeltas.withLock({ $0[base] }) { return known }
        let found = try ReleaseRegistry.delta(options.reference, base: base, client: client)
        registryDeltas.withLock { $0[base] = found }
        return found
    }

    func payload(file: String, path: String, urlPath: String) throws -> Payload {
        let hash = try FileHasher.sha256(path: path)
        return Payload(file: file, localPath: path, urlPath: urlPath, size: hash.size, sha256: hash.hex)
    }

    /// The base for a delta: the node's current version, else the newest it has landed, as
    /// long as the store has it too.
    func chooseBase(_ status: NodeStatus) -> String? {
        let landed = status.releases.filter { $0.landed && $0.version != options.reference.version }.map(\.version)
        let candidates = (status.current.map { [$0] } ?? []) + landed.reversed()
        return candidates.first { landed.contains($0) && (try? options.store.release(name: options.reference.name, version: $0)) != nil }
    }

    func delta(from base: String) throws -> ReleaseDelta.Made {
        if let made = deltas.withLock({ $0[base] }) { return made }
        return try deltaLock.withLock { _ in
            if let made = deltas.withLock({ $0[base] }) { return made }
            let made = try ReleaseDelta.make(store: options.store, from: ReleaseReference(name: options.reference.name, version: base),
                                             to: options.reference)
            if !made.cached { log("made the delta \(base) → \(options.reference.version) (\(ByteCount.format(made.metadata.archiveSize ?? 0)))") }
            deltas.withLock { $0[base] = made }
            return made
        }
    }

    static func join(_ base: String, _ path: String) -> String {
        (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/" + path
    }
}

/// Compares dotted version numbers (`0.1.0` < `0.2.0`); text that is not one never counts as older.
enum SemanticVersion {
    static func isOlder(_ a: String, than b: String) -> Bool {
        func parts(_ text: String) -> [Int]? {
            let core = text.split(separator: " ").last.map(String.init) ?? text
            let numbers = core.split(separator: "-").first?.split(separator: ".").map { Int($0) } ?? []
            return numbers.contains(nil) || numbers.isEmpty ? nil : numbers.compactMap { $0 }
        }
        guard let x = parts(a), let y = parts(b) else { return false }
        for index in 0..<max(x.count, y.count) {
            let l = index < x.count ? x[index] : 0
            let r = index < y.count ? y[index] : 0
            if l != r { return l < r }
        }
        return false
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
