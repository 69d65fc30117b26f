import SlipwaySystem
/// How an archive's tar stream is compressed.
public enum ArchiveCompression: String, Codable, Sendable, CaseIterable {
    case xz, zstd, none

    /// The file name extension of an archive with this compression.
    public var fileExtension: String {
        switch self {
        case .xz: "tar.xz"
        case .zstd: "tar.zst"
        case .none: "tar"
        }
    }

    /// Detects the compression from an archive's first bytes (its magic number).
    public static func detect(magic: [UInt8]) -> ArchiveCompression {
        if magic.starts(with: [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) { return .xz }
        if magic.starts(with: [0x28, 0xB5, 0x2F, 0xFD]) { return .zstd }
        return .none
    }
}
