import Foundation
import Testing
@testable import SlipwayNode
@testable import SlipwayNodeProtocol
@testable import SlipwayRelease
@testable import SlipwayArchive
@testable import SlipwayTestSupport

/// A delta names the files it carries as patches (format 2). The node decodes each against the
/// base's file at the same path, so both must be regular files, and their type is checked
/// before either is opened: a FIFO in the base would block the open forever, and a device node
/// in a hostile delta would be opened read-write by root.
@Suite("Delta patches: only regular files are opened")
struct DeltaPatchTypeTests {
    /// A format-2 delta of app 1 → 2 that patches `p`, with `make` making `p` in its tree.
    private func delta(in directory: String, make: (String) throws -> Void) throws -> String {
        let tree = directory + "/delta-tree"
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        var meta = DeltaMetadata(name: "app", from: "1", to: "2", fromArchiveSHA256: "base", toArchiveSHA256: "target",
                                 removals: [], entries: 1)
        meta.formatVersion = 2
        meta.patched = [ArchivePath("p")]
        try JSONEncoder().encode(meta).write(to: URL(fileURLWithPath: tree + "/" + DeltaMetadata.entryName))
        try make(tree + "/p")
        let archive = directory + "/delta.tar"
        var configuration = ArchiveWriterConfiguration()
        configuration.compression = .none
        _ = try ArchiveWriter.pack(tree: tree, to: archive, configuration: configuration)
        return archive
    }

    /// Applies in a thread of its own, so that an open that blocks fails the test instead of hanging it.
    private func apply(_ delta: String, staging: String) -> String? {
        let done = DispatchSemaphore(value: 0)
        let message = Outcome()
        Thread.detachNewThread {
            do {
                _ = try NodeDeltaApply.apply(delta: delta, staging: staging, expect: (app: "app", base: "1", version: "2", targetSHA256: "target"))
                message.value = "applied"
            } catch {
                message.value = "\(error)"
            }
            done.signal()
        }
        guard done.wait(timeout: .now() + 30) == .success else { return "still blocked after 30 s" }
        return message.value
    }

    /// Written by the applying thread before it signals, read after the wait.
    private final class Outcome: @unchecked Sendable {
        var value: String?
    }

    @Test("a FIFO in the base where the delta patches a file: refused, nothing opened")
    func fifoInBase() throws {
        try withTemporaryDirectory { directory in
            let staging = directory + "/staging"
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
            #expect(mkfifo(staging + "/p", 0o644) == 0)
            let archive = try delta(in: directory) { try Data("patch".utf8).write(to: URL(fileURLWithPath: $0)) }
            let message = apply(archive, staging: staging)
            #expect(message?.contains("p is patched, but the base's") == true && message?.contains("is not a regular file") == true, "\(message ?? "")")
        }
    }

    @Test("a device node in the delta where it patches a file: refused before any open",
          .enabled(if: geteuid() == 0, "needs root to make a device node"))
    func deviceInDelta() throws {
        try withTemporaryDirectory { directory in
            let staging = directory + "/staging"
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
            try Data("base".utf8).write(to: URL(fileURLWithPath: staging + "/p"))
            // /dev/full's numbers (1:7): refused as not a regular file, the same words as
            // before the check moved ahead of the open (the FIFO test is the one an open
            // before the check fails).
            let archive = try delta(in: directory) { path in
                #expect(mknod(path, S_IFCHR | 0o600, dev_t((1 << 8) | 7)) == 0)
            }
            let message = apply(archive, staging: staging)
            #expect(message?.contains("p is patched, but the delta's entry is not a regular file") == true, "\(message ?? "")")
        }
    }
}
