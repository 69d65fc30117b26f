import Foundation
import TOMLKit

/// A parsed TOML value, copied out of TOMLKit into a plain `Sendable` tree so validation
/// can walk it freely.
indirect enum TOMLNode: Sendable {
    case table([(key: String, value: TOMLNode)])
    case array([TOMLNode])
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case other(String)

    init(_ value: any TOMLValueConvertible) {
        switch value.type {
        case .table:
            let table = value.table ?? TOMLTable()
            self = .table(table.keys.map { key in (key, table[key].map(TOMLNode.init) ?? .other("nothing")) })
        case .array:
            self = .array((value.array.map { Array($0) } ?? []).map(TOMLNode.init))
        case .string: self = .string(value.string ?? "")
        case .int: self = .int(value.int ?? 0)
        case .double: self = .double(value.double ?? 0)
        case .bool: self = .bool(value.bool ?? false)
        case .date, .time, .dateTime: self = .other("a \(value.type)")
        }
    }

    /// What the value is, for messages ("a string", "an integer").
    var kind: String {
        switch self {
        case .table: return "a table"
        case .array: return "an array"
        case .string: return "a string"
        case .int: return "an integer"
        case .double: return "a floating-point number"
        case .bool: return "a boolean"
        case let .other(kind): return kind
        }
    }
}

/// Lines of keys and table headers in a TOML file's text (a recipe, an inventory): TOMLKit's values carry no position,
/// so errors about a key find its line here. Keys are dotted paths with array elements
/// numbered from 0 (`users[1].name`, `service.health.url`).
package struct TOMLSourceMap: Sendable {
    private(set) var lines: [String: Int] = [:]

    init(text: String) {
        var prefix = ""
        var arrayCounts: [String: Int] = [:]
        var multiline: String? = nil
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            if let delimiter = multiline {
                if rawLine.contains(delimiter) { multiline = nil }
                continue
            }
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("[[") {
                let name = Self.headerName(line, open: "[[", close: "]]")
                let count = arrayCounts[name, default: 0]
                arrayCounts[name] = count + 1
                prefix = "\(name)[\(count)]"
                lines[prefix] = lineNumber
                lines[name] = lines[name] ?? lineNumber
            } else if line.hasPrefix("[") {
                let name = Self.headerName(line, open: "[", close: "]")
                // A sub-table of an array element ([users.extra] after [[users]]) belongs to
                // the latest element.
                var resolved = name
                for (array, count) in arrayCounts where name.hasPrefix(array + ".") {
                    resolved = "\(array)[\(count - 1)]" + name.dropFirst(array.count)
                }
                prefix = resolved
                lines[prefix] = lineNumber
            } else if let equals = line.firstIndex(of: "=") {
                let key = line[..<equals].trimmingCharacters(in: .whitespaces)
                    .split(separator: ".").map { $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\"'")) }
                    .joined(separator: ".")
                let path = prefix.isEmpty ? key : prefix + "." + key
                lines[path] = lines[path] ?? lineNumber
                let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                for delimiter in ["\"\"\"", "'''"] where value.hasPrefix(delimiter) {
                    if !value.dropFirst(3).contains(delimiter) { multiline = delimiter }
                }
                if value.hasPrefix("["), !value.contains("]") { multiline = "]" }
            }
        }
    }

    private static func headerName(_ line: String, open: String, close: String) -> String {
        var body = line.dropFirst(open.count)
        if let end = body.range(of: close) { body = body[..<end.lowerBound] }
        return body.split(separator: ".").map { $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\"'")) }
            .joined(separator: ".")
    }

    /// The line of `path`, else of the nearest enclosing table that has one.
    package func line(of path: String) -> Int? {
        var candidate = path
        while true {
            if let line = lines[candidate] { return line }
            guard let cut = candidate.lastIndex(where: { $0 == "." || $0 == "[" }) else { return nil }
            candidate = String(candidate[..<cut])
        }
    }
}

/// One table of a TOML file being read: typed getters that record which keys were used, and a
/// `finish()` that rejects the keys nobody asked for.
package final class TOMLTableReader {
    let file: String
    let path: String
    package let map: TOMLSourceMap
    private let entries: [(key: String, value: TOMLNode)]
    private var allowed: [String] = []

    init(file: String, path: String, map: TOMLSourceMap, entries: [(key: String, value: TOMLNode)]) {
        self.file = file
        self.path = path
        self.map = map
        self.entries = entries
    }

    package func keyPath(_ key: String) -> String { path.isEmpty ? key : path + "." + key }
    package func line(_ key: String) -> Int? { map.line(of: keyPath(key)) }
    package var line: Int? { map.line(of: path) }

    private func value(_ key: String) -> TOMLNode? {
        allowed.append(key)
        return entries.first(where: { $0.key == key })?.value
    }

    package func has(_ key: String) -> Bool { entries.contains { $0.key == key } }

    /// The keys present, in file order (for tables whose keys are names, like `[nodes]`).
    package var keys: [String] { entries.map(\.key) }

    /// Reads `text` as a TOML document; syntax errors name the file, line and column.
    package static func document(text: String, file: String) throws -> TOMLTableReader {
        if let (line, column, message) = abortingConstruct(text) {
            throw TOMLFileError.syntax(file: file, line: line, column: column, message: message)
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw TOMLFileError.syntax(file: file, line: error.source.begin.line, column: error.source.begin.column, message: error.description)
        }
        guard case let .table(entries) = TOMLNode(table) else {
            throw TOMLFileError.unreadable(file: file, detail: "the document is not a table")
        }
        return TOMLTableReader(file: file, path: "", map: TOMLSourceMap(text: text), entries: entries)
    }

    /// The first construct on which toml++ (inside TOMLKit) fails an assertion instead of
    /// reporting a syntax error, which aborts the process, release builds included (SwiftPM
    /// does not define NDEBUG): its line, column and what is wrong. Both were found by
    /// fuzzing (docs/fuzzing.md):
    ///
    /// - a table header whose name does not begin with a key: `[#`, `[ =`, `` [[` ``, a `[`
    ///   at the end. After the `[` (or `[[`) and blanks must come a bare key's character
    ///   (`A-Za-z0-9_-`), a quote, or the `]` of an empty name, which toml++ reports itself;
    /// - a `}` where an array expects an element: `a = [1, }]`;
    /// - a value that begins as a local date and a `T` but whose time does not begin with a
    ///   digit: `a = 2025-01-01T)00:00:00Z` (`parse_time` asserts its first digit once the
    ///   value's characters, `:` among them, have made it a date-time);
    /// - a value of ten characters shaped as a date and then a space and one digit alone:
    ///   `a = 2025-01-01 0` (looking for a time after the space, the scan asserts that the
    ///   character after that digit goes on).
    ///
    /// A header is a `[` that begins a line outside any value, so the scan skips strings and
    /// comments and follows the brackets of arrays and inline tables. A value begins after a
    /// `=`, and after the `[` or a `,` of an array.
    package static func abortingConstruct(_ text: String) -> (line: Int, column: Int, message: String)? {
        let bytes = Array(text.utf8)
        var i = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0, line = 1, lineStart = 0  // after a BOM
        var open: [UInt8] = []  // the brackets of the values being read, innermost last
        func at(_ k: Int) -> UInt8? { k < bytes.count ? bytes[k] : nil }
        func starts(_ s: String, _ k: Int) -> Bool { bytes[k...].starts(with: s.utf8) }
        func isDigit(_ k: Int) -> Bool { at(k).map { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") } ?? false }
        /// `YYYY-MM-DDT` (or `t`) at `k`, and no digit after it.
        func dateWithoutTime(_ k: Int) -> Bool {
            [0, 1, 2, 3, 5, 6, 8, 9].allSatisfy { isDigit(k + $0) } && at(k + 4) == UInt8(ascii: "-") && at(k + 7) == UInt8(ascii: "-")
                && (at(k + 10) == UInt8(ascii: "T") || at(k + 10) == UInt8(ascii: "t")) && !isDigit(k + 11)
        }
        /// Ten characters (`_` not counted, as toml++ does not), the first a digit and the fifth
        /// and eighth `-`, then a space and a digit that no digit follows.
        func dateThenLoneDigit(_ k: Int) -> Bool {
            let terminators: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, UInt8(ascii: ","), UInt8(ascii: "]"), UInt8(ascii: "}"), UInt8(ascii: "#")]
            var end = k
            while let b = at(end), !terminators.contains(b) { end += 1 }
            let characters = String(decoding: bytes[k..<end], as: UTF8.self).unicodeScalars.filter { $0 != "_" }.map { $0 }
            guard characters.count == 10, isDigit(k), characters[4] == "-", characters[7] == "-" else { return false }
            return at(end) == UInt8(ascii: " ") && isDigit(end + 1) && !isDigit(end + 2)
        }
        /// U+0085, U+2028 or U+2029 at `k`: line breaks to toml++'s value check, not to the
        /// loop that skips an array's blanks.
        func unicodeLineBreak(_ k: Int) -> Bool {
            (at(k) == 0xC2 && at(k + 1) == 0x85) || (at(k) == 0xE2 && at(k + 1) == 0x80 && (at(k + 2) == 0xA8 || at(k + 2) == 0xA9))
        }
        var atLineStart = true
        var atValue = false  // the next token begins a value
        while i < bytes.count {
            let c = bytes[i]
            if c == UInt8(ascii: "\n") {
                line += 1; lineStart = i + 1; atLineStart = true; i += 1
                if open.last != UInt8(ascii: "[") { atValue = false }  // only an array's values go on after a newline
                continue
            }
            if c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\r") { i += 1; continue }
            if c == UInt8(ascii: "#") { while i < bytes.count, bytes[i] != UInt8(ascii: "\n") { i += 1 }; continue }
            if atValue, open.last == UInt8(ascii: "["), unicodeLineBreak(i) {
                return (line, i - lineStart + 1, "a Unicode line break (U+0085, U+2028 or U+2029) where an array expects an element")
            }
            if atValue, dateWithoutTime(i) {
                return (line, i - lineStart + 1, "a date-time whose time does not begin with a digit")
            }
            if atValue, dateThenLoneDigit(i) {
                return (line, i - lineStart + 1, "a date followed by a space and a single digit, not a time")
            }
            let opensArray = c == UInt8(ascii: "[") && atValue
            atValue = c == UInt8(ascii: "=") || opensArray || (c == UInt8(ascii: ",") && open.last == UInt8(ascii: "["))
            if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                let quote = c
                let triple = starts(String(repeating: String(UnicodeScalar(quote)), count: 3), i)
                i += triple ? 3 : 1
                while i < bytes.count {
                    if quote == UInt8(ascii: "\""), bytes[i] == UInt8(ascii: "\\") {
                        if at(i + 1) == UInt8(ascii: "\n") {
                            if !triple { i += 1; break }  // not in a one-line string: toml++ reports it
                            line += 1; lineStart = i + 2  // a line-ending backslash
                        }
                        i += 2
                        continue
                    }
                    if bytes[i] == UInt8(ascii: "\n") {
                        if !triple { break }  // an unterminated one-line string: toml++ reports it
                        line += 1; lineStart = i + 1
                    }
                    if bytes[i] == quote, !triple || starts(String(repeating: String(UnicodeScalar(quote)), count: 3), i) {
                        i += triple ? 3 : 1
                        while triple, at(i) == quote { i += 1 }  // """a"""" ends with a quote in the string
                        break
                    }
                    i += 1
                }
                atLineStart = false
                continue
            }
            if c == UInt8(ascii: "["), open.isEmpty, atLineStart, !opensArray {
                var k = i + 1
                if at(k) == UInt8(ascii: "[") { k += 1 }
                while at(k) == UInt8(ascii: " ") || at(k) == UInt8(ascii: "\t") { k += 1 }
                let header = "a table header that does not begin with a key (found "
                guard let b = at(k) else { return (line, i - lineStart + 1, header + "the end of the file)") }
                let isKeyStart = (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z")) || (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z"))
                    || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
                    || b == UInt8(ascii: "\"") || b == UInt8(ascii: "'") || b == UInt8(ascii: "]")
                if !isKeyStart {
                    let found = b == UInt8(ascii: "\n") || b == UInt8(ascii: "\r") ? "the end of the line"
                        : b < 0x80 && b >= 0x20 ? "'\(Character(UnicodeScalar(b)))'" : String(format: "the byte 0x%02X", b)
                    return (line, i - lineStart + 1, header + found + ")")
                }
                // The header's name: nothing in it opens a value.
                while let b = at(k), b != UInt8(ascii: "\n"), b != UInt8(ascii: "#") { k += 1 }
                i = k
                atLineStart = false
                continue
            }
            if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") { open.append(c) }
            if c == UInt8(ascii: "}"), open.last == UInt8(ascii: "[") {
                return (line, i - lineStart + 1, "a '}' where an array expects an element")
            }
            if c == UInt8(ascii: "]") || c == UInt8(ascii: "}") { _ = open.popLast() }
            atLineStart = false
            i += 1
        }
        return nil
    }

    func wrongType(_ key: String, _ expected: String, _ found: TOMLNode) -> TOMLFileError {
        .wrongType(file: file, line: line(key), key: keyPath(key), expected: expected, found: found.kind)
    }

    package func invalid(_ key: String, _ value: String, _ reason: String) -> TOMLFileError {
        .invalidValue(file: file, line: line(key), key: keyPath(key), value: value, reason: reason)
    }

    package func missing(_ key: String, _ hint: String) -> TOMLFileError {
        .missingKey(file: file, line: line, key: keyPath(key), hint: hint)
    }

    package func string(_ key: String) throws -> String? {
        guard let node = value(key) else { return nil }
        guard case let .string(text) = node else { throw wrongType(key, "a string", node) }
        return text
    }

    package func requiredString(_ key: String, hint: String) throws -> String {
        guard let text = try string(key) else { throw missing(key, hint) }
        return text
    }

    package func int(_ key: String) throws -> Int? {
        guard let node = value(key) else { return nil }
        guard case let .int(number) = node else { throw wrongType(key, "an integer", node) }
        return number
    }

    package func double(_ key: String) throws -> Double? {
        guard let node = value(key) else { return nil }
        switch node {
        case let .int(number): return Double(number)
        case let .double(number): return number
        default: throw wrongType(key, "a number", node)
        }
    }

    package func bool(_ key: String) throws -> Bool? {
        guard let node = value(key) else { return nil }
        guard case let .bool(flag) = node else { throw wrongType(key, "a boolean (true or false)", node) }
        return flag
    }

    package func stringArray(_ key: String) throws -> [String]? {
        guard let node = value(key) else { return nil }
        guard case let .array(items) = node else { throw wrongType(key, "an array of strings", node) }
        return try items.map { item in
            guard case let .string(text) = item else { throw wrongType(key, "an array of strings", item) }
            return text
        }
    }

    /// A string, or an array of strings (`mirror = "…"` or `mirror = ["…", "…"]`).
    package func stringOrArray(_ key: String) throws -> [String]? {
        guard let node = value(key) else { return nil }
        switch node {
        case let .string(text): return [text]
        case let .array(items):
            return try items.map { item in
                guard case let .string(text) = item else { throw wrongType(key, "a string or an array of strings", item) }
                return text
            }
        default: throw wrongType(key, "a string or an array of strings", node)
        }
    }

    /// A file mode: an integer (`0o644`) or an octal string (`"0644"`).
    package func mode(_ key: String) throws -> UInt32? {
        guard let node = value(key) else { return nil }
        switch node {
        case let .int(number) where (0...0o7777).contains(number): return UInt32(number)
        case let .int(number): throw invalid(key, String(number), "a mode is 0o0 to 0o7777")
        case let .string(text):
            guard let number = UInt32(text.hasPrefix("0o") ? String(text.dropFirst(2)) : text, radix: 8), number <= 0o7777 else {
                throw invalid(key, "\"\(text)\"", "write the mode in octal, like \"0644\" or 0o644")
            }
            return number
        default: throw wrongType(key, "an octal mode (\"0644\" or 0o644)", node)
        }
    }

    package func table(_ key: String) throws -> TOMLTableReader? {
        guard let node = value(key) else { return nil }
        guard case let .table(entries) = node else { throw wrongType(key, "a table", node) }
        return TOMLTableReader(file: file, path: keyPath(key), map: map, entries: entries)
    }

    /// A table of string values (`[vars]`, `environment`).
    package func stringTable(_ key: String) throws -> [String: String]? {
        guard let table = try table(key) else { return nil }
        var result: [String: String] = [:]
        for (name, node) in table.entries {
            guard case let .string(text) = node else { throw table.wrongType(name, "a string", node) }
            result[name] = text
        }
        return result
    }

    /// An array of tables (`[[users]]`).
    package func tables(_ key: String) throws -> [TOMLTableReader] {
        guard let node = value(key) else { return [] }
        guard case let .array(items) = node else { throw wrongType(key, "an array of tables ([[\(keyPath(key))]])", node) }
        return try items.enumerated().map { index, item in
            guard case let .table(entries) = item else { throw wrongType(key, "an array of tables ([[\(keyPath(key))]])", item) }
            return TOMLTableReader(file: file, path: "\(keyPath(key))[\(index)]", map: map, entries: entries)
        }
    }

    /// Throws for the first key that no getter asked for.
    package func finish() throws {
        for (key, _) in entries where !allowed.contains(key) {
            throw TOMLFileError.unknownKey(file: file, line: line(key), key: keyPath(key), allowed: allowed)
        }
    }
}
