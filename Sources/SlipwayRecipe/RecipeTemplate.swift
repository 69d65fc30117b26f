import Foundation

/// The `{{name}}` templates of recipes: paths in `[[files]]` and the contents of template files.
public enum RecipeTemplate {
    /// Expands `{{name}}` (spaces allowed inside the braces) from `variables`.
    package static func expand(_ text: String, variables: [String: String], unknown: (String) throws -> Never) throws -> String {
        var result = ""
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            result += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                rest = rest[open.lowerBound...]
                break
            }
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            guard let value = variables[name] else { try unknown(name) }
            result += value
            rest = rest[close.upperBound...]
        }
        return result + rest
    }
}
