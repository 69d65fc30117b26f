import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Switches `current` to a landed version (docs/node.md "Crash safety", activate):
/// lock → recover → landed? → pre-activate hook → `current.new` → rename over `current` →
/// fsync → schroot file the same way → reload hook (start on the first activation) →
/// health check with retries. A failed reload or health check switches back, reloads the old
/// version, journals `rolled-back` and fails saying "rolled back to X". Every switch is
/// journaled. Hooks run as `sh -c` outside the release with SLIPWAY_APP, SLIPWAY_VERSION,
/// SLIPWAY_PREVIOUS and SLIPWAY_RELEASE set. With a confirmation request the switch is a
/// dead man's switch (see `NodeConfirm`); any successful switch clears an older pending
/// confirmation.
extension NodeActivate {

    public static func activate(app: String, version: String, confirm: NodeConfirm.Request? = nil,
                                context: NodeContext) throws -> Result {
        try ReleaseStore.validate(version: version)
        if let confirm, !(confirm.timeout > 0) {
            throw NodeError.invalidArgument("--confirm-timeout \(confirm.timeout): give a number of seconds above 0")
        }
        return try context.mutating(app) { layout, recovered in
            var result = try switchTo(version, kind: .activate, layout: layout, context: context, recovered: recovered,
                                      confirm: confirm)
            result.recovered = recovered.removed
            return result
        }
    }

    /// The switch itself, under the lock, right after recovery (whose view of the landed
    /// versions and the journal it reuses).
    static func switchTo(_ version: String, kind: SwitchKind, layout: NodeLayout, context: NodeContext,
                         recovered: NodeRecovery.Result, confirm: NodeConfirm.Request? = nil) throws -> Result {
        let started = NodeFiles.now()
        let landed = recovered.landed
        guard landed.contains(version) else { throw NodeError.versionNotLanded(app: layout.app, version: version, landed: landed) }
        let previous = layout.currentVersion.flatMap { landed.contains($0) ? $0 : nil }
        var result = Result(app: layout.app, kind: kind, version: version, previous: previous, outcome: .activated, ran: [],
                            seconds: 0, recovered: [])
        // Recovery left only a live confirmation, of the current version.
        let pendingBefore = try NodeConfirmation.load(layout)
        if previous == version {
            context.log("\(layout.app)@\(version) is already current")
            result.outcome = .alreadyCurrent
            // After a reboot (or a kill) nothing of it runs: activating it again starts it.
            if serviceSpec(layout, version)?.command != nil, NodeService.processes(layout, version).isEmpty {
                context.log("\(layout.app)@\(version) is current but its service does not run; starting it")
                if let failure = switchServices(to: version, from: nil, layout: layout, context: context, ran: &result.ran) {
                    throw NodeError.hookFailed(hook: "start", app: layout.app, version: version, detail: failure)
                }
            }
            // Asking again confirms nothing: a pending confirmation keeps its deadline.
            result.confirmDeadline = pendingBefore?.version == version ? pendingBefore?.deadline : nil
            result.seconds = NodeFiles.now() - started
            return result
        }
        // A version landed under weaker settings answers to the policy in force now.
        _ = try NodeSignature.checkLanded(version, layout: layout, context: context)
        let service = serviceSpec(layout, version)
        let hooks = NodeHooks(context: context, layout: layout)
        var state = try recovered.state ?? NodeState.load(layout)
        func journal(_ outcome: SwitchResult, _ detail: String?) throws {
            state.recordActivation(.init(kind: kind, from: previous, to: version, at: NodeFiles.now(), result: outcome, detail: detail))
            try state.save(layout)
        }

        if kind == .activate, let command = service?.preActivate {
            result.ran.append("pre_activate")
            do {
                try hooks.run("pre_activate", command, version: version, previous: previous)
            } catch {
                try journal(.failed, "pre_activate: \(Output.message(for: error))")
                throw error
            }
        }

        // The pending confirmation is written before the switch, so that a crash after it
        // still switches back. When this ends on another version than `version` (switched
        // back, or never switched), the confirmation pending before is put back as it was.
        let pending = confirm.map { NodeConfirm.pending($0, version: version, previous: previous) }
        if let pending { try pending.save(layout) }
        defer {
            if pending != nil, layout.currentVersion != version {
                if let pendingBefore { try? pendingBefore.save(layout) } else { try? NodeConfirmation.remove(layout) }
            }
        }

        // The journal that records this switch is written before it: a full disk stops the
        // switch here, before anything changed (after the switch, putting it in place is a
        // rename). It says when the switch began.
        var planned = state
        planned.recordActivation(.init(kind: kind, from: previous, to: version, at: NodeFiles.now(), result: .activated, detail: nil))
        let prepared: NodeState.Prepared
        do {
            prepared = try planned.prepare(layout)
        } catch {
            throw NodeError.journalUnwritable(app: layout.app, version: version, current: previous, detail: Output.message(for: error))
        }

        var failure: String?
        if service?.command != nil {
            // A service the node runs: the new version starts beside the old one and takes
            // over only once healthy (docs/service.md); `current` moves with the front.
            failure = switchServices(to: version, from: previous, layout: layout, context: context, ran: &result.ran)
            if let failure {
                context.log("\(layout.app)@\(version): \(failure); \(previous.map { "\($0) keeps serving" } ?? "nothing was switched")")
            }
        } else {
            do {
                try point(layout, to: version, context: context)
            } catch {
                prepared.discard()
                throw error
            }
            context.log("switched \(layout.app) to \(version)" + (previous.map { " (from \($0))" } ?? ""))
            // A version whose service the node ran gives way to hooks that start their own.
            let previousRanService = previous.flatMap { serviceSpec(layout, $0)?.command } != nil
            if previousRanService, let previous { NodeService.stop(previous, spec: serviceSpec(layout, previous), layout: layout, context: context) }
            let hookName = previous == nil || previousRanService ? "start" : "reload"
            if let command = hookName == "start" ? service?.start : service?.reload {
                result.ran.append(hookName)
                do {
                    try hooks.run(hookName, command, version: version, previous: previous)
                } catch {
                    failure = "\(hookName) failed: \(Output.message(for: error))"
                }
            }
            if failure == nil, let health = service?.health {
                result.ran.append("health")
                failure = hooks.checkHealth(health, version: version, previous: previous)
            }
            if let failure {
                context.log("\(layout.app)@\(version): \(failure); switching back")
                try restore(previous, from: version, layout: layout, context: context)
            }
        }

        if let failure {
            // The prepared journal's blocks are freed first, for this one.
            prepared.discard()
            do {
                try journal(.rolledBack, failure)
            } catch {
                throw NodeError.rolledBack(app: layout.app, failedVersion: version, restored: previous,
                                           detail: failure + "; the journal could not record it (\(Output.message(for: error)))")
            }
            throw NodeError.rolledBack(app: layout.app, failedVersion: version, restored: previous, detail: failure)
        }
        do {
            try prepared.commit()
            state = planned
        } catch {
            // Without its journal entry the switch does not stand: back to where it was.
            let detail = "the journal could not be written (\(Output.message(for: error)))"
            context.log("\(layout.app)@\(version): \(detail); switching back")
            try restore(previous, from: version, layout: layout, context: context)
            throw NodeError.rolledBack(app: layout.app, failedVersion: version, restored: previous, detail: detail)
        }
        if let confirm, var waiting = pending {
            // The controller's clock starts when this command returns, not before the health check.
            waiting.deadline = NodeFiles.now() + confirm.timeout
            try waiting.save(layout)
            do {
                _ = try NodeConfirm.spawnWatcher(confirm, app: layout.app, token: waiting.token)
            } catch {
                // Without a watcher nothing would switch back before the next command: do it now.
                let detail = "not confirmable (the watcher did not start: \(Output.message(for: error)))"
                try NodeConfirm.switchBack(waiting, detail: detail, layout: layout, context: context, state: &state)
                throw NodeError.confirmationExpired(app: layout.app, version: version, restored: previous, detail: detail, at: NodeFiles.now())
            }
            result.confirmDeadline = waiting.deadline
            context.log("\(layout.app)@\(version) switches back to \(previous ?? "nothing") unless confirmed within \(NodeConfirm.seconds(confirm.timeout)) s")
        } else if pendingBefore != nil {
            try NodeConfirmation.remove(layout)
        }
        result.seconds = NodeFiles.now() - started
        return result
    }

    /// The `[service]` of a landed version, decoded alone: a switch must not pay for
    /// decoding a manifest's thousands of entries (JSONDecoder parses the whole document even
    /// for a type that keeps one member, ~15 ms for a 200 MB rootfs's manifest).
    static func serviceSpec(_ layout: NodeLayout, _ version: String) -> ServiceSpec? {
        struct ServiceOnly: Decodable { var service: ServiceSpec? }
        guard let data = FileManager.default.contents(atPath: layout.manifest(version)) else { return nil }
        switch JSONTopLevelMember.find("service", in: data) {
        case .absent:
            return nil
        case let .value(member):
            if let service = try? JSONDecoder().decode(ServiceSpec?.self, from: member) { return service }
            return (try? JSONDecoder().decode(ServiceOnly.self, from: data))?.service
        case .undecided:
            return (try? JSONDecoder().decode(ServiceOnly.self, from: data))?.service
        }
    }

    /// Points `current` (and the schroot file, when enabled) at `version`, or removes them
    /// for nil. `current` only ever changes by rename(2) of a fresh `current.new`.
    static func point(_ layout: NodeLayout, to version: String?, context: NodeContext) throws {
        if let version {
            unlink(layout.currentNew)
            guard symlink("releases/\(version)", layout.currentNew) == 0 else {
                throw NodeError.system(operation: "create symlink", path: layout.currentNew, errno: errno)
            }
            guard rename(layout.currentNew, layout.current) == 0 else {
                let code = errno
                unlink(layout.currentNew)
                throw NodeError.system(operation: "rename \(layout.currentNew) over", path: layout.current, errno: code)
            }
        } else if unlink(layout.current) != 0 && errno != ENOENT {
            throw NodeError.system(operation: "remove", path: layout.current, errno: errno)
        }
        try NodeFiles.fsyncDirectory(layout.appDirectory)
        if context.settings.schrootEnabled {
            if let version {
                try context.schroot.write(layout: layout, version: version,
                                          settings: try NodeSchroot.chrootSettings(version, layout: layout, context: context))
            } else {
                try context.schroot.remove(layout: layout)
            }
        }
    }
}

/// Runs a release's hooks and health check.
struct NodeHooks {
    let context: NodeContext
    let layout: NodeLayout

    func environment(version: String, previous: String?, port: Int? = nil) -> [String: String?] {
        ["SLIPWAY_APP": layout.app, "SLIPWAY_VERSION": version, "SLIPWAY_PREVIOUS": previous ?? "",
         "SLIPWAY_RELEASE": layout.release(version), "SLIPWAY_ROOT": layout.root, "PORT": port.map(String.init)]
    }

    /// Runs `command` with `sh -c`; its stdout is discarded (stdout carries the JSON reply),
    /// its stderr is passed on.
    /// When `version` has shared directories, the hook runs in a mount namespace of its own
    /// with them bound over the release's directories, as a service would see them (and a
    /// daemon it starts keeps that view).
    func run(_ name: String, _ command: String, version: String, previous: String?, timeout: Double? = nil, port: Int? = nil) throws {
        do {
            var argv = ["sh", "-c", command]
            let binds = try NodeService.binds(NodeActivate.serviceSpec(layout, version), version: version, layout: layout)
            if !binds.isEmpty {
                argv = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", NodeService.hookLauncher,
                        "slipway-hook", command] + binds
            }
            try context.runner.run(Command(argv, environment: environment(version: version, previous: previous, port: port),
                                           workingDirectory: layout.appDirectory, output: .discard, echoStandardError: true,
                                           timeout: .milliseconds(Int64((timeout ?? context.settings.hookTimeout) * 1000))))
        } catch {
            throw NodeError.hookFailed(hook: name, app: layout.app, version: version, detail: Output.message(for: error))
        }
    }

    /// Tries the health check up to `retries` times; returns nil when healthy, else why not.
    /// With `port` (a service the node runs), `$PORT` in the URL is that port, and a health
    /// command gets it as PORT.
    func checkHealth(_ health: HealthCheck, version: String, previous: String?, port: Int? = nil) -> String? {
        let tries = max(1, health.retries)
        var last = "no health check configured"
        for attempt in 1...tries {
            if attempt > 1 { usleep(useconds_t(max(0, health.intervalSeconds) * 1_000_000)) }
            do {
                if let command = health.command {
                    try run("health", command, version: version, previous: previous, timeout: health.timeoutSeconds, port: port)
                } else if var url = health.url {
                    if let port {
                        url = url.replacingOccurrences(of: "${PORT}", with: String(port)).replacingOccurrences(of: "$PORT", with: String(port))
                    }
                    try context.runner.run(Command(["curl", "--fail", "--silent", "--show-error", "--output", "/dev/null",
                                                    "--max-time", String(health.timeoutSeconds), url],
                                                   timeout: .milliseconds(Int64(health.timeoutSeconds * 1000) + 2000)))
                } else {
                    return nil
                }
                return nil
            } catch {
                last = "health check failed \(tries) time\(tries == 1 ? "" : "s"), last: \(Output.message(for: error))"
            }
        }
        return last
    }
}
