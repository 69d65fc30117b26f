import Foundation
import Testing
@testable import SlipwayCommands
@testable import SlipwaySystem
@testable import SlipwayArchive
@testable import SlipwayRelease
@testable import SlipwayRecipe
@testable import SlipwayBuild
@testable import SlipwayExport
@testable import SlipwayNodeProtocol
@testable import SlipwayNode
@testable import SlipwayFleet
@testable import SlipwayTestSupport

/// The built `slipway` binary, found from this file's place in the package.
private let slipwayBinary: String? = {
    let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let path = packageRoot.appendingPathComponent(".build/debug/slipway").path
    return FileManager.default.isExecutableFile(atPath: path) ? path : nil
}()

private let binaryMissing = "the slipway binary is not built at .build/debug/slipway; run swift build first"

/// What a run of the binary produced.
private struct Run {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a command line in this process (issue 14: commands are testable without the binary),
/// with stdout and stderr captured.
private func slipway(_ arguments: [String]) -> Run {
    let capture = OutputCapture()
    let status = Slipway.run(arguments, environment: CommandEnvironment(capture: capture))
    return Run(status: status, stdout: capture.standardOutput, stderr: capture.standardError)
}

/// Runs the built binary: for what depends on the process (its environment variables, or a
/// local node transport, which starts this same binary for the node verbs).
private func slipwayBinary(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Run {
    let binary = try #require(slipwayBinary, Comment(rawValue: binaryMissing))
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment
    environment.removeValue(forKey: "SLIPWAY_STORE")
    environment.removeValue(forKey: "SOURCE_DATE_EPOCH")
    environment.merge(extra) { $1 }
    process.environment = environment
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Small outputs: reading one pipe to its end cannot block the other.
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Run(status: process.terminationStatus,
               stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
}

/// Expects a failure reported as exactly one `slipway: error:` line containing `needle`.
private func expectOneLineError(_ run: Run, containing needle: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(run.status == 1, "exit status \(run.status), stderr: \(run.stderr)", sourceLocation: sourceLocation)
    let lines = run.stderr.split(separator: "\n", omittingEmptySubsequences: true)
    #expect(lines.count == 1, "stderr: \(run.stderr)", sourceLocation: sourceLocation)
    #expect(lines.first?.hasPrefix("slipway: error: ") == true, "stderr: \(run.stderr)", sourceLocation: sourceLocation)
    #expect(run.stderr.contains(needle), "stderr lacks '\(needle)': \(run.stderr)", sourceLocation: sourceLocation)
}

@Suite("Command line: bad input gives one clear error line and a non-zero exit")
struct CommandLineErrorTests {
    /// A store with web@1.0 signed by `key` (its archive stands in for a real one), plus a
    /// second key pair `other`.
    private func fixture(_ dir: String) throws -> (store: String, release: String) {
        try ReleaseSigning.generateKey(at: dir + "/key")
        try ReleaseSigning.generateKey(at: dir + "/other")
        let release = try storeRelease(in: dir + "/store", key: try ReleaseSigning.loadSigningKey(path: dir + "/key"))
        return (dir + "/store", release)
    }

    @Test("a sound signed release verifies (the fixture is good)", .enabled(if: slipwayBinary != nil, Comment(rawValue: binaryMissing)))
    func soundRelease() throws {
        try withTemporaryDirectory { dir in
            let (store, _) = try fixture(dir)
            let run = slipway(["verify", "web@1.0", "--trust", dir + "/key.pub", "--store", store])
            #expect(run.status == 0, "stderr: \(run.stderr)")
            #expect(run.stdout.contains("web@1.0: OK"))
            let inspect = try slipwayBinary(["inspect", "web@1.0", "--json"], environment: ["SLIPWAY_STORE": store])
            #expect(inspect.status == 0, "stderr: \(inspect.stderr)")
            #expect(inspect.stdout.contains("\"status\" : \"unchecked\""))
        }
    }

    @Test("pack: missing tree, unreadable key", .enabled(if: slipwayBinary != nil, Comment(rawValue: binaryMissing)))
    func packMissingPaths() throws {
        try withTemporaryDirectory { dir in
            expectOneLineError(slipway(["pack", dir + "/nope", "--name", "web", "--version", "1", "--store", dir + "/s"]),
                               containing: dir + "/nope")
            try FileManager.default.createDirectory(atPath: dir + "/tree", withIntermediateDirectories: true)
            expectOneLineError(slipway(["pack", dir + "/tree", "--name", "web", "--version", "1", "--store", dir + "/s",
                                            "--sign-key", dir + "/missing-key"]),
                               containing: "cannot read key \(dir)/missing-key")
            expectOneLineError(try slipwayBinary(["pack", dir + "/tree", "--name", "web", "--version", "1", "--store", dir + "/s"],
                                                 environment: ["SOURCE_DATE_EPOCH": "soon"]),
                               containing: "SOURCE_DATE_EPOCH")
            #expect(!FileManager.default.fileExists(atPath: dir + "/s/web/1"))
        }
    }

    /// `slipway --version` is answered before anything starts (Slipway.main): the same line,
    /// byte for byte, as argument-parser's, which every other spelling still reaches.
    @Test("--version: the early answer is argument-parser's line", .enabled(if: slipwayBinary != nil, Comment(rawValue: binaryMissing)))
    func versionLine() throws {
        let early = try slipwayBinary(["--version"])
        #expect(early.status == 0 && early.stderr.isEmpty, "\(early)")
        let parsed = slipway(["--version"])
        #expect(parsed.status == 0)
        #expect(early.stdout == parsed.stdout && early.stdout == SlipwayVersion.string + "\n", "\(early.stdout) vs \(parsed.stdout)")
    }

    @Test("durations print as %.2f and %.3f did, without String(format:)")
    func fixedPointDurations() {
        for value in [0, 0.003, 0.0123, 0.02, 0.1, 1.5, 2.25, 12.3456, 59.9996, 61.0, 1234.5678, 86_400.001] {
            for decimals in [1, 2, 3] {
                #expect(fixedPoint(value, decimals: decimals) == String(format: "%.\(decimals)f", value), "\(value), \(decimals)")
            }
        }
        #expect(fixedPoint(7.6, decimals: 0) == "8")
    }

    /// Issue 13: a name or version starting with '-' would reach ssh and the node's commands
    /// as an option; pack and build refuse it before doing anything.
    @Test("pack and build: a name or version starting with '-'")
    func dashNameOrVersion() throws {
        try withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/tree", withIntermediateDirectories: true)
            // Options are checked before anything runs: a usage error (64) naming the problem.
            for arguments in [["pack", dir + "/tree", "--name=-rf", "--version", "1"], ["pack", dir + "/tree", "--name", "web", "--version=-rf"]] {
                let run = slipway(arguments + ["--store", dir + "/s"])
                #expect(run.status == 64, "\(arguments): status \(run.status), \(run.stderr)")
                #expect(run.stderr.contains("starts with '-'"), "\(arguments): \(run.stderr)")
            }
            try Data("[release]\nname = \"web\"\n[base]\ntype = \"scratch\"\n".utf8).write(to: URL(fileURLWithPath: dir + "/web.toml"))
            let build = slipway(["build", dir + "/web.toml", "--version=--force", "--store", dir + "/s"])
            #expect(build.status == 64, "status \(build.status), \(build.stderr)")
            #expect(build.stderr.contains("starts with '-'"), "\(build.stderr)")
            try Data("[release]\nname = \"-rf\"\n[base]\ntype = \"scratch\"\n".utf8).write(to: URL(fileURLWithPath: dir + "/dash.toml"))
            expectOneLineError(slipway(["build", dir + "/dash.toml", "--store", dir + "/s"]), containing: "dash.toml:2")
            #expect(!FileManager.default.fileExists(atPath: dir + "/s"), "nothing was stored")
        }
    }

    @Test("unpack: missing archive")
    func unpackMissingArchive() throws {
        try withTemporaryDirectory { dir in
            expectOneLineError(slipway(["unpack", dir + "/nope.tar.xz", dir + "/out"]), containing: dir + "/nope.tar.xz")
            #expect(!FileManager.default.fileExists(atPath: dir + "/out"))
        }
    }

    /// Issue 13: `slipway unpack /dev/zero` said "Is a directory".
    @Test("unpack: a device or a directory is not an archive, and the error says so")
    func unpackNotAFile() throws {
        try withTemporaryDirectory { dir in
            let device = slipway(["unpack", "/dev/zero", dir + "/out"])
            expectOneLineError(device, containing: "/dev/zero is a character device, not an archive")
            #expect(!device.stderr.contains("Is a directory"), "stderr: \(device.stderr)")
            expectOneLineError(slipway(["unpack", dir, dir + "/out"]), containing: "is a directory, not an archive")
            #expect(!FileManager.default.fileExists(atPath: dir + "/out"))
        }
    }

    /// Issue 13: docs/fleet.md promises a warning for an Ansible variable slipway ignores.
    @Test("fleet commands warn on stderr about an ansible_ variable slipway ignores", .enabled(if: slipwayBinary != nil, Comment(rawValue: binaryMissing)))
    func ansibleWarning() throws {
        try withTemporaryDirectory { dir in
            let inventory = dir + "/hosts.ini"
            try Data("[web]\nlocal1 ansible_connection=local slipway_root=\(dir)/node ansible_becme=yes\n".utf8)
                .write(to: URL(fileURLWithPath: inventory))
            let run = try slipwayBinary(["status", "--inventory", inventory, "--on", "local1"])
            #expect(run.status == 0, "stderr: \(run.stderr)")
            #expect(run.stderr.contains("warning: \(inventory):2: ignoring ansible_becme"), "stderr: \(run.stderr)")
            // A misspelt slipway_ variable is an error naming the line.
            try Data("[web]\nlocal1 ansible_connection=local slipway_rot=\(dir)/node\n".utf8).write(to: URL(fileURLWithPath: inventory))
            expectOneLineError(try slipwayBinary(["status", "--inventory", inventory, "--on", "local1"]), containing: "\(inventory):2: unknown variable slipway_rot")
        }
    }

    @Test("inspect, verify, diff: release not in the store")
    func missingRelease() throws {
        try withTemporaryDirectory { dir in
            let (store, _) = try fixture(dir)
            expectOneLineError(slipway(["inspect", "web@9.9", "--store", store]), containing: "known versions of web")
            expectOneLineError(slipway(["verify", "api@1.0", "--trust", dir + "/key.pub", "--store", store]),
                               containing: "release api@1.0 not found")
            expectOneLineError(slipway(["diff", "web@1.0", "web@2.0", "--store", store]), containing: "web@2.0 not found")
        }
    }

    @Test("verify: wrong key, missing key file, malformed key file, unsigned release")
    func wrongKey() throws {
        try withTemporaryDirectory { dir in
            let (store, _) = try fixture(dir)
            let otherID = try ReleaseSigning.loadPublicKey(path: dir + "/other.pub").keyID
            expectOneLineError(slipway(["verify", "web@1.0", "--trust", dir + "/other.pub", "--store", store]),
                               containing: otherID)
            expectOneLineError(slipway(["verify", "web@1.0", "--trust", dir + "/nokey.pub", "--store", store]),
                               containing: "cannot read key")
            try writeFile(dir + "/bad.pub", "ssh-ed25519 AAAAC3Nza\n")
            expectOneLineError(slipway(["verify", "web@1.0", "--trust", dir + "/bad.pub", "--store", store]),
                               containing: "not a slipway key file")
            expectOneLineError(slipway(["verify", "web@1.0", "--trust", dir + "/key", "--store", store]),
                               containing: "it is a private key")
            try storeRelease(in: store, version: "2.0")
            expectOneLineError(slipway(["verify", "web@2.0", "--trust", dir + "/key.pub", "--store", store]),
                               containing: "not signed")
        }
    }

    @Test("verify and inspect: tampered manifest")
    func tamperedManifest() throws {
        try withTemporaryDirectory { dir in
            let (store, release) = try fixture(dir)
            let path = release + "/manifest.json"
            let text = try readText(path).replacingOccurrences(of: "\"mode\":420", with: "\"mode\":2541")
            try writeFile(path, text)
            expectOneLineError(slipway(["verify", "web@1.0", "--trust", dir + "/key.pub", "--store", store]),
                               containing: "signature does not match")
            let inspect = slipway(["inspect", "web@1.0", "--trust", dir + "/key.pub", "--store", store])
            expectOneLineError(inspect, containing: "signature does not match")
            #expect(inspect.stdout.contains("signature:    INVALID"))

            try writeFile(path, "{\"formatVersion\":1,")
            expectOneLineError(slipway(["inspect", "web@1.0", "--store", store]), containing: "not a valid slipway manifest")
            try writeFile(path, "{\"formatVersion\":7}")
            expectOneLineError(slipway(["verify", "web@1.0", "--trust", dir + "/key.pub", "--store", store]),
                               containing: "format version 7")
        }
    }

    @Test("verify and inspect: tampered archive")
    func tamperedArchive() throws {
        try withTemporaryDirectory { dir in
            let (store, release) = try fixture(dir)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: release + "/rootfs.tar.xz"))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data("garbage".utf8))
            try handle.close()
            expectOneLineError(slipway(["verify", "web@1.0", "--trust", dir + "/key.pub", "--store", store]),
                               containing: "archive does not match its manifest")
            let inspect = slipway(["inspect", "web@1.0", "--store", store])
            expectOneLineError(inspect, containing: "archive does not match its manifest")
            #expect(inspect.stdout.contains("archive hash: MISMATCH"))
        }
    }

    @Test("keygen: refuses to overwrite, fails on a missing directory")
    func keygen() throws {
        try withTemporaryDirectory { dir in
            try ReleaseSigning.generateKey(at: dir + "/key")
            expectOneLineError(slipway(["keygen", "--out", dir + "/key"]), containing: "already exists")
            expectOneLineError(slipway(["keygen", "--out", dir + "/no/such/dir/key"]), containing: dir + "/no/such/dir/key")
        }
    }
}
