import Foundation
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// `status [NAME] --on SEL`: what every node runs. Nodes whose current version differs from
/// the majority's are marked as drift; unreachable nodes are listed, not fatal.
public struct FleetStatus: Codable, Sendable {
    /// One node's view of one app.
    public struct Row: Codable, Sendable {
        public var node: String
        public var app: String?
        public var current: String?
        public var previous: String?
        public var landed: [String]
        /// The last switch: `kind from → to: result` and when.
        public var lastSwitch: NodeState.Activation?
        /// `ok` when the last switch succeeded, else its result.
        public var health: String?
        public var drift: Bool
        /// Why the node could not be asked.
        public var error: String?
    }

    public var rows: [Row]
    /// App → the version most nodes run.
    public var majority: [String: String]

    public var unreachable: [String] { rows.filter { $0.error != nil }.map(\.node) }
    public var drifting: [String] { rows.filter(\.drift).map(\.node) }

    public static func gather(app: String?, nodes: [FleetNode], pool: TransportPool, parallel: Int) -> FleetStatus {
        let perNode = ParallelWork.map(nodes, width: parallel) { node -> [Row] in
            let client = NodeClient(transport: pool.transport(for: node))
            do {
                let statuses = try app.map { [try client.status(app: $0)] } ?? client.statusAll()
                if statuses.isEmpty { return [Row(node: node.name, app: nil, landed: [], drift: false)] }
                return statuses.map { status in
                    let last = status.activations.last
                    return Row(node: node.name, app: status.app, current: status.current, previous: status.previous,
                               landed: status.releases.filter(\.landed).map(\.version), lastSwitch: last,
                               health: last.map { $0.result == .activated ? "ok" : $0.result.rawValue }, drift: false)
                }
            } catch {
                return [Row(node: node.name, app: app, landed: [], drift: false, error: Output.message(for: error))]
            }
        }
        var rows = perNode.flatMap { $0 }
        var majority: [String: String] = [:]
        let apps = Set(rows.compactMap { $0.error == nil ? $0.app : nil })
        for name in apps {
            var counts: [String: Int] = [:]
            for row in rows where row.app == name && row.error == nil { counts[row.current ?? "none", default: 0] += 1 }
            // Ties go to the newest version by name order, so the mark is stable.
            if let top = counts.max(by: { $0.value != $1.value ? $0.value < $1.value : $0.key < $1.key }) { majority[name] = top.key }
        }
        for index in rows.indices where rows[index].error == nil {
            if let app = rows[index].app, let top = majority[app] {
                rows[index].drift = (rows[index].current ?? "none") != top
            }
        }
        return FleetStatus(rows: rows, majority: majority)
    }

    /// The table shown without `--json`.
    public var textLines: [String] {
        let formatter = ISO8601DateFormatter()
        var table = [["NODE", "APP", "CURRENT", "PREVIOUS", "LANDED", "LAST SWITCH", "HEALTH", ""]]
        for row in rows {
            if let error = row.error {
                table.append([row.node, row.app ?? "-", "?", "?", "?", "?", "unreachable", error])
                continue
            }
            let last = row.lastSwitch.map {
                "\($0.kind) \($0.from ?? "none")→\($0.to) \(formatter.string(from: Date(timeIntervalSince1970: $0.at)))"
            } ?? "-"
            table.append([row.node, row.app ?? "(no apps)", row.current ?? "none", row.previous ?? "-",
                          row.landed.isEmpty ? "-" : row.landed.joined(separator: ","), last, row.health ?? "-",
                          row.drift ? "DRIFT (most run \(row.app.flatMap { majority[$0] } ?? "?"))" : ""])
        }
        var lines = TextTable.render(table)
        if !drifting.isEmpty { lines.append("drift: \(drifting.joined(separator: ", ")) differ from the majority") }
        if !unreachable.isEmpty { lines.append("unreachable: \(unreachable.joined(separator: ", "))") }
        return lines
    }
}

/// Columns padded to their widest cell; the last column is not padded.
public enum TextTable {
    public static func render(_ rows: [[String]]) -> [String] {
        guard let columns = rows.map(\.count).max() else { return [] }
        var widths = Array(repeating: 0, count: columns)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        return rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
    }

    /// The end table of push, deploy and rollback.
    public static func outcomes(_ outcomes: [NodeOutcome]) -> [String] {
        var table = [["NODE", "FROM", "TO", "RESULT", "TIME", "SENT", "DETAIL"]]
        for o in outcomes {
            let detail = [o.method, o.installedSlipway ? "installed slipway" : nil, o.detail].compactMap { $0 }.joined(separator: "; ")
            table.append([o.node, o.from ?? "-", o.to ?? "-", o.result.rawValue, String(format: "%.1f s", o.seconds), ByteCount.format(o.bytesSent), detail])
        }
        // The package changes once per from → to that some node made (or was to make).
        var seen: Set<String> = []
        var packages: [String] = []
        for o in outcomes where o.from != o.to {
            guard let line = o.packages, let to = o.to, seen.insert("\(o.from ?? "")>\(to)").inserted else { continue }
            packages.append("packages \(o.from ?? "(none)") → \(to): \(line)")
        }
        return render(table) + packages
    }
}
