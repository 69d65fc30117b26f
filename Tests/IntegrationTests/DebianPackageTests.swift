import Foundation
import Testing
@testable import SlipwayBuild
@testable import SlipwaySystem

private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// Issue 19: slipway as a Debian package (docs/packaging.md). The .deb that
/// `scripts/package deb` builds passes lintian without errors, and installs with apt's
/// dependency resolution on a fresh Debian minbase (mmdebstrap from the host's apt sources),
/// where slipway runs, reads its conffile and has its man pages and completions.
@Suite("Debian package")
struct DebianPackageTests {
    @Test("scripts/package deb: lintian finds no error; the .deb installs on a fresh minbase with its Depends, and slipway runs there",
          .needs("mmdebstrap", "lintian", "dpkg-deb", "dpkg-shlibdeps", "unshare", root: true))
    func deb() throws {
        let tmp = try TempDir("slipway-deb")
        defer { tmp.remove() }
        let built = try run("bash", [repositoryRoot + "/scripts/package", "deb", "--out", tmp.path], cwd: repositoryRoot)
        try #require(built.status == 0, "scripts/package deb: \(built.err.suffix(3000))")
        let deb = try #require(built.out.split(separator: "\n").last.map(String.init))
        #expect(deb.hasPrefix(tmp.path + "/slipway_\(SlipwayVersion.string)_") && deb.hasSuffix(".deb"), "\(deb)")

        let lintian = try run("lintian", ["--fail-on", "error", "--tag-display-limit", "0", deb])
        let errors = lintian.out.split(separator: "\n").filter { $0.hasPrefix("E:") }
        #expect(lintian.status == 0 && errors.isEmpty, "lintian: \(lintian.out)\(lintian.err)")

        // A fresh minbase with the package: apt resolves its Depends from the host's sources.
        let suite = try #require(try String(contentsOfFile: "/etc/os-release", encoding: .utf8).split(separator: "\n")
            .first { $0.hasPrefix("VERSION_CODENAME=") }.map { String($0.dropFirst("VERSION_CODENAME=".count)) })
        let sources = HostAptSources.files(for: suite)
        try #require(!sources.isEmpty, "no apt source of this host serves \(suite)")
        let tree = tmp.path + "/tree"
        let strap = try run("mmdebstrap", ["--variant=minbase", "--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount",
                                           "--include=\(deb)", suite, tree] + sources)
        try #require(strap.status == 0, "mmdebstrap: \(strap.err.suffix(3000))")

        // Inside the tree, with its own /proc (the Swift runtime reads argv there).
        let script = """
            set -e
            mount -t proc proc \(tree)/proc
            echo "version=$(chroot \(tree) slipway --version)"
            echo "status=$(chroot \(tree) dpkg-query -W -f='${Status}' slipway)"
            chroot \(tree) dpkg-query -W -f='${Conffiles}\\n' slipway
            chroot \(tree) slipway node status --json
            umount \(tree)/proc
            chroot \(tree) slipway --version >/dev/null 2>\(tmp.path)/noproc.err || echo "noproc=$?"
            """
        let inside = try run("unshare", ["--mount", "--propagation", "private", "--fork", "sh", "-c", script])
        #expect(inside.status == 0, "\(inside.out)\(inside.err)")
        #expect(inside.out.contains("version=\(SlipwayVersion.string)\n") && inside.out.contains("status=install ok installed"), "\(inside.out)")
        #expect(inside.out.contains(" /etc/slipway/node.toml "), "the node settings are a conffile: \(inside.out)")
        // The packaged node.toml (every setting commented out) is read: no app, no error.
        #expect(inside.out.contains("[\n\n]") || inside.out.contains("[]"), "\(inside.out)")
        // Without /proc the arguments never reach slipway: an error, never the help with 0.
        #expect(inside.out.contains("noproc=2"), "\(inside.out)")
        #expect(((try? String(contentsOfFile: tmp.path + "/noproc.err", encoding: .utf8)) ?? "").contains("mount /proc"))

        for file in ["usr/share/man/man1/slipway.1.gz", "usr/share/man/man1/slipway-deploy.1.gz", "usr/share/man/man1/slipway-node-apply.1.gz",
                     "usr/share/bash-completion/completions/slipway", "usr/share/zsh/vendor-completions/_slipway",
                     "usr/share/fish/vendor_completions.d/slipway.fish", "usr/share/doc/slipway/copyright", "usr/share/doc/slipway/docs/architecture.md"] {
            #expect(FileManager.default.fileExists(atPath: tree + "/" + file), "\(file) is not installed")
        }
    }
}
