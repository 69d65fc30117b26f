import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

extension NodeActivate {
    /// The graceful switch of a service the node runs (docs/service.md): `target` starts on a
    /// private port beside `previous`, which keeps serving; its health is checked on that
    /// port; then `current` moves, the front (nginx) is pointed at the new port and reloaded,
    /// its old workers finish their requests, and only then does `previous` stop. Returns nil
    /// when `target` serves, or why not, with `previous` still serving and `current` where it
    /// was. Without a front, `previous` must stop before `target` can take the port: the
    /// switch is not graceful then, and a failure starts `previous` again.
    static func switchServices(to target: String, from previous: String?, layout: NodeLayout, context: NodeContext,
                               ran: inout [String]) -> String? {
        let app = layout.app
        guard let spec = serviceSpec(layout, target), spec.command != nil else { return "\(app)@\(target) has no [service] command" }
        let hooks = NodeHooks(context: context, layout: layout)
        let front = context.settings.front.map { NodeFront(settings: $0, context: context) }
        let previousSpec = previous.flatMap { serviceSpec(layout, $0) }
        var stoppedPrevious = false
        func stopPrevious() {
            guard let previous, previous != target else { return }
            if previousSpec?.command != nil {
                NodeService.stop(previous, spec: previousSpec, layout: layout, context: context)
            } else if let stop = previousSpec?.stop {
                try? hooks.run("stop", stop, version: previous, previous: target)
            }
        }
        do {
            if let front { _ = try front.master() }
            // Whatever of `target` still runs (an interrupted switch) goes first.
            if target != previous { NodeService.stop(target, spec: spec, layout: layout, context: context) }
            let port: Int
            if let front {
                port = try NodeService.freePort(front.settings.ports, settings: context.settings)
            } else {
                port = try spec.port ?? NodeService.freePort(FrontSettings().ports, settings: context.settings)
                if let previous, previous != target {
                    context.log("no [front] in \(context.settings.source): \(app)@\(previous) stops before \(target) starts, so clients see a gap (docs/service.md)")
                    stopPrevious()
                    stoppedPrevious = true
                }
            }
            ran.append("start")
            let beside = previous.map { $0 != target && !NodeService.processes(layout, $0).isEmpty } ?? false
            _ = try NodeService.start(target, spec: spec, port: port, beside: beside, layout: layout, context: context)
            var failure: String?
            if let health = spec.health {
                ran.append("health")
                failure = hooks.checkHealth(health, version: target, previous: previous, port: port)
            } else {
                // Without a health check, the server must at least still run a moment later.
                usleep(300_000)
                if NodeService.processes(layout, target).isEmpty { failure = "the service exited at once" }
            }
            if var failure {
                if NodeService.processes(layout, target).isEmpty || failure.contains("exited") {
                    failure += "; its log: \(NodeService.logTail(layout, target))"
                }
                NodeService.stop(target, spec: spec, layout: layout, context: context)
                if context.settings.schrootEnabled { try? point(layout, to: previous, context: context) }
                if stoppedPrevious, let previous { restart(previous, layout: layout, context: context) }
                return failure
            }
            if beside { NodeService.promote(target, layout: layout) }
            try point(layout, to: target, context: context)
            if let front {
                ran.append("front")
                do {
                    try front.route(app: app, version: target, port: port, listen: spec.port)
                } catch {
                    try? point(layout, to: previous, context: context)
                    NodeService.stop(target, spec: spec, layout: layout, context: context)
                    return Output.message(for: error)
                }
            }
            context.log("switched \(app) to \(target)" + (previous.map { " (from \($0))" } ?? "") + " on port \(port)")
            if !stoppedPrevious { stopPrevious() }
            return nil
        } catch {
            NodeService.stop(target, spec: spec, layout: layout, context: context)
            if context.settings.schrootEnabled { try? point(layout, to: previous, context: context) }
            if stoppedPrevious, let previous { restart(previous, layout: layout, context: context) }
            return Output.message(for: error)
        }
    }

    /// Starts `version`'s service again on its own port after a failed switch without a front.
    static func restart(_ version: String, layout: NodeLayout, context: NodeContext) {
        guard let spec = serviceSpec(layout, version), spec.command != nil else { return }
        do {
            let port = try spec.port ?? NodeService.freePort(FrontSettings().ports, settings: context.settings)
            _ = try NodeService.start(version, spec: spec, port: port, layout: layout, context: context)
            if let health = spec.health, let failure = NodeHooks(context: context, layout: layout).checkHealth(health, version: version, previous: nil, port: port) {
                context.log("\(layout.app)@\(version) did not come back: \(failure)")
            }
        } catch {
            context.log("\(layout.app)@\(version) did not come back: \(Output.message(for: error))")
        }
    }

    /// Puts the node back on `previous` (nil: no version) after `version` was switched to and
    /// failed, whichever way each of them runs.
    static func restore(_ previous: String?, from version: String, layout: NodeLayout, context: NodeContext) throws {
        let hooks = NodeHooks(context: context, layout: layout)
        let spec = serviceSpec(layout, version)
        if let previous {
            if serviceSpec(layout, previous)?.command != nil {
                var ran: [String] = []
                if let failure = switchServices(to: previous, from: version, layout: layout, context: context, ran: &ran) {
                    throw NodeError.hookFailed(hook: "start", app: layout.app, version: previous, detail: "switching back failed: \(failure)")
                }
                return
            }
            try point(layout, to: previous, context: context)
            if spec?.command != nil { NodeService.stop(version, spec: spec, layout: layout, context: context) }
            if let reload = serviceSpec(layout, previous)?.reload {
                try? hooks.run("reload", reload, version: previous, previous: version)
            }
        } else {
            try point(layout, to: nil, context: context)
            if spec?.command != nil {
                NodeService.stop(version, spec: spec, layout: layout, context: context)
                if let front = context.settings.front { try? NodeFront(settings: front, context: context).route(app: layout.app, version: version, port: nil, listen: nil) }
            } else if let stop = spec?.stop {
                try? hooks.run("stop", stop, version: version, previous: nil)
            }
        }
    }
}
