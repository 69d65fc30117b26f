import Foundation
import Glibc

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

    /// Mounts /proc, /sys and /dev into the tree (once).
    mutating func mountSystem() throws {
        guard mounted.isEmpty else { return }
        try mount(["-t", "proc", "proc"], at: "/proc")
        try mount(["--bind", "/sys"], at: "/sys")
        try mount(["--bind", "/dev"], at: "/dev")
    }

    /// Bind-mounts a host directory read-only at `treePath` (created if missing).
    mutating func bindReadOnly(_ hostDirectory: String, at treePath: String) throws {
        try mount(["--bind", hostDirectory], at: treePath)
        let point = tree + treePath
        do {
            try runner.run(Command(["mount", "-o", "remount,bind,ro", point], timeout: .seconds(60)))
        } catch {
            try unmountAll()
            throw error
        }
    }

    private mutating func mount(_ arguments: [String], at treePath: String) throws {
        let point = tree + treePath
        try BuildFiles.makeDirectories(point)
        try BuildCleanup.registerMount(point)
        do {
            try runner.run(Command(["mount"] + arguments + [point], timeout: .seconds(60)))
        } catch {
            BuildCleanup.unregisterMount(point)
            throw error
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
