import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// A version's service (docs/service.md): the release's `[service] command`, started by the
/// node in a mount namespace of its own (the shared directories bound over the release's
/// directories of the same paths), chrooted into the release, as the release's `user`, with
/// `$PORT` set; detached, its output appended to `run/<version>.log`. Its processes are found
/// by their root (`/proc/PID/root` is the release), so whatever it forked is found too, and
/// nothing of a stopped version is left running.
enum NodeService {
    /// A started service, recorded in `run/<version>.json`.
    struct Instance: Codable, Sendable, Equatable {
        var version: String
        var pid: Int32
        var port: Int
        var startedAt: Double
        /// The schroot session it runs in (`[schroot] enabled`), nil in a plain namespace.
        var session: String?
    }

    static func runDirectory(_ layout: NodeLayout) -> String { layout.appDirectory + "/run" }
    static func instancePath(_ layout: NodeLayout, _ version: String) -> String { runDirectory(layout) + "/\(version).json" }
    static func logPath(_ layout: NodeLayout, _ version: String) -> String { runDirectory(layout) + "/\(version).log" }

    static func instance(_ layout: NodeLayout, _ version: String) -> Instance? {
        guard let data = FileManager.default.contents(atPath: instancePath(layout, version)) else { return nil }
        return try? JSONDecoder().decode(Instance.self, from: data)
    }

    /// Every process whose root directory is `version`'s release. A process's root is
    /// compared by identity (device and inode through `/proc/PID/root`), not by path: another
    /// node on the same machine (a test farm, containers) may have a release at the same path
    /// in its own mount namespace.
    static func processes(_ layout: NodeLayout, _ version: String) -> [pid_t] {
        processes(rootedAt: roots(layout, version, session: instance(layout, version)?.session))
    }

    /// The identities (device, inode) a process of `version` has as its root: the release,
    /// and a schroot session's own mount (an overlay, a snapshot).
    static func roots(_ layout: NodeLayout, _ version: String, session: String?) -> [(dev_t, ino_t)] {
        var roots: [(dev_t, ino_t)] = []
        var st = stat()
        if stat(layout.release(version), &st) == 0 { roots.append((st.st_dev, st.st_ino)) }
        if let session, stat(NodeSchroot.mountLocation(session), &st) == 0 { roots.append((st.st_dev, st.st_ino)) }
        return roots
    }

    /// The pids whose root directory is one of `roots`.
    static func processes(rootedAt roots: [(dev_t, ino_t)]) -> [pid_t] {
        guard !roots.isEmpty else { return [] }
        var found: [pid_t] = []
        for name in NodeFiles.names("/proc") {
            guard let pid = pid_t(name) else { continue }
            var st = stat()
            if stat("/proc/\(name)/root", &st) == 0, roots.contains(where: { $0.0 == st.st_dev && $0.1 == st.st_ino }) {
                found.append(pid)
            }
        }
        return found.sorted()
    }

    /// The uid and gid of `user` in the release's /etc/passwd.
    static func account(_ user: String?, release: String) throws -> (uid: UInt32, gid: UInt32) {
        guard let user, user != "root" else { return (0, 0) }
        if let uid = UInt32(user) { return (uid, uid) }
        guard let data = FileManager.default.contents(atPath: release + "/etc/passwd") else {
            throw NodeError.invalidArgument("[service] user \(user): the release has no /etc/passwd")
        }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count >= 4, fields[0] == user, let uid = UInt32(fields[2]), let gid = UInt32(fields[3]) { return (uid, gid) }
        }
        throw NodeError.invalidArgument("[service] user \(user) is not in the release's /etc/passwd")
    }

    /// The SOURCE DESTINATION pairs that bind `version`'s shared directories: each end
    /// checked beneath its root (no symlink may lead a bind elsewhere), `shared/<path>`
    /// created when missing.
    static func binds(_ spec: ServiceSpec?, version: String, layout: NodeLayout) throws -> [String] {
        let release = layout.release(version)
        var binds: [String] = []
        for path in spec?.sharedDirectories ?? [] {
            let relative = try NodeTreeCheck.validRelative(path).description
            let components = relative.split(separator: "/").map(String.init)
            // Both ends are checked beneath their roots: no symlink may lead a bind elsewhere.
            for (root, what) in [(layout.shared, "shared"), (release, "release")] {
                do {
                    try DirectoryBeneath.open(root: root, components: components, create: root == layout.shared).close()
                } catch {
                    throw NodeError.invalidArgument("shared directory \(relative) of \(layout.app)@\(version) (\(what)): \(error)")
                }
            }

            binds += [layout.shared + "/" + relative, release + "/" + relative]
        }
        return binds
    }

    /// A shell function, `slipway_detach_foreign_mounts REL`: lazily unmounts, in the calling
    /// mount namespace only, every mount it copied from the machine that the chrooted
    /// service cannot reach and the launcher does not need. A new mount namespace holds a copy
    /// of every mount there is, and with private propagation the machine's later unmounts do
    /// not reach it: a service started while another version's dataset or volume is mounted
    /// would keep that mount alive for its whole life, and zfs then refuses to mount it
    /// elsewhere ("dataset is busy"), lvremove refuses the volume. Kept: `/`, the release, the
    /// mounts above it and inside it, and the system's own trees (/proc, /sys, /dev, /run,
    /// /usr, /etc), which the host never takes away under a service. Read in one pass
    /// before any unmount (mountinfo changes under a reader), then one `umount -l` for all:
    /// a mount under one already detached went with it (its own unmount then fails), and
    /// failures are ignored, as this frees what it can and never stops the service
    /// (docs/service.md).
    static let detachForeignMounts = #"""
        slipway_detach_foreign_mounts() {
            _rel=$(cd -P -- "$1" && pwd -P) || _rel=$1
            set --
            while read -r _ _ _ _ _m _; do
                case $_m in *\\*) _m=$(printf '%b' "$(printf '%s' "$_m" | sed 's/\\\([0-7][0-7][0-7]\)/\\0\1/g')");; esac
                case $_m in /|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/run|/run/*|/usr|/usr/*|/etc|/etc/*) continue;; esac
                case $_rel/ in "$_m"/*) continue;; esac
                case $_m/ in "$_rel"/*) continue;; esac
                set -- "$@" "$_m"
            done </proc/self/mountinfo
            [ $# -eq 0 ] || umount -l -- "$@" 2>/dev/null || :
        }

        """#

    /// The shell that runs a hook with the binds (`unshare … sh -c HOOKLAUNCHER x HOOK SRC DST…`).
    static let hookLauncher = """
        cmd=$1; shift
        while [ $# -ge 2 ]; do mount --bind -- "$1" "$2" || exit 111; shift 2; done
        exec /bin/sh -c "$cmd"
        """

    /// The shell run by `unshare`, in the service's own mount namespace: /proc, a minimal
    /// /dev (null, zero, full, random, urandom, tty and a tmpfs shm) and a tmpfs /tmp in the
    /// release where it has those directories (a landed release may be read-only), then each
    /// shared SRC bound over its DST; then it detaches the mounts it copied and does not use
    /// (`detachForeignMounts`); then it chroots and runs the command (exec all the way, so the
    /// recorded pid is the app server's).
    static let launcher = detachForeignMounts + """
        rel=$1; ids=$2; cmd=$3; niceness=$4; shift 4
        fail() { echo "slipway: cannot prepare the service's root: $*" >&2; exit 111; }
        if [ -d "$rel/proc" ]; then mount -t proc -o nosuid,nodev,noexec proc "$rel/proc" || fail "mount /proc"; fi
        if [ -d "$rel/dev" ]; then
            mount -t tmpfs -o mode=0755,size=1m,nosuid,noexec slipway-dev "$rel/dev" || fail "mount /dev"
            for node in null zero full random urandom tty; do
                : >"$rel/dev/$node" && mount --bind "/dev/$node" "$rel/dev/$node" || fail "bind /dev/$node"
            done
            mkdir "$rel/dev/shm" && mount -t tmpfs -o mode=1777,nosuid,nodev slipway-shm "$rel/dev/shm" || fail "mount /dev/shm"
        fi
        if [ -d "$rel/tmp" ]; then mount -t tmpfs -o mode=1777,nosuid,nodev slipway-tmp "$rel/tmp" || fail "mount /tmp"; fi
        while [ $# -ge 2 ]; do mount --bind -- "$1" "$2" || fail "bind $1 over $2"; shift 2; done
        slipway_detach_foreign_mounts "$rel"
        exec nice -n "$niceness" chroot --userspec="$ids" -- "$rel" /bin/sh -c "$cmd"
        """

    /// A simple command is exec'd, so that the recorded pid is the server's and the stop
    /// signal reaches it; a compound one (`a; exec server`) is run as written and should end
    /// by exec'ing the server itself.
    static func shellCommand(_ command: String) -> String {
        let trimmed = command.trimmingCharacters(in: .whitespacesAndNewlines)
        let compound = [";", "&", "|", "\n", "(", "`", "$("].contains { trimmed.contains($0) }
        return compound || trimmed.hasPrefix("exec ") ? trimmed : "exec " + trimmed
    }

    /// Starts `version`'s service on `port`; returns once it is spawned (the health check
    /// tells whether it serves).
    /// `beside` (another version serves meanwhile): the new server starts at a lower CPU
    /// priority (nice 10), so that its boot does not slow the answers of the one serving;
    /// `promote` puts it back once it has passed its health check.
    static func start(_ version: String, spec: ServiceSpec, port: Int, beside: Bool = false, layout: NodeLayout,
                      context: NodeContext) throws -> Instance {
        guard let command = spec.command else { throw NodeError.invalidArgument("\(layout.app)@\(version) has no [service] command") }
        let release = layout.release(version)
        let ids = try account(spec.user, release: release)
        let binds = try binds(spec, version: version, layout: layout)
        try NodeFiles.makeDirectories(runDirectory(layout))
        if context.settings.schrootEnabled {
            return try NodeSchroot.start(version, spec: spec, command: shellCommand(command), ids: ids, binds: binds, port: port,
                                         niceness: beside ? 10 : 0, layout: layout, context: context)
        }
        let log = logPath(layout, version)
        let stamp = ISO8601DateFormatter().string(from: Date())
        _ = try? NodeFiles.appendLine(log, "--- \(stamp) slipway starts \(layout.app)@\(version) on port \(port): \(command)")
        let unshare: String
        do { unshare = try CommandRunner.resolve("unshare") } catch {
            throw NodeError.toolMissing(tool: "unshare", package: "util-linux", purpose: "running a service in its own mount namespace")
        }
        let environment = serviceEnvironment(layout: layout, version: version, port: port)
        let pid = try DetachedSpawn.spawn(
            program: unshare,
            arguments: [unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", launcher, "slipway-service",
                        release, "\(ids.uid):\(ids.gid)", shellCommand(command), beside ? "10" : "0"] + binds,
            environment: environment, log: log)
        let instance = Instance(version: version, pid: pid, port: port, startedAt: NodeFiles.now(), session: nil)
        try NodeFiles.writeAtomically(instancePath(layout, version), try JSONEncoder().encode(instance))
        context.log("started \(layout.app)@\(version) (pid \(pid), port \(port))")
        return instance
    }

    /// Every process of `version` back to the normal CPU priority (see `start`).
    static func promote(_ version: String, layout: NodeLayout) {
        for pid in processes(layout, version) { setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(pid), 0) }
    }

    /// The whole environment of a service.
    static func serviceEnvironment(layout: NodeLayout, version: String, port: Int) -> [String: String] {
        ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/",
         "PORT": String(port), "SLIPWAY_APP": layout.app, "SLIPWAY_VERSION": version]
    }

    /// Stops whatever of `version` runs: the stop signal to its recorded pid (or to every
    /// process of it when that is gone), `stopTimeout` seconds for all of them to exit, then
    /// SIGKILL for the rest. Returns the pids that were running.
    @discardableResult
    static func stop(_ version: String, spec: ServiceSpec?, layout: NodeLayout, context: NodeContext) -> [pid_t] {
        let recorded = instance(layout, version)
        defer {
            if let session = recorded?.session { NodeSchroot.end(session, context: context) }
            unlink(instancePath(layout, version))
        }
        func reap() { if let pid = recorded?.pid { _ = waitpid(pid, nil, WNOHANG) } }
        reap()
        // Looked up once: the poll below only scans /proc.
        let roots = roots(layout, version, session: recorded?.session)
        func processes() -> [pid_t] { NodeService.processes(rootedAt: roots) }
        let running = processes()
        guard !running.isEmpty else { return [] }
        let signal = spec?.stopSignalNumber ?? SIGTERM
        if let pid = recorded?.pid, running.contains(pid) {
            kill(pid, signal)
        } else {
            for pid in running { kill(pid, signal) }
        }
        let deadline = NodeFiles.now() + (spec?.stopTimeout ?? 30)
        while NodeFiles.now() < deadline {
            reap()
            if processes().isEmpty { break }
            usleep(20_000)
        }
        let left = processes()
        if !left.isEmpty {
            context.log("\(layout.app)@\(version): \(left.count) process\(left.count == 1 ? "" : "es") still running after \(NodeConfirm.seconds(spec?.stopTimeout ?? 30)) s; killing \(left.map(String.init).joined(separator: ", "))")
            let killDeadline = NodeFiles.now() + 5
            while NodeFiles.now() < killDeadline {
                let still = processes()
                if still.isEmpty { break }
                for pid in still { kill(pid, SIGKILL) }
                reap()
                usleep(20_000)
            }
        }
        context.log("stopped \(layout.app)@\(version) (pid\(running.count == 1 ? "" : "s") \(running.map(String.init).joined(separator: ", ")))")
        return running
    }

    /// A port of `range` nothing on 127.0.0.1 listens on and no recorded instance of this
    /// node's apps holds, tried from a random point of the range.
    static func freePort(_ range: ClosedRange<Int>, settings: NodeSettings) throws -> Int {
        var taken = Set<Int>()
        for app in NodeFiles.names(settings.root) {
            let run = settings.root + "/" + app + "/run"
            for name in NodeFiles.names(run) where name.hasSuffix(".json") {
                if let data = FileManager.default.contents(atPath: run + "/" + name),
                   let record = try? JSONDecoder().decode(Instance.self, from: data) { taken.insert(record.port) }
            }
        }
        let count = range.count
        let start = Int.random(in: 0..<count)
        for step in 0..<count {
            let port = range.lowerBound + (start + step) % count
            if !taken.contains(port), canBind(port) { return port }
        }
        throw NodeError.invalidArgument("no free port in \(range.lowerBound)-\(range.upperBound) on 127.0.0.1 ([front] ports)")
    }

    static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// The last lines of `version`'s log, for messages.
    static func logTail(_ layout: NodeLayout, _ version: String, lines: Int = 8) -> String {
        guard let data = FileManager.default.contents(atPath: logPath(layout, version)) else { return "" }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").suffix(lines).joined(separator: " | ")
    }
}
