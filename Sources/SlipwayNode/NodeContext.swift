import Foundation
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Everything a node operation works with: the settings, the backend they name, the
/// command runner and where progress lines go. A value, so tests build their own.
public struct NodeContext: Sendable {
    public var settings: NodeSettings
    public var backend: any NodeBackend
    public var runner: CommandRunner
    /// Receives one progress line at a time (stderr in the CLI).
    public var log: @Sendable (String) -> Void
    /// The command line recorded in the lock file.
    public var commandLine: String

    public init(settings: NodeSettings, backend: (any NodeBackend)? = nil, runner: CommandRunner = CommandRunner(),
                commandLine: String = CommandLine.arguments.joined(separator: " "),
                log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        self.settings = settings
        self.backend = try backend ?? makeBackend(settings, runner: runner)
        self.runner = runner
        self.commandLine = commandLine
        self.log = log
    }

    public func layout(_ app: String) -> NodeLayout { settings.layout(app: app) }

    var schroot: SchrootConfig { SchrootConfig(directory: settings.schrootDirectory) }

    /// Runs a mutating operation on `app`: takes its lock, creates its directories, removes
    /// the leftovers of an interrupted command, then runs `body`.
    func mutating<T>(_ app: String, _ body: (NodeLayout, NodeRecovery.Result) throws -> T) throws -> T {
        try ReleaseStore.validate(name: app)
        let layout = layout(app)
        return try NodeLock.with(layout, command: commandLine, timeout: settings.lockTimeout, log: log) {
            try layout.prepare()
            let recovered = try NodeRecovery.run(self, layout: layout)
            if !recovered.removed.isEmpty { log("recovered: removed \(recovered.removed.joined(separator: ", "))") }
            return try body(layout, recovered)
        }
    }

    /// The landed versions, from the backend.
    func landed(_ layout: NodeLayout) throws -> [String] { try backend.landedVersions(layout: layout) }
}
