import ArgumentParser
import Foundation
import SlipwayNodeProtocol
import SlipwayNode

/// The node verbs a controller runs on every node of every rollout (`node activate`,
/// `node confirm`, `node status`), read without swift-argument-parser's parse. That parse
/// reflects every option of the command tree (`Mirror`, dynamic casts, each a scan of the
/// binary's protocol conformances) and took about a third of a whole `node activate`
/// (docs/engineering.md, "Start-up").
///
/// The command's own struct is filled and run exactly as after a parse (the same
/// `validate()`, `run(in:)`, output and exit status). Only the plain spellings are read here:
/// a known option with its value as the next argument, known flags, the one positional
/// argument. Anything else (`--help`, `--opt=value`, `-qv`, `--`, an unknown or repeated
/// option, a value that does not convert, a failed `validate()`) returns nil before anything
/// has run, and argument-parser reads the line as it always did, errors and all.
///
/// These verbs run without `SignalHandling`: they assemble no tree for it to remove, and its
/// dispatch sources start a thread, whose presence makes every later mapping change of the
/// process a cross-CPU TLB shootdown. SIGINT and SIGTERM end them as SIGKILL would, which
/// leaves what a crash leaves and the next command's recovery repairs (docs/node.md, "Crash
/// safety").
enum FastNodeVerbs {
    /// Runs `arguments` (without the program name) when it is a fast verb's plain line;
    /// returns its exit status, or nil for argument-parser to take the line.
    static func run(_ arguments: [String]) -> Int32? {
        guard let command = parse(arguments) else { return nil }
        do {
            try command.run(in: .process)
            return 0
        } catch {
            // What argument-parser's main does with an error a command throws.
            Slipway.exit(withError: error)
        }
    }

    /// The command of a fast verb's plain line, filled and validated as a parse would; nil
    /// for any other line.
    static func parse(_ arguments: [String]) -> (any SlipwayCommand)? {
        guard arguments.count >= 3, arguments[0] == "node" else { return nil }
        guard let line = Line(Array(arguments.dropFirst(2))) else { return nil }
        switch arguments[1] {
        case "activate":
            guard let reference = line.positional, line.allowed(["--json", "--confirm-timeout"]) else { return nil }
            var command = NodeActivateCommand()
            command.reference = reference
            guard let timeout = line.double("--confirm-timeout") else { return nil }
            command.confirmTimeout = timeout
            command.json = line.flags.contains("--json")
            return filled(command, line: line)
        case "confirm":
            guard let reference = line.positional, line.allowed(["--json"]) else { return nil }
            var command = NodeConfirmCommand()
            command.reference = reference
            command.json = line.flags.contains("--json")
            return filled(command, line: line)
        case "status":
            guard line.allowed(["--json", "--packages"]) else { return nil }
            var command = NodeStatusCommand()
            command.app = line.positional
            command.packages = line.flags.contains("--packages")
            command.json = line.flags.contains("--json")
            return filled(command, line: line)
        default:
            return nil
        }
    }

    /// Fills the option groups and validates as a parse would.
    private static func filled<C: SlipwayCommand & NodeVerbOptions>(_ command: C, line: Line) -> C? {
        var command = command
        guard let node = line.nodeOptions() else { return nil }
        command.node = node
        command.global = line.globalOptions()
        do {
            try command.global.validate()
            try command.validate()
        } catch {
            return nil
        }
        return command
    }

    /// One command line after the verb: flags, options with their values, the positional.
    struct Line {
        var flags: Set<String> = []
        var options: [String: [String]] = [:]
        var positional: String?

        /// The options that take a value, node verbs' own and `NodeOptions`'.
        static let valued: Set<String> = ["--confirm-timeout", "--config", "--root", "--backend", "--trust", "--lock-timeout", "--schroot-directory"]
        /// The flags, node verbs' own, `NodeOptions`' and `GlobalOptions`'.
        static let flagNames: Set<String> = ["--json", "--packages", "--require-signature", "--allow-unsigned", "--schroot", "--no-schroot",
                                             "-v", "--verbose", "-q", "--quiet"]
        /// Options that may be given more than once.
        static let repeatable: Set<String> = ["--trust"]
        /// The options and flags every verb here takes.
        static let common: Set<String> = valued.union(flagNames).subtracting(["--confirm-timeout", "--json", "--packages"])

        init?(_ words: [String]) {
            var index = 0
            while index < words.count {
                let word = words[index]
                if Self.valued.contains(word) {
                    guard index + 1 < words.count, !words[index + 1].hasPrefix("-") else { return nil }
                    guard options[word] == nil || Self.repeatable.contains(word) else { return nil }
                    options[word, default: []].append(words[index + 1])
                    index += 2
                    continue
                }
                if Self.flagNames.contains(word) {
                    guard flags.insert(word).inserted else { return nil }
                } else if word.hasPrefix("-") || positional != nil {
                    return nil
                } else {
                    positional = word
                }
                index += 1
            }
        }

        /// Whether every option and flag given is one of `own` or the common ones.
        func allowed(_ own: Set<String>) -> Bool {
            let given = flags.union(options.keys)
            return given.isSubset(of: own.union(Self.common))
        }

        /// An option's number: nil (the outer optional) when it does not convert.
        func double(_ name: String) -> Double?? {
            guard let text = options[name]?.last else { return .some(nil) }
            guard let value = Double(text), value.isFinite else { return nil }
            return .some(value)
        }

        func nodeOptions() -> NodeOptions? {
            var node = NodeOptions()
            node.config = options["--config"]?.last
            node.root = options["--root"]?.last
            if let text = options["--backend"]?.last {
                guard let backend = BackendKind(rawValue: text) else { return nil }
                node.backend = backend
            } else {
                node.backend = nil
            }
            node.trustedKeys = options["--trust"] ?? []
            node.requireSignature = flags.contains("--require-signature")
            node.allowUnsigned = flags.contains("--allow-unsigned")
            guard let lockTimeout = double("--lock-timeout") else { return nil }
            node.lockTimeout = lockTimeout
            if flags.contains("--schroot") && flags.contains("--no-schroot") { return nil }
            node.schroot = flags.contains("--schroot") ? true : flags.contains("--no-schroot") ? false : nil
            node.schrootDirectory = options["--schroot-directory"]?.last
            return node
        }

        func globalOptions() -> GlobalOptions {
            var global = GlobalOptions()
            global.verbose = flags.contains("-v") || flags.contains("--verbose")
            global.quiet = flags.contains("-q") || flags.contains("--quiet")
            return global
        }
    }
}

/// The option groups a fast verb's struct carries, settable.
protocol NodeVerbOptions {
    var node: NodeOptions { get set }
    var global: GlobalOptions { get set }
}

extension NodeActivateCommand: NodeVerbOptions {}
extension NodeConfirmCommand: NodeVerbOptions {}
extension NodeStatusCommand: NodeVerbOptions {}
