import Glibc
import SlipwayArchive
import SlipwaySystem

/// What a node does with a release, from the recipe's `[service]` section, recorded in the
/// manifest so the node needs nothing but the release. Commands are shell command lines run
/// on the node (`sh -c`, outside the release tree) with `SLIPWAY_APP`, `SLIPWAY_VERSION`,
/// `SLIPWAY_PREVIOUS` (may be empty) and `SLIPWAY_RELEASE` (the release's directory) set.
public struct ServiceSpec: Codable, Sendable, Equatable {
    /// The app server, run by the node in the foreground inside the release (chroot), as
    /// `user`, with the shared directories bound at their paths, listening on `$PORT`
    /// (docs/service.md). With it, a switch is graceful: the new version starts beside the
    /// old one, is checked, then the front (nginx) moves to it and the old one drains and
    /// stops. Excludes `start`, `reload` and `stop`.
    public var command: String?
    /// The user `command` runs as (a name in the release's /etc/passwd; default root).
    public var user: String?
    /// The port clients use: the front's `listen`, or the app's own port on a node without a
    /// front.
    public var port: Int?
    /// The signal that stops `command` gracefully (`TERM` by default; `QUIT` for nginx-like
    /// servers).
    public var stopSignal: String?
    /// Seconds between the stop signal and SIGKILL for whatever of the version still runs.
    public var stopTimeout: Double?
    /// Starts the app when nothing runs yet (first activation).
    public var start: String?
    /// Makes the running app pick up the new `current` (e.g. a HUP to the app server's master).
    public var reload: String?
    public var stop: String?
    /// Runs before the switch (e.g. a schema migration); failing aborts the activation.
    public var preActivate: String?
    public var health: HealthCheck?
    /// Paths inside the release (e.g. `var/log/app`) whose contents live in the app's
    /// `shared/` directory, so they persist across versions: the node binds
    /// `shared/<path>` over the release's (empty) directory inside the root the service runs
    /// in.
    public var sharedDirectories: [String]?

    public init(
        start: String? = nil, reload: String? = nil, stop: String? = nil, preActivate: String? = nil,
        health: HealthCheck? = nil, sharedDirectories: [String]? = nil,
        command: String? = nil, user: String? = nil, port: Int? = nil, stopSignal: String? = nil, stopTimeout: Double? = nil
    ) {
        self.start = start
        self.reload = reload
        self.stop = stop
        self.preActivate = preActivate
        self.health = health
        self.sharedDirectories = sharedDirectories
        self.command = command
        self.user = user
        self.port = port
        self.stopSignal = stopSignal
        self.stopTimeout = stopTimeout
    }

    /// Signals `stop_signal` may name.
    public static let stopSignals: [String: Int32] = [
        "TERM": SIGTERM, "INT": SIGINT, "QUIT": SIGQUIT, "HUP": SIGHUP, "USR1": SIGUSR1, "USR2": SIGUSR2, "WINCH": SIGWINCH,
        "KILL": SIGKILL,
    ]

    /// `stopSignal` as a number (SIGTERM when unset).
    public var stopSignalNumber: Int32 { stopSignal.flatMap { Self.stopSignals[$0] } ?? SIGTERM }
}

/// How a node decides the newly activated version is healthy: a command that exits 0, or an
/// HTTP URL that answers 2xx, within `timeoutSeconds` per try, up to `retries` tries
/// `intervalSeconds` apart.
public struct HealthCheck: Codable, Sendable, Equatable {
    public var command: String?
    public var url: String?
    public var timeoutSeconds: Double
    public var retries: Int
    public var intervalSeconds: Double

    public init(command: String? = nil, url: String? = nil, timeoutSeconds: Double = 10, retries: Int = 3, intervalSeconds: Double = 1) {
        self.command = command
        self.url = url
        self.timeoutSeconds = timeoutSeconds
        self.retries = retries
        self.intervalSeconds = intervalSeconds
    }
}
