import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif
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

/// A temporary store with small real releases of one app, a node root, and helpers to run the
/// node operations through the library or the built binary.
struct NodeFixture {
    let dir: TempDir
    let app: String
    /// The node's root (default: `node` in the temporary directory).
    let root: String
    var store: ReleaseStore { ReleaseStore(root: dir.sub("store")) }
    var layout: NodeLayout { NodeLayout(root: root, app: app) }

    init(_ label: String = "slipway-node") throws {
        dir = try TempDir(label)
        app = "web"
        root = dir.sub("node")
    }

    /// Another node of the same store (a farm's node): the same directory and app, its own root.
    init(sharing other: NodeFixture, root: String) {
        dir = other.dir
        app = other.app
        self.root = root
    }

    func remove() { dir.remove() }

    /// Writes a release tree for `version`: a few files, a hardlink pair, a symlink, a
    /// directory; v2 changes one file, adds one and removes one; `bulk` adds that many
    /// random 4 kB files (to make apply take a while).
    func tree(_ version: String, bulk: Int = 0, big: Int = 0) throws -> String {
        let tree = dir.sub("tree-\(version)")
        try FileManager.default.createDirectory(atPath: tree + "/etc/app", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tree + "/usr/bin", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tree + "/var/log/app", withIntermediateDirectories: true)
        try Data("\(version)\n".utf8).write(to: URL(fileURLWithPath: tree + "/etc/app/version"))
        try Data("shared config\n".utf8).write(to: URL(fileURLWithPath: tree + "/etc/app/config"))
        try Data("#!/bin/sh\necho app \(version == "1" ? "1" : "2+")\n".utf8).write(to: URL(fileURLWithPath: tree + "/usr/bin/app"))
        chmod(tree + "/usr/bin/app", 0o755)
        link(tree + "/usr/bin/app", tree + "/usr/bin/app-alias")
        symlink("app", tree + "/usr/bin/app-link")
        if version == "1" {
            try Data("old only\n".utf8).write(to: URL(fileURLWithPath: tree + "/etc/app/legacy"))
        } else {
            try Data("new in \(version)\n".utf8).write(to: URL(fileURLWithPath: tree + "/etc/app/added"))
        }
        if bulk > 0 {
            try FileManager.default.createDirectory(atPath: tree + "/usr/share/data", withIntermediateDirectories: true)
            for index in 0..<bulk {
                try Data(randomBytes(4096)).write(to: URL(fileURLWithPath: tree + "/usr/share/data/f\(index)"))
            }
        }
        if big > 0 { try FileManager.default.createDirectory(atPath: tree + "/usr/share", withIntermediateDirectories: true); try Data(randomBytes(big)).write(to: URL(fileURLWithPath: tree + "/usr/share/big")) }
        return tree
    }

    /// Packs `version` into the store.
    @discardableResult
    func release(_ version: String, bulk: Int = 0, big: Int = 0, service: ServiceSpec? = nil,
                 signingKey: ReleaseSigningKey? = nil) throws -> StoredRelease {
        let tree = try tree(version, bulk: bulk, big: big)
        defer { try? FileManager.default.removeItem(atPath: tree) }
        return try store.add(tree: tree, name: app, version: version, created: 1_700_000_000,
                             configuration: .init(level: 1), signingKey: signingKey, service: service).release
    }

    func context(settings: (inout NodeSettings) -> Void = { _ in }) throws -> NodeContext {
        var node = NodeSettings()
        node.root = root
        node.lockTimeout = 5
        settings(&node)
        return try NodeContext(settings: node)
    }

    /// Lands `version` from the store as a full archive.
    @discardableResult
    func applyFull(_ version: String, context: NodeContext) throws -> NodeApply.Result {
        let release = try store.release(name: app, version: version)
        return try NodeApply.apply(.init(source: .full(archive: release.archivePath), manifestPath: release.manifestPath,
                                         signaturePath: release.signatureFile == nil ? nil : release.signaturePath), context: context)
    }

    /// Lands `version` as a delta against `base`.
    @discardableResult
    func applyDelta(_ version: String, base: String, context: NodeContext) throws -> NodeApply.Result {
        let release = try store.release(name: app, version: version)
        let delta = try ReleaseDelta.make(store: store, from: .init(name: app, version: base), to: .init(name: app, version: version))
        return try NodeApply.apply(.init(source: .delta(archive: delta.archivePath, base: base), manifestPath: release.manifestPath,
                                         deltaSHA256: delta.metadata.archiveSHA256), context: context)
    }

    var current: String? { layout.currentVersion }

    /// Stores 1 and 2 (2 with `big` bytes of random data, more than the node's file system
    /// holds), lands and activates 1, then applies 2: the apply must fail saying the disk is
    /// full, and leave the node as it was — 1 current and matching its manifest, 1 the only
    /// landed and journaled version, no leftovers.
    func expectFullDiskKeepsOne(context: NodeContext, big: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try release("1")
        // zstd: xz of that much random data would take most of a test's time.
        let bigTree = try tree("2", big: big)
        _ = try store.add(tree: bigTree, name: app, version: "2", created: 1_700_000_000, configuration: .init(compression: .zstd, level: 1))
        try FileManager.default.removeItem(atPath: bigTree)
        try applyFull("1", context: context)
        _ = try NodeActivate.activate(app: app, version: "1", context: context)
        do {
            try applyFull("2", context: context)
            Issue.record("apply into a full file system should fail", sourceLocation: sourceLocation)
        } catch {
            let full = ["No space left on device", "Disk quota exceeded"].contains { "\(error)".contains($0) }
            #expect(full && "\(error)".contains("slipway node prune"), "\(error)", sourceLocation: sourceLocation)
        }
        #expect(current == "1", sourceLocation: sourceLocation)
        #expect(try context.backend.landedVersions(layout: layout) == ["1"], sourceLocation: sourceLocation)
        let manifest = try store.release(name: app, version: "1").manifest
        let diff = ManifestDiff(old: manifest.entries, new: try TreeWalker.records(root: layout.current + "/"))
        #expect(diff.isEmpty, "current differs from its manifest after ENOSPC: \(diff)", sourceLocation: sourceLocation)
        let hidden = try FileManager.default.contentsOfDirectory(atPath: layout.releases).filter { $0.hasPrefix(".") }
        #expect(hidden.isEmpty, "leftovers after ENOSPC: \(hidden)", sourceLocation: sourceLocation)
        #expect(Set(try NodeState.load(layout).versions) == ["1"], sourceLocation: sourceLocation)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: layout.manifests)) ?? []).sorted() == ["1.json"],
                sourceLocation: sourceLocation)
    }

    /// The invariant of docs/node.md "Crash safety": `current` is absent or resolves to a landed release whose
    /// tree matches its manifest; no leftovers.
    func checkInvariant(_ label: String, allowLeftovers: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) throws {
        if let current {
            let manifest = try store.release(name: app, version: current).manifest
            let actual = try TreeWalker.records(root: layout.current + "/")
            let diff = ManifestDiff(old: manifest.entries, new: actual)
            #expect(diff.isEmpty, "\(label): current (\(current)) differs from its manifest: \(diff)", sourceLocation: sourceLocation)
        } else {
            #expect(!exists(layout.current), "\(label): current exists but is not a symlink to a release", sourceLocation: sourceLocation)
        }
        if !allowLeftovers {
            let hidden = ((try? FileManager.default.contentsOfDirectory(atPath: layout.releases)) ?? []).filter { $0.hasPrefix(".") }
            #expect(hidden.isEmpty, "\(label): leftovers in releases/: \(hidden)", sourceLocation: sourceLocation)
            #expect(!exists(layout.currentNew), "\(label): current.new left behind", sourceLocation: sourceLocation)
            let temps = ((try? FileManager.default.contentsOfDirectory(atPath: layout.appDirectory)) ?? []).filter { $0.contains(".tmp-") }
            #expect(temps.isEmpty, "\(label): temporary files left: \(temps)", sourceLocation: sourceLocation)
            // The journal lists exactly the landed versions.
            let landed = Set(try DirBackend().landedVersions(layout: layout))
            let journaled = Set(try NodeState.load(layout).versions)
            #expect(landed == journaled, "\(label): journal \(journaled.sorted()) ≠ landed \(landed.sorted())", sourceLocation: sourceLocation)
        }
    }
}

/// The built `slipway` binary, found from this file's path (the checkout's .build); nil when it
/// has not been built. Tests that run it carry `.needs(.nodeBinary)`.
let nodeBinary: String? = {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    return [repo + "/.build/debug/slipway", repo + "/.build/release/slipway"].first { access($0, X_OK) == 0 }
}()

let slipwayNotBuilt = ".build/debug/slipway is not built (swift build)"

extension Requirement {
    /// `nodeBinary` is built.
    static let nodeBinary = Requirement.that(IntegrationTests.nodeBinary != nil, slipwayNotBuilt)
}

/// A child `slipway` process with its stderr in a file: `kill9()` and `signal(_:)` send
/// signals, `wait()` reaps it, `wait(seconds:)` gives up (and kills it) after a while.
final class NodeChild {
    let process = Process()
    let errURL: URL

    init(_ binary: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        if let environment { process.environment = environment }
        errURL = FileManager.default.temporaryDirectory.appendingPathComponent("slipway-child-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: errURL)
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: errURL)
    }

    var stderr: String { (try? String(contentsOf: errURL, encoding: .utf8)) ?? "" }

    func kill9() { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

    /// Starts `binary arguments`, kills it with -9 after `delay` seconds unless it ended
    /// first, and waits: `landed` says whether the kill landed mid-command (the exit status
    /// says so; Foundation's isRunning can lag behind an exit on a loaded machine), `status`
    /// is the exit status, `elapsed` the time until the kill. The crash-injection tests' trial.
    static func killed(_ binary: String, _ arguments: [String], after delay: Double,
                       environment: [String: String]? = nil) throws -> (landed: Bool, status: Int32, elapsed: Double) {
        let start = Date()
        let child = try NodeChild(binary, arguments, environment: environment)
        while child.process.isRunning && Date().timeIntervalSince(start) < delay { usleep(2_000) }
        let elapsed = Date().timeIntervalSince(start)
        child.kill9()
        let (status, _) = child.wait()
        return (status == 128 + SIGKILL, status, elapsed)
    }

    func signal(_ signo: Int32) { kill(process.processIdentifier, signo) }

    /// Waits and returns the exit status (or 128+signal) and stderr.
    func wait() -> (status: Int32, stderr: String) {
        process.waitUntilExit()
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return (status, stderr)
    }

    /// Waits up to `seconds` for the child to exit; its exit status, or nil when it still
    /// ran (it is then killed).
    func wait(seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning, Date() < deadline { usleep(50_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }
}

