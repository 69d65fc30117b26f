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

    /// fuzz-recipe's third find (2026-12-07, a 30-minute run), as it wrote it: a mangled
    /// `source_date_epoch` whose value `2025-01-01T)00:000:0Z: …` toml++ took for a date-time
    /// and then asserted a digit after the `T`.
    @Test func dateTimeWithoutATimeIsASyntaxError() throws {
        let path = fuzzInputs + "/recipe-datetime-no-time.toml"
        do {
            _ = try Recipe.load(path: path)
            Issue.record("\(path) was read")
        } catch let RecipeError.syntax(file, line, column, message) {
            #expect(file == path && line == 2 && column == 16)
            #expect(message.contains("date-time"), "\(message)")
        }
    }

    /// fuzz-recipe's fifth find (2026-12-07, after 2,071,843 executions of a run), as it wrote
    /// it: `ga= [[[[[[` then U+0085 (NEL): toml++ skips only ASCII blanks before an array's
    /// element, then asserts that the element does not begin with a value terminator, and
    /// a Unicode line break is one.
    @Test func unicodeLineBreakWhereAnArrayExpectsAnElementIsASyntaxError() throws {
        let path = fuzzInputs + "/recipe-array-unicode-line-break.toml"
        do {
            _ = try Recipe.load(path: path)
            Issue.record("\(path) was read")
        } catch let RecipeError.syntax(file, line, column, message) {
            #expect(file == path && line == 1 && column == 11)
            #expect(message.contains("U+0085"), "\(message)")
        }
    }

    /// Each made toml++ abort (fuzz-recipe: `[#`, `[`0lease]`, `2025-01-01T)`, an array's NEL; fuzz-inventory-toml: `["n1", }n2"]`).
    @Test(arguments: ["[#", "[# x]\n", "[ #\n", "[\t#]", "[[#]]", "[[ # c\n", "name = 1\n  [  # c\n",
                      "[`0lease]\nname = \"app\"\n", "[!]", "[=]", "[.]", "[", "[\u{E9}]", "[[`]]",
                      "a = [}]", "a = [1, }]\n", "a = [ # c\n}]", "[t]\nnodes = [\"n1\", }n2\"]\n",
                      "a = 2025-01-01T)00:00:00Z\n", "a=2025-01-01tx:00", "a = [ 1979-05-27T07:32:00Z,\n  2025-01-01T:00:00 ]",
                      "t = { a = 2025-01-01T-0:00 }", "a = 2025-01-01T",
                      "tt = 2--------n 0\t\u{0} (\u{0}0", "a = 2025-01-01 0\n", "a = [2025-01-01 1]", "a = 2_025-01-01 7,",
                      "a = 2025-01-0\u{E9} 1\n",
                      "a = [\u{85}1]\n", "a = [1,\u{85}2]\n", "a = [\n\u{85}1]\n", "a = [ # c\n\u{85} 1]\n",
                      "a = [\u{2028}1]\n", "a = [\u{2029}1]\n", "a = [{ b = 1 },\u{85}]\n"])
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
        "a = 1979-05-27T07:32:00Z\nb = 1979-05-27t07:32:00\nc = 1979-05-27 07:32:00\nd = 1979-05-27\n",
        "a = [ 1979-05-27T07:32:00Z, 1979-05-27 ]\n",
        "2025-01-01Tx = 1\nt = { 2025-01-01Ty = \"2025-01-01T)\" }\n",
        "a = 1979-05-27 07:32:00\nb = [ 1979-05-27 07:32:00.5, 1979-05-27 ]\nc = 1979-05-27 # 1\n",
        "2025-01-01 = 1\n",
        // Unicode line breaks toml++ reports as errors of its own, or where they are text.
        "a = \"[\u{85}\"\nb = ['\u{2028}']\n# [\u{85}\n",
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
