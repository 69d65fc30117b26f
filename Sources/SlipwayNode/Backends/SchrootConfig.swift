import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The schroot chroot.d file `slipway-<app>` that makes `schroot -c slipway-<app>` enter a
/// version of the app. The file is replaced like `current`: written to a temporary name,
/// fsynced, renamed over the old one, and the directory fsynced, so schroot always reads
/// either the old file or the new one.
///
/// The temporary name starts with a dot: schroot skips such names in chroot.d, so a
/// leftover of a killed write is never read as a chroot (and `recover` removes it).
public struct SchrootConfig: Sendable {
    /// schroot only reads `/etc/schroot/chroot.d`; tests that do not run schroot point
    /// this elsewhere.
    public var directory: String

    public init(directory: String = "/etc/schroot/chroot.d") {
        self.directory = directory
    }

    /// The chroot name, as given to `schroot -c`.
    public static func chrootName(app: String) -> String { "slipway-\(app)" }

    public func file(for layout: NodeLayout) -> String { layout.schrootFile(in: directory) }
    func temporaryFile(for layout: NodeLayout) -> String { "\(directory)/.slipway-\(layout.app).new" }

    /// The file's text: one `[slipway-<app>]` section with the backend's settings, root
    /// only (a release is the server's root filesystem, not a user sandbox).
    public static func render(layout: NodeLayout, version: String,
                              settings: [(key: String, value: String)]) -> String {
        var lines = [
            "# Written by slipway; replaced on every activation. Do not edit.",
            "[\(chrootName(app: layout.app))]",
            "description=\(layout.app) \(version) (slipway)",
        ]
        lines += settings.map { "\($0.key)=\($0.value)" }
        // The minimal profile binds /proc and /sys; copying the host's passwd or
        // resolv.conf in would overwrite the image's own (and fails on a read-only release).
        lines += ["users=root", "root-users=root", "profile=minimal", "setup.copyfiles=", "setup.nssdatabases=", ""]
        return lines.joined(separator: "\n")
    }

    /// Writes the file for `version` with the backend's `settings`, atomically.
    public func write(layout: NodeLayout, version: String, settings: [(key: String, value: String)]) throws {
        let text = Self.render(layout: layout, version: version, settings: settings)
        let temporary = temporaryFile(for: layout)
        let target = file(for: layout)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw SchrootConfigError.cannotWrite(path: directory, reason: "\(error)")
        }
        try SystemError.rethrow({ () throws(SystemError) in try Durable.replace(target, with: Data(text.utf8), temporary: temporary) },
                                as: SchrootConfigError.system)
    }

    /// Removes the app's chroot file (schroot disabled, or the app removed).
    public func remove(layout: NodeLayout) throws {
        for path in [temporaryFile(for: layout), file(for: layout)] where unlink(path) != 0 && errno != ENOENT {
            throw SchrootConfigError.system(operation: "remove", path: path, errno: errno)
        }
        try fsyncDirectory()
    }

    /// Removes the temporary file of a write that was interrupted.
    public func recover(layout: NodeLayout) throws {
        let temporary = temporaryFile(for: layout)
        if unlink(temporary) != 0, errno != ENOENT {
            throw SchrootConfigError.system(operation: "remove", path: temporary, errno: errno)
        }
    }

    /// The version the current file names, from its description line (for status and tests).
    public func installedVersion(layout: NodeLayout) -> String? {
        guard let text = try? String(contentsOfFile: file(for: layout), encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("description=") {
            let words = line.dropFirst("description=".count).split(separator: " ")
            if words.count >= 2 { return String(words[1]) }
        }
        return nil
    }

    private func fsyncDirectory() throws {
        try SystemError.rethrow({ () throws(SystemError) in try Durable.syncDirectory(directory) }, as: SchrootConfigError.system)
    }
}

/// What went wrong writing a schroot chroot.d file.
public enum SchrootConfigError: Error, CustomStringConvertible, Sendable {
    case cannotWrite(path: String, reason: String)
    case system(operation: String, path: String, errno: Int32)

    public var description: String {
        switch self {
        case let .cannotWrite(path, reason):
            return "cannot write the schroot configuration in \(path): \(reason); run as root, or disable schroot in node.toml"
        case let .system(operation, path, code):
            return "schroot configuration: \(operation) \(path) failed: \(String(cString: strerror(code)))"
                + (code == EACCES || code == EPERM ? "; run as root, or disable schroot in node.toml" : "")
        }
    }
}
