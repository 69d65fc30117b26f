import CLibFuzzer
import Foundation
import Glibc

/// The input function of the running target, set once by `FuzzTarget.run` before libFuzzer
/// starts; libFuzzer calls it from one thread (or one per `-jobs` process).
nonisolated(unsafe) private var fixtures: [Any] = []

nonisolated(unsafe) private var testOneInput: ((UnsafeRawBufferPointer) -> Void)?

/// libFuzzer's entry point, as every libFuzzer target exports it.
@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    testOneInput?(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// One fuzz target's program. SwiftPM links an executable with its own `main` (the
/// module's top-level code), so libFuzzer's `main` is not used: the top-level code calls
/// `run`, which hands the command line to libFuzzer's driver.
///
///     fuzz-NAME [libFuzzer options] [CORPUS_DIR…]     fuzz (libFuzzer's usage)
///     fuzz-NAME --write-seeds DIR                     write the target's seed inputs
public enum FuzzTarget {
    /// Prepares the target's fixture once (`setUp`), then runs libFuzzer over `body`, or
    /// writes `seeds` (file name → bytes) when asked. Never returns.
    public static func run<Fixture>(
        setUp: () throws -> Fixture,
        seeds: (Fixture) throws -> [String: Data],
        body: @escaping (Fixture, UnsafeRawBufferPointer) -> Void
    ) -> Never {
        let arguments = CommandLine.arguments
        let fixture: Fixture
        do {
            fixture = try setUp()
        } catch {
            fail("setting up the fixture failed: \(error)")
        }
        // Reachable until exit, so that LeakSanitizer's check at exit does not report it.
        fixtures.append(fixture)
        if arguments.count >= 2, arguments[1] == "--write-seeds" {
            guard arguments.count == 3 else { fail("usage: \(arguments[0]) --write-seeds DIR") }
            do {
                try writeSeeds(try seeds(fixture), into: arguments[2])
            } catch {
                fail("writing the seeds failed: \(error)")
            }
            exit(0)
        }
        UserNamespace.enter()
        testOneInput = { body(fixture, $0) }
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput))
    }

    private static func writeSeeds(_ seeds: [String: Data], into directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (name, data) in seeds.sorted(by: { $0.key < $1.key }) {
            try data.write(to: URL(fileURLWithPath: directory + "/" + name))
        }
        FileHandle.standardError.write(Data("wrote \(seeds.count) seeds into \(directory)\n".utf8))
    }

    private static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("\(CommandLine.arguments[0]): \(message)\n".utf8))
        exit(2)
    }
}
