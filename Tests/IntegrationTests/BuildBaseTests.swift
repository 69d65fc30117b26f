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

extension BuildTests {
    /// The three ways a base tree is made besides a cache hit: a rootfs tarball, debootstrap
    /// when mmdebstrap is absent, and a fresh bootstrap when the cached tree is not intact.
    @Suite("slipway build: bases")
    struct Bases {
        /// A small busybox rootfs packed by GNU tar as .tar, .tar.xz and .tar.zst, each the base
        /// of a recipe with a user, a file and a run step.
        @Test(.needs(.build("apt-get", "dpkg-deb", "tar", "xz", "zstd", "sha256sum")), arguments: ["tar", "tar.xz", "tar.zst"])
        func tarballBaseBuilds(format: String) throws {
            let temp = try TempDir("slipway-build-tarball")
            defer { temp.remove() }
            try makeBusyboxRoot(at: temp.sub("rootfs"))
            let tarball = temp.sub("rootfs.\(format)")
            let flags = ["tar": ["-cf"], "tar.xz": ["-cJf"], "tar.zst": ["--zstd", "-cf"]][format] ?? ["-cf"]
            try runChecked("tar", ["-C", temp.sub("rootfs"), "--numeric-owner"] + flags + [tarball, "."])
            try Data("hello from the tarball recipe\n".utf8).write(to: URL(fileURLWithPath: temp.sub("hello.txt")))
            let recipe = try writeRecipe("""
                [release]
                name = "tarball-app"
                version = "1.0.0"
                source_date_epoch = 1735689600
                [base]
                type = "tarball"
                path = "rootfs.\(format)"
                [[users]]
                name = "app"
                uid = 950
                shell = "/bin/sh"
                [[files]]
                source = "hello.txt"
                dest = "/srv/hello.txt"
                owner = "app"
                mode = "0640"
                [[run]]
                name = "in-tree"
                command = "echo ran inside > /srv/marker && grep -c app /etc/passwd > /srv/users"
                """, named: "tarball.toml", in: temp.path)
            let summary = try build(recipe, store: temp.sub("store"), cache: temp.sub("cache"), compression: .zstd)
            #expect(summary.baseType == "tarball")
            let hash = try runChecked("sha256sum", [tarball]).out.split(separator: " ").first.map(String.init)
            #expect(summary.baseKey == hash, "a tarball base is keyed by its sha256")

            let tree = temp.sub("unpacked")
            try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
            try runChecked("tar", ["--zstd", "-xf", summary.archive, "-C", tree])
            #expect(try String(contentsOfFile: tree + "/srv/marker", encoding: .utf8) == "ran inside\n")
            #expect(try String(contentsOfFile: tree + "/srv/users", encoding: .utf8) == "1\n")
            #expect(try String(contentsOfFile: tree + "/etc/passwd", encoding: .utf8).contains("app:x:950:950:"))
            var info = stat()
            #expect(lstat(tree + "/srv/hello.txt", &info) == 0 && info.st_uid == 950 && info.st_mode & 0o777 == 0o640)
            let run = try runChecked("chroot", [tree, "/bin/busybox", "cat", "/srv/hello.txt"])
            #expect(run.out == "hello from the tarball recipe\n")
            #expect(mountsUnder(temp.path).isEmpty)

            // Same tarball, same recipe: the same archive.
            let again = try build(recipe, store: temp.sub("store-again"), cache: temp.sub("cache"), compression: .zstd)
            #expect(again.sha256 == summary.sha256)
        }

        /// With mmdebstrap hidden from PATH (a directory of links to everything in /usr/bin but
        /// mmdebstrap; nothing is uninstalled), the real binary bootstraps with debootstrap.
        @Test(.needs(.build("debootstrap", "tar", "zstd"), .builtSlipway))
        func debootstrapWhenMmdebstrapIsAbsent() throws {
            let slipway = try #require(builtSlipway)
            let temp = try TempDir("slipway-build-debootstrap")
            defer { temp.remove() }
            let bin = temp.sub("bin")
            try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
            for name in try FileManager.default.contentsOfDirectory(atPath: "/usr/bin") where name != "mmdebstrap" {
                try FileManager.default.createSymbolicLink(atPath: bin + "/" + name, withDestinationPath: "/usr/bin/" + name)
            }
            let path = "\(bin):/usr/sbin:/sbin"
            let which = try run("sh", ["-c", "command -v mmdebstrap"], environment: ["PATH": path])
            #expect(!which.ok, "mmdebstrap is hidden from the build")
            _ = try writeRecipe("""
                [release]
                name = "deboot"
                version = "1"
                source_date_epoch = 1735689600
                [base]
                type = "debian"
                suite = "bookworm"
                [[run]]
                name = "shell-works"
                command = "echo bootstrapped > /etc/slipway-test"
                """, named: "deboot.toml", in: temp.path)
            var environment = ProcessInfo.processInfo.environment
            environment["PATH"] = path
            let child = try NodeChild(slipway, ["build", temp.sub("deboot.toml"), "--store", temp.sub("store"),
                                                   "--cache-dir", temp.sub("cache"), "--compression", "zstd", "--json"],
                                         environment: environment)
            let status = child.wait(seconds: 1800)
            #expect(status == 0, "\(child.stderr.suffix(3000))")
            guard status == 0 else { return }
            #expect(child.stderr.contains("with debootstrap"), "\(child.stderr.suffix(2000))")
            #expect(!child.stderr.contains("with mmdebstrap"))
            let metadata = try FileManager.default.contentsOfDirectory(atPath: temp.sub("cache/bases")).filter { $0.hasSuffix(".json") }
            #expect(metadata.count == 1)
            if let name = metadata.first {
                let text = try String(contentsOfFile: temp.sub("cache/bases/" + name), encoding: .utf8)
                #expect(text.contains("\"tool\" : \"debootstrap\""), "\(text)")
            }
            let archive = temp.sub("store/deboot/1/rootfs.tar.zst")
            let tree = temp.sub("tree")
            try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
            try runChecked("tar", ["--zstd", "-xf", archive, "-C", tree])
            #expect(FileManager.default.fileExists(atPath: tree + "/etc/debian_version"))
            #expect(try String(contentsOfFile: tree + "/etc/slipway-test", encoding: .utf8) == "bootstrapped\n")
            #expect(try runChecked("chroot", [tree, "/bin/sh", "-c", "dpkg-query -W -f '${Status}' base-files"]).out == "install ok installed")
            #expect(mountsUnder(temp.path).isEmpty)
        }

        /// A cached tree that changed after it was stored, and a partial bootstrap left by a
        /// killed build, are never used: the next build bootstraps afresh and removes both.
        @Test(.needs(.build("mmdebstrap")))
        func alteredCachedBaseIsNotUsed() throws {
            let temp = try TempDir("slipway-build-altered")
            defer { temp.remove() }
            let recipe = try writeRecipe("""
                [release]
                name = "altered"
                version = "1"
                source_date_epoch = 1735689600
                [base]
                type = "debian"
                suite = "bookworm"
                """, named: "altered.toml", in: temp.path)
            let cache = temp.sub("cache")
            let first = try build(recipe, store: temp.sub("store-a"), cache: cache, compression: .zstd)
            #expect(!first.baseCacheHit)
            let key = try #require(first.baseKey)
            let cachedTree = cache + "/bases/" + key
            #expect(FileManager.default.fileExists(atPath: cachedTree + "/etc/debian_version"))

            // One byte appended to a file of the cached tree, and a killed build's partial tree.
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: cachedTree + "/etc/debian_version"))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data("x".utf8))
            try handle.close()
            let partial = cache + "/bases/.partial-\(key)-999999"
            try FileManager.default.createDirectory(atPath: partial + "/etc", withIntermediateDirectories: true)

            let second = try build(recipe, store: temp.sub("store-b"), cache: cache, compression: .zstd)
            #expect(!second.baseCacheHit, "an altered cached base is bootstrapped again")
            #expect(second.baseKey == key)
            #expect(!FileManager.default.fileExists(atPath: partial), "the partial tree is removed")
            let version = try String(contentsOfFile: cachedTree + "/etc/debian_version", encoding: .utf8)
            #expect(!version.hasSuffix("x"), "the cached tree is a fresh one")

            let third = try build(recipe, store: temp.sub("store-c"), cache: cache, compression: .zstd)
            #expect(third.baseCacheHit, "the fresh base is used by the next build")

            // --refresh-base bootstraps an intact base again, and replaces the cached tree.
            var before = stat(), after = stat()
            #expect(stat(cachedTree + "/etc/debian_version", &before) == 0)
            let refreshed = try build(recipe, store: temp.sub("store-d"), cache: cache, compression: .zstd, refreshBase: true)
            #expect(!refreshed.baseCacheHit)
            #expect(refreshed.stages.first { $0.name == "base" }?.detail.hasPrefix("bootstrapped") == true)
            #expect(stat(cachedTree + "/etc/debian_version", &after) == 0 && after.st_ctim.tv_sec > before.st_ctim.tv_sec, "a new cached tree")
            #expect(mountsUnder(temp.path).isEmpty)
        }
    }
}
