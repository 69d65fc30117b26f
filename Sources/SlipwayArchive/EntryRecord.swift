import SlipwaySystem
/// One entry of a tree or an archive, as the manifest records it: what a landed tree is
/// verified against.
public struct EntryRecord: Codable, Equatable, Sendable {
    /// The kinds of entry a rootfs archive may hold.
    public enum Kind: String, Codable, Sendable {
        case file, directory, symlink, hardlink, characterDevice = "char", blockDevice = "block", fifo
    }

    /// Relative path, no leading `./` or `/`.
    public var path: ArchivePath
    public var kind: Kind
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    /// Bytes of content; 0 for everything but regular files.
    public var size: UInt64
    /// Lowercase hex SHA-256 of a regular file's content; nil for other kinds.
    public var sha256: String?
    /// Symlink target, or for a hardlink the path of the entry it links to.
    public var linkTarget: ArchivePath?
    /// Names of the extended attributes, sorted; nil when there are none.
    public var xattrs: [String]?
    /// Device numbers of character and block devices.
    public var deviceMajor: UInt32?
    public var deviceMinor: UInt32?

    public init(
        path: ArchivePath, kind: Kind, mode: UInt32, uid: UInt32, gid: UInt32, size: UInt64 = 0,
        sha256: String? = nil, linkTarget: ArchivePath? = nil, xattrs: [String]? = nil,
        deviceMajor: UInt32? = nil, deviceMinor: UInt32? = nil
    ) {
        self.path = path
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.sha256 = sha256
        self.linkTarget = linkTarget
        self.xattrs = xattrs
        self.deviceMajor = deviceMajor
        self.deviceMinor = deviceMinor
    }
}
