import Foundation
import Glibc
import SlipwaySystem
import SlipwayArchive
import SlipwayRelease

/// Releases as OCI artifacts (docs/registry.md): `publish` puts a release from the store into
/// a registry, `pull` brings one back, and `resolve` pins the artifact a pull-mode deploy
/// has its nodes fetch from.
public enum ReleaseRegistry {
    public static let releaseType = "application/vnd.slipway.release.v1+json"
    public static let deltaType = "application/vnd.slipway.delta.v1+json"
    public static let signatureType = "application/vnd.slipway.signature.v1"
    public static let manifestLayerType = "application/vnd.slipway.manifest.v1+json"
    public static let deltaLayerType = "application/vnd.slipway.delta.v1.tar+xz"
    /// A zstd release's delta (`ReleaseDelta.compression(forRelease:)`).
    public static let zstdDeltaLayerType = "application/vnd.slipway.delta.v1.tar+zstd"

    /// The compression of a delta layer, from its media type.
    public static func deltaCompression(mediaType: String) -> ArchiveCompression {
        mediaType == zstdDeltaLayerType ? .zstd : .xz
    }

    static func archiveLayerType(_ compression: ArchiveCompression) -> String {
        switch compression {
        case .xz: "application/vnd.slipway.archive.v1.tar+xz"
        case .zstd: "application/vnd.slipway.archive.v1.tar+zstd"
        case .none: "application/vnd.slipway.archive.v1.tar"
        }
    }

    public static let nameAnnotation = "vnd.slipway.name"
    public static let versionAnnotation = "vnd.slipway.version"
    public static let baseAnnotation = "vnd.slipway.delta.base"
    /// The SHA-256 of the base's archive a delta was made from.
    public static let baseArchiveAnnotation = "vnd.slipway.delta.base-archive-sha256"

    // MARK: Publish

    /// What `publish` did.
    public struct PublishReport: Codable, Sendable {
        public struct Blob: Codable, Sendable {
            public var file: String
            public var digest: String
            public var size: UInt64
            /// `present`, `mounted` or `uploaded`.
            public var outcome: String
        }

        public struct Artifact: Codable, Sendable {
            /// `release`, `delta`, `sbom` or `signature`.
            public var kind: String
            public var digest: String
            public var tag: String?
            /// A delta's base version.
            public var base: String?
        }

        public var release: String
        public var location: String
        public var tag: String
        public var digest: String
        public var blobs: [Blob]
        public var artifacts: [Artifact]
        /// Bytes of blobs uploaded (not counting those the registry had or mounted).
        public var bytesUploaded: UInt64
    }

    /// Puts `release` into the registry as an artifact tagged with its version: the archive,
    /// manifest.json, manifest.sig and the attachments as layers. Each cached delta of the
    /// store (`deltas/BASE.tar.xz`) becomes an artifact of its own whose subject is the
    /// release; the SBOM and the signature are referrers of the release too. Blobs the
    /// repository has are not sent again; `mountFrom` names repositories of the same
    /// registry to mount them from. Publishing the same release again sends nothing and
    /// gives the same digest.
    public static func publish(_ release: StoredRelease, client: RegistryClient, mountFrom: [String] = [],
                               log: (String) -> Void = { _ in }) throws -> PublishReport {
        try client.ping()
        let reference = release.reference
        let tag = RegistryTag.forVersion(reference.version)
        var report = PublishReport(release: reference.description, location: client.location.description, tag: tag, digest: "",
                                   blobs: [], artifacts: [], bytesUploaded: 0)

        func put(file: String, path: String, mediaType: String, digest: String? = nil, size: UInt64? = nil) throws -> OCIDescriptor {
            let hash: (hex: String, size: UInt64)
            if let digest, let size { hash = (String(digest.dropFirst("sha256:".count)), size) } else { hash = try FileHasher.sha256(path: path) }
            let digest = "sha256:" + hash.hex
            let outcome = try client.putBlob(path: path, digest: digest, mountFrom: mountFrom)
            if outcome == .uploaded { report.bytesUploaded += hash.size }
            report.blobs.append(.init(file: file, digest: digest, size: hash.size, outcome: outcome.rawValue))
            if outcome != .present { log("\(file): \(outcome.rawValue) (\(ByteCount.format(hash.size)))") }
            return OCIDescriptor(mediaType: mediaType, digest: digest, size: hash.size, annotations: [OCIManifest.titleAnnotation: file])
        }

        let scratch = client.scratch + "/empty-config"
        try OCIManifest.emptyConfigBytes.write(to: URL(fileURLWithPath: scratch))
        _ = try client.putBlob(path: scratch, digest: OCIManifest.emptyConfig.digest, mountFrom: mountFrom)

        let archiveName = (release.archivePath as NSString).lastPathComponent
        var layers = [
            try put(file: archiveName, path: release.archivePath, mediaType: archiveLayerType(release.manifest.compression),
                    digest: "sha256:" + release.manifest.archive.sha256, size: release.manifest.archive.size),
            try put(file: ReleaseStore.manifestFileName, path: release.manifestPath, mediaType: manifestLayerType),
        ]
        if release.signatureFile != nil {
            layers.append(try put(file: ReleaseStore.signatureFileName, path: release.signaturePath, mediaType: signatureType))
        }
        for attachment in release.manifest.attachments ?? [] {
            layers.append(try put(file: attachment.file, path: release.directory + "/" + attachment.file, mediaType: attachment.mediaType,
                                  digest: "sha256:" + attachment.sha256, size: attachment.size))
        }
        let created = release.manifest.createdTimestamp
        let manifest = OCIManifest(artifactType: releaseType, layers: layers, annotations: [
            nameAnnotation: reference.name, versionAnnotation: reference.version,
            "org.opencontainers.image.version": reference.version, "org.opencontainers.image.created": created,
        ])
        let bytes = try manifest.encoded()
        report.digest = try client.putManifest(bytes, mediaType: RegistryClient.manifestMediaType, reference: tag)
        report.artifacts.append(.init(kind: "release", digest: report.digest, tag: tag))
        let subject = OCIDescriptor(mediaType: RegistryClient.manifestMediaType, digest: report.digest, size: UInt64(bytes.count),
                                    artifactType: releaseType)

        // Referrers: the signature and the SBOM, each an artifact with the release as subject.
        var referrers: [OCIDescriptor] = []
        func refer(kind: String, artifactType: String, layer: OCIDescriptor, tag: String? = nil, extra: [String: String] = [:]) throws {
            let artifact = OCIManifest(artifactType: artifactType, layers: [layer], subject: subject,
                                       annotations: [nameAnnotation: reference.name, versionAnnotation: reference.version].merging(extra) { $1 })
            let bytes = try artifact.encoded()
            let digest = try client.putManifest(bytes, mediaType: RegistryClient.manifestMediaType, reference: tag ?? RegistryClient.digest(bytes))
            referrers.append(OCIDescriptor(mediaType: RegistryClient.manifestMediaType, digest: digest, size: UInt64(bytes.count),
                                           artifactType: artifactType, annotations: artifact.annotations))
            report.artifacts.append(.init(kind: kind, digest: digest, tag: tag, base: extra[baseAnnotation]))
        }
        if let signature = layers.first(where: { $0.title == ReleaseStore.signatureFileName }) {
            try refer(kind: "signature", artifactType: signatureType, layer: signature)
        }
        for attachment in release.manifest.attachments ?? [] where attachment.file == SBOM.Format.spdx.fileName {
            if let layer = layers.first(where: { $0.title == attachment.file }) {
                try refer(kind: "sbom", artifactType: attachment.mediaType, layer: layer)
            }
        }
        // The cached deltas: tagged, so a node's fetch finds the one from its version.
        let deltas = release.directory + "/deltas"
        // Only deltas compressed as this release's are (`deltas/BASE.json` describes that one; a
        // file of the other compression is a leftover of an older slipway).
        let compression = ReleaseDelta.compression(forRelease: release.manifest.compression)
        for file in ((try? FileManager.default.contentsOfDirectory(atPath: deltas)) ?? []).sorted()
        where !file.hasPrefix(".") && file.hasSuffix("." + compression.fileExtension) {
            let base = String(file.dropLast(compression.fileExtension.count + 1))
            let metadataPath = deltas + "/" + base + ".json"
            guard let data = FileManager.default.contents(atPath: metadataPath),
                  let metadata = try? JSONDecoder().decode(DeltaMetadata.self, from: data),
                  metadata.from == base, metadata.to == reference.version, metadata.toArchiveSHA256 == release.manifest.archive.sha256
            else { continue }
            let layer = try put(file: "deltas/\(file)", path: deltas + "/" + file, mediaType: compression == .zstd ? zstdDeltaLayerType : deltaLayerType,
                                digest: metadata.archiveSHA256.map { "sha256:" + $0 }, size: metadata.archiveSize)
            try refer(kind: "delta", artifactType: deltaType, layer: layer, tag: RegistryTag.forDelta(version: reference.version, base: base),
                      extra: [baseAnnotation: base, baseArchiveAnnotation: metadata.fromArchiveSHA256])
        }
        try addReferrers(referrers, to: report.digest, client: client)
        return report
    }

    /// The tag schema of the referrers API (distribution spec 1.1): a registry without the
    /// API gets an index of the referrers under `sha256-<hex>` of the subject, merged with
    /// what that tag held.
    static func addReferrers(_ referrers: [OCIDescriptor], to subject: String, client: RegistryClient) throws {
        guard !referrers.isEmpty else { return }
        let tag = subject.replacingOccurrences(of: ":", with: "-")
        var index = OCIIndex(manifests: [])
        if let existing = try client.manifest(tag, accept: [RegistryClient.indexMediaType]) {
            index = (try? JSONDecoder().decode(OCIIndex.self, from: existing.bytes)) ?? index
        }
        var changed = false
        for referrer in referrers where !index.manifests.contains(where: { $0.digest == referrer.digest }) {
            index.manifests.append(referrer)
            changed = true
        }
        guard changed else { return }
        index.manifests.sort { $0.digest < $1.digest }
        try client.putManifest(try index.encoded(), mediaType: RegistryClient.indexMediaType, reference: tag)
    }

    /// The referrers of `subject` (the API when the registry has it, else the tag schema).
    public static func referrers(of subject: String, client: RegistryClient) throws -> [OCIDescriptor] {
        let api = "\(client.location.apiBase)/referrers/\(subject)"
        let response = try client.request("GET", api, headers: ["Accept: \(RegistryClient.indexMediaType)"])
        if response.status == 200, let index = try? JSONDecoder().decode(OCIIndex.self, from: response.body) {
            return index.manifests
        }
        let tag = subject.replacingOccurrences(of: ":", with: "-")
        guard let existing = try client.manifest(tag, accept: [RegistryClient.indexMediaType]) else { return [] }
        return try JSONDecoder().decode(OCIIndex.self, from: existing.bytes).manifests
    }

    // MARK: Resolve (pull-mode deploy)

    /// A release's artifact, resolved from its tag once: nodes fetch its blobs by digest,
    /// so a tag moved meanwhile changes nothing.
    public struct Pinned: Sendable {
        public var location: RegistryLocation
        public var tag: String
        public var digest: String
        public var layers: [OCIDescriptor]

        public func layer(_ title: String) -> OCIDescriptor? { layers.first { $0.title == title } }
        public func blobURL(sha256 hex: String) -> String { location.blobURL("sha256:" + hex) }
    }

    /// Reads the artifact tagged with `reference`'s version and checks it is a slipway
    /// release of that name and version.
    public static func resolve(_ reference: ReleaseReference, client: RegistryClient) throws -> Pinned {
        let tag = RegistryTag.forVersion(reference.version)
        guard let found = try client.manifest(tag) else {
            throw RegistryError.notFound(what: "release \(reference) (tag \(tag)); publish it with `slipway publish \(reference) --to \(client.location)`",
                                         location: client.location.description)
        }
        let manifest: OCIManifest
        do {
            manifest = try JSONDecoder().decode(OCIManifest.self, from: found.bytes)
        } catch {
            throw RegistryError.unexpected(what: "\(client.location):\(tag)", detail: "not an OCI image manifest: \(error)")
        }
        guard manifest.artifactType == releaseType else {
            throw RegistryError.unexpected(what: "\(client.location):\(tag)", detail: "artifact type \(manifest.artifactType ?? "none"), not a slipway release (\(releaseType))")
        }
        let named = manifest.annotations?[nameAnnotation], version = manifest.annotations?[versionAnnotation]
        guard named == reference.name, version == reference.version else {
            throw RegistryError.unexpected(what: "\(client.location):\(tag)", detail: "holds \(named ?? "?")@\(version ?? "?"), not \(reference)")
        }
        return Pinned(location: client.location, tag: tag, digest: found.digest, layers: manifest.layers)
    }

    /// Checks that the pinned artifact is the store's release: same manifest bytes, same archive.
    public static func check(_ pinned: Pinned, matches release: StoredRelease) throws {
        let archiveName = (release.archivePath as NSString).lastPathComponent
        guard let archive = pinned.layer(archiveName), let manifest = pinned.layer(ReleaseStore.manifestFileName) else {
            throw RegistryError.unexpected(what: "\(pinned.location):\(pinned.tag)", detail: "the artifact has no \(archiveName) or manifest.json layer")
        }
        let manifestDigest = RegistryClient.digest(release.manifestBytes)
        var same = archive.digest == "sha256:" + release.manifest.archive.sha256 && manifest.digest == manifestDigest
        if let signature = release.signatureFile {
            same = same && pinned.layer(ReleaseStore.signatureFileName)?.digest == RegistryClient.digest(signature)
        }
        for attachment in release.manifest.attachments ?? [] {
            same = same && pinned.layer(attachment.file)?.digest == "sha256:" + attachment.sha256
        }
        guard same else {
            throw RegistryError.unexpected(what: "\(pinned.location):\(pinned.tag)",
                                           detail: "it is not the store's \(release.reference) (another archive, manifest, signature or attachment); publish it again or deploy from the store")
        }
    }

    /// The published delta from `base` to `reference`, nil when the registry has none.
    public static func delta(_ reference: ReleaseReference, base: String, client: RegistryClient) throws -> OCIDescriptor? {
        try deltaArtifact(reference, base: base, client: client)?.layer
    }

    /// The published delta's layer and the SHA-256 of the base archive it was made from.
    static func deltaArtifact(_ reference: ReleaseReference, base: String, client: RegistryClient)
        throws -> (layer: OCIDescriptor, baseArchiveSHA256: String?)? {
        let tag = RegistryTag.forDelta(version: reference.version, base: base)
        guard let found = try client.manifest(tag),
              let manifest = try? JSONDecoder().decode(OCIManifest.self, from: found.bytes),
              manifest.artifactType == deltaType,
              manifest.annotations?[nameAnnotation] == reference.name,
              manifest.annotations?[versionAnnotation] == reference.version,
              manifest.annotations?[baseAnnotation] == base,
              manifest.layers.count == 1
        else { return nil }
        return (manifest.layers[0], manifest.annotations?[baseArchiveAnnotation])
    }

    /// Brings the deltas the registry holds to `release` from versions `store` has into the
    /// store's delta cache (`deltas/BASE.tar.*` and `deltas/BASE.json`), as a push from this
    /// store would have made them, so that pushing from it sends the delta without making it.
    /// A delta is taken only when it is of this store's builds: its digest, then the
    /// `.slipway-delta.json` inside it naming this app, the base and this version with both
    /// archives' SHA-256 as the store has them; any other is skipped, saying why. A delta
    /// already cached is not fetched again.
    static func pullDeltas(_ release: StoredRelease, client: RegistryClient, store: ReleaseStore,
                           log: (String) -> Void) throws -> (bases: [String], skipped: [String], bytes: UInt64) {
        let reference = release.reference
        let compression = ReleaseDelta.compression(forRelease: release.manifest.compression)
        var bases: [String] = [], skipped: [String] = [], bytes: UInt64 = 0
        for base in try store.versions(of: reference.name) where base != reference.version {
            guard let old = try? store.release(name: reference.name, version: base),
                  ReleaseDelta.cached(store: store, from: old, to: release) == nil else { continue }
            guard let found = try deltaArtifact(reference, base: base, client: client) else { continue }
            func skip(_ why: String) {
                skipped.append("\(base): \(why)")
                log("delta from \(base) skipped: \(why)")
            }
            if let sha = found.baseArchiveSHA256, sha != old.manifest.archive.sha256 {
                skip("made from another build of \(reference.name)@\(base) (base archive sha256 \(sha))")
                continue
            }
            guard deltaCompression(mediaType: found.layer.mediaType) == compression, found.layer.digest.hasPrefix("sha256:") else {
                skip("layer \(found.layer.mediaType) \(found.layer.digest) is not a \(compression.fileExtension) delta by sha256")
                continue
            }
            let deltas = release.directory + "/deltas"
            if mkdir(deltas, 0o755) != 0 && errno != EEXIST {
                throw RegistryError.unexpected(what: deltas, detail: String(cString: strerror(errno)))
            }
            // Kept across an interrupted pull (fetchBlob resumes it); removed once used.
            let partial = deltas + "/.pulling-\(base).\(compression.fileExtension)"
            bytes += try client.fetchBlob(found.layer.digest, size: found.layer.size, to: partial,
                                          what: "the delta from \(base) of \(reference)", log: log)
            let inner = (try? ArchiveReader.file(ArchivePath(DeltaMetadata.entryName), in: partial))
                .flatMap { $0 }.flatMap { try? JSONDecoder().decode(DeltaMetadata.self, from: $0) }
            guard var metadata = inner, metadata.name == reference.name, metadata.from == base, metadata.to == reference.version,
                  metadata.fromArchiveSHA256 == old.manifest.archive.sha256,
                  metadata.toArchiveSHA256 == release.manifest.archive.sha256 else {
                unlink(partial)
                skip("its \(DeltaMetadata.entryName) does not name \(reference.name) \(base) → \(reference.version) with the store's archives")
                continue
            }
            metadata.archiveSHA256 = String(found.layer.digest.dropFirst("sha256:".count))
            metadata.archiveSize = found.layer.size
            try ReleaseDelta.adopt(archive: partial, metadata: metadata, to: release, store: store)
            log("delta from \(base): \(ByteCount.format(found.layer.size))")
            bases.append(base)
        }
        return (bases, skipped, bytes)
    }

    // MARK: Pull

    public struct PullReport: Codable, Sendable {
        public var release: String
        public var location: String
        public var tag: String
        public var digest: String
        /// `added` or `alreadyPresent`.
        public var outcome: String
        public var bytesFetched: UInt64
        /// `verified` (with the key given), `unchecked` (signed, no key given) or `absent`.
        public var signature: String
        /// The versions whose delta to this one was fetched into the store's cache.
        public var deltasFrom: [String] = []
        /// Deltas the registry has that were not taken, each with why.
        public var deltasSkipped: [String] = []
    }

    /// Brings `reference` from the registry into `store`, byte for byte as it was
    /// published. The blobs go to `<app>/.pulling-<version>/` (an interrupted pull resumes
    /// from there), each checked against its digest; then the release passes `verify`'s
    /// checks (with `trust`, its signature must verify with that key) and is renamed into
    /// place.
    public static func pull(_ reference: ReleaseReference, client: RegistryClient, store: ReleaseStore, trust: ReleasePublicKey?,
                            log: (String) -> Void = { _ in }) throws -> PullReport {
        try ReleaseStore.validate(name: reference.name)
        try ReleaseStore.validate(version: reference.version)
        let pinned = try resolve(reference, client: client)
        // What the report says of a stored release's signature (checked with `trust` when given).
        func signatureStatus(_ release: StoredRelease) -> String {
            release.signatureFile == nil ? "absent" : trust == nil ? "unchecked" : "verified"
        }
        var report = PullReport(release: reference.description, location: client.location.description, tag: pinned.tag,
                                digest: pinned.digest, outcome: "added", bytesFetched: 0, signature: "absent")
        func addDeltas(_ release: StoredRelease) throws {
            let deltas = try pullDeltas(release, client: client, store: store, log: log)
            report.deltasFrom = deltas.bases
            report.deltasSkipped = deltas.skipped
            report.bytesFetched += deltas.bytes
        }
        if let existing = try? store.release(reference) {
            try check(pinned, matches: existing)
            report.outcome = "alreadyPresent"
            report.signature = signatureStatus(existing)
            if let trust { try ReleaseVerifier.verify(existing, trust: trust).requireValid() }
            try addDeltas(existing)
            return report
        }
        let appDir = store.appDirectory(reference.name)
        try FileManager.default.createDirectory(atPath: appDir, withIntermediateDirectories: true)
        let work = appDir + "/.pulling-" + reference.version
        if mkdir(work, 0o755) != 0 && errno != EEXIST {
            throw RegistryError.unexpected(what: work, detail: String(cString: strerror(errno)))
        }
        // One pull of a version at a time: the directory's flock.
        let fd = open(work, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw RegistryError.unexpected(what: work, detail: String(cString: strerror(errno))) }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            throw RegistryError.unexpected(what: work, detail: "another slipway pull of \(reference) is running")
        }
        var titles = Set<String>()
        for layer in pinned.layers {
            guard let title = layer.title, ReleaseStore.isPlainFileName(title), titles.insert(title).inserted else {
                throw RegistryError.unexpected(what: "\(client.location):\(pinned.tag)",
                                               detail: "layer \(layer.digest) has no plain file name as its title (or one another layer has)")
            }
            guard layer.digest.hasPrefix("sha256:") else {
                throw RegistryError.unexpected(what: "\(client.location):\(pinned.tag)", detail: "layer \(title) has a digest that is not sha256")
            }
            let path = work + "/" + title
            report.bytesFetched += try client.fetchBlob(layer.digest, size: layer.size, to: path, what: "\(title) of \(reference)", log: log)
            log("\(title): \(ByteCount.format(layer.size))")
        }
        do {
            let added = try store.adopt(directory: work, reference: reference, trust: trust)
            report.outcome = added.outcome.rawValue
            report.signature = signatureStatus(added.release)
        } catch {
            // What was fetched is not this release: nothing of it is kept.
            try? FileManager.default.removeItem(atPath: work)
            throw error
        }
        try addDeltas(try store.release(reference))
        return report
    }
}
