import Foundation
import Glibc

/// mount/umount through the command runner, and what /proc/self/mountinfo says.
public enum Mounts {
    /// Mount points strictly below `directory` (not one mounted on it, such as the build
    /// tree's own overlay), deepest first.
    package static func mountPoints(below directory: String) -> [String] {
        let root = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        return mountPoints(under: root).filter { $0 != root }
    }

    /// Mount points at or below `directory`, deepest first.
    package static func mountPoints(under directory: String) -> [String] {
        let root = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        return all().filter { $0 == root || $0.hasPrefix(root + "/") }.sorted { $0.count > $1.count }
    }

    /// Every mount point of this process's mount namespace, in mountinfo's order.
    package static func all() -> [String] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 ? unescape(String(fields[4])) : nil
        }
    }

    /// mountinfo writes space, tab, newline and backslash as octal escapes.
    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        let utf8 = Array(field.utf8)
        var i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "\\"), i + 3 < utf8.count,
               let value = UInt8(String(decoding: utf8[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(utf8[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A process whose mount namespace, not this one, still has a mount of some source.
    public struct Holder: Sendable, Equatable, CustomStringConvertible {
        public let pid: Int32
        public let command: String
        public let mountPoint: String
        public var description: String { "pid \(pid) (\(command)) at \(mountPoint)" }
    }

    /// The mount namespaces other than this process's where `source` (mountinfo's field
    /// after the file system type: a ZFS dataset, a device) is still mounted, one process
    /// of each: what keeps a file system alive after this namespace unmounted it. Used to
    /// say who holds a "busy" dataset; costs a scan of /proc, so only on failure.
    package static func holders(source: String) -> [Holder] {
        let own = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/mnt")) ?? ""
        var seen: Set<String> = [own]
        var found: [Holder] = []
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }.sorted()
        for pid in pids {
            guard let namespace = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/mnt"),
                  seen.insert(namespace).inserted,
                  let text = try? String(contentsOfFile: "/proc/\(pid)/mountinfo", encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                guard let dash = line.range(of: " - ") else { continue }
                let after = line[dash.upperBound...].split(separator: " ")
                let fields = line[..<dash.lowerBound].split(separator: " ")
                guard after.count > 1, fields.count > 4, unescape(String(after[1])) == source else { continue }
                let command = ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "?")
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                found.append(Holder(pid: pid, command: command, mountPoint: unescape(String(fields[4]))))
                break
            }
        }
        return found
    }

    /// Unmounts `path`; when busy (a process still inside), detaches it lazily so nothing
    /// stays visible under the tree.
    package static func unmount(_ path: String) {
        let runner = CommandRunner()
        if (try? runner.run(Command(["umount", path], timeout: .seconds(60)))) != nil { return }
        if mountPoints(under: path).isEmpty { return }
        _ = try? runner.run(Command(["umount", "--lazy", path], timeout: .seconds(60)))
    }

}
