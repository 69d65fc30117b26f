import Foundation
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// A fresh directory under the system temporary directory, removed when `body` returns.
public func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("slipway-test-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

public func writeFile(_ path: String, _ text: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

public func readText(_ path: String) throws -> String {
    String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self)
}

/// A small manifest with one entry of most kinds, including a path that is not UTF-8.
public func sampleManifest(name: String = "web", version: String = "1.0") -> ReleaseManifest {
    ReleaseManifest(
        name: name, version: version, created: 1_700_000_000, compression: .xz,
        archive: .init(sha256: String(repeating: "ab", count: 32), size: 1234), tarSize: 10240,
        entries: [
            EntryRecord(path: ArchivePath("etc"), kind: .directory, mode: 0o755, uid: 0, gid: 0),
            EntryRecord(path: ArchivePath("etc/motd"), kind: .file, mode: 0o644, uid: 0, gid: 0, size: 3,
                        sha256: String(repeating: "01", count: 32)),
            EntryRecord(path: ArchivePath("bin/ping"), kind: .file, mode: 0o4755, uid: 0, gid: 0, size: 100,
                        sha256: String(repeating: "02", count: 32), xattrs: ["security.capability"]),
            EntryRecord(path: ArchivePath("bin/sh"), kind: .symlink, mode: 0o777, uid: 0, gid: 0, linkTarget: ArchivePath("dash")),
            EntryRecord(path: ArchivePath("dev/null"), kind: .characterDevice, mode: 0o666, uid: 0, gid: 0,
                        deviceMajor: 1, deviceMinor: 3),
            EntryRecord(path: ArchivePath(bytes: Array("caf".utf8) + [0xE9, 0xFF]), kind: .file, mode: 0o600,
                        uid: 1000, gid: 1000, size: 0, sha256: String(repeating: "e3", count: 32)),
        ])
}

/// Puts a release into a store by hand, without the packer: `archiveBytes` stand in for the
/// archive and the manifest records their real hash. Signed when `key` is given.
@discardableResult
public func storeRelease(in store: String, name: String = "web", version: String = "1.0",
                  archiveBytes: Data = Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) }),
                  key: ReleaseSigningKey? = nil) throws -> String {
    let directory = "\(store)/\(name)/\(version)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let archivePath = directory + "/rootfs.tar.xz"
    try archiveBytes.write(to: URL(fileURLWithPath: archivePath))
    let (hex, size) = try FileHasher.sha256(path: archivePath)
    var manifest = sampleManifest(name: name, version: version)
    manifest.archive = .init(sha256: hex, size: size)
    let bytes = try manifest.encoded()
    try bytes.write(to: URL(fileURLWithPath: directory + "/manifest.json"))
    if let key {
        let signature = try ReleaseSigning.sign(bytes, with: key)
        try ReleaseSigning.signatureFile(signature).write(to: URL(fileURLWithPath: directory + "/manifest.sig"))
    }
    return directory
}

/// A small tree shaped like a Debian system for SBOM tests (docs/sbom.md): a dpkg status
/// with four packages in three states and architectures, one machine-readable copyright
/// file, os-release, a venv with one distribution and a Debian-owned dist-info that must not
/// count. `extra` adds one more installed package (name and version).
public func makeDebianLikeTree(at tree: String, extra: (name: String, version: String)? = nil) throws {
    for directory in ["var/lib/dpkg", "usr/share/doc/base-files", "usr/share/doc/libfoo1", "etc",
                      "opt/app/venv/lib/python3.11/site-packages/Flask_Login-0.6.3.dist-info",
                      "usr/lib/python3/dist-packages/six-1.16.0.dist-info"] {
        try FileManager.default.createDirectory(atPath: tree + "/" + directory, withIntermediateDirectories: true)
    }
    var status = """
        Package: base-files
        Essential: yes
        Status: install ok installed
        Priority: required
        Architecture: amd64
        Version: 12.4+deb12u5
        Description: Debian base system miscellaneous files
         This package contains the basic filesystem hierarchy.

        Package: libfoo1
        Status: install ok installed
        Architecture: i386
        Multi-Arch: same
        Source: foo (1:2.3+dfsg-1)
        Version: 1:2.3+dfsg-1+b1

        Package: oldpkg
        Status: deinstall ok config-files
        Architecture: amd64
        Version: 0.9

        Package: tzdata
        Status: install ok installed
        Architecture: all
        Version: 2024a-0+deb12u1

        """
    if let extra {
        status += "\nPackage: \(extra.name)\nStatus: install ok installed\nArchitecture: amd64\nVersion: \(extra.version)\n"
    }
    try writeFile(tree + "/var/lib/dpkg/status", status)
    try writeFile(tree + "/usr/share/doc/base-files/copyright", """
        Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
        Upstream-Name: base-files

        Files: *
        Copyright: Santiago Vila
        License: GPL-2+ or Artistic
         This is free software.

        Files: debian/*
        License: MIT
        """)
    try writeFile(tree + "/usr/share/doc/libfoo1/copyright", "This is the Debian package of foo.\nIt is under the GPL.\n")
    try writeFile(tree + "/etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n")
    try writeFile(tree + "/opt/app/venv/lib/python3.11/site-packages/Flask_Login-0.6.3.dist-info/METADATA",
                  "Metadata-Version: 2.1\nName: Flask-Login\nVersion: 0.6.3\nSummary: x\n\nName: not-this\n")
    try writeFile(tree + "/usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA", "Name: six\nVersion: 1.16.0\n")
}

/// A small seeded generator (SplitMix64), so that random trials and inputs are reproduced
/// from their seed.
public struct SeededGenerator: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
