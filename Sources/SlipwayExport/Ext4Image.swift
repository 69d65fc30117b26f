import Crypto
import Foundation
import Glibc
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Makes a reproducible ext4 image of an unpacked tree with e2fsprogs: `mke2fs -d`, then
/// `debugfs` to give every inode fixed access and change times, then `e2fsck -fn`.
///
/// What would otherwise differ between two runs, and how it is pinned:
/// - UUID and directory hash seed: derived from the release (`derivedUUID`);
/// - the superblock's and new inodes' times: `E2FSPROGS_FAKE_TIME` = the release's `created`;
/// - the host's /etc/mke2fs.conf: replaced by `configuration` through `MKE2FS_CONFIG`;
/// - the order of directory entries: mke2fs 1.47 reads directories with scandir in
///   `strcoll` order; `LC_ALL=C` makes that bytewise;
/// - atime and ctime, which `mke2fs -d` copies from the unpacked files (their ctime is the
///   moment of unpacking, which nothing can set): rewritten with debugfs to `created`.
enum Ext4Image {
    /// mke2fs's defaults, fixed: the features of Debian 12's ext4 (metadata checksums,
    /// 64-bit, flex_bg, extents, 256-byte inodes), so the host's configuration cannot change the image.
    static let configuration = """
        [defaults]
        \tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
        \tdefault_mntopts = acl,user_xattr
        \tenable_periodic_fsck = 0
        \tblocksize = 4096
        \tinode_size = 256
        \tinode_ratio = 16384
        \treserved_ratio = 5.0
        \terrors = continue

        [fs_types]
        \text4 = {
        \t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
        \t}
        \tslipway = {
        \t\tinode_ratio = 16384
        \t}

        """

    /// mke2fs ran out of blocks or inodes; `detail` is its own line saying so.
    struct OutOfSpace: Error {
        var detail: String?
    }

    /// What `make` produced.
    struct Made {
        var uuid: String
        /// Bytes free for unprivileged users, as df shows them once mounted.
        var freeBytes: UInt64
    }

    /// Formats `image` (a new file of `size` bytes is created) with the tree at `tree`.
    static func make(tree: String, image: String, work: String, size: UInt64, inodes: UInt64,
                     release: StoredRelease, runner: CommandRunner) throws -> Made {
        let created = release.manifest.created
        let configPath = work + "/mke2fs.conf"
        try writeNew(configPath, Data(configuration.utf8))
        try createSparse(image, size: size)

        let uuid = derivedUUID("ext4-uuid", release)
        let hashSeed = derivedUUID("ext4-hash-seed", release)
        let environment = toolEnvironment(created: created, extra: ["MKE2FS_CONFIG": configPath])
        let label = String(decoding: Array(release.manifest.name.utf8.prefix(16)), as: UTF8.self)
        let mke2fs = Command(
            ["mke2fs", "-q", "-t", "ext4", "-T", "slipway", "-b", "4096", "-I", "256", "-N", String(inodes), "-m", "5",
             "-L", label, "-U", uuid,
             "-E", "hash_seed=\(hashSeed),root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard",
             "-d", tree, image],
            environment: environment)
        do {
            try runner.run(mke2fs)
        } catch let CommandError.failed(_, _, _, tail) where isOutOfSpace(tail) {
            throw OutOfSpace(detail: spaceLine(tail))
        }

        let layout = try InodeLayout.read(image: image, runner: runner)
        try fixTimes(image: image, work: work, inodes: layout.inodesInUse, created: created, runner: runner)

        // A last check: an image that e2fsck rejects is never handed out.
        let check = try runner.runAllowingFailure(Command(["e2fsck", "-f", "-n", image], environment: environment))
        guard check.succeeded else {
            // e2fsck reports the problems on stdout.
            let report = check.outputText.split(separator: "\n").suffix(5).joined(separator: "; ")
            throw ExportError.toolReported(tool: "e2fsck", detail: "the new image has errors (exit status \(check.status)): \(report)")
        }
        return Made(uuid: uuid, freeBytes: layout.freeBytes)
    }

    /// The environment of every e2fsprogs run: the fixed time, the C locale, and none of the
    /// variables that would change mke2fs's choices.
    static func toolEnvironment(created: Int64, extra: [String: String?] = [:]) -> [String: String?] {
        var environment: [String: String?] = [
            "E2FSPROGS_FAKE_TIME": String(created), "LC_ALL": "C", "SOURCE_DATE_EPOCH": nil,
            "MKE2FS_DEVICE_SECTSIZE": nil, "MKE2FS_DEVICE_PHYS_SECTSIZE": nil, "MKE2FS_FIRST_META_BG": nil,
            "MKE2FS_SYNC": nil, "E2FSPROGS_LIBMAGIC_SUPPRESS": "1",
        ]
        for (key, value) in extra { environment[key] = value }
        return environment
    }

    /// Whether mke2fs's stderr says the filesystem is too small for the tree.
    static func isOutOfSpace(_ stderr: String) -> Bool {
        ["Could not allocate block", "Could not allocate inode", "Not enough space to build proposed filesystem"]
            .contains { stderr.contains($0) }
    }

    /// The line of mke2fs's stderr that says what ran out.
    static func spaceLine(_ stderr: String) -> String? {
        let lines = stderr.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let line = lines.last(where: { $0.hasPrefix("mke2fs:") && isOutOfSpace($0) })
            ?? lines.last(where: isOutOfSpace)
        return line.map { $0.hasPrefix("mke2fs: ") ? String($0.dropFirst(8)) : $0 }
    }

    /// Sets atime, ctime and crtime of every inode in use (the root and every inode from the
    /// first non-reserved one) to `created`, in one debugfs run.
    static func fixTimes(image: String, work: String, inodes: [UInt32], created: Int64, runner: CommandRunner) throws {
        let scriptPath = work + "/debugfs.cmds"
        do {
            let fd = open(scriptPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw ExportError.system(operation: "create", path: scriptPath, errno: errno) }
            defer { close(fd) }
            // Written in chunks: a tree of a million files makes a script of about 100 MB.
            for chunk in stride(from: 0, to: inodes.count, by: 10_000) {
                var script = ""
                for inode in inodes[chunk..<min(chunk + 10_000, inodes.count)] {
                    for field in ["atime", "ctime", "crtime"] { script += "sif <\(inode)> \(field) @\(created)\n" }
                }
                let failed = Array(script.utf8).withUnsafeBytes { writeFully(fd, $0) }
                guard failed == 0 else { throw ExportError.system(operation: "write", path: scriptPath, errno: failed) }
            }
        }
        // debugfs exits 0 whatever its commands did; any stderr line but its banner is an error.
        let result = try runner.run(Command(["debugfs", "-w", "-f", scriptPath, image],
                                            environment: toolEnvironment(created: created), output: .discard))
        let complaints = result.standardErrorTail.split(separator: "\n").filter { !$0.hasPrefix("debugfs ") }
        if !complaints.isEmpty {
            throw ExportError.toolReported(tool: "debugfs", detail: "setting inode times failed: " + complaints.prefix(3).joined(separator: "; "))
        }
        unlink(scriptPath)
    }

    /// A UUID derived from the release (name, version and archive hash) and a purpose, so
    /// exporting a release again gives the same one while two releases get different ones.
    /// RFC 9562 version 8 (custom), variant 10.
    static func derivedUUID(_ purpose: String, _ release: StoredRelease) -> String {
        let input = "slipway-export\0\(purpose)\0\(release.reference)\0\(release.manifest.archive.sha256)"
        var bytes = Array(SHA256.hash(data: Data(input.utf8)).prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x80
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = FileHasher.hex(bytes)
        let characters = Array(hex)
        return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(characters[$0]) }.joined(separator: "-")
    }

    /// A new file of `size` bytes with no blocks allocated.
    static func createSparse(_ path: String, size: UInt64) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ExportError.system(operation: "create", path: path, errno: errno) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(size)) == 0 else { throw ExportError.system(operation: "set the size of", path: path, errno: errno) }
    }

    static func writeNew(_ path: String, _ data: Data) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ExportError.system(operation: "create", path: path, errno: errno) }
        defer { close(fd) }
        let failed = data.withUnsafeBytes { writeFully(fd, $0) }
        guard failed == 0 else { throw ExportError.system(operation: "write", path: path, errno: failed) }
    }
}

/// Which inodes of a fresh ext4 are in use, and its free space, from `dumpe2fs`.
struct InodeLayout: Equatable {
    var inodesInUse: [UInt32]
    var freeBytes: UInt64

    static func read(image: String, runner: CommandRunner) throws -> InodeLayout {
        let result = try runner.run(Command(["dumpe2fs", image], environment: ["LC_ALL": "C"]))
        return try parse(result.outputText)
    }

    /// Parses dumpe2fs's report: the header's counts and each group's `Free inodes:` ranges.
    /// The inodes in use are the root (2) and every inode from `First inode` on that no group
    /// lists as free.
    static func parse(_ report: String) throws -> InodeLayout {
        var header: [String: String] = [:]
        var free: [ClosedRange<UInt32>] = []
        for line in report.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  Free inodes:") {
                // Empty for a full group.
                for part in line.dropFirst("  Free inodes:".count).split(separator: ",")
                where !part.allSatisfy(\.isWhitespace) {
                    let bounds = part.split(separator: "-").map { UInt32($0.trimmingCharacters(in: .whitespaces)) }
                    guard (1...2).contains(bounds.count), let low = bounds.first ?? nil, let high = bounds.last ?? nil, low <= high else {
                        throw ExportError.toolReported(tool: "dumpe2fs", detail: "unexpected free inode list '\(line)'")
                    }
                    free.append(low...high)
                }
            } else if !line.hasPrefix(" "), let colon = line.firstIndex(of: ":") {
                header[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        func number(_ key: String) throws -> UInt64 {
            guard let value = header[key].flatMap({ UInt64($0) }) else {
                throw ExportError.toolReported(tool: "dumpe2fs", detail: "no '\(key)' in its report")
            }
            return value
        }
        let count = try number("Inode count")
        let first = try number("First inode")
        let blockSize = try number("Block size")
        let blocks = try number("Block count")
        let freeBlocks = try number("Free blocks")
        // Reserved for root, and what the kernel driver keeps back (see ImageSize.driverReserve).
        let reserved = try number("Reserved block count") + min(blocks / 50, 4096)
        guard count <= UInt64(UInt32.max), first <= count else {
            throw ExportError.toolReported(tool: "dumpe2fs", detail: "inode count \(count), first inode \(first)")
        }
        free.sort { $0.lowerBound < $1.lowerBound }
        var inUse: [UInt32] = [2]
        var next = UInt32(first)
        for range in free {
            if range.lowerBound > next { inUse.append(contentsOf: next..<range.lowerBound) }
            next = max(next, range.upperBound == .max ? .max : range.upperBound + 1)
        }
        if UInt64(next) <= count { inUse.append(contentsOf: next...UInt32(count)) }
        return InodeLayout(inodesInUse: inUse, freeBytes: freeBlocks > reserved ? (freeBlocks - reserved) * blockSize : 0)
    }
}
