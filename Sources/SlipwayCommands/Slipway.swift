import ArgumentParser
import Foundation
import Glibc
import SlipwaySystem
import SlipwayArchive
import SlipwayRelease
import SlipwayRecipe
import SlipwayBuild
import SlipwayExport
import SlipwayNodeProtocol
import SlipwayNode
import SlipwayFleet

/// The `slipway` command line: parses arguments and hands the work to the libraries
/// (docs/architecture.md). The executable's main.swift calls `Slipway.main()`.
public struct Slipway: ParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "slipway",
        abstract: "Build versioned root filesystems, ship them to a farm, switch and roll back.",
        discussion: """
            Build:         build, pack, export
            Releases:      inspect, verify, diff, unpack, keygen
            The farm:      deploy, push, status, rollback, prune (--on SELECTOR)
            This machine:  install, status --local, rollback --local, node

            The store defaults to $SLIPWAY_STORE, else ./store; the inventory to
            $SLIPWAY_INVENTORY, else ./inventory.toml. Set SOURCE_DATE_EPOCH for
            reproducible packs.
            """,
        version: SlipwayVersion.string,
        subcommands: [Build.self, Pack.self, Export.self, Inspect.self, Verify.self, Diff.self, Sbom.self, Unpack.self, Keygen.self, Deploy.self, Push.self, Status.self, Rollback.self, Prune.self, Install.self, Publish.self, Pull.self, Node.self]
    )

    public static func main() {
        // `slipway --version`, the probe a controller and an operator's scripts run: printed
        // before anything starts (locale, signal sources and their dispatch threads,
        // argument-parser's reflection of the root command), the same line argument-parser
        // prints (docs/engineering.md, "Start-up").
        if CommandLine.arguments.count == 2, CommandLine.arguments[1] == "--version" {
            let line = SlipwayVersion.string + "\n"
            _ = line.withCString { Glibc.write(1, $0, strlen($0)) }
            Glibc.exit(0)
        }
        // libarchive converts entry names through the locale's character set; a C locale
        // would mangle them. Only LC_CTYPE: the other categories of C.UTF-8 are C's, and
        // loading them cost a dozen file opens at every start.
        setlocale(LC_CTYPE, "C.UTF-8")
        // A node command killed holding an app's lock leaves its children to the next one
        // (NodeLock); they are found by the process group it leads.
        NodeLock.mayMakeProcessGroup()
        // The Swift runtime reads argv from /proc/self/cmdline: without /proc (a bare chroot)
        // every command would parse as none and print the help with status 0, which a
        // controller would take for an answer.
        guard !CommandLine.arguments.isEmpty else {
            let message = "slipway: error: no command-line arguments reached slipway: the Swift runtime reads them from /proc/self/cmdline; mount /proc (in a chroot: mount -t proc proc <root>/proc)\n"
            _ = message.withCString { Glibc.write(2, $0, strlen($0)) }
            Glibc.exit(2)
        }
        // A controller's per-node verbs skip argument-parser's reflection and the signal
        // handling below (FastNodeVerbs).
        if let status = FastNodeVerbs.run(Array(CommandLine.arguments.dropFirst())) { Glibc.exit(status) }
        SignalHandling.install()
        main(nil)
    }
}

/// SIGINT and SIGTERM end the process with status 128+signal after removing the assembly
/// directories of releases being added, so an interrupted pack leaves nothing behind.
enum SignalHandling {
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    static func install() {
        for signo in [SIGINT, SIGTERM] {
            // A dispatch source only sees the signal once its default action is disabled.
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
            source.setEventHandler {
                // A progress bar may be on screen without its newline.
                if isatty(2) == 1 { _ = write(2, "\n", 1) }
                InterruptedWork.removeAll()
                exit(128 + signo)
            }
            source.resume()
            sources.append(source)
        }
    }
}
