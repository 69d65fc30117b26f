import Foundation
import SlipwayArchive
import SlipwaySystem

/// Errors of releases: the store, manifests, keys and signatures. Each message says what
/// failed, on which file or release, and what the user can do about it.
public enum ReleaseError: Error, Equatable, CustomStringConvertible, LocalizedError, Sendable {
    /// An app name or version is not usable as a store directory name.
    case invalidName(what: String, value: String, reason: String)
    /// A `NAME@VERSION` reference could not be parsed.
    case invalidReference(String, reason: String)
    /// The directory to pack is missing or not a directory.
    case treeNotFound(path: String)
    /// The store lies inside the tree being packed.
    case storeInsideTree(store: String, tree: String)
    /// The store holds no such release.
    case releaseNotFound(name: String, version: String, store: String, known: [String])
    /// A release's directory lacks its archive.
    case archiveMissing(path: String)
    /// `<version>` exists in the store with different content.
    case versionExists(name: String, version: String, path: String)
    /// A manifest is not valid JSON of the expected shape.
    case manifestMalformed(path: String, detail: String)
    /// A manifest was written by a newer (or unknown) format.
    case unsupportedFormatVersion(path: String, found: Int, supported: Int)
    /// The manifest in `<app>/<version>/` names another release.
    case manifestMismatch(path: String, expected: String, found: String)
    /// The archive's bytes are not the ones the manifest records.
    case archiveMismatch(path: String, expectedSHA256: String, actualSHA256: String, expectedSize: UInt64, actualSize: UInt64)
    /// `keygen` would overwrite a key.
    case keyExists(path: String)
    /// A key file could not be read.
    case keyUnreadable(path: String, errno: Int32)
    /// A key file does not hold a key of the expected kind.
    case keyMalformed(path: String, detail: String)
    /// Verification needs `manifest.sig` and the release has none.
    case signatureMissing(path: String, keyID: String)
    /// `manifest.sig` is not base64 of a 64-byte Ed25519 signature.
    case signatureMalformed(path: String)
    /// The signature does not match the manifest under the trusted key.
    case signatureMismatch(path: String, keyID: String)
    /// A system call on a store file failed.
    case system(operation: String, path: String, errno: Int32)
    /// `SOURCE_DATE_EPOCH` is set but is not a number of seconds.
    case invalidSourceDateEpoch(String)
    /// The release has no attachment `file` (an SBOM, a provenance).
    case attachmentMissing(release: String, file: String)

    public var description: String {
        switch self {
        case let .invalidName(what, value, reason):
            return "invalid \(what) '\(value)': \(reason); use only letters, digits and . _ + ~ - (not starting with . or -)"
        case let .invalidReference(value, reason):
            return "'\(value)' is not a release reference: \(reason); write NAME@VERSION, e.g. web@1.4.2"
        case let .treeNotFound(path):
            return "\(path): no such directory to pack; pass the root of the tree to pack"
        case let .storeInsideTree(store, tree):
            return "the store \(store) is inside the tree \(tree) being packed; pass a --store outside the tree"
        case let .releaseNotFound(name, version, store, known):
            let hint = known.isEmpty
                ? "the store has no releases of \(name)"
                : "known versions of \(name): \(known.joined(separator: ", "))"
            return "release \(name)@\(version) not found in store \(store) (\(hint)); check the name and version or pass --store"
        case let .archiveMissing(path):
            return "\(path): the release's archive is missing; the release is incomplete, pack it again under a new version"
        case let .versionExists(name, version, path):
            return "\(name)@\(version) already exists at \(path) with different content; releases are immutable, pick a new version"
        case let .manifestMalformed(path, detail):
            return "\(path): not a valid slipway manifest (\(detail)); the file is damaged or not a manifest"
        case let .unsupportedFormatVersion(path, found, supported):
            return "\(path): manifest format version \(found) is not supported (this slipway reads version \(supported)); use a newer slipway"
        case let .manifestMismatch(path, expected, found):
            return "\(path): manifest is for \(found), not \(expected); the store was edited by hand, restore the release's manifest"
        case let .archiveMismatch(path, expectedSHA256, actualSHA256, expectedSize, actualSize):
            let sizes = expectedSize == actualSize ? "" : ", size \(actualSize) instead of \(expectedSize) bytes"
            return "\(path): archive does not match its manifest (sha256 \(actualSHA256) instead of \(expectedSHA256)\(sizes)); the archive is damaged or was replaced, do not use it"
        case let .keyExists(path):
            return "\(path) already exists; slipway never overwrites a key, choose another --out or remove the old key first"
        case let .keyUnreadable(path, errno):
            return "cannot read key \(path): \(String(cString: strerror(errno)))"
        case let .keyMalformed(path, detail):
            return "\(path): \(detail)"
        case let .signatureMissing(path, keyID):
            return "\(path) is missing: the release is not signed, so it cannot be verified against key \(keyID); sign it with pack --sign-key"
        case let .signatureMalformed(path):
            return "\(path): not a slipway signature (expected the base64 of a 64-byte Ed25519 signature); the file is damaged"
        case let .signatureMismatch(path, keyID):
            return "\(path): signature does not match the manifest under trusted key \(keyID); the manifest was changed or signed with another key, do not use this release"
        case let .system(operation, path, errno):
            return "\(operation) \(path): \(String(cString: strerror(errno)))"
        case let .invalidSourceDateEpoch(value):
            return "SOURCE_DATE_EPOCH='\(value)' is not a number of seconds since 1970; unset it or set it to an integer"
        case let .attachmentMissing(release, file):
            let why = file == Provenance.fileName
                ? "a provenance is written only for a release built from a recipe with --sign-key"
                : "it was stored by a slipway without SBOMs, or packed from a tree with neither a dpkg database nor Python distributions"
            return "\(release) has no \(file): \(why); rebuild it with this slipway (docs/sbom.md)"
        }
    }

    public var errorDescription: String? { description }
}
