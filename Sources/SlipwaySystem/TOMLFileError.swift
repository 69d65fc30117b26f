/// Errors of reading a TOML file (a recipe, an inventory). Each names the file and, where
/// one is known, the line and key, and says what to change.
public enum TOMLFileError: Error, CustomStringConvertible, Sendable, Equatable {
    case unreadable(file: String, detail: String)
    case syntax(file: String, line: Int, column: Int, message: String)
    case unknownKey(file: String, line: Int?, key: String, allowed: [String])
    case wrongType(file: String, line: Int?, key: String, expected: String, found: String)
    case missingKey(file: String, line: Int?, key: String, hint: String)
    case invalidValue(file: String, line: Int?, key: String, value: String, reason: String)
    case sourceNotFound(file: String, line: Int?, key: String, path: String)

    /// `file:line` or `file`.
    package static func location(_ file: String, _ line: Int?) -> String {
        line.map { "\(file):\($0)" } ?? file
    }

    public var description: String {
        switch self {
        case let .unreadable(file, detail):
            return "cannot read \(file): \(detail)"
        case let .syntax(file, line, column, message):
            return "\(file):\(line):\(column): TOML syntax error: \(message)"
        case let .unknownKey(file, line, key, allowed):
            return "\(Self.location(file, line)): unknown key '\(key)'; allowed here: \(allowed.joined(separator: ", "))"
        case let .wrongType(file, line, key, expected, found):
            return "\(Self.location(file, line)): '\(key)' must be \(expected), not \(found)"
        case let .missingKey(file, line, key, hint):
            return "\(Self.location(file, line)): '\(key)' is required; \(hint)"
        case let .invalidValue(file, line, key, value, reason):
            return "\(Self.location(file, line)): '\(key)' = \(value) is not valid: \(reason)"
        case let .sourceNotFound(file, line, key, path):
            return "\(Self.location(file, line)): '\(key)' names \(path), which does not exist (paths are relative to the recipe's directory)"
        }
    }
}

/// A recipe's errors are those of its TOML file.
public typealias RecipeError = TOMLFileError
