import SlipwayArchive
import SlipwaySystem
/// The differences between two manifests' entries: what `diff` shows, and what a delta
/// between two versions has to carry.
public struct ManifestDiff: Codable, Equatable, Sendable {
    /// The attributes of an entry that can differ.
    public enum Field: String, Codable, Sendable, CaseIterable {
        case kind, mode, uid, gid, size, sha256, linkTarget, xattrs, device
    }

    /// An entry present in both manifests with different attributes.
    public struct Change: Codable, Equatable, Sendable {
        public var path: ArchivePath
        /// The fields that differ, in `Field` order.
        public var fields: [Field]
        public var old: EntryRecord
        public var new: EntryRecord
    }

    /// Entries only in the new manifest, sorted by path.
    public var added: [EntryRecord]
    /// Entries only in the old manifest, sorted by path.
    public var removed: [EntryRecord]
    /// Entries in both that differ, sorted by path.
    public var changed: [Change]

    public var isEmpty: Bool { added.isEmpty && removed.isEmpty && changed.isEmpty }

    /// The diff from `old` to `new`.
    public init(from old: ReleaseManifest, to new: ReleaseManifest) {
        self.init(old: old.entries, new: new.entries)
    }

    /// The diff from the entries `old` to the entries `new`. Should a list hold a path twice,
    /// its last record counts, as it does when the archive is extracted.
    public init(old: [EntryRecord], new: [EntryRecord]) {
        let oldByPath = Dictionary(old.map { ($0.path, $0) }, uniquingKeysWith: { _, last in last })
        let newByPath = Dictionary(new.map { ($0.path, $0) }, uniquingKeysWith: { _, last in last })
        added = newByPath.values.filter { oldByPath[$0.path] == nil }.sorted { $0.path < $1.path }
        removed = oldByPath.values.filter { newByPath[$0.path] == nil }.sorted { $0.path < $1.path }
        changed = newByPath.values.compactMap { entry -> Change? in
            guard let before = oldByPath[entry.path] else { return nil }
            let fields = Self.differences(before, entry)
            return fields.isEmpty ? nil : Change(path: entry.path, fields: fields, old: before, new: entry)
        }.sorted { $0.path < $1.path }
    }

    /// The fields in which two records of the same path differ.
    public static func differences(_ a: EntryRecord, _ b: EntryRecord) -> [Field] {
        Field.allCases.filter { field in
            switch field {
            case .kind: a.kind != b.kind
            case .mode: a.mode != b.mode
            case .uid: a.uid != b.uid
            case .gid: a.gid != b.gid
            case .size: a.size != b.size
            case .sha256: a.sha256 != b.sha256
            case .linkTarget: a.linkTarget != b.linkTarget
            case .xattrs: (a.xattrs ?? []) != (b.xattrs ?? [])
            case .device: a.deviceMajor != b.deviceMajor || a.deviceMinor != b.deviceMinor
            }
        }
    }

    /// The human-readable diff: `+ path`, `- path`, `~ path: field old → new`, and a count line.
    public var textLines: [String] {
        var lines: [String] = []
        // One pass in path order reads better than three blocks.
        var items: [(ArchivePath, String)] = []
        items += added.map { ($0.path, "+ \($0.path)\(Self.describeKind($0))") }
        items += removed.map { ($0.path, "- \($0.path)\(Self.describeKind($0))") }
        items += changed.map { change in
            (change.path, "~ \(change.path): " + change.fields.map { Self.describe($0, change.old, change.new) }.joined(separator: ", "))
        }
        lines = items.sorted { $0.0 < $1.0 }.map(\.1)
        lines.append("\(added.count) added, \(removed.count) removed, \(changed.count) changed")
        return lines
    }

    private static func describeKind(_ entry: EntryRecord) -> String {
        switch entry.kind {
        case .file: " (file, \(ByteCount.format(entry.size)))"
        case .symlink, .hardlink: " (\(entry.kind.rawValue) -> \(entry.linkTarget?.description ?? "?"))"
        default: " (\(entry.kind.rawValue))"
        }
    }

    private static func describe(_ field: Field, _ a: EntryRecord, _ b: EntryRecord) -> String {
        func octal(_ mode: UInt32) -> String { "0" + String(mode, radix: 8) }
        func short(_ hash: String?) -> String { hash.map { String($0.prefix(12)) } ?? "none" }
        func device(_ e: EntryRecord) -> String {
            guard let major = e.deviceMajor, let minor = e.deviceMinor else { return "none" }
            return "\(major):\(minor)"
        }
        switch field {
        case .kind: return "kind \(a.kind.rawValue) → \(b.kind.rawValue)"
        case .mode: return "mode \(octal(a.mode)) → \(octal(b.mode))"
        case .uid: return "uid \(a.uid) → \(b.uid)"
        case .gid: return "gid \(a.gid) → \(b.gid)"
        case .size: return "size \(a.size) → \(b.size)"
        case .sha256: return "sha256 \(short(a.sha256)) → \(short(b.sha256))"
        case .linkTarget: return "target \(a.linkTarget?.description ?? "none") → \(b.linkTarget?.description ?? "none")"
        case .xattrs: return "xattrs [\((a.xattrs ?? []).joined(separator: ","))] → [\((b.xattrs ?? []).joined(separator: ","))]"
        case .device: return "device \(device(a)) → \(device(b))"
        }
    }
}
