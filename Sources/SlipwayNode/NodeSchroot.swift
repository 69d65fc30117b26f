import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The seed's schroot way (docs/service.md): with `[schroot] enabled`, a version's service
/// runs in a schroot session of that version. The chroot file `slipway-<app>` is pointed at
/// the version (it names the current version again if the switch fails), its fstab
/// (`/etc/schroot/slipway-<app>/fstab`) binds /proc, /sys and the shared directories, the
/// session `slipway-<app>-<version>` begins (`schroot -b`), and the command runs detached in
/// the session's root, as the release's user. Stopping the version ends the session
/// (`schroot -e`).
enum NodeSchroot {
    /// Where schroot mounts a session (its root).
    static func mountLocation(_ session: String) -> String { "/run/schroot/mount/\(session)" }

    /// A session name schroot accepts for `version` of `app`.
    static func sessionName(app: String, version: String) -> String {
        "slipway-\(app)-" + String(version.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" ? $0 : "_" })
    }

    /// The fstab of the app's sessions: the minimal profile's /proc and /sys, and each shared
    /// directory bound at its path (pairs of SOURCE DESTINATION as `NodeService.binds` gives,
    /// the destination under the release).
    static func fstab(binds: [String], release: String) -> String {
        var lines = ["# Written by slipway for its schroot sessions; do not edit.", "/proc /proc none rw,bind 0 0", "/sys /sys none rw,bind 0 0"]
        var index = 0
        while index + 1 < binds.count {
            let inside = String(binds[index + 1].dropFirst(release.count))
            lines.append("\(binds[index]) \(inside) none rw,bind 0 0")
            index += 2
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Where the app's sessions' fstab lives (`/etc/schroot/slipway-<app>`).
    static func profileDirectory(_ layout: NodeLayout, context: NodeContext) -> String {
        (context.settings.schrootDirectory as NSString).deletingLastPathComponent + "/slipway-\(layout.app)"
    }

    /// The chroot file's settings for `version`: the backend's, and the sessions' fstab once
    /// it has been written.
    static func chrootSettings(_ version: String, layout: NodeLayout, context: NodeContext) throws -> [(key: String, value: String)] {
        var settings = try context.backend.schrootSettings(version: version, layout: layout)
        if NodeFiles.exists(profileDirectory(layout, context: context) + "/fstab") {
            settings.append(("setup.fstab", "slipway-\(layout.app)/fstab"))
        }
        return settings
    }

    static func start(_ version: String, spec: ServiceSpec, command: String, ids: (uid: UInt32, gid: UInt32), binds: [String], port: Int,
                      niceness: Int, layout: NodeLayout, context: NodeContext) throws -> NodeService.Instance {
        let app = layout.app
        let profile = profileDirectory(layout, context: context)
        try NodeFiles.makeDirectories(profile)
        try NodeFiles.writeAtomically(profile + "/fstab", Data(fstab(binds: binds, release: layout.release(version)).utf8))
        try context.schroot.write(layout: layout, version: version, settings: try chrootSettings(version, layout: layout, context: context))
        let session = sessionName(app: app, version: version)
        end(session, context: context)
        do {
            try context.runner.run(Command(["schroot", "-b", "-n", session, "-c", SchrootConfig.chrootName(app: app)], output: .discard,
                                           timeout: .seconds(60)))
        } catch {
            throw NodeError.hookFailed(hook: "start", app: app, version: version, detail: "schroot -b: \(Output.message(for: error))")
        }
        // The command runs in the session's root (its mount, with the session's fstab binds)
        // through the host's chroot: `schroot -r -u USER` would need the release's user in the
        // host's passwd.
        let chroot = try CommandRunner.resolve("chroot")
        let nice = try CommandRunner.resolve("nice")
        let log = NodeService.logPath(layout, version)
        _ = try? NodeFiles.appendLine(log, "--- \(ISO8601DateFormatter().string(from: Date())) slipway starts \(app)@\(version) in schroot session \(session) on port \(port): \(command)")
        let pid: pid_t
        do {
            pid = try DetachedSpawn.spawn(
                program: nice,
                arguments: [nice, "-n", String(niceness), chroot, "--userspec=\(ids.uid):\(ids.gid)", "--", mountLocation(session),
                            "/bin/sh", "-c", command],
                environment: NodeService.serviceEnvironment(layout: layout, version: version, port: port), log: log)
        } catch {
            end(session, context: context)
            throw error
        }
        let instance = NodeService.Instance(version: version, pid: pid, port: port, startedAt: NodeFiles.now(), session: session)
        try NodeFiles.writeAtomically(NodeService.instancePath(layout, version), try JSONEncoder().encode(instance))
        context.log("started \(app)@\(version) in schroot session \(session) (pid \(pid), port \(port))")
        return instance
    }

    /// Ends `session` if it exists (its processes are gone or are killed by schroot).
    static func end(_ session: String, context: NodeContext) {
        guard FileManager.default.fileExists(atPath: "/var/lib/schroot/session/\(session)") else { return }
        _ = try? context.runner.runAllowingFailure(Command(["schroot", "-e", "-f", "-c", session], output: .discard, timeout: .seconds(60)))
    }
}
