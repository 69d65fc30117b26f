import Testing
@testable import SlipwayExport

/// The image size policy of `slipway export` (no mkfs needed).
@Suite("Export: image sizes")
struct ImageSizeTests {
    @Test("--size parses binary units and rounds up to 4 KiB blocks")
    func sizeParsing() throws {
        #expect(try ImageSize.parse("512M") == 512 << 20)
        #expect(try ImageSize.parse("2G") == 2 << 30)
        #expect(try ImageSize.parse("2GiB") == 2 << 30)
        #expect(try ImageSize.parse("1.5G") == 3 << 29)
        #expect(try ImageSize.parse("800mb") == 800 << 20)
        #expect(try ImageSize.parse("16777217") == (16 << 20) + 4096)
        #expect(try ImageSize.parse("1T") == 1 << 40)
        #expect(ImageSize.format(64 << 20) == "64 MiB" && ImageSize.format(3 << 29) == "1.5 GiB")
        // Sizes that are not sizes.
        for text in ["", "abc", "12X", "-5M", "1M", "1.2.3G"] {
            #expect(throws: ExportError.self, "--size '\(text)'") { try ImageSize.parse(text) }
        }
    }
}
