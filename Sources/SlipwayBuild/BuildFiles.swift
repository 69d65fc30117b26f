import Foundation
import Glibc
import SlipwayRecipe
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// File operations on a build tree: paths resolved as the chroot would see them (an
/// absolute symlink inside the tree never leads out to the host), copies with chosen
/// modes, owners and a fixed mtime.
enum BuildFiles {
    /// `mkdir -p` with mode 0755.
    static func makeDirectories(_ path: String) throws {
        if let failure = makeDirectoryPath(path) {
            throw BuildError.system(operation: "create directory", path: failure.prefix, errno: failure.errno)
        }
    }

    /// Opens the directory `treePath` inside `tree` (read-only, close-on-exec) walking it
    /// component by component with O_NOFOLLOW, so that no symlink anywhere on the path is
    /// followed; missing components are created as real directories (mode 0755) when
    /// `create` is set. A symlink or anything else that is not a directory on the way is
    /// refused, naming it (`BuildError.notARealDirectory`). The caller closes the result.
    static func openDirectoryBeneath(_ treePath: String, in tree: String, create: Bool = true) throws -> Int32 {
        let components = treePath.split(separator: "/").map(String.init).filter { $0 != "." }
        guard !components.contains("..") else { throw BuildError.pathOutsideTree(path: treePath) }
        do {
            return try DirectoryBeneath.open(root: tree, components: components, create: create).fd
        } catch let .notADirectory(_, relative, found) {
            throw BuildError.notARealDirectory(treePath: relative, found: found)
        } catch let .system(operation, path, code) {
            throw BuildError.system(operation: operation, path: path, errno: code)
        }
    }

    /// Creates `treePath` inside `tree` as real directories (see `openDirectoryBeneath`) and
    /// returns its host path, which then leads through no symlink.
    @discardableResult
    static func makeDirectoriesBeneath(_ treePath: String, in tree: String) throws -> String {
        close(try openDirectoryBeneath(treePath, in: tree))
        return tree + "/" + treePath.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
    }

    /// The host path of `treePath` inside `tree`, following symlinks in the parent
    /// components as if `tree` were `/`; the last component is not followed unless asked.
    static func resolve(_ treePath: String, in tree: String, followLast: Bool = false) throws -> String {
        var pending = treePath.split(separator: "/").map(String.init)
        var resolved: [String] = []
        var hops = 0
        while !pending.isEmpty {
            let component = pending.removeFirst()
            if component == "." || component.isEmpty { continue }
            if component == ".." { _ = resolved.popLast(); continue }
            let candidate = tree + "/" + (resolved + [component]).joined(separator: "/")
            var info = stat()
            if (!pending.isEmpty || followLast), lstat(candidate, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK {
                hops += 1
                guard hops <= 40, let target = try? FileManager.default.destinationOfSymbolicLink(atPath: candidate) else {
                    throw BuildError.pathOutsideTree(path: treePath)
                }
                if target.hasPrefix("/") { resolved = [] }
                pending = target.split(separator: "/").map(String.init) + pending
                continue
            }
            resolved.append(component)
        }
        return tree + "/" + resolved.joined(separator: "/")
    }

    /// Creates the parent directories of a tree path (resolved inside the tree).
    static func prepareParent(of treePath: String, in tree: String) throws -> String {
        let target = try resolve(treePath, in: tree)
        let parent = (target as NSString).deletingLastPathComponent
        try makeDirectories(parent)
        return target
    }

    /// Removes whatever is at `path` (not following a symlink).
    static func removeItem(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            throw BuildError.system(operation: "remove", path: path, errno: (error as NSError).code == 0 ? EIO : Int32(EACCES))
        }
    }

    static func readFile(_ path: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw BuildError.system(operation: "read", path: path, errno: errno == 0 ? EIO : errno)
        }
        return data
    }

    /// Writes `data` to `path` (replacing a file or symlink there) with `mode` and owner.
    static func writeFile(_ path: String, _ data: Data, mode: UInt32, uid: UInt32, gid: UInt32, mtime: Int64?) throws {
        var info = stat()
        if lstat(path, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG { try removeItem(path) }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BuildError.system(operation: "create", path: path, errno: errno) }
        defer { close(fd) }
        let failure = data.withUnsafeBytes { writeFully(fd, $0) }
        if failure != 0 { throw BuildError.system(operation: "write", path: path, errno: failure) }
        guard fchown(fd, uid, gid) == 0 else { throw BuildError.system(operation: "change the owner of", path: path, errno: errno) }
        guard fchmod(fd, mode_t(mode)) == 0 else { throw BuildError.system(operation: "change the mode of", path: path, errno: errno) }
        if let mtime { setTime(path, mtime) }
    }

    static func setTime(_ path: String, _ seconds: Int64) {
        var times = [timespec(tv_sec: Int(seconds), tv_nsec: 0), timespec(tv_sec: Int(seconds), tv_nsec: 0)]
        _ = utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW)
    }

    /// How a copy sets what it writes.
    struct CopyOptions {
        var fileMode: UInt32?
        var uid: UInt32
        var gid: UInt32
        var mtime: Int64
        /// Turns a file's bytes into what is written (template expansion).
        var transform: ((String, Data) throws -> Data)?
    }

    /// Copies a host file, symlink or directory (recursively, in name order) to `target`.
    static func copy(_ source: String, to target: String, options: CopyOptions) throws {
        var info = stat()
        guard lstat(source, &info) == 0 else { throw BuildError.system(operation: "read", path: source, errno: errno) }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            var data = try readFile(source)
            if let transform = options.transform { data = try transform(source, data) }
            try writeFile(target, data, mode: options.fileMode ?? UInt32(info.st_mode & 0o7777), uid: options.uid, gid: options.gid, mtime: options.mtime)
        case S_IFLNK:
            let destination = try FileManager.default.destinationOfSymbolicLink(atPath: source)
            try removeItem(target)
            guard symlink(destination, target) == 0 else { throw BuildError.system(operation: "create symlink", path: target, errno: errno) }
            _ = lchown(target, options.uid, options.gid)
            setTime(target, options.mtime)
        case S_IFDIR:
            var existing = stat()
            if lstat(target, &existing) == 0, (existing.st_mode & S_IFMT) != S_IFDIR { try removeItem(target) }
            if mkdir(target, 0o755) != 0, errno != EEXIST { throw BuildError.system(operation: "create directory", path: target, errno: errno) }
            let names = try FileManager.default.contentsOfDirectory(atPath: source).sorted()
            for name in names { try copy(source + "/" + name, to: target + "/" + name, options: options) }
            guard chown(target, options.uid, options.gid) == 0, chmod(target, info.st_mode & 0o7777) == 0 else {
                throw BuildError.system(operation: "set owner and mode of", path: target, errno: errno)
            }
            setTime(target, options.mtime)
        default:
            throw BuildError.unsupportedFile(path: source, kind: "special file")
        }
    }

}
