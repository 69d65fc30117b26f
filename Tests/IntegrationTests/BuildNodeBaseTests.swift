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

/// The repository root.
private let repositoryDirectory = URL(fileURLWithPath: recipesDirectory).deletingLastPathComponent().path

extension Requirement {
    /// The statically linked slipway that recipes/node-base.toml puts into the image.
    fileprivate static let staticSlipway = Requirement.that(
        BuildTests.NodeBase.staticBinary != nil,
        "no statically linked slipway at \(BuildTests.NodeBase.staticBinaryPath) — scripts/setup --static builds it (or set SLIPWAY_STATIC_BINARY)")
}

extension BuildTests {
    /// recipes/node-base.toml with the statically linked slipway given at build time, and
    /// `{{var}}` host paths in recipes.
    @Suite("slipway build: node-base")
    struct NodeBase {
        /// `$SLIPWAY_STATIC_BINARY`, else what `scripts/setup --static` builds.
        static let staticBinaryPath = ProcessInfo.processInfo.environment["SLIPWAY_STATIC_BINARY"]
            ?? repositoryDirectory + "/.build-static/release/slipway"
        /// `staticBinaryPath` when it exists; nil otherwise.
        static let staticBinary: String? = access(staticBinaryPath, X_OK) == 0 ? staticBinaryPath : nil

        @Test(.needs(.build("mmdebstrap", "tar", "zstd", "unshare", "dpkg-query"), .staticSlipway, .sbomValidators))
        func nodeBaseBuildsAndItsSlipwayRunsWithoutSwift() throws {
            let binary = try #require(Self.staticBinary)
            let temp = try TempDir("slipway-build-node-base")
            defer { temp.remove() }
            let recipe = try Recipe.load(path: recipesDirectory + "/node-base.toml", variables: ["slipway_binary": binary])
            #expect(recipe.app?.source == binary)
            let summary = try build(recipe, store: temp.sub("store"), compression: .zstd)
            #expect(summary.outcome == .added)

            let tree = temp.sub("tree")
            try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
            try runChecked("tar", ["--zstd", "-xf", summary.archive, "-C", tree])
            // The tree has no Swift runtime: the binary carries its own.
            let swiftLibraries = try run("sh", ["-c", "find \(tree) -name 'libswiftCore*' -o -name 'libFoundation*.so*' | head -1"])
            #expect(swiftLibraries.out.isEmpty, "the image holds no Swift runtime: \(swiftLibraries.out)")
            // With /proc mounted, as on a node (in a mount namespace of its own, so the mount
            // goes with it): the Swift runtime of a static binary reads its arguments from
            // /proc/self/cmdline, and without it sees none and prints its help.
            let version = try run("unshare", ["--mount", "--propagation", "private", "sh", "-c",
                                              "mount -t proc proc \"$1/proc\" && exec chroot \"$1\" /usr/local/bin/slipway --version", "sh", tree])
            #expect(version.ok, "slipway runs inside the image: \(version.err)")
            let hostVersion = try runChecked(binary, ["--version"])
            #expect(version.out == hostVersion.out && !version.out.isEmpty, "\(version.out) vs \(hostVersion.out)")
            for program in ["/usr/sbin/sshd", "/usr/sbin/lvm", "/usr/bin/schroot"] {
                #expect(access(tree + program, X_OK) == 0, "\(program) is in the image")
            }
            // libarchive and liblzma are linked in (scripts/lib/static-build.sh): the image has
            // no libarchive (nor the libxml2 and ICU it would bring), and the binary asks the
            // loader for libc, libm, libstdc++, libgcc_s and libzstd only.
            let libraries = try runChecked("sh", ["-c", "ls \(tree)/usr/lib/*/ | grep -E '^lib(archive|xml2|icuuc)\\.so' || true"])
            #expect(libraries.out.isEmpty, "the image has no libarchive: \(libraries.out)")
            let needed = try runChecked("ldd", [binary]).out.split(separator: "\n").compactMap {
                $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map { String($0.prefix(while: { $0 != "." })) }
            }
            #expect(Set(needed).isSubset(of: ["linux-vdso", "libc", "libm", "libstdc++", "libgcc_s", "libzstd", "/lib64/ld-linux-x86-64"]), "\(needed)")
            // The codecs it was linked with work: the image's /etc packed with each compression
            // and unpacked again, by the static binary (linked with Debian's libzstd.a, which has
            // no multithreading, its zstd encoder failed: "Unsupported parameter").
            for (compression, suffix) in [("xz", "xz"), ("zstd", "zst")] {
                let store = temp.sub("codec-\(compression)")
                let packed = try run(binary, ["pack", tree + "/etc", "--name", "codec", "--version", "1", "--compression", compression,
                                              "--store", store, "-q"])
                #expect(packed.ok, "the static slipway packs with \(compression): \(packed.err)")
                let unpacked = try run(binary, ["unpack", "\(store)/codec/1/rootfs.tar.\(suffix)", temp.sub("unpacked-\(compression)")])
                #expect(unpacked.ok, "the static slipway unpacks \(compression): \(unpacked.err)")
            }
            #expect(try runChecked("sh", ["-c", "ls \(tree)/etc/ssh/ | grep -c '^ssh_host_' || true"]).out == "0\n", "no ssh host keys ship")
            #expect(!FileManager.default.fileExists(atPath: tree + "/usr/sbin/policy-rc.d"))
            // The SBOM lists exactly dpkg's packages, with the licenses read before the
            // cleanup removed /usr/share/doc (docs/sbom.md).
            let release = try ReleaseStore(root: temp.sub("store")).release(name: "node-base", version: "1.0.0")
            try checkSBOM(release, tree: tree)
            #expect(!FileManager.default.fileExists(atPath: tree + "/usr/share/doc/openssh-server/copyright"))
            let spdx = try String(contentsOfFile: release.directory + "/" + SBOM.Format.spdx.fileName, encoding: .utf8)
            #expect(spdx.contains("\"fileName\" : \"./usr/local/bin/slipway\""), "the recipe's app is listed")
            let licensed = try JSONSerialization.jsonObject(with: Data(spdx.utf8)) as? [String: Any]
            let declared = (licensed?["packages"] as? [[String: Any]] ?? []).filter { ($0["licenseDeclared"] as? String) != "NOASSERTION" }
            #expect(declared.count > 50, "licenses come from the copyright files before the cleanup: \(declared.count) packages have one")
            #expect(mountsUnder(temp.path).isEmpty)
        }

        @Test func hostPathsExpandVarsGivenAtBuildTime() throws {
            let temp = try TempDir("slipway-build-vars")
            defer { temp.remove() }
            try Data("x".utf8).write(to: URL(fileURLWithPath: temp.sub("default.bin")))
            try Data("y".utf8).write(to: URL(fileURLWithPath: temp.sub("other.bin")))
            let text = """
                [release]
                name = "vars"
                [base]
                type = "scratch"
                [vars]
                binary = "default.bin"
                [app]
                source = "{{binary}}"
                dest = "/usr/local/bin/app"
                """
            #expect(try writeRecipe(text, named: "r.toml", in: temp.path).app?.source == temp.sub("default.bin"))
            #expect(try writeRecipe(text, named: "r.toml", in: temp.path, variables: ["binary": temp.sub("other.bin")]).app?.source
                    == temp.sub("other.bin"))
            #expect(try writeRecipe(text, named: "r.toml", in: temp.path, variables: ["binary": "other.bin"]).app?.source
                    == temp.sub("other.bin"), "a relative path is the recipe directory's")

            #expect { try writeRecipe(text, named: "r.toml", in: temp.path, variables: ["binray": "x"]) } throws: { error in
                "\(error)".contains("--var binray") && "\(error)".contains("has no 'binray'") && "\(error)".contains("binary")
            }
            #expect { try writeRecipe(text, named: "r.toml", in: temp.path, variables: ["binary": "/nonexistent/slipway"]) } throws: { error in
                let message = "\(error)"
                return message.contains("r.toml:8") && message.contains("/nonexistent/slipway does not exist")
                    && message.contains("--var binary=PATH")
            }
            #expect { try writeRecipe(text.replacingOccurrences(of: "{{binary}}", with: "{{nope}}"), named: "r.toml", in: temp.path) } throws: { error in
                "\(error)".contains("{{nope}}") && "\(error)".contains("[vars] does not define")
            }
        }
    }
}
