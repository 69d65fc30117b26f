import Foundation
import SlipwayArchive
import SlipwaySystem

/// What checking a stored release found.
public struct ReleaseVerification: Sendable {
    /// The state of the release's signature.
    public enum SignatureStatus: String, Codable, Sendable {
        /// No `manifest.sig`.
        case absent
        /// A signature is there but no trusted key was given to check it.
        case unchecked
        /// The signature matches the manifest under the trusted key.
        case verified
        /// The signature is damaged or does not match under the trusted key.
        case invalid
    }

    public var archivePath: String
    public var actualSHA256: String
    public var actualSize: UInt64
    /// The archive's hash and size match the manifest.
    public var archiveOK: Bool
    public var signature: SignatureStatus
    /// The trusted key's id, when one was given.
    public var trustedKeyID: String?
    /// Every problem found, most fundamental first (a bad signature before a bad archive: when
    /// the manifest was changed, its archive hash cannot be believed either).
    public var problems: [ReleaseError]

    /// Whether nothing is wrong.
    public var isValid: Bool { problems.isEmpty }

    /// Throws the first problem, if any.
    public func requireValid() throws {
        if let first = problems.first { throw first }
    }
}

/// Checks stored releases: the archive against the manifest, the manifest against its signature.
public enum ReleaseVerifier {
    /// Re-hashes the archive and compares it with the manifest; with `trust`, also checks
    /// `manifest.sig` (a missing signature is then a problem). Problems are collected in the
    /// result; only an unreadable archive throws.
    public static func verify(_ release: StoredRelease, trust: ReleasePublicKey? = nil) throws -> ReleaseVerification {
        var problems: [ReleaseError] = []
        var status: ReleaseVerification.SignatureStatus
        switch (release.signatureFile, trust) {
        case (nil, nil):
            status = .absent
        case let (nil, key?):
            status = .absent
            problems.append(.signatureMissing(path: release.signaturePath, keyID: key.keyID))
        case (_?, nil):
            status = .unchecked
        case let (file?, key?):
            do {
                let signature = try ReleaseSigning.parseSignatureFile(file, source: release.signaturePath)
                try ReleaseSigning.verify(release.manifestBytes, signature: signature, publicKey: key, source: release.signaturePath)
                status = .verified
            } catch let error as ReleaseError {
                status = .invalid
                problems.append(error)
            }
        }

        let actual: (hex: String, size: UInt64)
        do {
            actual = try FileHasher.sha256(path: release.archivePath)
        } catch let ArchiveError.system(operation, path, code) {
            throw ReleaseError.system(operation: operation, path: path, errno: code)
        }
        let expected = release.manifest.archive
        let archiveOK = actual.hex == expected.sha256 && actual.size == expected.size
        if !archiveOK {
            problems.append(.archiveMismatch(path: release.archivePath, expectedSHA256: expected.sha256, actualSHA256: actual.hex,
                                             expectedSize: expected.size, actualSize: actual.size))
        }
        // The SBOM and provenance: the signed manifest vouches for their bytes too.
        for attachment in release.manifest.attachments ?? [] {
            do {
                let data = try release.attachment(attachment.file)
                // The provenance is signed on its own (DSSE): checked too when a key is trusted.
                if attachment.file == Provenance.fileName, let data, let trust {
                    let path = release.directory + "/" + attachment.file
                    let statement = try Provenance.verify(data, publicKey: trust, source: path)
                    guard Provenance.subjects(of: statement).contains(where: { $0.digest?.sha256 == release.manifest.archive.sha256 }) else {
                        throw ReleaseError.manifestMalformed(path: path, detail: "the provenance's subjects do not name this release's archive")
                    }
                }
            } catch let error as ReleaseError {
                problems.append(error)
            }
        }
        return ReleaseVerification(archivePath: release.archivePath, actualSHA256: actual.hex, actualSize: actual.size,
                                   archiveOK: archiveOK, signature: status, trustedKeyID: trust?.keyID, problems: problems)
    }
}

/// What `inspect` shows: the manifest's summary and the verification result.
public struct ReleaseInspection: Codable, Sendable {
    /// The archive as the manifest records it, and whether the file matches.
    public struct Archive: Codable, Sendable {
        public var path: String
        public var sha256: String
        public var size: UInt64
        public var tarSize: UInt64
        /// The archive's hash and size match the manifest.
        public var verified: Bool
    }

    /// The signature's state and the key it was checked with.
    public struct Signature: Codable, Sendable {
        public var status: ReleaseVerification.SignatureStatus
        public var trustedKeyID: String?
    }

    public var name: String
    public var version: String
    public var created: Int64
    public var compression: ArchiveCompression
    public var archive: Archive
    public var summary: ManifestSummary
    public var signature: Signature
    /// The attachments the manifest lists (SBOM, provenance: docs/sbom.md).
    public var attachments: [ReleaseManifest.Attachment]
    /// One line per problem; empty when the release is sound.
    public var problems: [String]

    public init(release: StoredRelease, verification: ReleaseVerification) {
        let manifest = release.manifest
        name = manifest.name
        version = manifest.version
        created = manifest.created
        compression = manifest.compression
        archive = Archive(path: release.archivePath, sha256: manifest.archive.sha256, size: manifest.archive.size,
                          tarSize: manifest.tarSize, verified: verification.archiveOK)
        summary = manifest.summary
        signature = Signature(status: verification.signature, trustedKeyID: verification.trustedKeyID)
        attachments = manifest.attachments ?? []
        problems = verification.problems.map(\.description)
    }

    /// The human-readable report, one line per fact.
    public var textLines: [String] {
        let date = Date(timeIntervalSince1970: TimeInterval(created))
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        let kinds: [(EntryRecord.Kind, String)] = [
            (.file, "files"), (.directory, "directories"), (.symlink, "symlinks"), (.hardlink, "hardlinks"),
            (.characterDevice, "char devices"), (.blockDevice, "block devices"), (.fifo, "fifos"),
        ]
        let counts = kinds.compactMap { kind, label in
            summary.count(of: kind) == 0 ? nil : "\(summary.count(of: kind)) \(label)"
        }
        let signatureText: String
        switch signature.status {
        case .absent: signatureText = signature.trustedKeyID == nil ? "none (unsigned release)" : "MISSING (required by key \(signature.trustedKeyID ?? ""))"
        case .unchecked: signatureText = "present, not checked (pass --trust FILE.pub to check it)"
        case .verified: signatureText = "verified with key \(signature.trustedKeyID ?? "")"
        case .invalid: signatureText = "INVALID for key \(signature.trustedKeyID ?? "")"
        }
        return [
            "release:      \(name)@\(version)",
            "created:      \(formatter.string(from: date)) (\(created))",
            "compression:  \(compression.rawValue)",
            "archive:      \(archive.path)",
            "archive size: \(ByteCount.format(archive.size)) (\(archive.size) bytes), tar \(ByteCount.format(archive.tarSize))",
            "sha256:       \(archive.sha256)",
            "entries:      \(summary.entries)" + (counts.isEmpty ? "" : " (\(counts.joined(separator: ", ")))"),
            "file bytes:   \(ByteCount.format(summary.fileBytes)) (\(summary.fileBytes) bytes)",
            "archive hash: \(archive.verified ? "OK" : "MISMATCH")",
            "signature:    \(signatureText)",
            "attachments:  " + (attachments.isEmpty ? "none (no SBOM)" : attachments.map { "\($0.file) (\(ByteCount.format($0.size)))" }.joined(separator: ", ")),
        ]
    }
}
