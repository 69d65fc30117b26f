import Foundation
import Glibc
import Synchronization
import Testing
@testable import SlipwayArchive
@testable import SlipwayTestSupport

/// Every descriptor slipway opens is close-on-exec, duplicates included: a child another
/// thread spawns (a test process runs many tests at once) must never inherit a directory of a
/// tree being walked. One did under zfs-fuse, and kept a landed dataset busy for good.
@Suite("Descriptors: close-on-exec, duplicates included")
struct DescriptorLeakTests {
    /// Descriptors of this process without FD_CLOEXEC that point below `root`.
    func inheritable(below root: String) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return [] }
        return names.compactMap { name -> String? in
            guard let fd = Int32(name), fd > 2 else { return nil }
            let flags = fcntl(fd, F_GETFD)
            guard flags >= 0, flags & FD_CLOEXEC == 0,
                  let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(name)"),
                  target.hasPrefix(root) else { return nil }
            return target
        }
    }

    @Test("a duplicate is close-on-exec")
    func duplicateIsCloseOnExec() throws {
        let fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        let copy = PosixPath.duplicate(fd)
        try #require(copy >= 0)
        defer { close(copy) }
        #expect(fcntl(copy, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test("while a tree is walked, no descriptor into it could be inherited")
    func walkLeaksNothing() throws { try withTemporaryDirectory { dir in
        let root = dir + "/tree"
        for a in 0..<40 { for b in 0..<25 {
            try FileManager.default.createDirectory(atPath: "\(root)/d\(a)/e\(b)", withIntermediateDirectories: true)
        } }
        let done = Mutex(false)
        let walker = Thread {
            for _ in 0..<15 { _ = try? TreeWalker.records(root: root, hashing: false) }
            done.withLock { $0 = true }
        }
        walker.start()
        var seen: [String] = []
        var scans = 0
        while !done.withLock({ $0 }) {
            seen += inheritable(below: root)
            scans += 1
        }
        #expect(scans > 0)
        #expect(seen.isEmpty, "\(seen.count) inheritable descriptors into the walked tree, e.g. \(seen.prefix(3))")
    } }
}
