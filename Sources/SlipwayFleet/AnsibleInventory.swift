import Foundation
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Reads an Ansible INI inventory (docs/fleet.md): `[group]` host lines (host patterns with
/// ranges and ports) with `key=value` variables, `[group:children]`, `[group:vars]`,
/// `[all:vars]` as the defaults.
enum AnsibleInventory {
    /// Ansible variables slipway reads; other `ansible_*` ones are reported and ignored.
    static let knownVariables: Set<String> = [
        "ansible_host", "ansible_ssh_host", "ansible_port", "ansible_ssh_port", "ansible_user", "ansible_ssh_user",
        "ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_connection",
    ]
    /// slipway's own variables; any other `slipway_*` one is an error (a misspelt
    /// `slipway_root` must not leave the node at its default root).
    static let slipwayVariables: Set<String> = ["slipway_root", "slipway_backend", "slipway_path", "slipway_node_config"]
    /// Variables that become ssh's destination or user: they must not look like an option.
    static let destinationVariables: Set<String> = ["ansible_host", "ansible_ssh_host", "ansible_user", "ansible_ssh_user"]

    private enum Section {
        case hosts(String)
        case children(String)
        case vars(String)
    }

    static func parse(text: String, file: String, directory: String, limits: InventoryLimits = .standard,
                      warn: (String) -> Void = { _ in }, note: (String) -> Void = { _ in }) throws -> Inventory {
        var parsed = Parsed()
        var section = Section.hosts("ungrouped")
        var entries = 0

        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            func fail(_ detail: String) -> FleetError { .inventory(file: file, line: number, detail: detail) }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else { throw fail("a section header ends with ']'") }
                let header = String(line.dropFirst().dropLast())
                let parts = header.split(separator: ":", maxSplits: 1).map(String.init)
                let name = parts.first ?? ""
                guard Inventory.validName(name) else { throw fail("'\(name)' is not a valid group name") }
                parsed.groupLine[name] = parsed.groupLine[name] ?? number
                switch parts.count == 2 ? parts[1] : nil {
                case nil: section = .hosts(name); parsed.direct[name, default: []] += []
                case "children": section = .children(name); parsed.children[name, default: []] += []
                case "vars": section = .vars(name)
                case let other?: throw fail("unknown section kind ':\(other)' (expected :children or :vars)")
                }
                continue
            }
            let words = try split(line, fail: fail)
            switch section {
            case let .hosts(group):
                guard let pattern = words.first, !pattern.contains("=") else { throw fail("expected a host line: NAME key=value …") }
                let (names, port) = try expand(pattern, limit: limits.hostsPerPattern, fail: fail)
                entries += names.count
                guard entries <= limits.hostEntries else { throw fail("the inventory names more than \(limits.hostEntries) host entries") }
                var lineVariables: [String: String] = [:]
                // A port in the pattern (`host:2222`) is ansible_port, which the line may still set.
                if let port { lineVariables["ansible_port"] = port }
                for word in words.dropFirst() {
                    guard let equals = word.firstIndex(of: "=") else { throw fail("'\(word)' is not key=value") }
                    let key = String(word[..<equals]), value = String(word[word.index(after: equals)...])
                    try check(key, value, at: "\(file):\(number)", warn: warn, note: note, fail: fail)
                    lineVariables[key] = value
                }
                parsed.add(names, variables: lineVariables, group: group, line: number)
            case let .children(group):
                guard words.count == 1 else { throw fail("a :children section lists one group per line") }
                parsed.children[group, default: []].append(words[0])
            case let .vars(group):
                let joined = words.joined(separator: " ")
                guard let equals = joined.firstIndex(of: "=") else { throw fail("a :vars section holds key=value lines") }
                let key = joined[..<equals].trimmingCharacters(in: .whitespaces)
                let value = joined[joined.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                try check(key, value, at: "\(file):\(number)", warn: warn, note: note, fail: fail)
                parsed.groupVariables[group, default: [:]][key] = value
            }
        }
        return try assemble(parsed, file: file, directory: directory, warn: warn)
    }

    /// What an INI or YAML inventory says, before groups are resolved and variables applied.
    struct Parsed {
        /// Hosts in the order the file first names them.
        var order: [String] = []
        var hostVariables: [String: [String: String]] = [:]
        var hostLine: [String: Int] = [:]
        /// Each group's own hosts.
        var direct: [String: [String]] = [:]
        var children: [String: [String]] = [:]
        var groupVariables: [String: [String: String]] = [:]
        var groupLine: [String: Int] = [:]

        /// Hosts named on one line (or under one YAML key) of `group`, with that line's
        /// variables over what earlier lines set.
        mutating func add(_ names: [String], variables: [String: String], group: String, line: Int?) {
            for name in names {
                if hostVariables[name] == nil { order.append(name); hostLine[name] = line }
                hostVariables[name, default: [:]].merge(variables) { _, new in new }
                direct[group, default: []].append(name)
            }
        }
    }

    /// Resolves groups and applies variables, lowest precedence first: `all`'s vars, the
    /// host's groups' vars (by name), the host's own.
    static func assemble(_ parsed: Parsed, file: String, directory: String, warn: (String) -> Void) throws -> Inventory {
        let (order, hostVariables, hostLine, children, groupVariables, groupLine) =
            (parsed.order, parsed.hostVariables, parsed.hostLine, parsed.children, parsed.groupVariables, parsed.groupLine)
        var direct = parsed.direct
        guard !order.isEmpty else { throw FleetError.inventory(file: file, line: nil, detail: "the inventory lists no hosts") }
        // As Ansible reconciles: `ungrouped` holds exactly the hosts of no group but `all`.
        let grouped = Set(direct.filter { $0.key != "all" && $0.key != "ungrouped" }.values.joined())
        let ungrouped = order.filter { !grouped.contains($0) }
        if !ungrouped.isEmpty || direct["ungrouped"] != nil { direct["ungrouped"] = ungrouped }
        // `all` is every host, whatever the file says.
        direct["all"] = order
        var nodes = order.map { FleetNode(name: $0) }
        let groups = try Inventory.resolveGroups(nodes: &nodes, direct: direct, children: children, file: file, line: { groupLine[$0] })
        for index in nodes.indices {
            let name = nodes[index].name
            // Precedence, lowest first: all:vars, the host's groups' vars (by name), the host line.
            var variables = groupVariables["all"] ?? [:]
            for group in nodes[index].groups where group != "all" {
                variables.merge(groupVariables[group] ?? [:]) { _, new in new }
            }
            variables.merge(hostVariables[name] ?? [:]) { _, new in new }
            try apply(variables, to: &nodes[index], file: file, line: hostLine[name], directory: directory, warn: warn)
        }
        return Inventory(file: file, nodes: nodes, groups: groups)
    }

    /// A host pattern as Ansible's INI reader takes it: `NAME[:PORT]`, where NAME may hold
    /// ranges `[01:50]` (zero-padded like their start), `[a:f]`, with a stride `[1:9:2]`, and
    /// a missing start meaning 0 (`[:3]`); several ranges multiply, leftmost outermost.
    /// It names at most `limit` hosts.
    static func expand(_ pattern: String, limit: Int, fail: (String) -> FleetError) throws -> (names: [String], port: String?) {
        var name = pattern
        var port: String?
        // The port follows the last ':' outside brackets.
        var depth = 0
        var lastColon: String.Index?
        for index in pattern.indices {
            switch pattern[index] {
            case "[": depth += 1
            case "]": depth -= 1
            case ":" where depth == 0: lastColon = index
            default: break
            }
        }
        if let colon = lastColon {
            let digits = String(pattern[pattern.index(after: colon)...])
            guard let number = Int(digits), digits.allSatisfy(\.isNumber), (1...65535).contains(number) else {
                throw fail("'\(pattern)': '\(digits)' after ':' is not a port")
            }
            name = String(pattern[..<colon])
            port = digits
        }
        var budget = limit
        let names = try expandRanges(name, pattern: pattern, limit: limit, budget: &budget, fail: fail)
        for host in names where !Inventory.validName(host) {
            throw fail("'\(host)' (from '\(pattern)') is not a host name slipway can select: letters, digits, '-', '_' and '.'")
        }
        return (names, port)
    }

    private static let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

    private static func expandRanges(_ name: String, pattern: String, limit: Int, budget: inout Int,
                                     fail: (String) -> FleetError) throws -> [String] {
        guard let open = name.firstIndex(of: "[") else {
            budget -= 1
            guard budget >= 0 else { throw fail("'\(pattern)' names more than \(limit) hosts") }
            return [name]
        }
        guard let close = name[open...].firstIndex(of: "]") else { throw fail("'\(pattern)': a range '[' has no ']'") }
        let head = String(name[..<open]), tail = String(name[name.index(after: close)...])
        let bounds = name[name.index(after: open)..<close].split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard bounds.count == 2 || bounds.count == 3 else { throw fail("'\(pattern)': a host range is [begin:end] or [begin:end:step]") }
        let begin = bounds[0].isEmpty ? "0" : bounds[0], end = bounds[1]
        guard !end.isEmpty else { throw fail("'\(pattern)': a host range needs an end") }
        let step = bounds.count == 3 ? Int(bounds[2]) : 1
        guard let step, step > 0 else { throw fail("'\(pattern)': the step of a host range is a positive number") }
        var values: [String] = []
        if begin.count == 1, end.count == 1, let first = letters.firstIndex(of: Character(begin)), let last = letters.firstIndex(of: Character(end)) {
            guard first <= last else { throw fail("'\(pattern)': a host range goes from its begin up to its end") }
            values = stride(from: first, through: last, by: step).map { String(letters[$0]) }
        } else {
            guard let low = Int(begin), let high = Int(end), low >= 0, begin.allSatisfy(\.isNumber), end.allSatisfy(\.isNumber) else {
                throw fail("'\(pattern)': a host range is numbers ([01:50]) or single letters ([a:f])")
            }
            guard low <= high else { throw fail("'\(pattern)': a host range goes from its begin up to its end") }
            guard (high - low) / step < limit else { throw fail("'\(pattern)' names more than \(limit) hosts") }
            // A begin with a leading zero pads every number to its width, which the end must share.
            let width = begin.hasPrefix("0") && begin.count > 1 ? begin.count : 0
            if width > 0, end.count != width { throw fail("'\(pattern)': a zero-padded range has a begin and an end of the same width") }
            values = stride(from: low, through: high, by: step).map { number in
                let text = String(number)
                return String(repeating: "0", count: max(0, width - text.count)) + text
            }
        }
        var names: [String] = []
        for value in values { names += try expandRanges(head + value + tail, pattern: pattern, limit: limit, budget: &budget, fail: fail) }
        return names
    }

    static func apply(_ variables: [String: String], to node: inout FleetNode, file: String, line: Int?,
                              directory: String, warn: (String) -> Void) throws {
        func fail(_ detail: String) -> FleetError { .inventory(file: file, line: line, detail: "\(node.name): \(detail)") }
        for (key, value) in variables.sorted(by: { $0.key < $1.key }) {
            switch key {
            case "ansible_host", "ansible_ssh_host": node.host = value
            case "ansible_port", "ansible_ssh_port":
                guard let port = Int(value), (1...65535).contains(port) else { throw fail("\(key)=\(value) is not a port") }
                node.port = port
            case "ansible_user", "ansible_ssh_user": node.user = value
            case "ansible_ssh_common_args", "ansible_ssh_extra_args":
                var options = try split(value, fail: { fail($0) })
                // `-F FILE` becomes the ssh config, so relative names resolve like the TOML's.
                if let at = options.firstIndex(of: "-F"), at + 1 < options.count {
                    let config = options[at + 1]
                    node.sshConfig = config.hasPrefix("/") ? config : URL(fileURLWithPath: directory).appendingPathComponent(config).standardizedFileURL.path
                    options.removeSubrange(at...(at + 1))
                }
                node.sshOptions += options
            case "ansible_connection":
                switch value {
                case "ssh", "smart", "paramiko": node.transport = .ssh
                case "local": node.transport = .local
                default: throw fail("ansible_connection=\(value) is not supported (ssh or local)")
                }
            case "slipway_root":
                guard value.hasPrefix("/") else { throw fail("slipway_root must be an absolute path") }
                node.root = value
            case "slipway_backend":
                guard let kind = BackendKind(rawValue: value) else { throw fail("slipway_backend=\(value): use one of \(BackendKind.names.joined(separator: ", "))") }
                node.backend = kind
            case "slipway_path":
                guard value.hasPrefix("/") else { throw fail("slipway_path must be an absolute path") }
                node.slipwayPath = value
            case "slipway_node_config": node.nodeConfig = value
            default:
                // Checked where it was written (`check`): another ansible_* variable was
                // warned about, anything else is the inventory's own business.
                break
            }
        }
    }

    /// Checks one `key=value` where the file sets it (`place` is file:line): an unknown
    /// `slipway_*` variable is an error, an unknown `ansible_*` one a warning, and a host or
    /// user that begins with '-' an error (ssh would take it for an option). Variables with
    /// neither prefix belong to the playbooks and are left alone.
    static func check(_ key: String, _ value: String, at place: String, warn: (String) -> Void, note: (String) -> Void,
                      fail: (String) -> FleetError) throws {
        if key.hasPrefix("slipway_"), !slipwayVariables.contains(key) {
            throw fail("unknown variable \(key); slipway's are \(slipwayVariables.sorted().joined(separator: ", "))")
        }
        if key.hasPrefix("ansible_"), !knownVariables.contains(key) {
            warn("\(place): ignoring \(key) (slipway does not use it)")
        }
        if !key.hasPrefix("slipway_"), !key.hasPrefix("ansible_") {
            note("\(place): \(key) belongs to the playbooks; slipway leaves it alone")
        }
        if destinationVariables.contains(key), value.hasPrefix("-") {
            throw fail("\(key)=\(value): an ssh host or user cannot begin with '-' (ssh would read it as an option)")
        }
    }

    /// Splits a line into words, honouring single and double quotes as a shell would.
    static func split(_ line: String, fail: (String) -> FleetError) throws -> [String] {
        var words: [String] = []
        var current = ""
        var quote: Character? = nil
        var inWord = false
        for character in line {
            if let open = quote {
                if character == open { quote = nil } else { current.append(character) }
            } else if character == "'" || character == "\"" {
                quote = character
                inWord = true
            } else if character == " " || character == "\t" {
                if inWord { words.append(current); current = ""; inWord = false }
            } else if character == "#" && !inWord {
                break
            } else {
                current.append(character)
                inWord = true
            }
        }
        if quote != nil { throw fail("unterminated quote") }
        if inWord { words.append(current) }
        return words
    }
}
