import Foundation
import SlipwayRecipe
import SlipwaySystem
import SlipwayTestSupport
import Testing

/// Inputs that crashed a fuzz target (docs/fuzzing.md), kept as files in FuzzInputs/.
private let fuzzInputs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("FuzzInputs").path

@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    /// fuzz-recipe: a table header whose name does not begin with a key (here a comment,
    /// `[# …`) made toml++ (TOMLKit) fail an assertion and abort the process; it is a syntax
    /// error with its line. The input is recipes/python-web.toml behind a `[`, as the
    /// fuzzer's first find began.
    @Test func tableHeaderStartingWithCommentIsASyntaxError() throws {
        let path = fuzzInputs + "/recipe-header-comment.toml"
        #expect(throws: RecipeError.self) { try Recipe.load(path: path) }
        do {
            _ = try Recipe.load(path: path)
        } catch let RecipeError.syntax(file, line, column, message) {
            #expect(file == path && line == 1 && column == 1)
            #expect(message.contains("table header") && message.contains("'#'"))
        }
    }

    /// fuzz-recipe's second find, as it wrote it: `[`0lease]` (a backtick for an `r`).
    @Test func tableHeaderStartingWithABacktickIsASyntaxError() throws {
        #expect(throws: RecipeError.self) { try Recipe.load(path: fuzzInputs + "/recipe-header-backtick.toml") }
    }

    /// Each made toml++ abort (fuzz-recipe: `[#`, `[`0lease]`; fuzz-inventory-toml: `["n1", }n2"]`).
    @Test(arguments: ["[#", "[# x]\n", "[ #\n", "[\t#]", "[[#]]", "[[ # c\n", "name = 1\n  [  # c\n",
                      "[`0lease]\nname = \"app\"\n", "[!]", "[=]", "[.]", "[", "[\u{E9}]", "[[`]]",
                      "a = [}]", "a = [1, }]\n", "a = [ # c\n}]", "[t]\nnodes = [\"n1\", }n2\"]\n"])
    func constructsThatAbortedAreSyntaxErrors(text: String) throws {
        #expect(throws: TOMLFileError.self) { try TOMLTableReader.document(text: text, file: "t.toml") }
        #expect(TOMLTableReader.abortingConstruct(text) != nil)
    }

    /// What the check must not refuse: brackets and `#` inside values, strings and comments.
    @Test(arguments: [
        "a = [\n  [ # a row\n    1, 2],\n]\n",
        "a = \"[#\"\n[b]\nc = 1\n",
        "a = \"\"\"\n[# not a header\n\"\"\"\n",
        "a = '''\n[ # nor this\n'''\n",
        "# [# a comment\n[t]\n",
        "t = { a = [ 1 ] }\n[\"#quoted\"]\nx = 1\n",
        "[ 'lit' ]\n[[ -a_1 ]]\n[b . c]\n",
        "a = [ { b = 1 }, { c = [ 2 ] } ]\n",
    ])
    func bracketsInValuesAreNotHeaders(text: String) throws {
        #expect(TOMLTableReader.abortingConstruct(text) == nil)
        _ = try TOMLTableReader.document(text: text, file: "t.toml")
    }

    /// Nor any recipe of recipes/.
    @Test func theRepositorysRecipesPassTheCheck() throws {
        let recipes = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("recipes").path
        let names = try FileManager.default.contentsOfDirectory(atPath: recipes).filter { $0.hasSuffix(".toml") }
        #expect(!names.isEmpty)
        for name in names {
            let text = try String(contentsOfFile: recipes + "/" + name, encoding: .utf8)
            #expect(TOMLTableReader.abortingConstruct(text) == nil, "\(name)")
        }
    }
}
