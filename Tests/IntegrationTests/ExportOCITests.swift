import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif
@testable import SlipwaySystem
@testable import SlipwayArchive
@testable import SlipwayRelease

/// `export --format oci` through the real binary: the layout skopeo copies and podman turns
/// into a container whose files are the release's (docs/export.md, "OCI image layout").
@Suite("Export: OCI image layout")
struct ExportOCITests {
    @Test("an OCI layout: reproducible, skopeo copies it, podman makes a container of exactly the release's files; xz releases get a tar layer",
          .needs(.builtSlipway, .tools(["skopeo", "podman", "zstd"])))
    func layout() throws {
        let binary = try #require(builtSlipway)
        let fx = try NodeFixture("slipway-export-oci")
        defer { fx.remove() }
        try fx.release("1")
        let tree = try fx.tree("2")
        let zstd = try fx.store.add(tree: tree, name: fx.app, version: "2", created: 1_700_000_000,
                                    configuration: .init(compression: .zstd, level: 1),
                                    service: ServiceSpec(command: "exec /usr/bin/app", user: "root", port: 8080)).release
        func export(_ version: String, _ out: String, _ extra: [String] = []) throws -> CommandResult {
            try run(binary, ["export", "\(fx.app)@\(version)", "--format", "oci", "--out", out, "--store", fx.store.root] + extra)
        }
        // podman names the image after the layout's path, which must then be lower case.
        let lower = "/tmp/slipway-oci-" + String(format: "%08x", UInt32.random(in: .min ... .max))
        try FileManager.default.createDirectory(atPath: lower, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: lower) }
        let layout = lower + "/layout"
        let exported = try export("2", layout)
        #expect(exported.status == 0, "export: \(exported.err)")
        #expect(exported.out.contains("podman run --rm -it oci:\(layout):2"))

        // The same release again: the same bytes, file for file.
        let again = fx.dir.sub("layout-again")
        #expect(try export("2", again).status == 0)
        func files(_ root: String) throws -> [String: Data] {
            var found: [String: Data] = [:]
            for path in FileManager.default.subpaths(atPath: root) ?? [] where !path.hasSuffix("sha256") && path != "blobs" {
                found[path] = try Data(contentsOf: URL(fileURLWithPath: root + "/" + path))
            }
            return found
        }
        #expect(try files(layout) == files(again) && !(try files(layout)).isEmpty)
        // An existing output is refused without --force, replaced with it.
        let refused = try export("2", layout)
        #expect(refused.status != 0 && refused.err.contains("exists"), "\(refused.err)")
        #expect(try export("2", layout, ["--force"]).status == 0)

        // The layout as the spec wants it: the zstd archive is the layer, as it is.
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: layout + "/index.json"))) as? [String: Any]
        let entry = try #require((index?["manifests"] as? [[String: Any]])?.first)
        #expect((entry["annotations"] as? [String: String])?["org.opencontainers.image.ref.name"] == "2")
        let manifestDigest = try #require(entry["digest"] as? String)
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: layout + "/blobs/sha256/" + manifestDigest.dropFirst(7)))) as? [String: Any]
        let layer = try #require((manifest?["layers"] as? [[String: Any]])?.first)
        #expect(layer["mediaType"] as? String == "application/vnd.oci.image.layer.v1.tar+zstd")
        #expect(layer["digest"] as? String == "sha256:" + zstd.manifest.archive.sha256)

        // skopeo reads and copies it (checking every digest on the way).
        let copied = try run("skopeo", ["copy", "oci:\(layout):2", "dir:\(fx.dir.sub("copy"))"])
        #expect(copied.ok, "skopeo copy: \(copied.err)")
        let inspected = try run("skopeo", ["inspect", "--config", "oci:\(layout):2"])
        #expect(inspected.ok && inspected.out.contains("exec /usr/bin/app") && inspected.out.contains("8080/tcp"), "\(inspected.out) \(inspected.err)")

        // podman (its own storage, vfs: nothing mounted, nothing of the machine's touched)
        // makes a container of it; exported, it holds exactly the release's entries.
        // podman wants its runroot's path short (at most 50 characters).
        var template = Array("/tmp/slipway-podman-XXXXXX".utf8CString)
        let runroot = String(cString: try #require(mkdtemp(&template)))
        let podman = ["--root", fx.dir.sub("podman-root"), "--runroot", runroot, "--storage-driver", "vfs"]
        defer {
            _ = try? run("podman", podman + ["rm", "--all", "--force"])
            _ = try? run("podman", podman + ["rmi", "--all", "--force"])
            try? FileManager.default.removeItem(atPath: runroot)
        }
        let created = try run("podman", podman + ["create", "--network", "none", "oci:\(layout):2"])
        #expect(created.ok, "podman create: \(created.err)")
        let container = created.out.split(separator: "\n").last.map(String.init) ?? ""
        let exportedTar = fx.dir.sub("container.tar")
        let podmanExport = try run("podman", podman + ["export", "--output", exportedTar, container])
        #expect(podmanExport.ok, "podman export: \(podmanExport.err)")
        let listed = try run("tar", ["-tf", exportedTar]).out.split(separator: "\n").map(String.init).sorted()
        let released = try run("/bin/sh", ["-c", "zstd -dc '\(zstd.archivePath)' | tar -tf -"]).out.split(separator: "\n").map(String.init).sorted()
        #expect(!listed.isEmpty && listed == released, "container \(listed) vs release \(released)")
        #expect(try run("tar", ["-xOf", exportedTar, "etc/app/version"]).out == "2\n")

        // An xz release: OCI has no xz layers, so the layer is the uncompressed tar.
        let xzLayout = fx.dir.sub("layout-xz")
        #expect(try export("1", xzLayout).status == 0)
        let xzCopy = try run("skopeo", ["copy", "oci:\(xzLayout):1", "dir:\(fx.dir.sub("copy-xz"))"])
        #expect(xzCopy.ok, "skopeo copy of the xz release: \(xzCopy.err)")
        let xzIndex = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: xzLayout + "/index.json"))) as? [String: Any]
        let xzDigest = try #require(((xzIndex?["manifests"] as? [[String: Any]])?.first)?["digest"] as? String)
        let xzManifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: xzLayout + "/blobs/sha256/" + xzDigest.dropFirst(7)))) as? [String: Any]
        #expect(((xzManifest?["layers"] as? [[String: Any]])?.first)?["mediaType"] as? String == "application/vnd.oci.image.layer.v1.tar")
    }
}
