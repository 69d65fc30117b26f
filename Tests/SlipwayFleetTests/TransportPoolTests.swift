import Foundation
import Glibc
import Testing
@testable import SlipwayFleet

/// The ssh socket directories a controller leaves in /tmp when it is killed with -9: the
/// next run removes them, and nothing else.
@Suite("Transport pool socket directories")
struct TransportPoolTests {
    /// A scratch parent standing in for /tmp.
    private func scratch() throws -> String {
        var template = Array((NSTemporaryDirectory() + "/slipway-pool-test-XXXXXX").utf8CString)
        let made = try #require(mkdtemp(&template))
        return String(cString: made)
    }

    private func makeDirectory(_ path: String, lockFile: Bool) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        try Data("socket".utf8).write(to: URL(fileURLWithPath: path + "/sock"))
        if lockFile { try Data().write(to: URL(fileURLWithPath: path + "/" + TransportPool.ownerFile)) }
    }

    @Test("a dead run's directory goes; a live run's, one without a lock file, a symlink and other names stay")
    func removesOnlyAbandoned() throws {
        let parent = try scratch()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let dead = parent + "/slipway-ssh-dead01"
        let live = parent + "/slipway-ssh-live01"
        let old = parent + "/slipway-ssh-old001"
        let own = parent + "/slipway-ssh-own001"
        let other = parent + "/other-dir"
        try makeDirectory(dead, lockFile: true)
        try makeDirectory(live, lockFile: true)
        try makeDirectory(old, lockFile: false)
        try makeDirectory(own, lockFile: true)
        try makeDirectory(other, lockFile: true)
        // A symlink named like a socket directory, aimed at a dead run's directory elsewhere:
        // never followed.
        let target = parent + "/elsewhere"
        try makeDirectory(target, lockFile: true)
        try FileManager.default.createSymbolicLink(atPath: parent + "/slipway-ssh-link01", withDestinationPath: target)

        // The live run holds its lock (another open file description: flock conflicts).
        let held = open(live + "/" + TransportPool.ownerFile, O_RDONLY | O_CLOEXEC)
        #expect(held >= 0 && flock(held, LOCK_EX | LOCK_NB) == 0)
        defer { close(held) }

        TransportPool.removeAbandoned(keeping: own, in: parent)

        let fm = FileManager.default
        #expect(!fm.fileExists(atPath: dead), "the dead run's directory is removed")
        #expect(fm.fileExists(atPath: live + "/sock"), "a running controller's directory stays")
        #expect(fm.fileExists(atPath: old + "/sock"), "a directory without a lock file stays")
        #expect(fm.fileExists(atPath: own + "/sock"), "the caller's own directory stays")
        #expect(fm.fileExists(atPath: other + "/sock"), "other names stay")
        #expect(fm.fileExists(atPath: target + "/sock") && fm.fileExists(atPath: parent + "/slipway-ssh-link01"), "a symlink is not followed")
    }

    @Test("a pool holds its directory's lock until closed, and removes the directory then")
    func poolHoldsItsLock() throws {
        let pool = try TransportPool(executable: "/bin/true")
        let lock = open(pool.controlDirectory + "/" + TransportPool.ownerFile, O_RDONLY | O_CLOEXEC)
        #expect(lock >= 0)
        defer { close(lock) }
        #expect(flock(lock, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK, "the running pool holds its lock")
        // Another run's sweep leaves it alone.
        TransportPool.removeAbandoned(keeping: "/nonexistent")
        #expect(FileManager.default.fileExists(atPath: pool.controlDirectory))
        pool.close([])
        #expect(!FileManager.default.fileExists(atPath: pool.controlDirectory))
        #expect(flock(lock, LOCK_EX | LOCK_NB) == 0, "closing the pool releases the lock")
    }
}
