import Foundation
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Errors of the node side (apply, activate, confirm, rollback, prune, recover, receive, fetch). Each says
/// what failed, on which app, version or file, and what the operator can do about it.
public enum NodeError: Error, CustomStringConvertible, Sendable {
    /// A system call failed on a node file.
    case system(operation: String, path: String, errno: Int32)
    /// Another mutating command holds the app's lock.
    case locked(path: String, holder: String, waitedSeconds: Double)
    /// `node.toml` could not be read or holds something wrong.
    case settings(path: String, detail: String)
    /// The backend named in the settings is not available in this build.
    case backendUnavailable(name: String, detail: String)
    /// The archive's hash or size does not match what was expected.
    case archiveMismatch(path: String, expectedSHA256: String, actualSHA256: String, expectedSize: UInt64, actualSize: UInt64)
    /// The release's signature is missing, damaged or does not verify.
    case signature(path: String, detail: String)
    /// The version is not landed on this node.
    case versionNotLanded(app: String, version: String, landed: [String])
    /// A delta names a base version this node lacks.
    case baseMissing(app: String, base: String, landed: [String])
    /// A delta archive is malformed or does not belong to the release it is applied for.
    case deltaInvalid(path: String, detail: String)
    /// The landed tree does not match its manifest.
    case treeMismatch(app: String, version: String, differences: [String])
    /// Rollback has nowhere to go.
    case noPreviousVersion(app: String)
    /// A hook command failed (pre-activate, start, reload).
    case hookFailed(hook: String, app: String, version: String, detail: String)
    /// The new version's start, health check or front failed, and the node is back on (or
    /// never left) the previous version.
    case rolledBack(app: String, failedVersion: String, restored: String?, detail: String)
    /// A bad argument (name, offset, file name).
    case invalidArgument(String)
    /// A resumable upload cannot continue at the given offset.
    case badOffset(path: String, offset: UInt64, have: UInt64)
    /// prune was asked to keep fewer than allowed.
    case invalidKeep(Int)
    /// A program the node needs for this operation is not installed.
    case toolMissing(tool: String, package: String, purpose: String)
    /// Fetching release bytes over HTTP failed; what arrived stays for the next resume.
    case fetchFailed(url: String, detail: String, path: String, bytes: UInt64, size: UInt64)
    /// A fetched file is complete but is not the expected one (it was removed).
    case fetchMismatch(url: String, path: String, expectedSHA256: String, actualSHA256: String, expectedSize: UInt64, actualSize: UInt64)
    /// The version was switched back because its activation was not confirmed in time.
    case confirmationExpired(app: String, version: String, restored: String?, detail: String, at: Double)
    /// The front (nginx) of a graceful switch cannot be used.
    case frontUnavailable(detail: String)
    /// The journal that would record a switch could not be written, so nothing was switched.
    case journalUnwritable(app: String, version: String, current: String?, detail: String)
    /// `confirm` names a version that is neither pending confirmation nor current.
    case nothingToConfirm(app: String, version: String, current: String?, pending: String?)

    public var description: String {
        switch self {
        case let .system(operation, path, code):
            let hint = code == ENOSPC || code == EDQUOT
                ? " (the file system is full or at its quota: free space, raise the quota or prune old releases with `slipway node prune`)" : ""
            return "\(operation) \(path): \(String(cString: strerror(code)))\(hint)"
        case let .locked(path, holder, waited):
            return "another slipway command holds the lock \(path) (\(holder)); waited \(String(format: "%.1f", waited)) s. " +
                "Wait for it to finish, or if that process is gone the lock is free again: retry"
        case let .settings(path, detail):
            return "\(path): \(detail)"
        case let .backendUnavailable(name, detail):
            return "backend '\(name)' is not available: \(detail)"
        case let .archiveMismatch(path, expectedSHA256, actualSHA256, expectedSize, actualSize):
            return "\(path) does not match its manifest: sha256 \(actualSHA256) (\(actualSize) bytes), expected \(expectedSHA256) (\(expectedSize) bytes); " +
                "the upload is damaged or incomplete, send it again. Nothing was changed"
        case let .signature(path, detail):
            return "\(path): \(detail). Nothing was changed"
        case let .versionNotLanded(app, version, landed):
            return "\(app)@\(version) is not landed on this node (landed: \(landed.isEmpty ? "none" : landed.joined(separator: ", "))); apply it first"
        case let .baseMissing(app, base, landed):
            return "the delta is against \(app)@\(base), which this node does not have (landed: \(landed.isEmpty ? "none" : landed.joined(separator: ", "))); " +
                "send the full release instead. Nothing was changed"
        case let .deltaInvalid(path, detail):
            return "delta \(path): \(detail). Nothing was changed"
        case let .treeMismatch(app, version, differences):
            let shown = differences.prefix(5).joined(separator: "; ")
            let more = differences.count > 5 ? " (and \(differences.count - 5) more)" : ""
            return "the tree landed for \(app)@\(version) does not match its manifest: \(shown)\(more). It was discarded; nothing was changed"
        case let .noPreviousVersion(app):
            return "\(app) has no previous version to roll back to (see `slipway node status \(app)`); name one with --to"
        case let .hookFailed(hook, app, version, detail):
            return "the \(hook) hook of \(app)@\(version) failed: \(detail)"
        case let .rolledBack(app, failed, restored, detail):
            if let restored {
                return "\(app)@\(failed) did not take over (\(detail)); rolled back to \(restored)"
            }
            return "\(app)@\(failed) did not take over (\(detail)); there was no previous version, so \(app) has no current version now"
        case let .invalidArgument(text):
            return text
        case let .badOffset(path, offset, have):
            return "cannot resume \(path) at offset \(offset): only \(have) bytes are there; resume at --offset \(have)"
        case let .invalidKeep(keep):
            return "--keep \(keep): keep at least 1 release"
        case let .toolMissing(tool, package, purpose):
            return "\(tool) is not installed on this node and \(purpose) needs it: apt-get install \(package)"
        case let .fetchFailed(url, detail, path, bytes, size):
            return "fetching \(url) failed: \(detail)" + (bytes > 0 ? "; \(bytes) of \(size) bytes are in \(path), fetch again to resume" : "")
        case let .fetchMismatch(url, path, expectedSHA256, actualSHA256, expectedSize, actualSize):
            return "\(url) is not the expected file: sha256 \(actualSHA256) (\(actualSize) bytes), expected \(expectedSHA256) (\(expectedSize) bytes); " +
                "\(path) was removed. Check what the server holds at that URL, then fetch again"
        case let .confirmationExpired(app, version, restored, detail, at):
            let when = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: at))
            let now = restored.map { "the node switched back to \($0)" } ?? "the node removed current (there was no previous version)"
            return "\(app)@\(version) was \(detail): \(now) at \(when); activate it again to retry"
        case let .frontUnavailable(detail):
            return "the front ([front] in node.toml): \(detail)"
        case let .journalUnwritable(app, version, current, detail):
            return "\(app)@\(version) was not activated: the journal that records the switch could not be written (\(detail)); " +
                "\(app) stays on \(current ?? "no version"). Free space (e.g. `slipway node prune`) and retry"
        case let .nothingToConfirm(app, version, current, pending):
            return "\(app)@\(version) has no pending confirmation and is not current (current: \(current ?? "none")" +
                (pending.map { ", pending confirmation: \($0)" } ?? "") + "); activate it with --confirm-timeout first"
        }
    }
}

extension NodeError: LocalizedError {
    public var errorDescription: String? { description }
}

extension NodeError {
    /// A write that failed because the file system is full (or at its quota), said as the
    /// node's own error so the reply carries the way out; nil for any other error.
    static func fullDisk(_ error: any Error) -> NodeError? {
        switch error {
        case let ArchiveError.system(operation, path, code) where code == ENOSPC || code == EDQUOT:
            return .system(operation: operation, path: path, errno: code)
        default:
            return nil
        }
    }
}

extension NodeErrorCode {
    /// The code a failed node verb replies with (docs/architecture.md "The node protocol").
    public static func of(_ error: any Error) -> NodeErrorCode {
        if NodeError.fullDisk(error) != nil { return .noSpace }
        switch error {
        case let error as NodeError: return error.code
        case is ArchiveError, is ReleaseError: return .release
        case is SystemError: return .system
        default: return .other
        }
    }
}

extension NodeError {
    public var code: NodeErrorCode {
        switch self {
        case let .system(_, _, code): code == ENOSPC || code == EDQUOT ? .noSpace : .system
        case .locked: .locked
        case .settings: .settings
        case .backendUnavailable: .backendUnavailable
        case .archiveMismatch: .archiveMismatch
        case .signature: .signature
        case .versionNotLanded: .versionNotLanded
        case .baseMissing: .baseMissing
        case .deltaInvalid: .deltaInvalid
        case .treeMismatch: .treeMismatch
        case .noPreviousVersion: .noPreviousVersion
        case .hookFailed: .hookFailed
        case .rolledBack: .rolledBack
        case .invalidArgument, .invalidKeep: .invalidArgument
        case .badOffset: .badOffset
        case .toolMissing: .toolMissing
        case .fetchFailed: .fetchFailed
        case .fetchMismatch: .fetchMismatch
        case .confirmationExpired: .confirmationExpired
        case .frontUnavailable: .frontUnavailable
        case .journalUnwritable: .journalUnwritable
        case .nothingToConfirm: .nothingToConfirm
        }
    }
}
