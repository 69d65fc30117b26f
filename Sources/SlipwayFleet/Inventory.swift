import Foundation
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// One node of the farm, with the defaults of its inventory applied.
public struct FleetNode: Sendable, Equatable {
    /// How the controller reaches the node.
    public enum Transport: String, Sendable, Equatable {
        case ssh, local
    }

    public var name: String
    /// The ssh destination (an address, a host name or an ssh config alias).
    public var host: String
    public var port: Int?
    public var user: String?
    /// `ssh -F FILE` (absolute).
    public var sshConfig: String?
    public var sshOptions: [String] = []
    public var transport: Transport = .ssh
    /// `slipway node --root`; nil leaves it to the node's node.toml.
    public var root: String?
    /// `slipway node --backend`; nil leaves it to the node's node.toml.
    public var backend: BackendKind?
    /// `slipway node --config`, a path on the node.
    public var nodeConfig: String?
    /// Where slipway is on the node (and where it is installed when missing or older).
    public var slipwayPath: String = Inventory.defaultSlipwayPath
    /// Every group the node belongs to, directly or through children.
    public var groups: [String] = []

    public init(name: String, host: String? = nil) {
        self.name = name
        self.host = host ?? name
    }

    /// The flags every `slipway node` verb gets for this node.
    public var nodeFlags: [String] {
        var flags: [String] = []
        if let nodeConfig { flags += ["--config", nodeConfig] }
        if let root { flags += ["--root", root] }
        if let backend { flags += ["--backend", backend.rawValue] }
        return flags
    }
}

/// The farm: nodes and groups, read from `inventory.toml` (docs/fleet.md) or an Ansible INI
/// inventory.
public struct Inventory: Sendable {
    public static let defaultSlipwayPath = "/usr/local/bin/slipway"
    public static let defaultFile = "inventory.toml"

    /// Where the inventory came from.
    public var file: String
    /// In the file's order.
    public var nodes: [FleetNode]
    /// Group name → member node names (children resolved), in inventory order.
    public var groups: [String: [String]]

    public init(file: String, nodes: [FleetNode], groups: [String: [String]]) {
        self.file = file
        self.nodes = nodes
        self.groups = groups
    }

    /// `path`, else `$SLIPWAY_INVENTORY`, else `./inventory.toml`.
    public static func path(_ path: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let path { return path }
        if let value = environment["SLIPWAY_INVENTORY"], !value.isEmpty { return value }
        return defaultFile
    }

    /// Reads an inventory: Ansible INI when the name ends in `.ini` or is `hosts`, else TOML.
    /// `warn` gets what is read but ignored (an Ansible variable slipway does not use);
    /// `note` the playbooks' own variables, which slipway leaves alone (shown with `-v`).
    /// `limits` bound what an Ansible inventory's host ranges and YAML aliases may expand to.
    public static func load(path: String, limits: InventoryLimits = .standard, warn: (String) -> Void = { _ in },
                            note: (String) -> Void = { _ in }) throws -> Inventory {
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = access(path, F_OK) == 0 ? "permission denied or not a file" : "no such file (give --inventory FILE or set SLIPWAY_INVENTORY)"
            throw FleetError.inventory(file: path, line: nil, detail: "cannot read the inventory: \(reason)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw FleetError.inventory(file: path, line: nil, detail: "the inventory is not UTF-8 text")
        }
        let directory = URL(fileURLWithPath: path).standardizedFileURL.deletingLastPathComponent().path
        let name = (path as NSString).lastPathComponent
        if name.hasSuffix(".ini") || name == "hosts" {
            return try AnsibleInventory.parse(text: text, file: path, directory: directory, limits: limits, warn: warn, note: note)
        }
        if name.hasSuffix(".yml") || name.hasSuffix(".yaml") {
            return try AnsibleYAMLInventory.parse(text: text, file: path, directory: directory, limits: limits, warn: warn, note: note)
        }
        return try parseTOML(text: text, file: path, directory: directory)
    }

    /// Parses `inventory.toml` text; relative paths resolve against `directory`.
    public static func parseTOML(text: String, file: String, directory: String) throws -> Inventory {
        // Errors of the TOML itself (syntax, unknown keys, types) name file:line already.
        try InventoryTOMLReader(file: file, directory: directory).read(try TOMLTableReader.document(text: text, file: file))
    }

    public func node(named name: String) -> FleetNode? { nodes.first { $0.name == name } }

    /// The nodes a selector names: a comma list of `@group`, node names and globs, in
    /// inventory order. A term that matches nothing is an error, so is an empty selection.
    public func select(_ selector: String) throws -> [FleetNode] {
        var chosen = Set<String>()
        let terms = selector.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !terms.isEmpty else { throw FleetError.emptySelection(selector: selector) }
        for term in terms {
            let matched: [String]
            if term.hasPrefix("@") {
                guard let members = groups[String(term.dropFirst())] else {
                    throw FleetError.selectorMatchesNothing(term: term, known: groups.keys.sorted().map { "@\($0)" })
                }
                matched = members
            } else if term.contains(where: { "*?[".contains($0) }) {
                matched = nodes.map(\.name).filter { fnmatch(term, $0, 0) == 0 }
            } else {
                matched = nodes.contains { $0.name == term } ? [term] : []
            }
            guard !matched.isEmpty else { throw FleetError.selectorMatchesNothing(term: term, known: nodes.map(\.name)) }
            chosen.formUnion(matched)
        }
        let selection = nodes.filter { chosen.contains($0.name) }
        guard !selection.isEmpty else { throw FleetError.emptySelection(selector: selector) }
        return selection
    }

    /// Resolves group membership: `direct` lists each group's own nodes, `children` its child
    /// groups. Fills every node's `groups` and returns group → members in inventory order.
    static func resolveGroups(nodes: inout [FleetNode], direct: [String: [String]], children: [String: [String]],
                              file: String, line: (String) -> Int?) throws -> [String: [String]] {
        let names = Set(nodes.map(\.name))
        let groupNames = Set(direct.keys).union(children.keys)
        for (group, members) in direct {
            for member in members where !names.contains(member) {
                throw FleetError.inventory(file: file, line: line(group), detail: "group '\(group)' lists '\(member)', which is not a node of the inventory")
            }
        }
        for (group, kids) in children {
            for kid in kids where !groupNames.contains(kid) {
                throw FleetError.inventory(file: file, line: line(group), detail: "group '\(group)' has child group '\(kid)', which is not defined")
            }
        }
        var resolved: [String: Set<String>] = [:]
        func members(_ group: String, path: [String]) throws -> Set<String> {
            if let done = resolved[group] { return done }
            if path.contains(group) {
                throw FleetError.inventory(file: file, line: line(group), detail: "groups form a cycle: \((path + [group]).joined(separator: " → "))")
            }
            var all = Set(direct[group] ?? [])
            for kid in children[group] ?? [] { all.formUnion(try members(kid, path: path + [group])) }
            resolved[group] = all
            return all
        }
        // Linear in hosts × groups: a fleet of thousands must not cost a quadratic pass (the
        // inventory-ini fuzz target timed out on a 100,000-host range before this was so).
        var result: [String: [String]] = [:]
        var groupsOf: [String: [String]] = [:]
        for group in groupNames.sorted() {
            let all = try members(group, path: [])
            result[group] = nodes.map(\.name).filter { all.contains($0) }
            for member in all { groupsOf[member, default: []].append(group) }
        }
        for index in nodes.indices {
            nodes[index].groups = groupsOf[nodes[index].name] ?? []
        }
        return result
    }

    /// Checks a node or group name: what selectors and messages can show unquoted.
    static func validName(_ name: String) -> Bool {
        !name.isEmpty && !name.hasPrefix("@") && !name.hasPrefix("-")
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }
}

/// Reads the tables of `inventory.toml` into nodes and groups.
private struct InventoryTOMLReader {
    let file: String
    let directory: String

    /// Node keys that `[defaults]` may also set.
    func settings(_ table: TOMLTableReader, into node: inout FleetNode) throws {
        if let host = try table.string("host") {
            guard !host.hasPrefix("-") else { throw table.invalid("host", "\"\(host)\"", "an ssh destination cannot begin with '-' (ssh would read it as an option)") }
            node.host = host
        }
        if let port = try table.int("port") {
            guard (1...65535).contains(port) else { throw table.invalid("port", String(port), "a port is 1 to 65535") }
            node.port = port
        }
        if let user = try table.string("user") {
            guard !user.hasPrefix("-") else { throw table.invalid("user", "\"\(user)\"", "an ssh user cannot begin with '-' (ssh would read it as an option)") }
            node.user = user
        }
        if let config = try table.string("ssh_config") {
            node.sshConfig = config.hasPrefix("/") ? config : URL(fileURLWithPath: directory).appendingPathComponent(config).standardizedFileURL.path
        }
        if let options = try table.stringArray("ssh_options") { node.sshOptions = options }
        if let transport = try table.string("transport") {
            guard let value = FleetNode.Transport(rawValue: transport) else {
                throw table.invalid("transport", "\"\(transport)\"", "use \"ssh\" or \"local\"")
            }
            node.transport = value
        }
        if let root = try table.string("root") {
            guard root.hasPrefix("/") else { throw table.invalid("root", "\"\(root)\"", "the node's root is an absolute path") }
            node.root = root
        }
        if let backend = try table.string("backend") {
            guard let kind = BackendKind(rawValue: backend) else {
                throw table.invalid("backend", "\"\(backend)\"", "use one of \(BackendKind.names.joined(separator: ", "))")
            }
            node.backend = kind
        }
        if let config = try table.string("node_config") { node.nodeConfig = config }
        if let path = try table.string("slipway") {
            guard path.hasPrefix("/") else { throw table.invalid("slipway", "\"\(path)\"", "where slipway lives on the node is an absolute path") }
            node.slipwayPath = path
        }
    }

    func read(_ root: TOMLTableReader) throws -> Inventory {
        var defaults = FleetNode(name: "")
        if let table = try root.table("defaults") {
            if table.has("host") { throw table.invalid("host", "…", "a host is per node; set it under [nodes.NAME]") }
            try settings(table, into: &defaults)
            try table.finish()
        }
        var nodes: [FleetNode] = []
        var direct: [String: [String]] = [:]
        var children: [String: [String]] = [:]
        // TOMLKit's tables do not keep the file's order; the source map does.
        func inFileOrder(_ table: TOMLTableReader) -> [String] {
            table.keys.sorted { (table.line($0) ?? .max, $0) < (table.line($1) ?? .max, $1) }
        }
        if let table = try root.table("nodes") {
            for name in inFileOrder(table) {
                guard Inventory.validName(name) else {
                    throw table.invalid(name, "[nodes.\(name)]", "node names are letters, digits, '-', '_' and '.'")
                }
                guard let nodeTable = try table.table(name) else { continue }
                var node = defaults
                node.name = name
                node.host = name
                try settings(nodeTable, into: &node)
                for group in try nodeTable.stringArray("groups") ?? [] {
                    guard Inventory.validName(group) else { throw nodeTable.invalid("groups", "\"\(group)\"", "group names are letters, digits, '-', '_' and '.'") }
                    direct[group, default: []].append(name)
                }
                try nodeTable.finish()
                nodes.append(node)
            }
            try table.finish()
        }
        if let table = try root.table("groups") {
            for name in inFileOrder(table) {
                guard Inventory.validName(name) else {
                    throw table.invalid(name, "[groups.\(name)]", "group names are letters, digits, '-', '_' and '.'")
                }
                guard let group = try table.table(name) else { continue }
                direct[name, default: []] += try group.stringArray("nodes") ?? []
                children[name] = try group.stringArray("children") ?? []
                try group.finish()
            }
            try table.finish()
        }
        try root.finish()
        guard !nodes.isEmpty else {
            throw FleetError.inventory(file: file, line: nil, detail: "the inventory has no nodes; add [nodes.NAME] tables (docs/fleet.md)")
        }
        let map = root.map
        let groups = try Inventory.resolveGroups(nodes: &nodes, direct: direct, children: children, file: file,
                                                 line: { map.line(of: "groups.\($0)") ?? map.line(of: "nodes") })
        return Inventory(file: file, nodes: nodes, groups: groups)
    }
}
