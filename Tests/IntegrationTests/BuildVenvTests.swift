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
    /// `[venv] wheel_dir` with `--no-index`: pip in the tree installs from a host directory of
    /// wheels only (the offline build), and fails on a package the directory lacks.
    @Suite("slipway build: offline venv")
    struct Venv {
        /// The python3 with a pip module that downloads the wheel on the host, or nil; found
        /// once, when the test is about to run (it starts python).
        static let hostPip: String? = {
            for python in ["/usr/bin/python3", "python3"] {
                guard let path = toolPath(python), (try? run(path, ["-m", "pip", "--version"]))?.ok == true else { continue }
                return path
            }
            return nil
        }()

        @Test(.needs(.build("mmdebstrap", "tar", "zstd"),
                     .deferred("pip is not installed for python3 — scripts/setup installs python3-pip") { Venv.hostPip != nil }))
        func wheelDirInstallsWithoutAnIndex() throws {
            let python = try #require(Self.hostPip)
            let temp = try TempDir("slipway-build-wheels")
            defer { temp.remove() }
            let wheels = temp.sub("wheels")
            // A pure-Python wheel: it installs into bookworm's python whatever the host's is.
            try runChecked(python, ["-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                                    "--only-binary=:all:", "--dest", wheels, "six==1.16.0"])
            let downloaded = try FileManager.default.contentsOfDirectory(atPath: wheels)
            #expect(downloaded.contains { $0.hasPrefix("six-1.16.0") && $0.hasSuffix(".whl") }, "\(downloaded)")

            func recipe(_ packages: String) throws -> Recipe {
                // Same [base] as recipes/python-web.toml: the shared cache has it after that test.
                try writeRecipe("""
                    [release]
                    name = "offline"
                    version = "1"
                    source_date_epoch = 1735689600
                    [base]
                    type = "debian"
                    suite = "bookworm"
                    include = ["python3", "python3-venv"]
                    [venv]
                    path = "/opt/app/venv"
                    packages = [\(packages)]
                    pip_options = ["--no-index"]
                    wheel_dir = "wheels"
                    [[run]]
                    name = "import"
                    command = "/opt/app/venv/bin/python -c 'import six; print(six.__version__)' > /opt/app/six-version"
                    """, named: "offline.toml", in: temp.path)
            }
            let summary = try build(try recipe("\"six==1.16.0\""), store: temp.sub("store"), compression: .zstd)
            let tree = temp.sub("tree")
            try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
            try runChecked("tar", ["--zstd", "-xf", summary.archive, "-C", tree])
            #expect(try String(contentsOfFile: tree + "/opt/app/six-version", encoding: .utf8) == "1.16.0\n")
            let check = try runChecked("chroot", [tree, "/opt/app/venv/bin/python", "-c", "import six, sys; print(six.__file__)"])
            #expect(check.out.hasPrefix("/opt/app/venv/lib/python3"), "\(check.out)")
            #expect(!FileManager.default.fileExists(atPath: tree + "/tmp/slipway-venv"), "the wheel mount point is cleaned away")

            // A requirement the wheel directory cannot satisfy: pip must not reach for an index.
            do {
                _ = try build(try recipe("\"six==1.16.0\", \"slipway-test-absent-package==1.0\""), store: temp.sub("store-absent"), compression: .zstd)
                Issue.record("the build should have failed: the wheel directory has no slipway-test-absent-package")
            } catch {
                let message = "\(error)"
                #expect(message.contains("stage 'venv'"), "\(message)")
                #expect(message.contains("slipway-test-absent-package"), "\(message)")
            }
            #expect(mountsUnder(temp.path).isEmpty)
            // The wheel directory is bound read-only at /tmp/slipway-venv/wheels in the work
            // tree; other suites may be building in the shared cache meanwhile, so only that
            // mount (and any on the cache's bases) counts.
            #expect(mountsUnder(sharedCacheDirectory).filter { $0.hasSuffix("/tmp/slipway-venv/wheels") || $0.hasPrefix(sharedCacheDirectory + "/bases") }.isEmpty,
                    "the wheel directory is unmounted")
        }
    }
}
