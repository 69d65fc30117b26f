import Crypto
import Foundation
import Glibc
import SlipwayRecipe
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// What `slipway build` was asked for besides the recipe.
public struct BuildOptions: Sendable {
    public var version: String?
    /// The release store (default: $SLIPWAY_STORE, else ./store).
    public var storeRoot: String?
    public var signingKeyPath: String?
    public var refreshBase: Bool
    /// Base cache and work directories (default: `defaultCacheDirectory()`).
    public var cacheDirectory: String?
    /// Bootstrap programs tried in order for a debian base.
    public var bootstrapTools: [String]
    /// Overrides the recipe's `[release] compression`.
    public var compression: ArchiveCompression?
    /// Make the work tree of a debian base as an overlay on the cached tree (falling back to
    /// a copy where overlays cannot be mounted); false: always copy it.
    public var overlayBase: Bool

    public init(version: String? = nil, storeRoot: String? = nil, signingKeyPath: String? = nil, refreshBase: Bool = false,
                cacheDirectory: String? = nil, bootstrapTools: [String] = ["mmdebstrap", "debootstrap"],
                compression: ArchiveCompression? = nil, overlayBase: Bool = true) {
        self.compression = compression
        self.overlayBase = overlayBase
        self.version = version
        self.storeRoot = storeRoot
        self.signingKeyPath = signingKeyPath
        self.refreshBase = refreshBase
        self.cacheDirectory = cacheDirectory
        self.bootstrapTools = bootstrapTools
    }

    /// `$SLIPWAY_CACHE_DIR`, else `$XDG_CACHE_HOME/slipway`, else `/var/cache/slipway`
    /// (the same place scripts/lib/common.sh uses).
    public static func defaultCacheDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let dir = environment["SLIPWAY_CACHE_DIR"], !dir.isEmpty { return dir }
        return (environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? "/var/cache") + "/slipway"
    }
}

/// One stage's name, duration and what it did.
public struct BuildStageReport: Codable, Sendable {
    public var name: String
    public var seconds: Double
    public var detail: String
}

/// What a build produced (the `--json` summary).
public struct BuildSummary: Codable, Sendable {
    public var name: String
    public var version: String
    public var store: String
    public var directory: String
    public var archive: String
    public var sha256: String
    public var size: UInt64
    public var outcome: ReleaseStore.AddOutcome
    public var signed: Bool
    public var keyID: String?
    public var sourceDateEpoch: Int64
    public var baseType: String
    public var baseKey: String?
    public var baseCacheHit: Bool
    public var stages: [BuildStageReport]
    public var totalSeconds: Double
}

/// Builds a recipe into a release: base → users → packages → files → app → venv → run →
/// cleanup → pack → sign, in a temporary work directory that is removed afterwards with
/// nothing left mounted, whatever happened.
public struct Builder: Sendable {
    public static let stageNames = ["base", "users", "packages", "files", "app", "venv", "run", "sbom", "cleanup", "pack", "sign"]

    public var recipe: Recipe
    public var options: BuildOptions
    public var output: Output
    public var runner: CommandRunner

    public init(recipe: Recipe, options: BuildOptions, output: Output = Output(), runner: CommandRunner = CommandRunner()) {
        self.recipe = recipe
        self.options = options
        self.output = output
        self.runner = runner
    }

    public func build() throws -> BuildSummary {
        guard geteuid() == 0 else { throw BuildError.notRoot }
        BuildCleanup.installExitHook()
        let run = try BuildRun(builder: self)
        return try run.execute()
    }
}

/// The state of one build.
private final class BuildRun {
    let recipe: Recipe
    let options: BuildOptions
    let output: Output
    let runner: CommandRunner
    let cacheDirectory: String
    let work: String
    let tree: String
    var version = ""
    var sourceDateEpoch: Int64 = 0
    var baseEpoch: Int64 = 0
    var baseKey: String?
    /// What the base key stands for (suite, mirrors, Release date; a tarball's digest), for
    /// the provenance.
    var baseDescription: String?
    /// The packages and Python distributions, read before the cleanup (docs/sbom.md).
    var contents = ReleaseContents()
    var baseCacheHit = false
    var stages: [BuildStageReport] = []
    var session: ChrootSession?
    var chrootPrepared = false
    var savedResolvConf: (kind: String, data: Data)? = nil
    /// Held (shared) while the work tree is laid on a cached base.
    var baseLock: BaseCache.Lock?
    var overlayMounted = false
    /// The store's hold on a default (timestamp) version while this build runs.
    var reservation: ReleaseStore.VersionReservation?

    init(builder: Builder) throws {
        recipe = builder.recipe
        options = builder.options
        output = builder.output
        runner = builder.runner
        let cache = options.cacheDirectory ?? BuildOptions.defaultCacheDirectory()
        try BuildFiles.makeDirectories(cache + "/work")
        // Canonical, as /proc/self/mountinfo and /proc/PID/root name it.
        guard let real = realpath(cache, nil) else { throw BuildError.system(operation: "resolve", path: cache, errno: errno) }
        cacheDirectory = String(cString: real)
        free(real)
        let workRoot = cacheDirectory + "/work"
        Self.removeStaleWorkDirectories(workRoot, output: output)
        work = workRoot + "/build-\(getpid())-" + String(format: "%08x", UInt32.random(in: .min ... .max))
        tree = work + "/tree"
    }

    /// Work directories of builds whose process is gone (a kill -9): unmount and remove.
    static func removeStaleWorkDirectories(_ root: String, output: Output) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] where name.hasPrefix("build-") {
            let parts = name.split(separator: "-")
            guard parts.count >= 3, let pid = Int32(parts[1]), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            let path = root + "/" + name
            BuildCleanup.killProcesses(inside: path)
            for point in Mounts.mountPoints(under: path) { Mounts.unmount(point) }
            do {
                try Mounts.removeTree(path)
                output.verbose("removed the work directory of an interrupted build: \(path)")
            } catch {
                output.log("warning: could not remove \(path): \(Output.message(for: error))")
            }
        }
    }

    func execute() throws -> BuildSummary {
        let started = ContinuousClock.now
        let store = ReleaseStore(root: options.storeRoot)
        version = try resolveVersion(store: store)
        defer { reservation?.release() }
        // A bad key must fail before a long build, not after it.
        let signingKey = try options.signingKeyPath.map { try ReleaseSigning.loadSigningKey(path: $0) }
        guard mkdir(work, 0o700) == 0 else { throw BuildError.system(operation: "create the work directory", path: work, errno: errno) }
        BuildCleanup.registerWorkDirectory(work)
        defer { tearDown() }
        output.log("building \(recipe.release.name)@\(version) from \(recipe.file) (work directory \(work))")

        try stage("base", runBase)
        sourceDateEpoch = recipe.release.sourceDateEpoch
            ?? ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"].flatMap { Int64($0) } ?? baseEpoch
        try stage("users", runUsers)
        try stage("packages", runPackages)
        try stage("files", runFiles)
        try stage("app", runApp)
        try stage("venv", runVenv)
        try stage("run", runSteps)
        try stage("sbom", readContents)
        try stage("cleanup", runCleanup)

        var added: ReleaseStore.AddResult?
        try stage("pack") {
            let progress = output.progress()
            let configuration = ArchiveWriterConfiguration(compression: options.compression ?? recipe.release.compression, sourceDateEpoch: sourceDateEpoch, progress: progress)
            do {
                let result = try store.add(tree: tree, name: recipe.release.name, version: version, created: sourceDateEpoch,
                                           configuration: configuration, signingKey: signingKey, service: recipe.service,
                                           attachments: { try self.attachments(packed: $0, compression: configuration.compression, signingKey: signingKey) })
                added = result
                let manifest = result.release.manifest
                let what = result.outcome == .added ? "stored" : "already in the store with the same archive"
                return "\(what): \(ByteCount.format(manifest.archive.size)), sha256 \(manifest.archive.sha256.prefix(16))…"
            } catch {
                progress.closeLine()
                throw error
            }
        }
        guard let result = added else { throw BuildError.stageFailed(stage: "pack", detail: "no release was stored", hint: "") }
        try stage("sign") {
            // The store writes manifest.sig in the same atomic step as the archive.
            signingKey.map { "manifest signed with key \($0.keyID)" } ?? "skipped: no --sign-key"
        }
        let manifest = result.release.manifest
        let baseType: String
        switch recipe.base {
        case .debian: baseType = "debian"
        case .tarball: baseType = "tarball"
        case .scratch: baseType = "scratch"
        }
        return BuildSummary(
            name: recipe.release.name, version: version, store: store.root, directory: result.release.directory,
            archive: result.release.archivePath, sha256: manifest.archive.sha256, size: manifest.archive.size,
            outcome: result.outcome, signed: result.signed, keyID: signingKey?.keyID, sourceDateEpoch: sourceDateEpoch,
            baseType: baseType, baseKey: baseKey, baseCacheHit: baseCacheHit, stages: stages,
            totalSeconds: Self.seconds(since: started))
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    static let hints: [String: String] = [
        "base": "check the [base] section and that this host reaches its apt mirror (--verbose shows the bootstrap's output; --refresh-base rebuilds the cached base)",
        "packages": "check the names in packages (apt-cache policy NAME) and that the mirror is reachable; --verbose shows apt's output",
        "venv": "check [venv] requirements, packages and pip_options (and network access to the package index); --verbose shows pip's output",
        "run": "fix the command in the recipe; --verbose shows its output",
        "pack": "check free space in the store",
    ]

    /// Runs one stage, prints its name and duration, and names it in any error.
    func stage(_ name: String, _ body: () throws -> String) throws {
        output.log("==> \(name)")
        let start = ContinuousClock.now
        let detail: String
        do {
            detail = try body()
        } catch let error as BuildError {
            if case .stageFailed = error { throw error }
            if case .notRoot = error { throw error }
            // Not the stage's usual hint ("fix the command"): the error says what to change.
            if case .notARealDirectory = error { throw BuildError.stageFailed(stage: name, detail: error.description, hint: "") }
            throw BuildError.stageFailed(stage: name, detail: Output.message(for: error), hint: Self.hints[name] ?? "")
        } catch {
            throw BuildError.stageFailed(stage: name, detail: Output.message(for: error), hint: Self.hints[name] ?? "")
        }
        let seconds = Self.seconds(since: start)
        stages.append(BuildStageReport(name: name, seconds: seconds, detail: detail))
        output.log("    \(name) done in \(String(format: "%.2f", seconds)) s" + (detail.isEmpty ? "" : ": \(detail)"))
    }

    /// Always: nothing running in the tree, nothing mounted, work directory gone.
    func tearDown() {
        // Interrupted: the exit hook is doing all of this; doing it beside it would race.
        if BuildCleanup.isExiting { return }
        for process in BuildCleanup.killProcesses(inside: work) {
            output.log("warning: \(process) was still running in the build tree; killed")
        }
        if var session {
            do { try session.unmountAll() } catch { output.error(Output.message(for: error)) }
            self.session = nil
        }
        for point in Mounts.mountPoints(under: work) { Mounts.unmount(point) }
        if overlayMounted {
            BuildCleanup.unregisterMount(tree)
            overlayMounted = false
        }
        baseLock?.release()
        baseLock = nil
        do {
            try Mounts.removeTree(work)
            BuildCleanup.unregisterWorkDirectory(work)
        } catch {
            output.error("the work directory \(work) was left behind: \(Output.message(for: error))")
        }
    }

    // MARK: Version

    /// --version, else the recipe's, else `git describe` of the recipe's directory, else the
    /// UTC start time (20250101T120000Z). A start time is reserved in the store for the
    /// build: a second build of the app in the same second gets 20250101T120000Z.2 (then .3,
    /// …) instead of colliding with the first.
    func resolveVersion(store: ReleaseStore) throws -> String {
        var candidate = options.version ?? recipe.release.version
        if candidate == nil, CommandRunner.isInstalled("git"),
           let result = try? runner.run(Command(["git", "-C", recipe.directory, "describe", "--tags", "--always", "--dirty"], timeout: .seconds(30))) {
            let text = result.outputText.trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty { candidate = text }
        }
        if let candidate {
            try ReleaseStore.validate(version: candidate)
            return candidate
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let held = try store.reserveVersion(name: recipe.release.name, base: formatter.string(from: Date()))
        reservation = held
        return held.version
    }

    // MARK: base

    func runBase() throws -> String {
        switch recipe.base {
        case .scratch:
            try BuildFiles.makeDirectories(tree)
            for (path, mode) in [("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("tmp", 0o1777), ("etc", 0o755), ("root", 0o700), ("run", 0o755)] {
                let full = tree + "/" + path
                guard mkdir(full, 0o700) == 0, chmod(full, mode_t(mode)) == 0 else {
                    throw BuildError.system(operation: "create", path: full, errno: errno)
                }
            }
            var info = stat()
            baseEpoch = stat(recipe.file, &info) == 0 ? Int64(info.st_mtim.tv_sec) : 0
            return "empty tree with /dev, /proc, /sys, /tmp, /etc, /root, /run"
        case let .tarball(path):
            let hash = try FileHasher.sha256(path: path)
            baseKey = hash.hex
            baseDescription = "tarball \((path as NSString).lastPathComponent) sha256=\(hash.hex)"
            _ = try ArchiveExtractor.extract(archive: path, into: tree, options: ExtractOptions(restoreOwners: true))
            var info = stat()
            baseEpoch = stat(path, &info) == 0 ? Int64(info.st_mtim.tv_sec) : 0
            return "unpacked \(path) (sha256 \(hash.hex.prefix(16))…)"
        case let .debian(base):
            return try debianBase(base)
        }
    }

    func debianBase(_ base: DebianBase) throws -> String {
        guard let tool = options.bootstrapTools.first(where: { CommandRunner.isInstalled($0) }) else {
            throw BuildError.bootstrapToolMissing(tried: options.bootstrapTools)
        }
        var mirrors = base.mirror
        if mirrors.isEmpty {
            mirrors = HostAptSources.files(for: base.suite)
            if mirrors.isEmpty {
                output.log("warning: no apt source on this host names '\(base.suite)'; \(tool) will use its built-in default mirror (set mirror in [base])")
            } else {
                output.verbose("apt sources for the base (from this host): \(mirrors.joined(separator: " "))")
            }
        }
        let entries = HostAptSources.entries(mirrorArguments: mirrors, suite: base.suite)
        let date = BaseCache.releaseDate(entries: entries, suite: base.suite)
        if date == nil { output.log("warning: could not read the date of \(base.suite)'s Release file from the mirror; the base cache is keyed without it") }
        let keyText = BaseCache.keyText(base, tool: tool, mirrors: mirrors, releaseDate: date?.text)
        let key = BaseCache.key(keyText)
        baseKey = key
        baseDescription = keyText.split(separator: "\n").dropFirst().joined(separator: " ")
        let cache = BaseCache(cacheDirectory: cacheDirectory)
        let label = "\(base.suite) \(base.variant)" + (base.include.isEmpty ? "" : " + \(base.include.joined(separator: ", "))")
        // Shared while this build uses the cached tree (until the teardown), exclusive while
        // bootstrapping it: a --refresh-base never replaces a tree another build lays on.
        let lock = try cache.lock(key)
        baseLock = lock
        try lock.acquire(exclusive: false) { output.log("    waiting for a build that is bootstrapping base \(key.prefix(12))") }
        var bootstrapped = false
        var metadata: BaseCache.Metadata
        switch options.refreshBase ? .missing : cache.lookup(key) {
        case let .valid(found):
            metadata = found
        case .missing, .invalid:
            try lock.acquire(exclusive: true) { output.log("    waiting for other builds using base \(key.prefix(12)) to finish") }
            // Another build may have bootstrapped it while this one waited.
            let second = options.refreshBase ? .missing : cache.lookup(key)
            if case let .valid(found) = second {
                metadata = found
            } else {
                if case let .invalid(reason) = second {
                    output.log("warning: the cached base \(key.prefix(12)) is not used: \(reason); bootstrapping it again")
                }
                try cache.remove(key)
                output.log("    bootstrapping \(label) with \(tool) (cached afterwards as \(key.prefix(12)))")
                let partial = cache.partialPath(key)
                BuildCleanup.registerWorkDirectory(partial)
                defer { BuildCleanup.unregisterWorkDirectory(partial) }
                do {
                    try bootstrap(base, into: partial, tool: tool, mirrors: mirrors, entries: entries)
                    let now = Int64(Date().timeIntervalSince1970)
                    metadata = BaseCache.Metadata(key: key, description: label, tool: tool, created: now,
                                                  sourceDateEpoch: date?.epoch ?? now, entries: 0, fingerprint: "")
                    try cache.commit(partial: partial, metadata: metadata)
                } catch {
                    // Interrupted: the exit hook removes it; doing it beside it would race.
                    if !BuildCleanup.isExiting {
                        BuildCleanup.killProcesses(inside: partial)
                        for point in Mounts.mountPoints(under: partial) { Mounts.unmount(point) }
                        try? Mounts.removeTree(partial)
                    }
                    throw error
                }
                bootstrapped = true
            }
            try lock.acquire(exclusive: false) {}
            guard case let .valid(stored) = cache.lookup(key) else {
                throw BuildError.stageFailed(stage: "base", detail: "the cached base \(key.prefix(12)) changed while this build stored it",
                                             hint: "run the build again")
            }
            metadata = stored
        }
        baseCacheHit = !bootstrapped
        baseEpoch = metadata.sourceDateEpoch
        let how = try makeTree(from: cache.treePath(key))
        return (bootstrapped ? "bootstrapped \(label) with \(tool); cached as \(key.prefix(12))" : "cached base \(key.prefix(12)) (\(label))")
            + "; work tree \(how)"
    }

    /// Makes the work tree from a cached base tree, which must stay untouched: an overlay
    /// mount on it (nothing is copied; what the build changes lands in the work directory),
    /// else — the kernel or the file system refuses overlays, or `overlayBase` is off — a
    /// `cp -a --reflink=auto` copy (instant on btrfs/XFS, a full copy elsewhere).
    func makeTree(from base: String) throws -> String {
        if options.overlayBase {
            do {
                try mountOverlay(lower: base)
                return "an overlay on the cached tree"
            } catch {
                output.verbose("no overlay on the cached base (\(Output.message(for: error))); copying it instead")
            }
        }
        try runner.run(Command(["cp", "-a", "--reflink=auto", "--", base, tree], timeout: .seconds(1800)))
        return "copied from the cached tree"
    }

    func mountOverlay(lower: String) throws {
        let upper = work + "/upper", scratch = work + "/overlay-work"
        // The option string separates with ',' and ':'; such paths are copied instead.
        for path in [lower, upper, scratch] where path.contains(where: { ",:\\".contains($0) }) {
            throw BuildError.system(operation: "overlay-mount", path: path, errno: EINVAL)
        }
        do {
            for path in [tree, upper, scratch] where mkdir(path, 0o755) != 0 {
                throw BuildError.system(operation: "create", path: path, errno: errno)
            }
            try BuildCleanup.registerMount(tree)
            do {
                try runner.run(Command(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=\(lower),upperdir=\(upper),workdir=\(scratch)", tree],
                                       timeout: .seconds(60)))
            } catch {
                BuildCleanup.unregisterMount(tree)
                throw error
            }
        } catch {
            // The copy that replaces the overlay needs the tree absent.
            for path in [tree, upper, scratch] { try? Mounts.removeTree(path) }
            throw error
        }
        overlayMounted = true
    }

    func bootstrap(_ base: DebianBase, into target: String, tool: String, mirrors: [String], entries: [HostAptSources.Entry]) throws {
        let verbose = output.verbosity >= .verbose
        var arguments: [String]
        if tool == "debootstrap" || tool.hasSuffix("/debootstrap") {
            arguments = [tool, "--variant=\(base.variant)"]
            if !base.include.isEmpty { arguments.append("--include=" + base.include.joined(separator: ",")) }
            if !base.exclude.isEmpty { arguments.append("--exclude=" + base.exclude.joined(separator: ",")) }
            if !base.components.isEmpty { arguments.append("--components=" + base.components.joined(separator: ",")) }
            if let architecture = base.architecture { arguments.append("--arch=\(architecture)") }
            arguments += [base.suite, target]
            // debootstrap takes one URL, not source files.
            if let uri = entries.first(where: { $0.suites.contains(base.suite) })?.uri { arguments.append(uri) }
        } else {
            // dpkg fsyncs every file it unpacks; a cached base needs none of that (an
            // interrupted bootstrap is discarded, and files a crash left short change the sizes
            // the fingerprint records), and skipping it saves a fifth of the bootstrap. Not
            // --dpkgopt: that would stay in the image's dpkg configuration for good.
            let unsafeIO = "\"$1/etc/dpkg/dpkg.cfg.d/99slipway-unsafe-io\""
            arguments = [tool, "--variant=\(base.variant)",
                         "--setup-hook=mkdir -p \"$1/etc/dpkg/dpkg.cfg.d\" && echo force-unsafe-io > \(unsafeIO)"]
            if !base.include.isEmpty { arguments.append("--include=" + base.include.joined(separator: ",")) }
            if !base.components.isEmpty { arguments.append("--components=" + base.components.joined(separator: ",")) }
            if let architecture = base.architecture { arguments.append("--architectures=\(architecture)") }
            if !base.exclude.isEmpty {
                // mmdebstrap has no --exclude: purge them once the tree is complete.
                arguments.append("--customize-hook=chroot \"$1\" apt-get purge -y --allow-remove-essential " + base.exclude.joined(separator: " "))
            }
            arguments.append("--customize-hook=rm \(unsafeIO)")
            arguments += [base.suite, target] + mirrors
        }
        // mmdebstrap hands apt a pipe as `cat >&N`, which dash rejects for N > 9; descriptors
        // this process leaks to children would push N up, so the child closes them first.
        let closeInherited = "for fd in $(ls /proc/$$/fd); do [ \"$fd\" -gt 2 ] && eval \"exec $fd>&-\"; done; exec \"$@\""
        try runner.run(Command(["bash", "-c", closeInherited, "bash"] + arguments,
                               output: verbose ? .file("/dev/stderr") : .discard, echoStandardError: verbose, timeout: .seconds(3600)))
    }

    // MARK: chroot

    /// Before the first command in the tree: a policy-rc.d that denies service starts and
    /// the host's resolv.conf (both undone in the cleanup stage), /proc /sys /dev mounted.
    func chroot() throws -> ChrootSession {
        if !chrootPrepared {
            chrootPrepared = true
            let policy = try BuildFiles.prepareParent(of: "/usr/sbin/policy-rc.d", in: tree)
            try BuildFiles.writeFile(policy, Data("#!/bin/sh\n# written by slipway build: no daemon starts while building\nexit 101\n".utf8),
                                     mode: 0o755, uid: 0, gid: 0, mtime: nil)
            let resolv = try BuildFiles.prepareParent(of: "/etc/resolv.conf", in: tree)
            var info = stat()
            if lstat(resolv, &info) == 0 {
                if (info.st_mode & S_IFMT) == S_IFLNK {
                    savedResolvConf = ("link", Data(((try? FileManager.default.destinationOfSymbolicLink(atPath: resolv)) ?? "").utf8))
                } else {
                    savedResolvConf = ("file", try BuildFiles.readFile(resolv))
                }
            } else {
                savedResolvConf = ("none", Data())
            }
            if let host = FileManager.default.contents(atPath: "/etc/resolv.conf") {
                try BuildFiles.writeFile(resolv, host, mode: 0o644, uid: 0, gid: 0, mtime: nil)
            }
        }
        if session == nil { session = ChrootSession(tree: tree, runner: runner, output: output, sourceDateEpoch: sourceDateEpoch) }
        guard var current = session else { throw BuildError.stageFailed(stage: "chroot", detail: "no session", hint: "") }
        try current.mountSystem()
        session = current
        return current
    }

    func unmountSession() throws {
        guard var current = session else { return }
        session = nil
        try current.unmountAll()
    }

    func undoChrootPreparation() throws {
        guard chrootPrepared else { return }
        try BuildFiles.removeItem(try BuildFiles.resolve("/usr/sbin/policy-rc.d", in: tree))
        let resolv = try BuildFiles.resolve("/etc/resolv.conf", in: tree)
        switch savedResolvConf {
        case let .some(("link", target)):
            try BuildFiles.removeItem(resolv)
            _ = symlink(String(decoding: target, as: UTF8.self), resolv)
        case let .some(("file", data)):
            try BuildFiles.writeFile(resolv, data, mode: 0o644, uid: 0, gid: 0, mtime: nil)
        default:
            try BuildFiles.removeItem(resolv)
        }
    }

    func requireInTree(_ path: String, stage: String, hint: String) throws {
        let resolved = try BuildFiles.resolve(path, in: tree, followLast: true)
        guard access(resolved, X_OK) == 0 else { throw BuildError.treeLacks(program: path, stage: stage, hint: hint) }
    }

    // MARK: users

    func runUsers() throws -> String {
        guard !recipe.users.isEmpty || !recipe.groups.isEmpty else { return "nothing to do" }
        var accounts = try TreeAccounts(tree: tree)
        for group in recipe.groups { try accounts.addGroup(group) }
        var homes: [(String, UInt32, UInt32)] = []
        for user in recipe.users {
            let ids = try accounts.addUser(user)
            if user.createHome { homes.append((user.home, ids.uid, ids.gid)) }
        }
        try accounts.write(mtime: sourceDateEpoch)
        for (home, uid, gid) in homes {
            let path = try BuildFiles.resolve(home, in: tree)
            try BuildFiles.makeDirectories(path)
            guard chown(path, uid, gid) == 0 else { throw BuildError.system(operation: "change the owner of", path: path, errno: errno) }
        }
        return (recipe.groups.map { "group \($0.name)" } + recipe.users.map { "user \($0.name)" }).joined(separator: ", ")
    }

    // MARK: packages

    func runPackages() throws -> String {
        guard !recipe.packages.isEmpty else { return "nothing to do" }
        if case .scratch = recipe.base { return try unpackPackages() }
        try requireInTree("/usr/bin/apt-get", stage: "packages", hint: "use a debian base, or a tarball of a Debian tree")
        let session = try chroot()
        try session.run(["apt-get", "update"], timeout: .seconds(1800))
        // No fsync per unpacked file: the tree is packed afterwards, never booted from here.
        try session.run(["apt-get", "install", "-y", "--no-install-recommends", "-o", "Dpkg::Options::=--force-unsafe-io"] + recipe.packages,
                        timeout: .seconds(3600))
        try session.run(["apt-get", "clean"], timeout: .seconds(600))
        return "installed \(recipe.packages.joined(separator: ", "))"
    }

    /// Scratch trees have no apt: the packages are downloaded with the host's apt and their
    /// files unpacked (no maintainer scripts, no dependencies).
    func unpackPackages() throws -> String {
        let downloads = work + "/debs"
        try BuildFiles.makeDirectories(downloads)
        do {
            try runner.run(Command(["apt-get", "download"] + recipe.packages, workingDirectory: downloads, timeout: .seconds(1800)))
        } catch {
            throw BuildError.stageFailed(stage: "packages", detail: Output.message(for: error),
                                         hint: "a scratch base downloads packages with the host's apt: check the names, and run apt-get update on this host")
        }
        let debs = ((try? FileManager.default.contentsOfDirectory(atPath: downloads)) ?? []).filter { $0.hasSuffix(".deb") }.sorted()
        for deb in debs {
            try runner.run(Command(["dpkg-deb", "-x", downloads + "/" + deb, tree], timeout: .seconds(600)))
        }
        return "unpacked \(debs.joined(separator: ", ")) (scratch base: files only)"
    }

    // MARK: files and app

    var templateVariables: [String: String] {
        recipe.vars.merging(["name": recipe.release.name, "version": version]) { $1 }
    }

    func copyIntoTree(source: String, dest: String, mode: UInt32?, owner: String?, template: Bool, line: Int?) throws {
        let accounts = try TreeAccounts(tree: tree)
        var ids: (uid: UInt32, gid: UInt32) = (0, 0)
        if let owner {
            do {
                ids = try accounts.owner(owner) ?? (0, 0)
            } catch let error as TreeAccounts.OwnerError {
                throw BuildError.unknownOwner(file: recipe.file, line: line, owner: owner, detail: error.detail)
            }
        }
        let variables = templateVariables
        let file = recipe.file
        let transform: ((String, Data) throws -> Data)? = template ? { path, data in
            let text = String(decoding: data, as: UTF8.self)
            return Data(try RecipeTemplate.expand(text, variables: variables) { name in
                throw BuildError.templateVariable(file: file, line: line, source: path, name: name, known: Array(variables.keys))
            }.utf8)
        } : nil
        let target = try BuildFiles.prepareParent(of: dest, in: tree)
        try BuildFiles.copy(source, to: target, options: .init(fileMode: mode, uid: ids.uid, gid: ids.gid, mtime: sourceDateEpoch, transform: transform))
    }

    func runFiles() throws -> String {
        guard !recipe.files.isEmpty else { return "nothing to do" }
        for file in recipe.files {
            try copyIntoTree(source: file.source, dest: file.dest, mode: file.mode, owner: file.owner, template: file.template, line: file.line)
        }
        return "\(recipe.files.count) item(s): " + recipe.files.map(\.dest).joined(separator: ", ")
    }

    func runApp() throws -> String {
        guard let app = recipe.app else { return "nothing to do" }
        try copyIntoTree(source: app.source, dest: app.dest, mode: app.mode, owner: app.owner, template: false, line: app.line)
        return "\(app.source) → \(app.dest)"
    }

    // MARK: venv

    func runVenv() throws -> String {
        guard let venv = recipe.venv else { return "nothing to do" }
        try requireInTree(venv.python, stage: "venv", hint: "install python3 and python3-venv (base include or packages)")
        var session = try chroot()
        var create = [venv.python, "-m", "venv"]
        if venv.systemSitePackages { create.append("--system-site-packages") }
        try session.run(create + [venv.path], timeout: .seconds(600))
        var install = [venv.path + "/bin/pip", "install", "--no-compile", "--no-cache-dir", "--disable-pip-version-check"] + venv.pipOptions
        let scratch = "/tmp/slipway-venv"
        // Real directories only: through a symlinked /tmp the files below would land on the host.
        let scratchOnHost = try BuildFiles.makeDirectoriesBeneath(scratch, in: tree)
        if let requirements = venv.requirements {
            try BuildFiles.writeFile(scratchOnHost + "/requirements.txt", try BuildFiles.readFile(requirements), mode: 0o644, uid: 0, gid: 0, mtime: nil)
            install += ["-r", scratch + "/requirements.txt"]
        }
        if let wheels = venv.wheelDir {
            try session.bindReadOnly(wheels, at: scratch + "/wheels")
            self.session = session
            install += ["--find-links", scratch + "/wheels"]
        }
        install += venv.packages
        // A host that reaches the index through a TLS-inspecting proxy names its CA bundle in
        // PIP_CERT (or REQUESTS_CA_BUNDLE / SSL_CERT_FILE); pip in the tree gets a copy.
        var pipEnvironment: [String: String] = [:]
        let host = ProcessInfo.processInfo.environment
        if let bundle = ["PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"].lazy.compactMap({ host[$0] }).first,
           let data = FileManager.default.contents(atPath: bundle) {
            try BuildFiles.writeFile(scratchOnHost + "/ca.pem", data, mode: 0o644, uid: 0, gid: 0, mtime: nil)
            pipEnvironment["PIP_CERT"] = scratch + "/ca.pem"
        }
        if venv.requirements != nil || !venv.packages.isEmpty {
            try session.run(install, extraEnvironment: pipEnvironment, timeout: .seconds(3600))
        }
        // Mount the wheels off again; the cleanup stage removes /tmp.
        try unmountSession()
        // ensurepip compiled pip's modules with build-time stamps; the image ships none.
        let removed = try removePycache(under: try BuildFiles.resolve(venv.path, in: tree))
        return "\(venv.path) with " + (venv.packages + (venv.requirements.map { [($0 as NSString).lastPathComponent] } ?? [])).joined(separator: ", ")
            + " (\(removed) __pycache__ removed)"
    }

    func removePycache(under root: String) throws -> Int {
        var found: [String] = []
        func walk(_ directory: String) {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
            for name in names {
                let path = directory + "/" + name
                var info = stat()
                guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { continue }
                if name == "__pycache__" { found.append(path) } else { walk(path) }
            }
        }
        walk(root)
        for path in found { try BuildFiles.removeItem(path) }
        return found.count
    }

    // MARK: run

    func runSteps() throws -> String {
        guard !recipe.run.isEmpty else { return "nothing to do" }
        for step in recipe.run {
            try requireInTree(step.shell[0], stage: "run", hint: "give the step a shell that exists in the tree (shell = [\"/bin/busybox\", \"sh\"])")
            let session = try chroot()
            output.log("    step \(step.name)")
            do {
                // stdout joins stderr so that the tail in an error shows all of the output.
                try session.run(step.shell + ["-c", "exec 1>&2\n" + step.command], extraEnvironment: step.environment, timeout: .seconds(3600))
            } catch {
                throw BuildError.stageFailed(
                    stage: "run", detail: "step '\(step.name)' (\(RecipeError.location(recipe.file, step.line))): \(Output.message(for: error))",
                    hint: "fix the command in the recipe; --verbose shows its output")
            }
        }
        return recipe.run.map(\.name).joined(separator: ", ")
    }

    // MARK: sbom

    func readContents() throws -> String {
        contents = try ReleaseContents.read(tree: tree)
        return "\(contents.debian.count) Debian package(s), \(contents.python.count) Python distribution(s)"
    }

    /// The SBOM in both formats and, when the release is signed, the provenance.
    func attachments(packed: PackResult, compression: ArchiveCompression, signingKey: ReleaseSigningKey?) throws -> [ReleaseStore.AttachmentContent] {
        let destinations = recipe.files.map(\.dest) + (recipe.app.map { [$0.dest] } ?? [])
        let full = ReleaseContents(debian: contents.debian, python: contents.python,
                                   files: try ReleaseContents.addedFiles(destinations: destinations, entries: packed.entries, tree: tree),
                                   distribution: contents.distribution)
        let subject = SBOM.Subject(name: recipe.release.name, version: version, created: sourceDateEpoch, archiveSHA256: packed.archiveSHA256)
        var result = try SBOM.attachments(full, subject: subject)
        guard let signingKey else { return result }
        var subjects = [Provenance.Resource(name: ReleaseStore.archiveFileName(compression), digest: .init(sha256: packed.archiveSHA256))]
        subjects += result.map { Provenance.Resource(name: $0.file, digest: .init(sha256: FileHasher.hex(SHA256.hash(data: $0.data)))) }
        let recipeHash = try FileHasher.sha256(path: recipe.file)
        var resolved: [Provenance.Resource] = []
        for file in recipe.files { resolved += try Provenance.resources(path: file.source, name: "files:" + file.dest) }
        if let app = recipe.app { resolved += try Provenance.resources(path: app.source, name: "app:" + app.dest) }
        if let requirements = recipe.venv?.requirements { resolved += try Provenance.resources(path: requirements, name: "venv:requirements") }
        if let wheels = recipe.venv?.wheelDir { resolved += try Provenance.resources(path: wheels, name: "venv:wheels") }
        resolved += full.python.map { Provenance.Resource(name: "venv:" + $0.location, uri: SBOM.purl($0)) }
        var machine = utsname()
        uname(&machine)
        let architecture = withUnsafeBytes(of: &machine.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let statement = try Provenance.statement(
            subjects: subjects,
            inputs: .init(recipe: .init(name: (recipe.file as NSString).lastPathComponent, digest: .init(sha256: recipeHash.hex)),
                          baseKey: baseKey, baseDescription: baseDescription, sourceDateEpoch: sourceDateEpoch,
                          resolved: resolved, architecture: architecture))
        result.append(.init(file: Provenance.fileName, mediaType: Provenance.mediaType, data: try Provenance.envelope(statement, key: signingKey)))
        return result
    }

    // MARK: cleanup

    func runCleanup() throws -> String {
        // A daemon a run step started would keep writing while the tree is packed.
        for process in BuildCleanup.killProcesses(inside: tree) {
            output.log("warning: \(process) was still running in the tree after the run steps; killed")
        }
        try unmountSession()
        let left = Mounts.mountPoints(below: tree)
        guard left.isEmpty else { throw BuildError.mountsLeft(paths: left) }
        try undoChrootPreparation()
        try removeGlob("/tmp/slipway-*")
        let spec = recipe.cleanup
        var done: [String] = []
        func item(_ name: String, _ body: () throws -> Void) throws {
            guard spec.cleans(name) else { return }
            try body()
            done.append(name)
        }
        try item("ssh-host-keys") { try removeGlob("/etc/ssh/ssh_host_*") }
        try item("tmp") { for glob in ["/tmp/*", "/tmp/.*", "/var/tmp/*", "/var/tmp/.*"] { try removeGlob(glob) } }
        try item("login-records") {
            for path in ["/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog"] { try truncateInTree(path) }
        }
        try item("apt-lists") {
            for glob in ["/var/lib/apt/lists/*_*", "/var/lib/apt/lists/partial/*", "/var/lib/apt/lists/auxfiles/*"] { try removeGlob(glob) }
        }
        try item("apt-cache") {
            for glob in ["/var/cache/apt/*.bin", "/var/cache/apt/archives/*.deb", "/var/cache/apt/archives/partial/*",
                         "/var/cache/debconf/*-old", "/var/lib/dpkg/*-old"] { try removeGlob(glob) }
        }
        try item("logs") {
            for glob in ["/var/log/dpkg.log", "/var/log/alternatives.log", "/var/log/bootstrap.log", "/var/log/apt/*", "/root/.bash_history", "/root/.python_history"] {
                try removeGlob(glob)
            }
        }
        try item("machine-id") {
            try truncateInTree("/etc/machine-id")
            try removeGlob("/var/lib/dbus/machine-id")
        }
        try item("ldconfig-cache") { try removeGlob("/var/cache/ldconfig/aux-cache") }
        try item("pycache") { _ = try removePycache(under: tree) }
        for glob in spec.remove { try removeGlob(glob) }
        if !spec.remove.isEmpty { done.append("\(spec.remove.count) extra glob(s)") }
        return spec.enabled ? done.joined(separator: ", ") : "disabled in the recipe"
    }

    /// Removes what a tree glob matches, never following a symlink out of the tree.
    func removeGlob(_ pattern: String) throws {
        let treeReal = URL(fileURLWithPath: tree).resolvingSymlinksInPath().path
        var matches = glob_t()
        defer { globfree(&matches) }
        guard Glibc.glob(tree + pattern, 0, nil, &matches) == 0 else { return }
        for index in 0..<Int(matches.gl_pathc) {
            guard let pointer = matches.gl_pathv[index] else { continue }
            let path = String(cString: pointer)
            let name = (path as NSString).lastPathComponent
            if name == "." || name == ".." { continue }
            let parent = URL(fileURLWithPath: (path as NSString).deletingLastPathComponent).resolvingSymlinksInPath().path
            guard parent == treeReal || parent.hasPrefix(treeReal + "/") else { continue }
            try BuildFiles.removeItem(path)
        }
    }

    func truncateInTree(_ treePath: String) throws {
        let path = try BuildFiles.resolve(treePath, in: tree)
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return }
        guard truncate(path, 0) == 0 else { throw BuildError.system(operation: "empty", path: path, errno: errno) }
    }
}
