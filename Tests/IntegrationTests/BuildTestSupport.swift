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

// Helpers of the build tests: the repository's recipes, a base cache shared by the tests,
// what a build needs of the machine, a tiny busybox root file system, mounts and processes
// left in a directory.

/// The repository's recipes directory.
let recipesDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path + "/recipes"

/// One base cache shared by the build tests (a Debian base costs ~25-50 s to bootstrap), in
/// a path of their own so they never touch the user's cache.
let sharedCacheDirectory = FileManager.default.temporaryDirectory.path + "/slipway-it-build-cache"

extension Requirement {
    /// What `slipway build` needs: root, chroot, mount, umount, and `tools`.
    static func build(_ tools: String...) -> Requirement {
        Requirement(all: [.root("slipway build needs root (chroot, mounts, device nodes) — CI runs the tests as root"),
                          .tools(["chroot", "mount", "umount"] + tools)])
    }
}

func build(_ recipe: Recipe, store: String, cache: String = sharedCacheDirectory,
           compression: ArchiveCompression? = nil, overlayBase: Bool = true, refreshBase: Bool = false,
           bootstrapTools: [String] = ["mmdebstrap", "debootstrap"], version: String? = nil, signingKey: String? = nil) throws -> BuildSummary {
    let options = BuildOptions(version: version, storeRoot: store, signingKeyPath: signingKey, refreshBase: refreshBase, cacheDirectory: cache,
                               bootstrapTools: bootstrapTools, compression: compression, overlayBase: overlayBase)
    return try Builder(recipe: recipe, options: options, output: Output(verbosity: .quiet)).build()
}

/// Mount points at or below `path`.
func mountsUnder(_ path: String) -> [String] {
    let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
    return text.split(separator: "\n").compactMap { line in
        let fields = line.split(separator: " ")
        guard fields.count > 4 else { return nil }
        let point = String(fields[4])
        return point == path || point.hasPrefix(path + "/") ? point : nil
    }
}

/// Processes whose root or working directory is at or below `path` ("pid comm" each).
func processesInside(_ path: String) -> [String] {
    let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
    return pids.compactMap { pid in
        let inside = ["root", "cwd"].contains { link in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/\(link)") else { return false }
            return target == path || target.hasPrefix(path + "/")
        }
        guard inside else { return nil }
        let name = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "?"
        return "\(pid) \(name.trimmingCharacters(in: .whitespacesAndNewlines))"
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1 (no client tool needed); nil when nothing answers.
func httpGet(port: Int, path: String) -> String? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 3, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { return nil }
    let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
    guard send(fd, request, request.count, 0) == request.count else { return nil }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    return String(decoding: response, as: UTF8.self)
}

/// A tiny root file system at `root`: busybox-static's files (fetched with the host's apt),
/// /bin/sh and a few applets as links to busybox, and an /etc with root's accounts.
func makeBusyboxRoot(at root: String) throws {
    let debs = root + ".debs"
    try FileManager.default.createDirectory(atPath: debs, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: debs) }
    try runChecked("apt-get", ["download", "busybox-static"], cwd: debs)
    let deb = try #require(try FileManager.default.contentsOfDirectory(atPath: debs).first { $0.hasSuffix(".deb") })
    try runChecked("dpkg-deb", ["-x", debs + "/" + deb, root])
    for directory in ["etc", "tmp", "root", "proc", "sys", "dev", "usr/bin"] {
        try FileManager.default.createDirectory(atPath: root + "/" + directory, withIntermediateDirectories: true)
    }
    for applet in ["sh", "cat", "ls", "sleep", "echo", "mkdir"] where !FileManager.default.fileExists(atPath: root + "/bin/" + applet) {
        try FileManager.default.createSymbolicLink(atPath: root + "/bin/" + applet, withDestinationPath: "busybox")
    }
    try Data("root:x:0:0:root:/root:/bin/sh\n".utf8).write(to: URL(fileURLWithPath: root + "/etc/passwd"))
    try Data("root:x:0:\n".utf8).write(to: URL(fileURLWithPath: root + "/etc/group"))
    try Data("root:*::0:99999:7:::\n".utf8).write(to: URL(fileURLWithPath: root + "/etc/shadow"))
    try Data("root:*::\n".utf8).write(to: URL(fileURLWithPath: root + "/etc/gshadow"))
}

/// Writes `text` as a recipe file in `directory` and loads it.
func writeRecipe(_ text: String, named name: String, in directory: String, variables: [String: String] = [:]) throws -> Recipe {
    let path = directory + "/" + name
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    return try Recipe.load(path: path, variables: variables)
}

/// Waits up to `seconds` for `condition`, checking every 100 ms.
func waitFor(seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(100_000)
    }
    return condition()
}
