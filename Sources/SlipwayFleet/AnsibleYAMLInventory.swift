import Foundation
import Yams

/// Reads an Ansible YAML inventory (docs/fleet.md): top-level groups (usually `all`), each
/// with `hosts` (host patterns, as in INI, mapped to their variables or nothing), `vars` and
/// `children` (groups of the same shape). Groups, variables and precedence are then those
/// of the INI reader.
enum AnsibleYAMLInventory {
    static func parse(text: String, file: String, directory: String, limits: InventoryLimits = .standard,
                      warn: (String) -> Void = { _ in }, note: (String) -> Void = { _ in }) throws -> Inventory {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw FleetError.inventory(file: file, line: Self.line(of: error), detail: "not YAML: \(Self.describe(error))")
        }
        guard let root, let groups = root.mapping else {
            throw FleetError.inventory(file: file, line: root?.mark.map { $0.line }, detail: "an Ansible YAML inventory is a mapping of groups (all: hosts: …)")
        }
        var parsed = AnsibleInventory.Parsed()
        var entries = 0
        var visits = 0
        func fail(_ node: Node?, _ detail: String) -> FleetError {
            .inventory(file: file, line: node?.mark.map { $0.line }, detail: detail)
        }
        /// A scalar variable value as text (numbers and booleans as YAML wrote them).
        func value(_ node: Node, key: String) throws -> String {
            guard let scalar = node.scalar else {
                throw fail(node, "\(key): slipway reads scalar variables only (a string, number or boolean)")
            }
            return scalar.string
        }
        func variables(_ node: Node?, place: String) throws -> [String: String] {
            guard let node, node.null == nil else { return [:] }
            guard let mapping = node.mapping else { throw fail(node, "\(place): expected a mapping of variables") }
            var result: [String: String] = [:]
            for (keyNode, valueNode) in mapping {
                guard let key = keyNode.string else { throw fail(keyNode, "\(place): a variable name is a string") }
                let text: String
                if key.hasPrefix("ansible_") || key.hasPrefix("slipway_") {
                    text = try value(valueNode, key: key)
                } else {
                    // The playbooks' own variables may be anything; slipway leaves them alone.
                    text = valueNode.scalar?.string ?? ""
                }
                try AnsibleInventory.check(key, text, at: "\(file):\(keyNode.mark.map { String($0.line) } ?? "?")", warn: warn, note: note,
                                           fail: { fail(keyNode, $0) })
                result[key] = text
            }
            return result
        }
        func group(_ name: String, _ node: Node?, nameNode: Node, depth: Int) throws {
            guard depth < 64 else { throw fail(nameNode, "groups nest more than 64 deep") }
            // YAML aliases can name one group mapping many times over (`a: *g`, `b: *g` at
            // every level: exponential); each visit counts.
            visits += 1
            guard visits <= limits.groupVisits else { throw fail(nameNode, "the inventory defines groups more than \(limits.groupVisits) times (through YAML aliases?)") }
            guard Inventory.validName(name) else { throw fail(nameNode, "'\(name)' is not a valid group name") }
            parsed.groupLine[name] = parsed.groupLine[name] ?? nameNode.mark?.line
            parsed.direct[name, default: []] += []
            parsed.children[name, default: []] += []
            guard let node, node.null == nil else { return }
            guard let mapping = node.mapping else { throw fail(node, "group '\(name)': expected hosts, vars or children") }
            for (keyNode, section) in mapping {
                switch keyNode.string {
                case "hosts":
                    guard section.null == nil else { continue }
                    guard let hosts = section.mapping else {
                        throw fail(section, "group '\(name)': hosts is a mapping of host names (a name followed by ':')")
                    }
                    for (patternNode, hostNode) in hosts {
                        guard let pattern = patternNode.string else { throw fail(patternNode, "group '\(name)': a host name is a string") }
                        let (names, port) = try AnsibleInventory.expand(pattern, limit: limits.hostsPerPattern, fail: { fail(patternNode, $0) })
                        entries += names.count
                        guard entries <= limits.hostEntries else {
                            throw fail(patternNode, "the inventory names more than \(limits.hostEntries) host entries")
                        }
                        var own = try variables(hostNode, place: "host '\(pattern)'")
                        if let port, own["ansible_port"] == nil { own["ansible_port"] = port }
                        parsed.add(names, variables: own, group: name, line: patternNode.mark?.line)
                    }
                case "vars":
                    parsed.groupVariables[name, default: [:]].merge(try variables(section, place: "group '\(name)' vars")) { _, new in new }
                case "children":
                    guard section.null == nil else { continue }
                    guard let kids = section.mapping else { throw fail(section, "group '\(name)': children is a mapping of groups") }
                    for (kidNode, kid) in kids {
                        guard let kidName = kidNode.string else { throw fail(kidNode, "group '\(name)': a child group's name is a string") }
                        parsed.children[name, default: []].append(kidName)
                        try group(kidName, kid, nameNode: kidNode, depth: depth + 1)
                    }
                case let other:
                    throw fail(keyNode, "group '\(name)': unknown key '\(other ?? "?")' (a group has hosts, vars and children)")
                }
            }
        }
        for (nameNode, node) in groups {
            guard let name = nameNode.string else { throw fail(nameNode, "a group name is a string") }
            try group(name, node, nameNode: nameNode, depth: 0)
        }
        return try AnsibleInventory.assemble(parsed, file: file, directory: directory, warn: warn)
    }

    static func line(of error: YamlError) -> Int? {
        switch error {
        case let .scanner(_, _, mark, _), let .parser(_, _, mark, _), let .composer(_, _, mark, _):
            return mark.line
        default:
            return nil
        }
    }

    static func describe(_ error: YamlError) -> String {
        switch error {
        case let .scanner(context, problem, _, _), let .parser(context, problem, _, _), let .composer(context, problem, _, _):
            return [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
        default:
            return "\(error)"
        }
    }
}
