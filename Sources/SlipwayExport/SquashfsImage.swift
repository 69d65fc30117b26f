import Foundation
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Makes a reproducible, read-only, zstd-compressed squashfs image of an unpacked tree with
/// `mksquashfs`.
///
/// mksquashfs (4.4 and later) sorts directory entries itself and writes the same bytes for
/// any number of processors (checked: 1, 2 and 8 give identical images); squashfs stores no
/// atime or ctime. What is left is pinned here: the superblock's time (`-mkfs-time` = the
/// release's `created`), the compressor and its level, the block size. The file mtimes are
/// the archive's; `SOURCE_DATE_EPOCH` is removed from mksquashfs's environment so that a
/// value in the caller's environment cannot clamp them.
enum SquashfsImage {
    /// zstd: decompresses several times faster than xz (a read-only root decompresses on every
    /// page-cache miss) for images a few percent larger; Linux reads it since 4.14.
    static let compressor = "zstd"
    static let level = 15
    static let blockSize = 131_072

    static func make(tree: String, image: String, created: Int64, threads: Int, runner: CommandRunner) throws {
        var arguments = [
            "mksquashfs", tree, image, "-noappend", "-no-progress", "-quiet",
            "-comp", compressor, "-Xcompression-level", String(level), "-b", String(blockSize),
            "-mkfs-time", String(created), "-reproducible", "-xattrs",
            // Without it an unreadable file is skipped with a warning and the image lacks it.
            "-exit-on-error",
        ]
        if threads > 0 { arguments += ["-processors", String(threads)] }
        try runner.run(Command(arguments, environment: ["LC_ALL": "C", "SOURCE_DATE_EPOCH": nil], output: .discard))
    }
}
