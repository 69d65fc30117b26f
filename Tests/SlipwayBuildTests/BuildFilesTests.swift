import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif
@testable import SlipwayBuild
@testable import SlipwayRecipe
@testable import SlipwayRelease
@testable import SlipwayArchive
@testable import SlipwaySystem
@testable import SlipwayTestSupport

/// Issue 13: a mount point in a build tree is opened without following any symlink, so that
/// a tree's /dev → /host/path never makes the build mount on the host.
@Suite("Build files: mount points are real directories inside the tree")
struct BuildFilesTests {
    /// A tree and a host directory beside it that symlinks in the tree may point to.
    private func withTreeAndHost(_ body: (_ tree: String, _ host: String) throws -> Void) throws {
        try withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/tree/etc", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: dir + "/host", withIntermediateDirectories: true)
            try body(dir + "/tree", dir + "/host")
        }
    }

    private func error(_ body: () throws -> Void) -> BuildError? {
        do {
            try body()
            return nil
        } catch let error as BuildError {
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    @Test("a symlink as the mount point is refused, naming it and its target", arguments: ["/dev", "/proc", "/sys"])
    func symlinkedMountPoint(point: String) throws {
        try withTreeAndHost { tree, host in
            try FileManager.default.createSymbolicLink(atPath: tree + point, withDestinationPath: host)
            let found = try #require(error { close(try BuildFiles.openDirectoryBeneath(point, in: tree)) })
            #expect(found.description.contains("the tree's \(point) is a symlink to \(host)"), "\(found)")
            #expect(found.description.contains("mounts only on real directories"), "\(found)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: host).isEmpty, "nothing was created on the host")
        }
    }

    @Test("a symlink anywhere on the way is refused, also a relative one that stays in the tree")
    func symlinkedParent() throws {
        try withTreeAndHost { tree, host in
            try FileManager.default.createSymbolicLink(atPath: tree + "/tmp", withDestinationPath: host)
            let outside = try #require(error { try BuildFiles.makeDirectoriesBeneath("/tmp/slipway-venv/wheels", in: tree) })
            #expect(outside.description.contains("the tree's /tmp is a symlink to \(host)"), "\(outside)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: host).isEmpty, "nothing was created on the host")

            try FileManager.default.createSymbolicLink(atPath: tree + "/run", withDestinationPath: "etc")
            let inside = try #require(error { try BuildFiles.makeDirectoriesBeneath("/run/lock", in: tree) })
            #expect(inside.description.contains("the tree's /run is a symlink to etc"), "\(inside)")
        }
    }

    @Test("a file as a component is refused; '..' is refused")
    func notADirectory() throws {
        try withTreeAndHost { tree, _ in
            #expect(FileManager.default.createFile(atPath: tree + "/dev", contents: Data()))
            let file = try #require(error { close(try BuildFiles.openDirectoryBeneath("/dev/pts", in: tree)) })
            #expect(file.description.contains("the tree's /dev is a regular file"), "\(file)")
            #expect(throws: BuildError.self) { close(try BuildFiles.openDirectoryBeneath("/etc/../../x", in: tree)) }
        }
    }

    @Test("missing components are created as real directories; without create they are an error")
    func missingComponents() throws {
        try withTreeAndHost { tree, _ in
            #expect(throws: BuildError.self) { close(try BuildFiles.openDirectoryBeneath("/proc", in: tree, create: false)) }
            let path = try BuildFiles.makeDirectoriesBeneath("/tmp/./slipway-venv/wheels", in: tree)
            #expect(path == tree + "/tmp/slipway-venv/wheels")
            for component in ["/tmp", "/tmp/slipway-venv", "/tmp/slipway-venv/wheels"] {
                var info = stat()
                #expect(lstat(tree + component, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR, "\(component)")
            }
            // Existing directories are opened as they are.
            close(try BuildFiles.openDirectoryBeneath("/etc", in: tree, create: false))
        }
    }
}
