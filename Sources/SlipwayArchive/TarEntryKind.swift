import SlipwaySystem
/// File type bits as libarchive's `AE_IF*` constants (macros with casts, which Swift does
/// not import).
enum TarFileType {
    static let mask: UInt32 = 0o170000
    static let regular: UInt32 = 0o100000
    static let directory: UInt32 = 0o040000
    static let symlink: UInt32 = 0o120000
    static let character: UInt32 = 0o020000
    static let block: UInt32 = 0o060000
    static let fifo: UInt32 = 0o010000

    static func bits(of kind: EntryRecord.Kind) -> UInt32 {
        switch kind {
        case .file, .hardlink: regular
        case .directory: directory
        case .symlink: symlink
        case .characterDevice: character
        case .blockDevice: block
        case .fifo: fifo
        }
    }
}
