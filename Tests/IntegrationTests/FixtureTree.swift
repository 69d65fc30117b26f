import Foundation

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

/// A tree holding every kind of entry a rootfs has, built under a test's temporary root.
struct FixtureTree {
    /// The mtime of every entry but `files/old`.
    static let mtime = 1_600_000_000
    /// The mtime of `files/old`, earlier than every epoch the tests clamp to.
    static let oldMtime = 1_000_000_000

    let root: String
    /// Device nodes, foreign owners and `security.capability` need root.
    let privileged: Bool
    /// Whether `bin/ping` carries `cap_net_raw` (needs root and setcap).
    let hasCapability: Bool

    /// A component of 60 bytes, for paths longer than ustar's 100- and 255-byte fields.
    static let longComponent = String(repeating: "d", count: 60)
    /// Over 100 bytes: needs a pax `path` record (or ustar's prefix split).
    static let path120 = "long/" + longComponent + "/" + String(repeating: "n", count: 50)
    /// Over 255 bytes: cannot fit in ustar's name + prefix at all.
    static let path300 = "long/" + Array(repeating: longComponent, count: 4).joined(separator: "/")
        + "/" + String(repeating: "x", count: 50)
    /// A name that is not valid UTF-8.
    static let nonUTF8 = ArchivePath(bytes: Array("names/bad-".utf8) + [0xFF, 0xFE])

    /// Builds the tree at `root` (which must not exist). Without root privileges the device
    /// nodes, foreign owners and the capability are left out, with a printed note.
    static func build(at root: String, privileged: Bool = isRoot, largeFile: Int = 3 << 20) throws -> FixtureTree {
        let r = ArchivePath(root)
        func p(_ relative: String) -> ArchivePath { bytePath(root, ArchivePath(relative)) }

        try mkdirBytes(r)
        for dir in ["files", "dirs", "dirs/a", "dirs/a/b", "dirs/a/b/c", "dirs/empty", "dirs/private",
                    "dirs/tmp", "dirs/readonly", "dirs/xattr", "bin", "links", "hard", "hard/sub", "dev", "run",
                    "long", "names"] {
            try mkdirBytes(p(dir))
        }
        try writeFileBytes(p("files/empty"), [])
        try writeFileBytes(p("files/small.txt"), Array("hello, slipway\n".utf8))
        try writeFileBytes(p("files/random.bin"), randomBytes(largeFile))
        try writeFileBytes(p("files/old"), Array("old\n".utf8))
        try writeFileBytes(p("dirs/a/b/c/deep.txt"), Array("deep\n".utf8))
        try writeFileBytes(p("dirs/readonly/inside"), Array("inside a read-only directory\n".utf8))
        try writeFileBytes(p("names/h\u{E9}llo-\u{1F6A2}"), Array("utf-8 name\n".utf8))
        try writeFileBytes(bytePath(root, nonUTF8), Array("not utf-8\n".utf8))

        // Long paths.
        var dir = "long"
        for _ in 0..<4 {
            dir += "/" + longComponent
            if lstatBytes(p(dir)) == nil { try mkdirBytes(p(dir)) }
        }
        try writeFileBytes(p(path120), Array("path over 100 bytes\n".utf8))
        try writeFileBytes(p(path300), Array("path over 255 bytes\n".utf8))

        // Symlinks: relative, absolute, dangling.
        try symlinkBytes("../files/small.txt", p("links/relative"))
        try symlinkBytes("/etc/hostname", p("links/absolute"))
        try symlinkBytes("does/not/exist", p("links/dangling"))
        try symlinkBytes("../dirs/a", p("links/to-dir"))

        // Three names for one inode, in different directories.
        try writeFileBytes(p("hard/one"), Array("one inode, three names\n".utf8))
        try hardlinkBytes(p("hard/one"), p("hard/sub/two"))
        try hardlinkBytes(p("hard/one"), p("links/three"))

        try run("mkfifo", ["-m", "0600", p("run/initctl").description]).requireOK()

        // User xattrs on a file and a directory.
        try runChecked("setfattr", ["-n", "user.test", "-v", "slipway", p("files/small.txt").description])
        try runChecked("setfattr", ["-n", "user.test", "-v", "dir", p("dirs/xattr").description])
        try runChecked("setfattr", ["-n", "user.other", "-v", "0x00ff00", p("dirs/xattr").description])

        try writeFileBytes(p("bin/setuid"), Array("#!/bin/sh\n".utf8))
        try writeFileBytes(p("bin/setgid"), Array("#!/bin/sh\n".utf8))
        try writeFileBytes(p("bin/ping"), Array("#!/bin/sh\necho ping\n".utf8))

        var hasCapability = false
        if privileged {
            try writeFileBytes(p("files/owned"), Array("owned by 1234:5678\n".utf8))
            try mkdirBytes(p("dirs/owned"))
            try chownBytes(p("files/owned"), 1234, 5678)
            try chownBytes(p("dirs/owned"), 1234, 5678)
            try chownBytes(p("bin/setgid"), 0, 50)
            try runChecked("mknod", ["-m", "0666", p("dev/null").description, "c", "1", "3"])
            try runChecked("mknod", ["-m", "0660", p("dev/loop0").description, "b", "7", "0"])
            try chownBytes(p("dev/loop0"), 0, 6)
            if toolPath("setcap") != nil {
                try runChecked("setcap", ["cap_net_raw+ep", p("bin/ping").description])
                hasCapability = true
            } else {
                print("note: setcap not installed — bin/ping gets no capability (scripts/setup installs it)")
            }
        } else {
            print("note: not root — the fixture tree has no device nodes, foreign owners or capability")
        }

        // Modes last: chown clears setuid/setgid.
        try chmodBytes(p("bin/setuid"), 0o4755)
        try chmodBytes(p("bin/setgid"), 0o2755)
        try chmodBytes(p("bin/ping"), 0o755)
        try chmodBytes(p("dirs/private"), 0o700)
        try chmodBytes(p("dirs/tmp"), 0o1777)
        try chmodBytes(p("files/empty"), 0o600)
        try chmodBytes(p("files/small.txt"), 0o640)

        // Fixed times, children before parents are irrelevant here: utimensat does not
        // touch the parent's mtime.
        for (path, _) in try walk(root) {
            try setTimes(bytePath(root, path), atime: mtime, mtime: mtime)
        }
        try setTimes(p("files/old"), atime: oldMtime, mtime: oldMtime)
        try chmodBytes(p("dirs/readonly"), 0o555)
        return FixtureTree(root: root, privileged: privileged, hasCapability: hasCapability)
    }
}

extension CommandResult {
    @discardableResult
    func requireOK() throws -> CommandResult {
        guard ok else { throw TestSupportError.commandFailed("command", status, err) }
        return self
    }
}
