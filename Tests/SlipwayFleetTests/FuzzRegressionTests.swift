import Foundation
import SlipwayFleet
import SlipwaySystem
import Testing

/// Inputs that crashed a fuzz target (docs/fuzzing.md), kept as files in FuzzInputs/.
private let fuzzInputs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("FuzzInputs").path

@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    /// fuzz-inventory-toml: a `}` where an array expects an element (`nodes = ["node1",
    /// "nwde2", }node3"]`) made toml++ (TOMLKit) fail an assertion and abort the process; it
    /// is an inventory error naming the line.
    @Test func braceInAnArrayIsASyntaxError() throws {
        let path = fuzzInputs + "/inventory-array-brace.toml"
        #expect(throws: TOMLFileError.self) { try Inventory.load(path: path) }
        do {
            _ = try Inventory.load(path: path)
        } catch let TOMLFileError.syntax(file, line, _, message) {
            #expect(file == path && line == 8)
            #expect(message.contains("array"))
        }
    }

    /// fuzz-inventory-toml (2026-12-07, a 30-minute run), as it wrote it: `tt = 2--------n 0`
    /// then a tab. Ten characters shaped as a date, a space and one digit: toml++'s scan for
    /// a time after the space asserted that the character after the digit goes on.
    @Test func dateThenALoneDigitIsASyntaxError() throws {
        let path = fuzzInputs + "/inventory-date-lone-digit.toml"
        do {
            _ = try Inventory.load(path: path)
            Issue.record("\(path) was read")
        } catch let TOMLFileError.syntax(file, line, column, message) {
            #expect(file == path && line == 1 && column == 6)
            #expect(message.contains("single digit"), "\(message)")
        }
    }
}
