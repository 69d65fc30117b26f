import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Lands a release on the node (docs/node.md "Crash safety", apply):
/// lock → recover → verify the manifest's signature (when trust is configured) and the
/// archive's sha256 before touching anything (a backend that `stagesWhileHashing` makes its
/// staging tree during the hash and removes it if the hash fails) → backend staging → extract the archive, or the
/// backend's cheap copy of the base plus the delta → link shared directories → verify the
/// tree against the manifest → sync → commit → journal. Applying a landed version is a
/// no-op that says so. On any failure the staging tree is removed and nothing changes.
extension NodeApply {
    /// What to land.
    public struct Request: Sendable {
        /// The release bytes: a full archive, or a delta against a landed base.
        public enum Source: Sendable {
            case full(archive: String)
            case delta(archive: String, base: String)
        }

        public var source: Source
        /// The release's `manifest.json` (for a delta: the new version's full manifest).
        public var manifestPath: String
        /// Its `manifest.sig`, when there is one.
        public var signaturePath: String?
        /// The expected SHA-256 of a delta archive (a full archive's comes from the manifest).
        public var deltaSHA256: String?
        /// The release's SBOM (`sbom.spdx.json`), checked against the manifest's digest.
        public var sbomPath: String?
        /// Read every landed file back and hash it (`--verify-landed`), rather than trusting
        /// the hashes taken as the bytes were written (node.toml `verify_landed` asks the same).
        public var verifyLanded: Bool

        public init(source: Source, manifestPath: String, signaturePath: String? = nil, deltaSHA256: String? = nil, sbomPath: String? = nil,
                    verifyLanded: Bool = false) {
            self.sbomPath = sbomPath
            self.verifyLanded = verifyLanded
            self.source = source
            self.manifestPath = manifestPath
            self.signaturePath = signaturePath
            self.deltaSHA256 = deltaSHA256
        }
    }


    public static func apply(_ request: Request, context: NodeContext) throws -> Result {
        let started = NodeFiles.now()
        // A manifest patch (a delta push) is decoded against this node's manifest of its base.
        let (manifest, manifestBytes) = try ReleaseManifest.read(path: request.manifestPath) { app, base in
            let path = context.layout(app).manifest(base)
            guard NodeFiles.exists(path) else {
                throw NodeError.invalidArgument("the manifest is a patch against \(app)@\(base), which this node has not landed (push with --full)")
            }
            return try NodeFiles.read(path)
        }
        try ReleaseStore.validate(name: manifest.name)
        try ReleaseStore.validate(version: manifest.version)
        let app = manifest.name
        let version = manifest.version
        let originName: OriginKind
        let base: String?
        switch request.source {
        case .full: originName = .full; base = nil
        case let .delta(_, b): originName = .delta; base = b; try ReleaseStore.validate(version: b)
        }

        return try context.mutating(app) { layout, recovered in
            func result(_ outcome: ApplyOutcome, signature: SignatureStatus) -> Result {
                Result(app: app, version: version, outcome: outcome, origin: originName, base: base, signature: signature,
                       entries: manifest.entries.count, seconds: NodeFiles.now() - started, recovered: recovered.removed)
            }
            // What recovery found under this lock (one listing of the backend, not two).
            let landed = recovered.landed
            // Uploads of a landed version are not needed for resuming any more.
            func dropUploads() {
                for path in [request.source.archivePath, request.manifestPath, request.signaturePath, request.sbomPath].compactMap({ $0 })
                where path.hasPrefix(layout.incoming + "/") { unlink(path) }
            }
            if landed.contains(version) {
                // The landed copy answers to the policy in force now, as activate will check.
                let signature = try NodeSignature.checkLanded(version, layout: layout, context: context)
                context.log("\(app)@\(version) is already landed; nothing to do")
                dropUploads()
                return result(.alreadyLanded, signature: signature)
            }

            let verifyLanded = request.verifyLanded || context.settings.verifyLanded
            // Everything is checked before anything is created.
            let signature = try NodeSignature.check(manifestBytes, signaturePath: request.signaturePath, what: "\(app)@\(version)",
                                                    context: context)
            let sbom = try NodeSignature.checkSBOM(manifest, sbomPath: request.sbomPath, what: "\(app)@\(version)", context: context)
            // A delta over an immutable copy of its base compares against the base's manifest:
            // decoded on another core while the delta lands.
            let baseManifest = base.flatMap { base in
                context.backend.stagedCopyIsImmutableBase && landed.contains(base)
                    ? BackgroundValue { [path = layout.manifest(base)] in try? ReleaseManifest.read(path: path).manifest } : nil
            }
            let staging: String
            switch request.source {
            case let .full(archive):
                guard access(archive, R_OK) == 0 else { throw NodeError.system(operation: "read the archive", path: archive, errno: errno) }
                context.log("landing \(app)@\(version) from \(archive)")
                staging = try stage(.empty(version, releaseBytes: manifest.tarSize), layout: layout, context: context) {
                    try checkHash(archive, sha256: manifest.archive.sha256, size: manifest.archive.size)
                }
            case let .delta(archive, base):
                guard landed.contains(base) else { throw NodeError.baseMissing(app: app, base: base, landed: landed) }
                guard access(archive, R_OK) == 0 else { throw NodeError.system(operation: "read the delta", path: archive, errno: errno) }
                context.log("landing \(app)@\(version) from \(archive) over \(base)")
                staging = try stage(.copy(version, of: base, releaseBytes: manifest.tarSize), layout: layout, context: context) {
                    guard let sha = request.deltaSHA256 else { return }
                    let actual = try hash(archive)
                    guard actual.hex == sha else {
                        throw NodeError.archiveMismatch(path: archive, expectedSHA256: sha, actualSHA256: actual.hex, expectedSize: actual.size, actualSize: actual.size)
                    }
                }
            }

            var manifestWritten = false
            do {
                var contents = NodeTreeCheck.Contents.all
                // A delta over an immutable base: the paths it can have changed (nil: walk).
                var deltaCheck: (base: ReleaseManifest, touched: Set<ArchivePath>, removals: [ArchivePath])?
                try NodeTreeCheck.prepareRoot(staging)
                switch request.source {
                case let .full(archive):
                    let extracted = try ArchiveExtractor.extract(archive: archive, into: staging,
                                                                 options: ExtractOptions(hashContents: !verifyLanded,
                                                                                         writers: context.backend.extractWriters))
                    if !verifyLanded { contents = .written(hashes: extracted.fileHashes) }
                case let .delta(archive, base):
                    let applied = try NodeDeltaApply.apply(delta: archive, staging: staging,
                                                           expect: (app, base, version, manifest.archive.sha256))
                    if !verifyLanded, let baseManifest = baseManifest?.value {
                        contents = .changedSince(base: baseManifest, touched: applied.touched)
                        deltaCheck = (baseManifest, applied.touched, applied.meta.removals)
                    }
                }
                try NodeTreeCheck.linkShared(staging: staging, manifest: manifest, layout: layout, runner: context.runner)
                let problems = try deltaCheck.flatMap {
                    try NodeTreeCheck.deltaDifferences(root: staging, manifest: manifest, base: $0.base, touched: $0.touched, removals: $0.removals)
                } ?? NodeTreeCheck.differences(root: staging, manifest: manifest, layout: layout, contents: contents)
                guard problems.isEmpty else { throw NodeError.treeMismatch(app: app, version: version, differences: problems) }

                try NodeFiles.writeAtomically(layout.manifest(version), manifestBytes)
                manifestWritten = true
                if let path = request.signaturePath, NodeFiles.exists(path) {
                    try NodeFiles.writeAtomically(layout.signature(version), try NodeFiles.read(path))
                }
                if let sbom { try NodeFiles.writeAtomically(layout.sbom(version), sbom) }
                try NodeFiles.syncFileSystem(of: staging)
                try context.backend.commit(version: version, layout: layout)
            } catch {
                // Asked before the staging tree goes (a full thin pool is no longer full after).
                let explained = context.backend.explainFailure(error, version: version, layout: layout)
                    ?? NodeError.fullDisk(error) ?? error
                // The staging tree goes; nothing was committed.
                try? context.backend.recover(layout: layout)
                if manifestWritten {
                    unlink(layout.manifest(version))
                    unlink(layout.signature(version))
                    unlink(layout.sbom(version))
                }
                throw explained
            }

            var state = try NodeState.load(layout)
            state.recordLanded(version, archiveSHA256: manifest.archive.sha256,
                               origin: base.map { NodeState.Origin.delta(from: $0) } ?? .full)
            try state.save(layout)
            dropUploads()
            context.log("landed \(app)@\(version)")
            return result(.landed, signature: signature)
        }
    }

    /// Runs `check` (the archive's hash), then makes the staging tree; or both at once when
    /// the backend stages while hashing, removing the staging tree when the check fails.
    static func stage(_ request: StagingRequest, layout: NodeLayout, context: NodeContext,
                      afterChecking check: () throws -> Void) throws -> String {
        let backend = context.backend
        guard backend.stagesWhileHashing else {
            try check()
            return try backend.createStaging(request, layout: layout)
        }
        let created = BackgroundValue { Swift.Result(catching: { try backend.createStaging(request, layout: layout) }) }
        do {
            try check()
        } catch {
            // Waits for the staging tree, then removes it: nothing stays of a release that
            // failed its check.
            if case .success = created.value { try? backend.recover(layout: layout) }
            throw error
        }
        return try created.value.get()
    }

    static func hash(_ path: String) throws -> (hex: String, size: UInt64) {
        do {
            return try FileHasher.sha256(path: path)
        } catch let ArchiveError.system(operation, path, code) {
            throw NodeError.system(operation: operation, path: path, errno: code)
        }
    }

    static func checkHash(_ path: String, sha256: String, size: UInt64) throws {
        let actual = try hash(path)
        guard actual.hex == sha256, actual.size == size else {
            throw NodeError.archiveMismatch(path: path, expectedSHA256: sha256, actualSHA256: actual.hex, expectedSize: size, actualSize: actual.size)
        }
    }
}

extension NodeApply.Request.Source {
    var archivePath: String {
        switch self {
        case let .full(archive), let .delta(archive, _): archive
        }
    }
}
