import Foundation
import SlipwayRecipe
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Errors of `slipway build`. Each says which stage failed and how, and what to do.
public enum BuildError: Error, CustomStringConvertible, Sendable {
    case notRoot
    case bootstrapToolMissing(tried: [String])
    /// A stage failed; `detail` carries the failing command, its status and stderr tail.
    case stageFailed(stage: String, detail: String, hint: String)
    case templateVariable(file: String, line: Int?, source: String, name: String, known: [String])
    case unknownOwner(file: String, line: Int?, owner: String, detail: String)
    case unsupportedFile(path: String, kind: String)
    case pathOutsideTree(path: String)
    case accountConflict(name: String, detail: String)
    case treeLacks(program: String, stage: String, hint: String)
    case mountsLeft(paths: [String])
    /// A mount point in the tree (or a component on its way) is not a real directory.
    case notARealDirectory(treePath: String, found: String)
    case system(operation: String, path: String, errno: Int32)

    public var description: String {
        switch self {
        case .notRoot:
            return "slipway build must run as root: it bootstraps a Debian tree, chroots into it, mounts /proc, /sys and /dev there and packs device nodes and owners. Run it again with sudo"
        case let .bootstrapToolMissing(tried):
            return "a debian base needs \(tried.joined(separator: " or ")), and none is installed; install mmdebstrap (apt-get install mmdebstrap), or use a [base] of type \"tarball\" or \"scratch\""
        case let .stageFailed(stage, detail, hint):
            return "build stage '\(stage)' failed: \(detail)" + (hint.isEmpty ? "" : "; \(hint)")
        case let .templateVariable(file, line, source, name, known):
            return "\(RecipeError.location(file, line)): template \(source) uses {{\(name)}}, which is not defined; known names: \(known.sorted().joined(separator: ", ")) (add it under [vars])"
        case let .unknownOwner(file, line, owner, detail):
            return "\(RecipeError.location(file, line)): owner '\(owner)' \(detail); create the user or group with [[users]]/[[groups]] or give numeric ids (\"1000:1000\")"
        case let .unsupportedFile(path, kind):
            return "cannot copy \(path): it is a \(kind); only regular files, directories and symlinks are copied"
        case let .pathOutsideTree(path):
            return "\(path) resolves outside the tree (through too many symlinks); give a path without symlink loops"
        case let .accountConflict(name, detail):
            return "cannot create account '\(name)': \(detail); pick another name or id in the recipe"
        case let .treeLacks(program, stage, hint):
            return "stage '\(stage)' needs \(program) inside the tree and the tree has none; \(hint)"
        case let .mountsLeft(paths):
            return "these mounts under the build tree could not be unmounted: \(paths.joined(separator: ", ")); unmount them by hand (umount -l PATH) before removing the work directory"
        case let .notARealDirectory(treePath, found):
            return "the tree's \(treePath) is \(found); a build mounts only on real directories inside the tree (through a symlink the mount would land on the host): make \(treePath) a directory in the base or in [[files]]"
        case let .system(operation, path, code):
            return "could not \(operation) \(path): \(String(cString: strerror(code)))"
        }
    }
}
