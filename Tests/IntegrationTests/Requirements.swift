import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

// What an integration test needs of the machine it runs on (tools, root, kernel features, a
// built binary), as a condition trait: a test that cannot run here is reported *skipped*,
// with the reason naming what to install, never passed. CI runs as root with every tool
// installed (scripts/setup), so there every test runs.
//
//     @Test("…", .needs("tar", "xz", root: true))
//     @Test("…", .needs(.btrfs, .schroot))
//     @Test("…", .needs(.nodeBinary)) func f() throws { let binary = try #require(nodeBinary) … }

/// What a test needs of the machine; `.needs(…)` makes it a condition trait.
struct Requirement: Sendable {
    /// A check made only when a test that needs it is about to run: loading a kernel module
    /// or starting python is too slow or too intrusive to do for every test at discovery.
    struct Deferred: Sendable {
        /// Why the test is skipped when `check` fails.
        let reason: String
        let check: @Sendable () -> Bool
    }

    /// Why the test cannot run here, found when the requirement is made (PATH lookups,
    /// access(2)); empty when nothing is missing.
    var missing: [String] = []
    var deferred: [Deferred] = []

    /// Every requirement of `parts` (a reason they share, such as root, is given once).
    init(all parts: [Requirement]) {
        var seen: Set<String> = []
        missing = parts.flatMap(\.missing).filter { seen.insert($0).inserted }
        deferred = parts.flatMap(\.deferred)
    }

    init(missing: [String] = [], deferred: [Deferred] = []) {
        self.missing = missing
        self.deferred = deferred
    }

    /// Whether the test can run here (runs the deferred checks).
    var isMet: Bool { missing.isEmpty && deferred.allSatisfy { $0.check() } }

    /// The skip reason: what is missing, else what the deferred checks look for (one failed);
    /// nil when nothing is missing and nothing is deferred.
    var comment: Comment? {
        let reasons = missing.isEmpty ? deferred.map(\.reason) : missing
        return reasons.isEmpty ? nil : Comment(rawValue: reasons.joined(separator: "; "))
    }
}

extension Requirement {
    static let rootReason = "needs root (device nodes, foreign owners, capabilities) — CI runs the tests as root"

    /// Root, with `reason` when we are not.
    static func root(_ reason: String = rootReason) -> Requirement {
        Requirement(missing: isRoot ? [] : [reason])
    }

    /// Every tool installed (in PATH or an sbin directory, see `toolPath`) and, when `root` is
    /// set, root. `package` names the Debian package of the tools, when not obvious.
    static func tools(_ tools: [String], root: Bool = false, package: String? = nil) -> Requirement {
        let absent = tools.filter { toolPath($0) == nil }
        var missing = root && !isRoot ? [rootReason] : []
        if !absent.isEmpty {
            missing.append("\(absent.joined(separator: ", ")) not installed — scripts/setup installs \(absent.count == 1 ? "it" : "them")"
                           + (package.map { " (\($0))" } ?? ""))
        }
        return Requirement(missing: missing)
    }

    /// `condition` holds (checked now), else skipped with `reason`.
    static func that(_ condition: Bool, _ reason: String) -> Requirement {
        Requirement(missing: condition ? [] : [reason])
    }

    /// `check` holds when the test is about to run, else skipped with `reason`.
    static func deferred(_ reason: String, _ check: @escaping @Sendable () -> Bool) -> Requirement {
        Requirement(deferred: [Deferred(reason: reason, check: check)])
    }
}

extension Trait where Self == ConditionTrait {
    /// Enabled when every requirement is met; otherwise the test is skipped with the reasons.
    static func needs(_ requirements: Requirement..., sourceLocation: SourceLocation = #_sourceLocation) -> Self {
        let requirement = Requirement(all: requirements)
        return .enabled(if: requirement.isMet, requirement.comment, sourceLocation: sourceLocation)
    }

    /// Enabled when every tool is installed and, when `root` is set, we are root; otherwise
    /// skipped naming what is missing.
    static func needs(_ tools: String..., root: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) -> Self {
        .needs(.tools(tools, root: root), sourceLocation: sourceLocation)
    }
}
