import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The nginx in front of a node's services (`[front]` in node.toml, docs/service.md). A
/// graceful switch writes `<directory>/<app>.conf` (an `upstream slipway-<app>` naming the new
/// version's private port, and with `servers` a `server` listening on the service's port),
/// sends nginx's master a HUP, waits for a new generation of workers (nginx took the
/// configuration) and then for every worker of the old generation to exit (each finishes
/// its in-flight requests first). Only then may the old version stop: no request that
/// reached nginx is lost.
struct NodeFront {
    let settings: FrontSettings
    let context: NodeContext

    func configurationPath(_ app: String) -> String { settings.directory + "/\(app).conf" }

    /// nginx's master pid, from the pid file; an error saying what to do when nginx does not run.
    func master() throws -> pid_t {
        guard let data = FileManager.default.contents(atPath: settings.pidFile),
              let pid = pid_t(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0
        else {
            throw NodeError.frontUnavailable(detail: "no nginx pid in \(settings.pidFile) ([front] pid_file); start nginx, or remove [front] from node.toml")
        }
        guard kill(pid, 0) == 0 else {
            throw NodeError.frontUnavailable(detail: "nginx (pid \(pid) from \(settings.pidFile)) does not run; start it")
        }
        return pid
    }

    /// The master's children (its workers, cache manager and loader).
    static func children(of master: pid_t) -> Set<pid_t> {
        var found = Set<pid_t>()
        for name in NodeFiles.names("/proc") {
            guard let pid = pid_t(name), let data = FileManager.default.contents(atPath: "/proc/\(name)/stat") else { continue }
            // "pid (comm) state ppid …": comm may hold spaces and parentheses.
            let text = String(decoding: data, as: UTF8.self)
            guard let close = text.lastIndex(of: ")") else { continue }
            let fields = text[text.index(after: close)...].split(separator: " ")
            if fields.count > 1, pid_t(fields[1]) == master { found.insert(pid) }
        }
        return found
    }

    /// The port the app's upstream names now, from the file slipway wrote.
    func routedPort(_ app: String) -> Int? {
        guard let data = FileManager.default.contents(atPath: configurationPath(app)) else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        guard let range = text.range(of: "server 127.0.0.1:") else { return nil }
        return Int(text[range.upperBound...].prefix { $0.isNumber })
    }

    func configuration(app: String, version: String, port: Int, listen: Int?) -> String {
        var text = """
            # Written by slipway on every switch of \(app) (now \(version)); do not edit.
            upstream slipway-\(app) {
                server 127.0.0.1:\(port);
            }

            """
        if settings.servers, let listen = settings.listen[app] ?? listen.map(String.init) {
            text += """
                server {
                    listen \(listen);
                    location / {
                        proxy_pass http://slipway-\(app);
                        proxy_set_header Host $host;
                        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                    }
                }

                """
        }
        return text
    }

    /// Points the app's upstream at `port` (nil: removes the app's file) and reloads nginx,
    /// returning once the old workers have drained (or `drain_timeout` passed). When nginx
    /// does not take the new file, the old one is put back and this throws.
    func route(app: String, version: String, port: Int?, listen: Int?) throws {
        let pid = try master()
        let path = configurationPath(app)
        let before = FileManager.default.contents(atPath: path)
        try NodeFiles.makeDirectories(settings.directory)
        if let port {
            try NodeFiles.writeAtomically(path, Data(configuration(app: app, version: version, port: port, listen: listen).utf8))
        } else {
            unlink(path)
        }
        do {
            try reload(pid)
        } catch {
            if let before { try? NodeFiles.writeAtomically(path, before) } else { unlink(path) }
            try? reload(pid)
            throw error
        }
    }

    /// HUP to the master; waits for a new generation of workers, then for the old one to exit.
    func reload(_ master: pid_t) throws {
        let old = Self.children(of: master)
        guard kill(master, SIGHUP) == 0 else {
            throw NodeError.frontUnavailable(detail: "cannot signal nginx (pid \(master)): \(String(cString: strerror(errno)))")
        }
        let started = NodeFiles.now()
        while Self.children(of: master).subtracting(old).isEmpty {
            guard NodeFiles.now() - started < 10 else {
                throw NodeError.frontUnavailable(detail: "nginx (pid \(master)) started no new workers within 10 s of the reload: it refused the configuration (see its error log; `nginx -t` tells why)")
            }
            usleep(10_000)
        }
        while !Self.children(of: master).intersection(old).isEmpty {
            guard NodeFiles.now() - started < settings.drainTimeout else {
                context.log("nginx's old workers still run after \(NodeConfirm.seconds(settings.drainTimeout)) s ([front] drain_timeout); going on")
                return
            }
            usleep(10_000)
        }
    }
}
