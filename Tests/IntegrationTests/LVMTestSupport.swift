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
import SlipwayTestSupport

/// The repository's root, from this file's path.
private let lvmRepositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// The controller's slipway: the one built next to this test bundle, else .build's.
let lvmControllerBinary: String? = {
    let bundle = URL(fileURLWithPath: CommandLine.arguments.first ?? "").deletingLastPathComponent()
    for directory in [bundle, bundle.deletingLastPathComponent(), bundle.deletingLastPathComponent().deletingLastPathComponent()] {
        let candidate = directory.appendingPathComponent("slipway").path
        var st = stat()
        if stat(candidate, &st) == 0, st.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 { return candidate }
    }
    return nodeBinary
}()

extension Requirement {
    /// What the VM needs: root, qemu, Debian's kernel in /boot, and a controller slipway.
    static let lvmVM = Requirement(all: [
        .tools(["qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen", "mke2fs"], root: true),
        .that(((try? FileManager.default.contentsOfDirectory(atPath: "/boot")) ?? []).contains { $0.hasPrefix("vmlinuz-") && $0.hasSuffix("-amd64") },
              "no /boot/vmlinuz-*-amd64 — scripts/setup installs linux-image-amd64"),
        .that(lvmControllerBinary != nil, slipwayNotBuilt),
    ])
}

/// A VM from `scripts/lvm-vm up` in a directory of its own (the image is shared with the
/// checkout's `.lvm-vm/image`, so it is built once). `down()` stops qemu by its pid.
final class LVMVM {
    let directory: String
    let inventory: String
    let environment: [String: String]
    let bootSeconds: Double

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("slipway-lvm-vm-\(UUID().uuidString.prefix(8))").path
        // A 1 GiB pool: enough for the test, and quick to fill for the full-pool case.
        environment = ["LVM_VM_DIR": directory, "LVM_VM_IMAGE_DIR": lvmRepositoryRoot + "/.lvm-vm/image",
                       "LVM_VM_VG_SIZE": "2G", "LVM_VM_POOL_SIZE": "1G"]
        let up = try run("bash", [lvmRepositoryRoot + "/scripts/lvm-vm", "up"], environment: environment)
        guard up.ok, let last = up.out.split(separator: "\n").last else {
            _ = try? run("bash", [lvmRepositoryRoot + "/scripts/lvm-vm", "down"], environment: environment)
            throw TestSupportError.commandFailed("scripts/lvm-vm up", up.status, up.err)
        }
        inventory = String(last)
        bootSeconds = Double((try? String(contentsOfFile: directory + "/run/boot-seconds", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
    }

    func down() {
        _ = try? run("bash", [lvmRepositoryRoot + "/scripts/lvm-vm", "down"], environment: environment)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs `script` in the VM, then cuts the guest's power where it ends (`scripts/lvm-vm
    /// crash`); returns the seconds until ssh answered again.
    func crash(script: String) throws -> Double {
        let file = directory + "/crash-script.sh"
        try script.write(toFile: file, atomically: true, encoding: .utf8)
        try runChecked("sh", ["-c", "exec bash \"$1\" crash < \"$2\"", "sh", lvmRepositoryRoot + "/scripts/lvm-vm", file], environment: environment)
        return Double((try? String(contentsOfFile: directory + "/run/reboot-seconds", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
    }

    @discardableResult
    func ssh(_ command: String) throws -> CommandResult {
        try run("ssh", ["-F", directory + "/ssh_config", "lvm-vm", command])
    }

    @discardableResult
    func sshChecked(_ command: String) throws -> String {
        let result = try ssh(command)
        guard result.ok else { throw TestSupportError.commandFailed("ssh lvm-vm \(command)", result.status, result.err) }
        return result.out
    }

    /// Copies a local file into the VM.
    func upload(_ local: String, to remote: String) throws {
        let result = try run("sh", ["-c", "ssh -F \"$1\" lvm-vm \"cat > '$3'\" < \"$2\"", "sh", directory + "/ssh_config", local, remote])
        guard result.ok else { throw TestSupportError.commandFailed("upload \(local)", result.status, result.err) }
    }

    /// `slipway node status APP --json` in the VM.
    func status(_ app: String) throws -> NodeStatus {
        let out = try sshChecked("slipway node status \(app) --json")
        return try JSONDecoder().decode(NodeStatus.self, from: Data(out.utf8))
    }
}

/// Releases of a small app whose tree schroot can enter: busybox (with the host's libc) as
/// /bin/sh and /bin/cat, `/etc/app/version`, `shared` MiB of data every version has and
/// `own` MiB of its own.
struct LVMAppReleases {
    let store: ReleaseStore
    let temp: TempDir

    init(temp: TempDir) {
        self.temp = temp
        store = ReleaseStore(root: temp.sub("store"))
    }

    @discardableResult
    func release(_ app: String, _ version: String, shared: Int, own: Int) throws -> StoredRelease {
        let tree = temp.sub("tree-\(app)-\(version)")
        defer { try? FileManager.default.removeItem(atPath: tree) }
        for directory in ["bin", "lib/x86_64-linux-gnu", "lib64", "etc/app", "usr/share/app", "proc", "sys", "dev", "tmp", "root", "run"] {
            try FileManager.default.createDirectory(atPath: "\(tree)/\(directory)", withIntermediateDirectories: true)
        }
        try runChecked("cp", ["-L", "/bin/busybox", tree + "/bin/busybox"])
        for library in ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libresolv.so.2"] {
            try runChecked("cp", ["-L", library, tree + library])
        }
        try runChecked("cp", ["-L", "/lib64/ld-linux-x86-64.so.2", tree + "/lib64/ld-linux-x86-64.so.2"])
        for tool in ["sh", "cat"] { try FileManager.default.createSymbolicLink(atPath: "\(tree)/bin/\(tool)", withDestinationPath: "busybox") }
        var generator = SeededGenerator(seed: 11)
        for index in 0..<shared {
            try Data((0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) })
                .write(to: URL(fileURLWithPath: "\(tree)/usr/share/app/shared\(index)"))
        }
        if own > 0 { try Data(randomBytes(own << 20)).write(to: URL(fileURLWithPath: tree + "/usr/share/app/own")) }
        try Data("\(version)\n".utf8).write(to: URL(fileURLWithPath: tree + "/etc/app/version"))
        var configuration = ArchiveWriterConfiguration(level: 1)
        configuration.compression = .zstd
        return try store.add(tree: tree, name: app, version: version, created: 1_700_000_000, configuration: configuration).release
    }
}

/// The VM's view of one app: what the invariant of docs/node.md "Crash safety" is checked against.
struct LVMNodeView {
    var current: String?
    var currentMountSource: String?
    var currentVersionFile: String?
    var partialVolumes: [String]
    var partialDirectories: [String]
    var landedVolumes: [String]
    var mountedReleases: [String]
    var units: [String]

    /// A shell script printing `key=value` lines for `app` (VG `slipway`).
    static func script(app: String) -> String {
        let releases = "/var/lib/slipway/\(app)/releases"
        return """
        cur=$(readlink /var/lib/slipway/\(app)/current || true)
        echo "current=${cur##*/}"
        if [ -n "$cur" ]; then
          echo "source=$(findmnt -n -o SOURCE --mountpoint /var/lib/slipway/\(app)/releases/${cur##*/} || true)"
          echo "versionfile=$(cat /var/lib/slipway/\(app)/current/etc/app/version 2>/dev/null || true)"
        fi
        lvs --noheadings --separator '|' -o lv_name,lv_tags slipway 2>/dev/null | while IFS='|' read -r lv tags; do
          lv=$(echo $lv)
          case "$lv,$tags" in
            \(app)-*-partial,* | \(app)-*,*slipway.staging*) echo "partial=$lv" ;;
            \(app)-*) echo "landed=$lv" ;;
          esac
        done
        for d in \(releases)/.partial-* ; do [ -e "$d" ] && echo "partialdir=$d"; done
        for d in \(releases)/* ; do [ -e "$d" ] && mountpoint -q "$d" && echo "mounted=${d##*/}"; done
        for u in /etc/systemd/system/*.mount; do grep -q "^Where=\(releases)/" "$u" 2>/dev/null && echo "unit=$(sed -n 's/^Where=//p' "$u")"; done
        true
        """
    }

    init(parsing text: String) {
        var values: [(String, String)] = []
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values.append((String(line[..<eq]), String(line[line.index(after: eq)...])))
        }
        func all(_ key: String) -> [String] { values.filter { $0.0 == key }.map(\.1) }
        let current = all("current").first ?? ""
        self.current = current.isEmpty ? nil : current
        currentMountSource = all("source").first.flatMap { $0.isEmpty ? nil : $0 }
        currentVersionFile = all("versionfile").first.flatMap { $0.isEmpty ? nil : $0 }
        partialVolumes = all("partial")
        partialDirectories = all("partialdir")
        landedVolumes = all("landed")
        mountedReleases = all("mounted").sorted()
        units = all("unit").map { ($0 as NSString).lastPathComponent }.sorted()
    }
}

/// Compares the tree at `releases/<version>` in the VM with the release's manifest: every
/// path, its kind, mode, and each file's sha256.
func lvmTreeDifferences(vm: LVMVM, app: String, version: String, manifest: ReleaseManifest) throws -> [String] {
    let root = "/var/lib/slipway/\(app)/releases/\(version)"
    let listing = try vm.sshChecked("cd \(root) && find . -mindepth 1 -printf '%y %m %P\\n' && echo --- && find . -type f -print0 | xargs -0 -r sha256sum")
    let parts = listing.components(separatedBy: "---\n")
    var actual: [String: (kind: String, mode: String)] = [:]
    for line in parts[0].split(separator: "\n") {
        let fields = line.split(separator: " ", maxSplits: 2)
        if fields.count == 3 { actual[String(fields[2])] = (String(fields[0]), String(fields[1])) }
    }
    var hashes: [String: String] = [:]
    for line in (parts.count > 1 ? parts[1] : "").split(separator: "\n") {
        let fields = line.split(separator: " ", maxSplits: 1)
        if fields.count == 2 { hashes[String(fields[1].trimmingCharacters(in: .whitespaces).dropFirst(2))] = String(fields[0]) }
    }
    var problems: [String] = []
    var expected = Set<String>()
    for entry in manifest.entries {
        let path = entry.path.description.hasPrefix("./") ? String(entry.path.description.dropFirst(2)) : entry.path.description
        if path == "." || path.isEmpty { continue }
        expected.insert(path)
        guard let have = actual[path] else { problems.append("missing \(path)"); continue }
        let kind: String
        switch entry.kind {
        case .file, .hardlink: kind = "f"
        case .directory: kind = "d"
        case .symlink: kind = "l"
        case .characterDevice, .blockDevice: kind = entry.kind == .characterDevice ? "c" : "b"
        case .fifo: kind = "p"
        }
        if have.kind != kind { problems.append("\(path): kind \(have.kind), expected \(kind)") }
        if kind != "l", have.mode != String(entry.mode & 0o7777, radix: 8) {
            problems.append("\(path): mode \(have.mode), expected \(String(entry.mode & 0o7777, radix: 8))")
        }
        if let sha = entry.sha256, hashes[path] != sha { problems.append("\(path): sha256 \(hashes[path] ?? "none"), expected \(sha)") }
    }
    for path in actual.keys where !expected.contains(path) { problems.append("extra \(path)") }
    return problems.sorted()
}
