import Foundation

public enum RegistryError: Error, CustomStringConvertible, Sendable {
    case badLocation(String, String)
    case toolMissing(String)
    /// curl could not talk to the registry at all (connection refused, DNS, TLS).
    case unreachable(url: String, detail: String)
    /// The registry answered with an error status.
    case http(method: String, url: String, status: Int, detail: String)
    /// The registry holds something other than what slipway expects there.
    case unexpected(what: String, detail: String)
    /// Downloaded bytes do not have the digest they were asked for by.
    case digestMismatch(what: String, expected: String, actual: String)
    case notFound(what: String, location: String)
    /// The registry wants credentials slipway does not have, or refused them.
    case unauthorized(what: String, detail: String)

    public var description: String {
        switch self {
        case let .badLocation(text, reason): "registry location '\(text)': \(reason)"
        case let .toolMissing(tool): "\(tool) is not installed; slipway talks to OCI registries through it (apt-get install \(tool))"
        case let .unreachable(url, detail): "cannot reach the registry at \(url): \(detail)"
        case let .http(method, url, status, detail): "\(method) \(url): the registry answered \(status)" + (detail.isEmpty ? "" : ": \(detail)")
        case let .unexpected(what, detail): "\(what): \(detail)"
        case let .digestMismatch(what, expected, actual): "\(what): expected \(expected), the registry sent bytes with digest \(actual); nothing was kept"
        case let .notFound(what, location): "\(location) has no \(what)"
        case let .unauthorized(what, detail): "\(what): \(detail); put credentials for the registry into $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json or ~/.docker/config.json (docker's format; on a node, the file node.toml's registry_auth names)"
        }
    }
}
