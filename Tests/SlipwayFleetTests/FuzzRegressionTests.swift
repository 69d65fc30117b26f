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
}
