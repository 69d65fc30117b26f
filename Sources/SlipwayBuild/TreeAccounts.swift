import Foundation
import Glibc
import SlipwayRecipe
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The users and groups of a build tree, read from and written back to its /etc/passwd,
/// /etc/group, /etc/shadow and /etc/gshadow directly, so scratch trees (no useradd) work
/// the same as Debian ones and the result does not depend on the time of the build.
struct TreeAccounts {
    let tree: String
    var passwd: [[String]]
    var group: [[String]]
    var shadow: [[String]]?
    var gshadow: [[String]]?

    init(tree: String) throws {
        self.tree = tree
        func read(_ name: String) throws -> [[String]]? {
            let path = try BuildFiles.resolve("/etc/" + name, in: tree, followLast: true)
            guard access(path, F_OK) == 0 else { return nil }
            let text = String(decoding: try BuildFiles.readFile(path), as: UTF8.self)
            return text.split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }
        }
        passwd = try read("passwd") ?? [["root", "x", "0", "0", "root", "/root", "/bin/sh"]]
        group = try read("group") ?? [["root", "x", "0", ""]]
        shadow = try read("shadow")
        gshadow = try read("gshadow")
    }

    func uid(of name: String) -> UInt32? { passwd.first { $0.first == name }.flatMap { $0.count > 2 ? UInt32($0[2]) : nil } }
    func gid(ofGroup name: String) -> UInt32? { group.first { $0.first == name }.flatMap { $0.count > 2 ? UInt32($0[2]) : nil } }
    func primaryGID(ofUser name: String) -> UInt32? { passwd.first { $0.first == name }.flatMap { $0.count > 3 ? UInt32($0[3]) : nil } }

    private func usedUIDs() -> Set<Int> { Set(passwd.compactMap { $0.count > 2 ? Int($0[2]) : nil }) }
    private func usedGIDs() -> Set<Int> { Set(group.compactMap { $0.count > 2 ? Int($0[2]) : nil }) }

    /// The highest free id below 1000 (as `useradd --system` picks).
    private static func freeID(_ used: Set<Int>, preferring: Int? = nil) -> Int {
        if let preferring, !used.contains(preferring) { return preferring }
        return (100...999).reversed().first { !used.contains($0) } ?? 999
    }

    mutating func addGroup(_ spec: GroupSpec) throws {
        if let existing = gid(ofGroup: spec.name) {
            if let wanted = spec.gid, wanted != Int(existing) {
                throw BuildError.accountConflict(name: spec.name, detail: "the base already has this group with gid \(existing)")
            }
            return
        }
        let gid = spec.gid ?? Self.freeID(usedGIDs())
        if spec.gid != nil, usedGIDs().contains(gid) {
            throw BuildError.accountConflict(name: spec.name, detail: "gid \(gid) is taken by another group")
        }
        group.append([spec.name, "x", String(gid), ""])
        gshadow?.append([spec.name, "!", "", ""])
    }

    /// Adds a user; returns its uid and gid.
    @discardableResult
    mutating func addUser(_ spec: UserSpec) throws -> (uid: UInt32, gid: UInt32) {
        if let existing = uid(of: spec.name) {
            if let wanted = spec.uid, wanted != Int(existing) {
                throw BuildError.accountConflict(name: spec.name, detail: "the base already has this user with uid \(existing)")
            }
            return (existing, primaryGID(ofUser: spec.name) ?? existing)
        }
        if let wanted = spec.uid, usedUIDs().contains(wanted) {
            throw BuildError.accountConflict(name: spec.name, detail: "uid \(wanted) is taken by another user")
        }
        let uid = spec.uid ?? Self.freeID(usedUIDs())
        let gid: Int
        switch spec.group {
        case let .some(text) where Int(text) != nil:
            gid = Int(text) ?? 0
        case let .some(name):
            guard let found = self.gid(ofGroup: name) else {
                throw BuildError.accountConflict(name: spec.name, detail: "its group '\(name)' does not exist (add it with [[groups]])")
            }
            gid = Int(found)
        case .none:
            if let found = self.gid(ofGroup: spec.name) {
                gid = Int(found)
            } else {
                gid = Self.freeID(usedGIDs(), preferring: uid)
                group.append([spec.name, "x", String(gid), ""])
                gshadow?.append([spec.name, "!", "", ""])
            }
        }
        passwd.append([spec.name, "x", String(uid), String(gid), spec.name, spec.home, spec.shell])
        // "!" locks the password; an empty last-change day keeps the file free of the date.
        shadow?.append([spec.name, "!", "", "0", "99999", "7", "", "", ""])
        for name in spec.groups {
            guard let index = group.firstIndex(where: { $0.first == name }), group[index].count >= 4 else {
                throw BuildError.accountConflict(name: spec.name, detail: "its supplementary group '\(name)' does not exist (add it with [[groups]])")
            }
            var members = group[index][3].split(separator: ",").map(String.init)
            if !members.contains(spec.name) { members.append(spec.name) }
            group[index][3] = members.joined(separator: ",")
        }
        return (UInt32(uid), UInt32(gid))
    }

    /// Writes the files back, keeping the mode and owner of existing ones.
    func write(mtime: Int64) throws {
        func store(_ name: String, _ rows: [[String]]?, newMode: UInt32) throws {
            guard let rows else { return }
            let path = try BuildFiles.resolve("/etc/" + name, in: tree, followLast: true)
            try BuildFiles.makeDirectories((path as NSString).deletingLastPathComponent)
            var info = stat()
            let exists = stat(path, &info) == 0
            let data = Data((rows.map { $0.joined(separator: ":") }.joined(separator: "\n") + "\n").utf8)
            try BuildFiles.writeFile(path, data, mode: exists ? UInt32(info.st_mode & 0o7777) : newMode,
                                     uid: exists ? info.st_uid : 0, gid: exists ? info.st_gid : 0, mtime: mtime)
        }
        try store("passwd", passwd, newMode: 0o644)
        try store("group", group, newMode: 0o644)
        try store("shadow", shadow, newMode: 0o600)
        try store("gshadow", gshadow, newMode: 0o600)
    }

    /// `user`, `user:group`, `uid:gid` → numeric ids.
    func owner(_ text: String) throws -> (uid: UInt32, gid: UInt32)? {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard let userPart = parts.first else { return nil }
        guard let uid = UInt32(userPart) ?? uid(of: userPart) else { throw OwnerError.unknownUser(userPart) }
        if parts.count == 1 { return (uid, primaryGID(ofUser: userPart) ?? uid) }
        guard let gid = UInt32(parts[1]) ?? gid(ofGroup: parts[1]) else { throw OwnerError.unknownGroup(parts[1]) }
        return (uid, gid)
    }

    enum OwnerError: Error {
        case unknownUser(String)
        case unknownGroup(String)

        var detail: String {
            switch self {
            case let .unknownUser(name): return "names user '\(name)', which the tree does not have"
            case let .unknownGroup(name): return "names group '\(name)', which the tree does not have"
            }
        }
    }
}
