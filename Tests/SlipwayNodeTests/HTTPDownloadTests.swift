import Foundation
import Glibc
import Testing
@testable import SlipwayRegistry
@testable import SlipwaySystem
@testable import SlipwayTestSupport

@Suite("HTTP download: curl dies with slipway")
struct HTTPDownloadTests {
    /// The race the parent check closes: slipway killed after it started setpriv and before
    /// setpriv's prctl leaves a child whose parent is no longer slipway; it must not start curl.
    @Test("the wrapped command runs only while its parent is the one named; setpriv arms SIGKILL on the parent's death",
          .enabled(if: HTTPDownload.setprivInstalled, "setpriv (util-linux) is not installed"))
    func runsOnlyUnderItsParent() throws { try withTemporaryDirectory { dir in
        let runner = CommandRunner()
        let ran = dir + "/ran", orphan = dir + "/orphan"
        let wrapped = HTTPDownload.diesWithParent(["touch", ran])
        #expect(wrapped.first == "setpriv")
        let status = try runner.runAllowingFailure(Command(wrapped)).status
        #expect(status == 0)
        #expect(FileManager.default.fileExists(atPath: ran), "under its real parent the command runs")

        // A parent that is not this process: what a child of a slipway killed before the prctl sees.
        let stranger = HTTPDownload.diesWithParent(["touch", orphan], parent: getpid() == 1 ? 2 : 1)
        let strangerStatus = try runner.runAllowingFailure(Command(stranger)).status
        #expect(strangerStatus != 0)
        #expect(!FileManager.default.fileExists(atPath: orphan), "a child whose parent is gone must not start curl")
    } }

    @Test("a child of a parent killed with -9 dies with it",
          .enabled(if: HTTPDownload.setprivInstalled, "setpriv (util-linux) is not installed"))
    func childDiesWithParent() throws { try withTemporaryDirectory { dir in
        // The parent is a shell that starts the wrapped sleep and waits; its pid is the shell's $$.
        let pidFile = dir + "/child"
        let words = HTTPDownload.diesWithParent(["sleep", "300"], parent: 0).map { $0 == "0" ? "\"$$\"" : shellQuote($0) }
        let parent = Process()
        parent.executableURL = URL(fileURLWithPath: "/bin/sh")
        parent.arguments = ["-c", words.joined(separator: " ") + " & echo $! > \(shellQuote(pidFile)); wait"]
        try parent.run()
        var child: pid_t = 0
        for _ in 0..<200 where child == 0 {
            if let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)),
               let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8), comm.hasPrefix("sleep") { child = pid }
            else { usleep(20_000) }
        }
        defer { if child > 0 { kill(child, SIGKILL) } }
        try #require(child > 0, "the wrapped sleep did not start")
        kill(parent.processIdentifier, SIGKILL)
        parent.waitUntilExit()
        var gone = false
        for _ in 0..<250 where !gone {
            // Dead, or a zombie waiting for init to reap it.
            let state = (try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8))?.split(separator: ")").last?.split(separator: " ").first
            gone = state == nil || state == "Z"
            if !gone { usleep(20_000) }
        }
        #expect(gone, "the child outlived its parent killed with -9")
    } }

    func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}
