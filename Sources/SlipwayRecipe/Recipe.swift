import Foundation
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// A build recipe: everything `slipway build` needs to turn a base tree into a release.
/// Paths of host files are absolute (resolved against the recipe's directory); paths
/// inside the tree are absolute tree paths (`/opt/app`). See docs/recipes.md.
public struct Recipe: Sendable {
    /// The recipe file, and the directory its relative paths are resolved against.
    public var file: String
    public var directory: String
    public var release: ReleaseSection
    public var base: BaseSpec
    public var groups: [GroupSpec]
    public var users: [UserSpec]
    /// Extra Debian packages: installed with apt inside a debian or tarball tree; on a
    /// scratch base only unpacked (`apt-get download` + `dpkg-deb -x`, no scripts, no
    /// dependencies), which suits static binaries such as busybox-static.
    public var packages: [String]
    public var files: [FileSpec]
    public var app: AppSpec?
    public var venv: VenvSpec?
    public var run: [RunStep]
    public var cleanup: CleanupSpec
    public var service: ServiceSpec?
    /// `[vars]`: extra names for `{{…}}` in templates.
    public var vars: [String: String]
}

/// `[release]`.
public struct ReleaseSection: Sendable, Equatable {
    public var name: String
    public var version: String?
    public var sourceDateEpoch: Int64?
    public var compression: ArchiveCompression
}

/// `[base]`: where the tree starts.
public enum BaseSpec: Sendable, Equatable {
    case debian(DebianBase)
    /// An existing root filesystem tarball (tar, tar.xz, tar.zst), absolute path.
    case tarball(path: String)
    /// An empty tree with a `/dev`, `/proc`, `/sys`, `/tmp` skeleton.
    case scratch
}

/// A Debian tree bootstrapped with mmdebstrap (debootstrap when mmdebstrap is missing).
public struct DebianBase: Sendable, Equatable {
    public var suite: String
    public var variant: String
    public var include: [String]
    public var exclude: [String]
    public var components: [String]
    public var architecture: String?
    /// mmdebstrap mirror arguments (URLs, one-line sources or source files); empty: the
    /// host's own apt source files that serve the suite.
    public var mirror: [String]
}

/// `[[groups]]`.
public struct GroupSpec: Sendable, Equatable {
    public var name: String
    public var gid: Int?
}

/// `[[users]]`: a service user created inside the tree.
public struct UserSpec: Sendable, Equatable {
    public var name: String
    public var uid: Int?
    /// The primary group: a gid or a group name; default a group named like the user.
    public var group: String?
    public var home: String
    public var shell: String
    public var groups: [String]
    /// Whether to create the home directory (owned by the user).
    public var createHome: Bool
}

/// `[[files]]`: a host file or directory copied into the tree.
public struct FileSpec: Sendable, Equatable {
    public var source: String
    public var dest: String
    public var mode: UInt32?
    public var owner: String?
    public var template: Bool
    /// The recipe line, for errors at build time.
    public var line: Int?
}

/// `[app]`: the application binary (or directory) placed into the tree.
public struct AppSpec: Sendable, Equatable {
    public var source: String
    public var dest: String
    public var mode: UInt32?
    public var owner: String?
    public var line: Int?
}

/// `[venv]`: a Python virtualenv created inside the tree with the tree's own python.
public struct VenvSpec: Sendable, Equatable {
    public var path: String
    public var python: String
    /// A host requirements file (absolute).
    public var requirements: String?
    public var packages: [String]
    public var pipOptions: [String]
    /// A host directory of wheels, made visible to pip as `--find-links` (offline builds).
    public var wheelDir: String?
    public var systemSitePackages: Bool
}

/// `[[run]]`: a shell command run inside the tree (chroot, /proc /sys /dev mounted).
public struct RunStep: Sendable, Equatable {
    public var name: String
    public var command: String
    /// The shell the command is given to with `-c` (default `/bin/sh`).
    public var shell: [String]
    public var environment: [String: String]
    public var line: Int?
}

/// `[cleanup]`: what is removed from the tree before packing.
public struct CleanupSpec: Sendable, Equatable {
    /// The items cleaned unless listed in `keep`.
    public static let items = ["ssh-host-keys", "tmp", "login-records", "apt-lists", "apt-cache", "logs", "machine-id", "ldconfig-cache"]
    /// Items that are only cleaned when asked for.
    public static let optionalItems = ["pycache"]

    public var enabled: Bool
    public var keep: [String]
    /// Extra globs (tree paths) to remove.
    public var remove: [String]
    public var pycache: Bool

    public func cleans(_ item: String) -> Bool {
        guard enabled else { return false }
        if item == "pycache" { return pycache }
        return !keep.contains(item)
    }
}
