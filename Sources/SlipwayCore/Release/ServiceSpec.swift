/// What a node does with a release, from the recipe's `[service]` section, recorded in the
/// manifest so the node needs nothing but the release. Commands are shell command lines run
/// on the node (`sh -c`, outside the release tree) with `SLIPWAY_APP`, `SLIPWAY_VERSION`,
/// `SLIPWAY_PREVIOUS` (may be empty) and `SLIPWAY_RELEASE` (the release's directory) set.
public struct ServiceSpec: Codable, Sendable, Equatable {
    /// Starts the app when nothing runs yet (first activation).
    public var start: String?
    /// Makes the running app pick up the new `current` (e.g. a HUP to the app server's master).
    public var reload: String?
    public var stop: String?
    /// Runs before the switch (e.g. a schema migration); failing aborts the activation.
    public var preActivate: String?
    public var health: HealthCheck?
    /// Paths inside the release (e.g. `var/log/app`) replaced by symlinks into the app's
    /// `shared/` directory, so they persist across versions.
    public var sharedDirectories: [String]?

    public init(
        start: String? = nil, reload: String? = nil, stop: String? = nil, preActivate: String? = nil,
        health: HealthCheck? = nil, sharedDirectories: [String]? = nil
    ) {
        self.start = start
        self.reload = reload
        self.stop = stop
        self.preActivate = preActivate
        self.health = health
        self.sharedDirectories = sharedDirectories
    }
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
