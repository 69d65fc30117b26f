import Foundation
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Errors of `export`. Each says what failed and what the user can do.
public enum ExportError: Error, Equatable, CustomStringConvertible, LocalizedError, Sendable {
    /// `--out` exists and `--force` was not given.
    case outputExists(path: String)
    /// `--out` is a directory.
    case outputIsDirectory(path: String)
    /// The directory `--out` would go into does not exist.
    case outputDirectoryMissing(path: String)
    /// `--size` could not be read or is below the minimum.
    case invalidSize(String, reason: String)
    /// `--size` was given for a format whose size is its contents'.
    case sizeNotApplicable(format: ImageFormat)
    /// The requested ext4 size cannot hold the release; `detail` is mke2fs's own words when it
    /// said so; `defaultSize` is what export would pick without `--size`.
    case sizeTooSmall(release: String, requested: UInt64, defaultSize: UInt64, detail: String?)
    /// A program the format needs is not installed.
    case toolMissing(program: String, package: String)
    /// Not running as root.
    case needsRoot
    /// A tool ran but reported an error, or its output could not be read.
    case toolReported(tool: String, detail: String)
    /// A system call on the output or the working directory failed.
    case system(operation: String, path: String, errno: Int32)

    public var description: String {
        switch self {
        case let .outputExists(path):
            return "\(path) already exists; pass --force to replace it, or choose another --out"
        case let .outputIsDirectory(path):
            return "\(path) is a directory; --out names the image file to write"
        case let .outputDirectoryMissing(path):
            return "\(path): no such directory for the image; create it first"
        case let .invalidSize(value, reason):
            return "invalid --size '\(value)': \(reason)"
        case let .sizeNotApplicable(format):
            return "--size applies to ext4 only; a \(format.rawValue) image is as large as its compressed contents"
        case let .sizeTooSmall(release, requested, defaultSize, detail):
            let said = detail.map { " (mke2fs: \($0))" } ?? ""
            return "--size \(ImageSize.format(requested)) is too small for \(release)\(said); pass a larger --size, or none for the default size of this release, \(ImageSize.format(defaultSize)) (the tree plus 30 %)"
        case let .toolMissing(program, package):
            return "\(program) is not installed; install the Debian package \(package) (apt-get install \(package); scripts/setup installs it)"
        case .needsRoot:
            return "export needs root: the release is unpacked with its owners, device nodes and file capabilities before the image is made; run it with sudo"
        case let .toolReported(tool, detail):
            return "\(tool): \(detail)"
        case let .system(operation, path, errno):
            return "\(operation) \(path): \(String(cString: strerror(errno)))"
        }
    }

    public var errorDescription: String? { description }
}
