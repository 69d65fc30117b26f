import ArgumentParser
import SlipwaySystem
import SlipwayArchive
import SlipwayRelease
import SlipwayRecipe
import SlipwayBuild
import SlipwayExport
import SlipwayNodeProtocol
import SlipwayNode
import SlipwayFleet

/// Flags every command takes.
struct GlobalOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Log more on stderr.")
    var verbose = false

    @Flag(name: .shortAndLong, help: "Log only errors on stderr; no progress.")
    var quiet = false

    func validate() throws {
        if verbose && quiet { throw ValidationError("--verbose and --quiet exclude each other.") }
    }

    var verbosity: Output.Verbosity { quiet ? .quiet : verbose ? .verbose : .normal }
}

/// `--store DIR`, for commands that use the release store.
struct StoreOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The release store (default: $SLIPWAY_STORE, else ./store).", valueName: "DIR"))
    var store: String?

    var releaseStore: ReleaseStore { ReleaseStore(root: store) }
}

/// What a command line runs against: the process's own stdout and stderr, or a capture
/// (a test running commands in-process through `Slipway.run(_:environment:)`).
public struct CommandEnvironment: Sendable {
    public var capture: OutputCapture?

    public init(capture: OutputCapture? = nil) { self.capture = capture }

    /// The real process.
    public static let process = CommandEnvironment()
}

/// What a command's work receives: everything it talks to, so tests can swap it.
struct CommandContext: Sendable {
    var output: Output
}

/// A slipway command: `run(_:)` does the work; failures are printed as one
/// `slipway: error:` line and end the process with status 1.
protocol SlipwayCommand: ParsableCommand {
    var global: GlobalOptions { get }
    /// Whether results are wanted as JSON.
    var wantsJSON: Bool { get }
    func run(_ context: CommandContext) throws
}

extension SlipwayCommand {
    var wantsJSON: Bool { false }

    func run() throws { try run(in: .process) }

    func run(in environment: CommandEnvironment) throws {
        let context = CommandContext(output: Output(verbosity: global.verbosity, json: wantsJSON, capture: environment.capture))
        do {
            try run(context)
        } catch let error as ValidationError {
            throw error
        } catch let error as ExitCode {
            throw error
        } catch {
            let message = Output.message(for: error)
            // Under --json the failure is a document too, with a code the controller acts on
            // (docs/architecture.md "The node protocol"); the human line stays on stderr.
            if wantsJSON { try? context.output.resultJSON(NodeErrorReply(code: .of(error), message: message)) }
            context.output.error(message)
            throw ExitCode.failure
        }
    }
}

extension Slipway {
    /// Runs one command line in this process, as the binary would, and returns its exit
    /// status; with a capture, what it writes lands there (docs/architecture.md "Tests").
    /// Commands that start other slipway processes (the confirmation watcher) need the real
    /// binary.
    public static func run(_ arguments: [String], environment: CommandEnvironment) -> Int32 {
        do {
            var command = try parseAsRoot(arguments)
            if let command = command as? any SlipwayCommand {
                try command.run(in: environment)
            } else {
                try command.run()
            }
            return 0
        } catch {
            let code = exitCode(for: error)
            if !(error is ExitCode) {
                let message = fullMessage(for: error)
                if !message.isEmpty { Output(capture: environment.capture).emit(code == .success ? 1 : 2, message + "\n") }
            }
            return code.rawValue
        }
    }
}

/// Parses `NAME@VERSION`; a malformed reference is a usage mistake.
func parseReference(_ text: String) throws -> ReleaseReference {
    do {
        return try ReleaseReference(parsing: text)
    } catch {
        throw ValidationError(Output.message(for: error))
    }
}

extension ArchiveCompression: ExpressibleByArgument {}
extension BackendKind: ExpressibleByArgument {}
