import Foundation
import Testing
@testable import SlipwaySystem

@Suite("CommandRunner")
struct CommandRunnerTests {
    let runner = CommandRunner()

    @Test func capturesStandardOutput() throws {
        let result = try runner.run(Command(["printf", "a b\\n"]))
        #expect(result.outputText == "a b\n")
    }

    @Test func failureNamesCommandStatusAndStderrTail() throws {
        do {
            try runner.run(Command(["sh", "-c", "echo first >&2; echo last words >&2; exit 3"]))
            Issue.record("a failing command must throw")
        } catch let error as CommandError {
            let text = error.description
            #expect(text.contains("sh -c"))
            #expect(text.contains("exited with status 3"))
            #expect(text.contains("last words"))
        }
    }

    @Test func feedsStandardInputAndDrainsLargeOutput() throws {
        let input = Data(repeating: 0x61, count: 3 << 20)
        let result = try runner.run(Command(["cat"], input: .bytes(input)))
        #expect(result.standardOutput == input)
    }

    @Test func timeoutStopsTheChild() throws {
        let start = ContinuousClock.now
        #expect(throws: CommandError.self) {
            try runner.run(Command(["sleep", "30"], timeout: .milliseconds(300)))
        }
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test func missingProgramSaysSo() throws {
        do {
            try runner.run(Command(["slipway-no-such-program"]))
            Issue.record("a missing program must throw")
        } catch let error as CommandError {
            #expect(error.description.contains("not installed"))
        }
    }

    @Test func environmentAndWorkingDirectory() throws {
        let result = try runner.run(Command(
            ["sh", "-c", "echo $SLIPWAY_TEST_VALUE; pwd"], environment: ["SLIPWAY_TEST_VALUE": "42"],
            workingDirectory: "/usr"))
        #expect(result.outputText == "42\n/usr\n")
    }

    @Test func signalDeathIsReported() throws {
        let result = try runner.runAllowingFailure(Command(["sh", "-c", "kill -9 $$"]))
        #expect(result.signal == 9)
        #expect(!result.succeeded)
    }
}

@Suite("CommandRunner descriptors")
struct CommandRunnerDescriptorTests {
    @Test func childrenInheritOnlyTheStandardDescriptors() throws {
        // A descriptor opened without close-on-exec in this process must not reach a child.
        // Moved high, so it cannot be mistaken for a descriptor the child opens itself.
        let opened = open("/dev/null", O_RDONLY)
        let leaked = fcntl(opened, F_DUPFD, 200)
        close(opened)
        #expect(leaked >= 200)
        defer { close(leaked) }
        let result = try CommandRunner().run(Command(["ls", "/proc/self/fd"]))
        let fds = result.outputText.split(separator: "\n").compactMap { Int32($0) }
        #expect(!fds.contains(leaked), "inherited descriptors: \(fds)")
    }
}
