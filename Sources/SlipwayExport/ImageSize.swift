import Foundation
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Sizes of ext4 images: parsing `--size`, the default size of a release's image, and the
/// inode count. Blocks are 4 KiB; units are binary (1M = 1 MiB). See docs/export.md.
public enum ImageSize {
    static let blockSize: UInt64 = 4096
    static let inodeSize: UInt64 = 256
    /// mke2fs's default of one inode per 16 KiB, kept when the tree needs fewer.
    static let bytesPerInode: UInt64 = 16384
    static let mebibyte: UInt64 = 1 << 20
    /// Below this an ext4 gets no journal (mke2fs wants 2048 blocks); refused outright.
    public static let minimum: UInt64 = 16 * mebibyte
    /// The smallest default image.
    public static let floor: UInt64 = 64 * mebibyte
    /// Free space the default size leaves, in percent of what the tree occupies.
    public static let headroomPercent: UInt64 = 30

    /// Parses `512M`, `2G`, `1.5G`, `800MiB`, `4096` (bytes): K, M, G, T are powers of 1024, an
    /// optional `iB` or `B` may follow. The result is rounded up to whole 4 KiB blocks.
    public static func parse(_ text: String) throws -> UInt64 {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var number = Substring(trimmed)
        var unit = ""
        while let last = number.last, last.isLetter {
            unit = String(last) + unit
            number = number.dropLast()
        }
        number = Substring(number.trimmingCharacters(in: .whitespaces))
        let multiplier: UInt64
        switch unit.lowercased() {
        case "", "b": multiplier = 1
        case "k", "kb", "kib": multiplier = 1 << 10
        case "m", "mb", "mib": multiplier = 1 << 20
        case "g", "gb", "gib": multiplier = 1 << 30
        case "t", "tb", "tib": multiplier = 1 << 40
        default: throw ExportError.invalidSize(text, reason: "unknown unit '\(unit)'; \(hint)")
        }
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        guard !number.isEmpty, parts.count <= 2, parts.allSatisfy({ $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              !parts[0].isEmpty, let whole = UInt64(parts[0])
        else { throw ExportError.invalidSize(text, reason: "not a number; \(hint)") }
        var bytes = whole.multipliedReportingOverflow(by: multiplier)
        if parts.count == 2, !parts[1].isEmpty {
            // A fraction of the unit, exact to the byte for up to 9 decimals.
            let digits = String(parts[1].prefix(9))
            guard let fraction = UInt64(digits) else { throw ExportError.invalidSize(text, reason: "not a number; \(hint)") }
            var scale: UInt64 = 1
            for _ in digits { scale *= 10 }
            let extra = Double(fraction) / Double(scale) * Double(multiplier)
            bytes = bytes.partialValue.addingReportingOverflow(UInt64(extra.rounded(.up)))
        }
        guard !bytes.overflow, bytes.partialValue <= 1 << 60 else { throw ExportError.invalidSize(text, reason: "too large") }
        let rounded = roundUp(bytes.partialValue, to: blockSize)
        guard rounded >= minimum else {
            throw ExportError.invalidSize(text, reason: "an ext4 image needs at least \(format(minimum))")
        }
        return rounded
    }

    private static let hint = "write a size like 512M or 2G (K, M, G, T are powers of 1024)"

    /// `64 MiB`, `1.5 GiB`, `512 KiB`, `100 B`.
    public static func format(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var unit = 0
        var value = Double(bytes)
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 || value == value.rounded() { return "\(Int(value)) \(units[unit])" }
        return String(format: "%.1f", value) + " " + units[unit]
    }

    static func roundUp(_ value: UInt64, to multiple: UInt64) -> UInt64 {
        value % multiple == 0 ? value : (value / multiple + 1) * multiple
    }

    /// What a tree occupies on an ext4 with 4 KiB blocks, estimated from its manifest.
    struct TreeUsage: Equatable {
        /// Bytes of blocks the tree certainly takes: file contents, one block per directory,
        /// long symlink targets.
        var certain: UInt64
        /// Bytes it likely takes on top: directory entries beyond a directory's first block,
        /// a block per entry with extended attributes.
        var likely: UInt64
        /// The estimate: both.
        var bytes: UInt64 { certain + likely }
        /// Inodes: the entries (a hardlink shares its file's), the root, lost+found and the
        /// reserved inodes.
        var inodes: UInt64
    }

    static func usage(_ manifest: ReleaseManifest) -> TreeUsage {
        // The root directory and lost+found (four blocks).
        var bytes: UInt64 = 5 * blockSize
        var likely: UInt64 = 0
        var inodes: UInt64 = 12
        var nameBytes: UInt64 = 0
        for entry in manifest.entries {
            let name = entry.path.bytes.split(separator: UInt8(ascii: "/")).last?.count ?? 0
            nameBytes += 8 + roundUp(UInt64(name), to: 4)
            if entry.kind != .hardlink { inodes += 1 }
            switch entry.kind {
            case .file:
                bytes += roundUp(entry.size, to: blockSize)
                // An extent maps at most 128 MiB; past four extents the tree needs a block.
                bytes += entry.size / (512 * mebibyte) * blockSize
            case .directory:
                bytes += blockSize
            case .symlink:
                // Targets of 60 bytes or more do not fit in the inode.
                if (entry.linkTarget?.bytes.count ?? 0) >= 60 { bytes += blockSize }
            case .hardlink, .characterDevice, .blockDevice, .fifo:
                break
            }
            // Values are not in the manifest; small ones fit in the inode, count a block to be safe.
            if entry.xattrs != nil { likely += blockSize }
        }
        // Directory entries beyond each directory's first block.
        likely += roundUp(nameBytes, to: blockSize)
        return TreeUsage(certain: bytes, likely: likely, inodes: inodes)
    }

    /// The inodes an image of `size` gets: mke2fs's one per 16 KiB, or the tree's plus 30 %
    /// when that is more.
    static func inodeCount(size: UInt64, usage: TreeUsage) -> UInt64 {
        max(size / bytesPerInode, usage.inodes + usage.inodes * headroomPercent / 100 + 16)
    }

    /// The journal mke2fs 1.47 gives a filesystem of `size` bytes (4 KiB blocks).
    static func journalSize(_ size: UInt64) -> UInt64 {
        let blocks = size / blockSize
        let journalBlocks: UInt64 = switch blocks {
        case ..<2048: 0
        case ..<32768: 1024
        case ..<(256 * 1024): 4096
        case ..<(512 * 1024): 8192
        case ..<(4096 * 1024): 16384
        case ..<(8192 * 1024): 32768
        case ..<(16384 * 1024): 65536
        case ..<(32768 * 1024): 131_072
        default: 262_144
        }
        return journalBlocks * blockSize
    }

    /// The blocks the Linux ext4 driver keeps back from everyone (`resv_clusters`: 2 % of the
    /// blocks, at most 4096), so that df shows less free space than the superblock.
    static func driverReserve(_ size: UInt64) -> UInt64 {
        min(size / blockSize / 50, 4096) * blockSize
    }

    /// Bytes an image of `size` spends before the tree: inode tables, the journal, group
    /// metadata and reserved descriptor blocks (about 1 %), the driver's reserve.
    static func overhead(size: UInt64, inodes: UInt64) -> UInt64 {
        inodes * inodeSize + journalSize(size) + size / 100 + mebibyte + driverReserve(size)
    }

    /// The default size: what the tree occupies plus 30 %, plus the filesystem's own
    /// overhead and the 5 % reserved for root; rounded up to a MiB, at least `floor`. The
    /// 30 % is what df shows free on the new image.
    static func defaultSize(_ usage: TreeUsage) -> UInt64 {
        let wanted = usage.bytes + usage.bytes * headroomPercent / 100
        var size = floor
        // The overhead depends on the size (journal, ratio-based inode count): iterate to a fixed point.
        for _ in 0..<8 {
            let total = (wanted + overhead(size: size, inodes: inodeCount(size: size, usage: usage))) * 100 / 95
            let next = max(floor, roundUp(total, to: mebibyte))
            if next <= size { break }
            size = next
        }
        return size
    }

    /// A lower bound of what an image of `size` needs: the tree's blocks and the inode tables.
    /// Below it, export refuses before unpacking anything; above it, mke2fs has the last word
    /// (the journal and group metadata come on top).
    static func required(size: UInt64, usage: TreeUsage) -> UInt64 {
        usage.certain + inodeCount(size: size, usage: usage) * inodeSize
    }
}
