import ArgumentParser
import Foundation
import SlipwaySystem
import SlipwayArchive
import SlipwayRelease
import SlipwayRecipe
import SlipwayBuild
import SlipwayExport
import SlipwayNodeProtocol
import SlipwayNode
import SlipwayFleet

/// `slipway build RECIPE`: a recipe into a new release in the store.
struct Build: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Build a release from a recipe (must run as root).",
        discussion: """
            Stages: base, users, packages, files, app, venv, run, cleanup, pack, sign; each prints its duration. \
            Debian bases are cached in the cache directory (default $SLIPWAY_CACHE_DIR, else /var/cache/slipway). \
            See docs/recipes.md.
            """
    )

    @Argument(help: ArgumentHelp("The recipe file (TOML).", valueName: "RECIPE"))
    var recipe: String

    @Option(help: "The release version (default: the recipe's, else git describe of its directory, else a UTC timestamp).")
    var version: String?

    @Option(name: .customLong("sign-key"), help: ArgumentHelp("Sign the manifest with this private key.", valueName: "FILE"))
    var signKey: String?

    @Flag(name: .customLong("refresh-base"), help: "Bootstrap the base again instead of using the cached one.")
    var refreshBase = false

    @Option(name: .customLong("cache-dir"), help: ArgumentHelp("Base cache and work directories.", valueName: "DIR"))
    var cacheDir: String?

    @Option(help: "xz, zstd or none (default: the recipe's, else xz).")
    var compression: ArchiveCompression?

    @Option(name: .customLong("var"), help: ArgumentHelp("Override a [vars] value of the recipe (repeatable).", valueName: "NAME=VALUE"))
    var variables: [String] = []

    @Flag(help: "Print a JSON summary on stdout.")
    var json = false

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var global: GlobalOptions

    var wantsJSON: Bool { json }

    func validate() throws {
        _ = try parsedVariables()
        if let version {
            do { try ReleaseStore.validate(version: version) } catch { throw ValidationError(Output.message(for: error)) }
        }
    }

    func parsedVariables() throws -> [String: String] {
        var parsed: [String: String] = [:]
        for item in variables {
            guard let equals = item.firstIndex(of: "="), equals != item.startIndex else {
                throw ValidationError("--var '\(item)' must be NAME=VALUE")
            }
            parsed[String(item[..<equals])] = String(item[item.index(after: equals)...])
        }
        return parsed
    }

    func run(_ context: CommandContext) throws {
        let output = context.output
        let recipe = try Recipe.load(path: self.recipe, variables: try parsedVariables())
        let options = BuildOptions(version: version, storeRoot: storeOptions.store, signingKeyPath: signKey,
                                   refreshBase: refreshBase, cacheDirectory: cacheDir, compression: compression)
        let summary: BuildSummary
        do {
            summary = try Builder(recipe: recipe, options: options, output: output).build()
        } catch where InterruptedWork.isInterrupted {
            // SIGINT/SIGTERM: the handler is cleaning up and exits with 128+signal; a failure
            // message and exit here would race it.
            while true { sleep(60) }
        }
        let stageLine = summary.stages.map { "\($0.name) \(String(format: "%.1f", $0.seconds))s" }.joined(separator: ", ")
        let what = summary.outcome == .added ? "stored in \(summary.directory)" : "was already in the store with the same archive; nothing changed"
        try output.result(summary, text: [
            "\(summary.name)@\(summary.version) \(what)",
            "archive: \(ByteCount.format(summary.size)), sha256 \(summary.sha256)" + (summary.signed ? ", signed with key \(summary.keyID ?? "?")" : ", unsigned"),
            "stages: \(stageLine); total \(String(format: "%.1f", summary.totalSeconds)) s",
        ])
    }
}
