import Foundation
import Glibc
import SlipwayRecipe
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Runs commands inside a build tree with chroot, with /proc, /sys and /dev mounted while
/// needed and a clean environment (the host's variables never leak into the image).
struct ChrootSession {
    let tree: String
    let runner: CommandRunner
    let output: Output
    let sourceDateEpoch: Int64
    private(set) var mounted: [String] = []

    init(tree: String, runner: CommandRunner, output: Output, sourceDateEpoch: Int64) {
        self.tree = tree
        self.runner = runner
        self.output = output
        self.sourceDateEpoch = sourceDateEpoch
    }

    /// Host variables passed through: proxies and pip's index settings.
    static let passedThrough = ["http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                                "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT"]

    var environment: [String: String] {
        var environment = [
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
            "DEBIAN_FRONTEND": "noninteractive", "DEBCONF_NONINTERACTIVE_SEEN": "true",
            "PYTHONDONTWRITEBYTECODE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1",
            "SOURCE_DATE_EPOCH": String(sourceDateEpoch),
        ]
        let host = ProcessInfo.processInfo.environment
        for name in Self.passedThrough { if let value = host[name] { environment[name] = value } }
        return environment
    }

    /// Mounts /proc, /sys and /dev into the tree (once); on failure nothing stays mounted.
    mutating func mountSystem() throws {
        guard mounted.isEmpty else { return }
        do {
            try mount(source: "proc", type: "proc", flags: 0, at: "/proc")
            try mount(source: "/sys", type: nil, flags: UInt(MS_BIND), at: "/sys")
            try mount(source: "/dev", type: nil, flags: UInt(MS_BIND), at: "/dev")
        } catch {
            try? unmountAll()
            throw error
        }
    }

    /// Bind-mounts a host directory read-only at `treePath` (created if missing).
    mutating func bindReadOnly(_ hostDirectory: String, at treePath: String) throws {
        try mount(source: hostDirectory, type: nil, flags: UInt(MS_BIND), at: treePath)
        do {
            // A bind mount takes MS_RDONLY only in a remount of the new mount, which a fresh
            // walk reaches (the directory opened before mounting lies below it).
            let fd = try BuildFiles.openDirectoryBeneath(treePath, in: tree, create: false)
            defer { close(fd) }
            guard Glibc.mount(nil, "/proc/self/fd/\(fd)", nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY), nil) == 0 else {
                let code = errno
                throw BuildError.system(operation: "remount read-only", path: tree + treePath, errno: code)
            }
        } catch {
            try unmountAll()
            throw error
        }
    }

    /// Mounts at `treePath`, which must be a real directory inside the tree: the path is
    /// walked component by component without following a symlink (missing components are
    /// created), and the mount goes onto the opened directory itself (/proc/self/fd/N), so
    /// nothing can swap a symlink in between the check and the mount. A symlink on the way
    /// — a tarball base's or a [[files]] entry's /dev → /somewhere — is refused: the mount
    /// would land on the host path it names.
    private mutating func mount(source: String, type: String?, flags: UInt, at treePath: String) throws {
        let fd = try BuildFiles.openDirectoryBeneath(treePath, in: tree)
        defer { close(fd) }
        let point = tree + "/" + treePath.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
        try BuildCleanup.registerMount(point)
        guard Glibc.mount(source, "/proc/self/fd/\(fd)", type, flags, nil) == 0 else {
            let code = errno
            BuildCleanup.unregisterMount(point)
            throw BuildError.system(operation: "mount \(source) on", path: point, errno: code)
        }
        mounted.append(point)
    }

    /// Unmounts everything this session mounted, newest first, and checks that nothing is
    /// left mounted below the tree.
    mutating func unmountAll() throws {
        for point in mounted.reversed() {
            Mounts.unmount(point)
            BuildCleanup.unregisterMount(point)
        }
        mounted.removeAll()
        let left = Mounts.mountPoints(below: tree)
        if !left.isEmpty { throw BuildError.mountsLeft(paths: left) }
    }

    /// Runs `arguments` inside the tree. With `--verbose` its output is shown as it comes;
    /// otherwise the tail of its stderr ends up in the error when it fails.
    func run(_ arguments: [String], extraEnvironment: [String: String] = [:], timeout: Duration? = nil) throws {
        let variables = environment.merging(extraEnvironment) { $1 }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let verbose = output.verbosity >= .verbose
        try runner.run(Command(
            ["env", "-i"] + variables + ["chroot", tree] + arguments,
            output: verbose ? .file("/dev/stderr") : .discard, echoStandardError: verbose, timeout: timeout))
    }
}
