import Foundation
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem
/// Errors of the controller side (inventory, selection, transport, push, deploy). Each names
/// the inventory line, the node or the release, and says what to do.
public enum FleetError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The inventory file cannot be read, or holds something wrong (file:line where known).
    case inventory(file: String, line: Int?, detail: String)
    /// A selector term matched no node.
    case selectorMatchesNothing(term: String, known: [String])
    /// The selection is empty.
    case emptySelection(selector: String)
    /// A node could not be reached or its reply could not be read.
    case transport(node: String, detail: String)
    /// slipway is missing or unusable on a node and could not be installed.
    case nodeSlipway(node: String, detail: String)
    /// A node verb failed; `detail` is the node's own message, `code` its error code
    /// (`.other` when the node gave none).
    case nodeCommand(node: String, verb: String, detail: String, code: NodeErrorCode = .other)
    /// A bad option value (batch size, URL).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .inventory(file, line, detail):
            return "\(line.map { "\(file):\($0)" } ?? file): \(detail)"
        case let .selectorMatchesNothing(term, known):
            let shown = known.prefix(12).joined(separator: ", ") + (known.count > 12 ? ", …" : "")
            return "'\(term)' matches no node of the inventory (nodes: \(shown); groups are written @name)"
        case let .emptySelection(selector):
            return "the selection '\(selector)' is empty; name nodes, globs or @groups, separated by commas"
        case let .transport(node, detail):
            return "\(node): cannot reach the node: \(detail.trimmingCharacters(in: .whitespacesAndNewlines)); check that ssh reaches it with the inventory's host, port, user and ssh options (`slipway status --on \(node)` tries again without changing anything)"
        case let .nodeSlipway(node, detail):
            return "\(node): \(detail)"
        case let .nodeCommand(node, verb, detail, _):
            return "\(node): node \(verb) failed: \(detail)"
        case let .invalidArgument(detail):
            return detail
        }
    }
}
