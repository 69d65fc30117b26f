import Foundation
import Glibc
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// How app names and versions become LV names. LVM allows only `[a-zA-Z0-9+_.-]` and
/// reserves names containing `_tdata`, `_tmeta`, `_rimage`, `_mlog` … (its own sub-LVs),
/// while slipway's names also allow `~`. `+` is the escape character, and `_` is always
/// escaped, so no LV slipway makes contains `_` at all:
///
/// | in app or version | in the LV name |
/// |---|---|
/// | `A-Z a-z 0-9 . -` | unchanged |
/// | `+` | `++` |
/// | `_` | `+u` |
/// | `~` | `+t` |
///
/// The LV of `web@1.4.2~rc1` is `web-1.4.2+trc1`; its staging LV `web-1.4.2+trc1-partial`.
public enum LVMNames {
    public static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "+": out += "++"
            case "_": out += "+u"
            case "~": out += "+t"
            default: out.append(character)
            }
        }
        return out
    }

    /// The inverse of `escape`; nil for text `escape` cannot have made.
    public static func unescape(_ text: String) -> String? {
        var out = ""
        var escaped = false
        for character in text {
            if escaped {
                switch character {
                case "+": out += "+"
                case "u": out += "_"
                case "t": out += "~"
                default: return nil
                }
                escaped = false
            } else if character == "+" {
                escaped = true
            } else {
                out.append(character)
            }
        }
        return escaped ? nil : out
    }

    /// A short key of a node root for the `slipway.root=` tag: FNV-1a 64 of the path, hex
    /// (tags cannot hold `/`-free paths of any length, and need not).
    public static func rootKey(_ root: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in root.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(hash, radix: 16)
    }

    /// `<app>-<version>`, escaped.
    public static func lvName(app: String, version: String) -> String { "\(escape(app))-\(escape(version))" }

    /// A name LVM accepts for a VG or LV.
    static func isValidLVMName(_ name: String) -> Bool {
        !name.isEmpty && !name.hasPrefix("-") && name != "." && name != ".." && name.utf8.count <= 127
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "+_.-".contains($0)) }
    }

    /// Refuses what cannot be mapped to an LV name (see the table above).
    static func validate(app: String, version: String) throws {
        if app.hasPrefix("-") {
            throw LVMBackendError.badName("app \"\(app)\" cannot name an LV (LV names cannot start with -)")
        }
        if version.hasSuffix(LVMBackend.partialSuffix) {
            throw LVMBackendError.badName("version \"\(version)\" cannot be landed by the lvm backend: names ending in -partial are its staging LVs")
        }
        let name = lvName(app: app, version: version) + LVMBackend.partialSuffix
        // device-mapper names (VG-LV with dashes doubled) are limited to 127 bytes; leave the VG 24.
        let mapperLength = name.utf8.count + name.filter { $0 == "-" }.count
        guard isValidLVMName(name), mapperLength <= 100 else {
            throw LVMBackendError.badName("\(app)@\(version) is too long for an LV name (\(name): \(mapperLength) bytes as a device-mapper name, at most 100)")
        }
    }

    /// `2G`, `512M`, `1.5G`, `800MiB`, `4096`: binary units, a bare number is bytes.
    public static func parseSize(_ text: String) -> UInt64? {
        var number = text.trimmingCharacters(in: .whitespaces)
        var multiplier: Double = 1
        for suffix in ["iB", "B"] where number.hasSuffix(suffix) && number.count > suffix.count {
            number.removeLast(suffix.count)
            break
        }
        let units: [Character: Double] = ["K": 1024, "M": 1024 * 1024, "G": 1024 * 1024 * 1024, "T": 1024 * 1024 * 1024 * 1024]
        if let last = number.last?.uppercased().first, let unit = units[last] {
            multiplier = unit
            number.removeLast()
        }
        guard let value = Double(number), value >= 0, value.isFinite else { return nil }
        return UInt64((value * multiplier).rounded(.up))
    }
}

/// Mounts as the kernel sees them (`/proc/self/mountinfo`).
enum LVMMounts {
    static func isMountpoint(_ path: String) -> Bool {
        let candidates = Set([path, (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? path, realPath(path)])
        return Mounts.all().contains(where: candidates.contains)
    }

    static func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// A systemd mount unit that mounts one landed version at boot, and the drop-in that makes
/// systemd wait `deviceTimeout` seconds (0: no limit) for its LV instead of its default 90 s.
struct LVMMountUnit: Sendable, Equatable {
    var what: String
    var `where`: String
    var type: String
    var options: String
    var description: String
    var deviceTimeout: Int = LVMMountUnit.defaultDeviceTimeout

    /// `[lvm] device_timeout` when node.toml does not set it.
    static let defaultDeviceTimeout = 600

    static let marker = "# Written by slipway (lvm backend); removed when the version is pruned. Do not edit."
    /// The drop-in's file name in `<device unit>.d/`.
    static let dropInName = "50-slipway-device-timeout.conf"

    var text: String {
        """
        \(Self.marker)
        [Unit]
        Description=\(description)
        Documentation=man:slipway(1)

        [Mount]
        What=\(what)
        Where=\(`where`)
        Type=\(type)
        Options=\(options)

        [Install]
        WantedBy=local-fs.target

        """
    }

    /// The wait for the device is the device unit's job timeout, so it goes in a drop-in of
    /// the device unit, as systemd's fstab generator writes it for `x-systemd.device-timeout=`.
    var dropInText: String {
        """
        \(Self.marker)
        [Unit]
        JobRunningTimeoutSec=\(deviceTimeout == 0 ? "infinity" : "\(deviceTimeout)")

        """
    }

    var unitName: String { Self.unitName(for: `where`) }
    var deviceUnitName: String { Self.unitName(for: what, suffix: ".device") }

    /// systemd's name for the unit of a path (`systemd-escape --path --suffix=mount`):
    /// `/` between components becomes `-`; `[a-zA-Z0-9:_.]` stay (a `.` that would start the name does not);
    /// every other byte is `\xNN`.
    static func unitName(for path: String, suffix: String = ".mount") -> String {
        let components = path.split(separator: "/").filter { !$0.isEmpty }
        if components.isEmpty { return "-" + suffix }
        let escaped = components.enumerated().map { index, component -> String in
            var out = ""
            for (offset, byte) in component.utf8.enumerated() {
                let c = Character(UnicodeScalar(byte))
                let plain = (byte < 0x80) && (c.isLetter || c.isNumber || c == ":" || c == "_" || (c == "." && (index > 0 || offset > 0)))
                out += plain ? String(c) : String(format: "\\x%02x", byte)
            }
            return out
        }
        return escaped.joined(separator: "-") + suffix
    }
}

/// The mount units slipway keeps in a systemd unit directory, each enabled by a symlink in
/// `local-fs.target.wants/` (what `systemctl enable` would make), so no systemd is needed
/// to write them.
struct LVMMountUnits: Sendable {
    var directory: String
    var wants: String { "\(directory)/local-fs.target.wants" }

    func path(for mountpoint: String) -> String { "\(directory)/\(LVMMountUnit.unitName(for: mountpoint))" }

    func dropInDirectory(_ unit: LVMMountUnit) -> String { "\(directory)/\(unit.deviceUnitName).d" }

    /// The unit, its enabling symlink and its device drop-in are all there as `write` makes them.
    func isCurrent(_ unit: LVMMountUnit) -> Bool {
        (try? String(contentsOfFile: path(for: unit.where), encoding: .utf8)) == unit.text
            && NodeFiles.readLink("\(wants)/\(unit.unitName)") == "../\(unit.unitName)"
            && (try? String(contentsOfFile: "\(dropInDirectory(unit))/\(LVMMountUnit.dropInName)", encoding: .utf8)) == unit.dropInText
    }

    /// Writes the device drop-in, the unit (temporary file, fsync, rename) and its enabling symlink.
    func write(_ unit: LVMMountUnit) throws {
        try FileManager.default.createDirectory(atPath: wants, withIntermediateDirectories: true)
        let dropIns = dropInDirectory(unit)
        try FileManager.default.createDirectory(atPath: dropIns, withIntermediateDirectories: true)
        let dropIn = "\(dropIns)/\(LVMMountUnit.dropInName)"
        if (try? String(contentsOfFile: dropIn, encoding: .utf8)) != unit.dropInText {
            try NodeFiles.writeAtomically(dropIn, Data(unit.dropInText.utf8))
        }
        let name = unit.unitName
        let file = "\(directory)/\(name)"
        if (try? String(contentsOfFile: file, encoding: .utf8)) != unit.text {
            try NodeFiles.writeAtomically(file, Data(unit.text.utf8))
        }
        let link = "\(wants)/\(name)"
        if NodeFiles.readLink(link) != "../\(name)" {
            unlink(link)
            guard symlink("../\(name)", link) == 0 else {
                throw NodeError.system(operation: "symlink", path: link, errno: errno)
            }
            try NodeFiles.fsyncDirectory(wants)
        }
    }

    /// Removes the unit, its symlink and its device drop-in (found through the unit's `What=`).
    func remove(where mountpoint: String) throws {
        let name = LVMMountUnit.unitName(for: mountpoint)
        let written = read(name)
        var paths = ["\(wants)/\(name)", "\(directory)/\(name)"]
        if let written { paths.append("\(dropInDirectory(written))/\(LVMMountUnit.dropInName)") }
        for path in paths where unlink(path) != 0 && errno != ENOENT {
            throw NodeError.system(operation: "remove", path: path, errno: errno)
        }
        if let written { _ = rmdir(dropInDirectory(written)) }
        try? NodeFiles.fsyncDirectory(wants)
        try? NodeFiles.fsyncDirectory(directory)
    }

    /// slipway's units (by their marker line) whose mount point starts with `prefix`.
    func list(under prefix: String) -> [LVMMountUnit] {
        NodeFiles.names(directory).filter { $0.hasSuffix(".mount") }.compactMap { name in
            read(name).flatMap { $0.where.hasPrefix(prefix) ? $0 : nil }
        }
    }

    /// The `What=` and `Where=` of the unit file `name` in the directory, if slipway wrote it.
    private func read(_ name: String) -> LVMMountUnit? {
        guard let text = try? String(contentsOfFile: "\(directory)/\(name)", encoding: .utf8),
              text.hasPrefix(LVMMountUnit.marker) else { return nil }
        var unit = LVMMountUnit(what: "", where: "", type: "", options: "", description: "")
        for line in text.split(separator: "\n") {
            if line.hasPrefix("What=") { unit.what = String(line.dropFirst(5)) }
            if line.hasPrefix("Where=") { unit.where = String(line.dropFirst(6)) }
        }
        return unit
    }
}
