import Foundation
import SlipwayRecipe
import SlipwaySystem
import SlipwayTestSupport
import Testing

/// Inputs that crashed a fuzz target (docs/fuzzing.md), kept as files in FuzzInputs/.
private let fuzzInputs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("FuzzInputs").path

@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    /// fuzz-recipe: a table header whose name begins with a comment (`[# …`) made toml++
    /// (TOMLKit) fail an assertion and abort the process; it is a syntax error with its line.
    @Test func tableHeaderStartingWithCommentIsASyntaxError() throws {
        let path = fuzzInputs + "/recipe-header-comment.toml"
        #expect(throws: RecipeError.self) { try Recipe.load(path: path) }
        do {
            _ = try Recipe.load(path: path)
        } catch let RecipeError.syntax(file, line, column, message) {
            #expect(file == path && line == 1 && column == 1)
            #expect(message.contains("table header"))
        }
    }

    @Test(arguments: ["[#", "[# x]\n", "[ #\n", "[\t#]", "[[#]]", "[[ # c\n", "name = 1\n  [  # c\n"])
    func headerCommentVariants(text: String) throws {
        #expect(throws: TOMLFileError.self) { try TOMLTableReader.document(text: text, file: "t.toml") }
        #expect(TOMLTableReader.headerStartingWithComment(text) != nil)
    }

    /// What the check must not refuse: brackets and `#` inside values, strings and comments.
    @Test(arguments: [
        "a = [\n  [ # a row\n    1, 2],\n]\n",
        "a = \"[#\"\n[b]\nc = 1\n",
        "a = \"\"\"\n[# not a header\n\"\"\"\n",
        "a = '''\n[ # nor this\n'''\n",
        "# [# a comment\n[t]\n",
        "t = { a = [ 1 ] }\n[\"#quoted\"]\nx = 1\n",
    ])
    func bracketsInValuesAreNotHeaders(text: String) throws {
        #expect(TOMLTableReader.headerStartingWithComment(text) == nil)
        _ = try TOMLTableReader.document(text: text, file: "t.toml")
    }
}
