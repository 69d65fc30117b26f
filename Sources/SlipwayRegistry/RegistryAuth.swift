import Foundation
import Glibc
import SlipwaySystem

/// Credentials for a registry, from a file in docker's `config.json` format (podman's
/// `auth.json` is the same): `{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}`,
/// or `"username"` and `"password"` in place of `"auth"`. They are never put on a command
/// line: curl reads the header from a private file (docs/registry.md, "Credentials").
public struct RegistryCredentials: Sendable, Equatable {
    public var username: String
    public var password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    /// The file the controller reads: `$REGISTRY_AUTH_FILE`, else `$DOCKER_CONFIG/config.json`,
    /// else `~/.docker/config.json`, the first that is set (the file may be missing).
    public static func controllerFile(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let file = environment["REGISTRY_AUTH_FILE"], !file.isEmpty { return file }
        if let directory = environment["DOCKER_CONFIG"], !directory.isEmpty { return directory + "/config.json" }
        if let home = environment["HOME"], !home.isEmpty { return home + "/.docker/config.json" }
        return nil
    }

    /// The credentials for `host` (`HOST[:PORT]`) in `file`; nil when the file does not exist
    /// or names no such host. Keys may also be written as URLs (`https://HOST/v1/`).
    public static func load(host: String, file: String) throws -> RegistryCredentials? {
        guard access(file, F_OK) == 0 else { return nil }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw RegistryError.unexpected(what: file, detail: "cannot read the registry credentials file")
        }
        struct Config: Decodable {
            struct Entry: Decodable { var auth: String?; var username: String?; var password: String? }
            var auths: [String: Entry]?
        }
        let config: Config
        do {
            config = try JSONDecoder().decode(Config.self, from: data)
        } catch {
            throw RegistryError.unexpected(what: file, detail: "not a docker config.json (auths by host): \(error)")
        }
        func hostOf(_ key: String) -> String {
            var rest = Substring(key)
            for prefix in ["https://", "http://"] where rest.hasPrefix(prefix) { rest = rest.dropFirst(prefix.count) }
            return String(rest.split(separator: "/", maxSplits: 1).first ?? rest)
        }
        guard let entry = config.auths?.first(where: { hostOf($0.key) == host })?.value else { return nil }
        if let username = entry.username, let password = entry.password { return .init(username: username, password: password) }
        guard let auth = entry.auth, let decoded = Data(base64Encoded: auth), let text = String(data: decoded, encoding: .utf8),
              let colon = text.firstIndex(of: ":") else {
            throw RegistryError.unexpected(what: file, detail: "the entry for \(host) has no auth (base64 of user:password) or username and password")
        }
        return .init(username: String(text[..<colon]), password: String(text[text.index(after: colon)...]))
    }

    var basicHeader: String { "Basic " + Data("\(username):\(password)".utf8).base64EncodedString() }
}

/// Answers a registry's `401` (its `WWW-Authenticate` challenge): `Basic` with the
/// credentials, or `Bearer`: a token from the realm (distribution's token flow, with the
/// credentials when there are any, anonymous otherwise) for the scope the challenge names.
public enum RegistryAuth {
    /// A challenge's scheme and parameters: `Bearer realm="…",service="…",scope="…"`.
    public struct Challenge: Sendable, Equatable {
        public var scheme: String
        public var parameters: [String: String]
    }

    public static func parse(_ header: String) -> Challenge? {
        let trimmed = header.trimmingCharacters(in: .whitespaces)
        guard let space = trimmed.firstIndex(of: " ") else { return trimmed.isEmpty ? nil : Challenge(scheme: trimmed.lowercased(), parameters: [:]) }
        let scheme = trimmed[..<space].lowercased()
        var parameters: [String: String] = [:]
        var rest = trimmed[trimmed.index(after: space)...]
        while !rest.isEmpty {
            rest = rest.drop { $0 == " " || $0 == "," }
            guard let equals = rest.firstIndex(of: "=") else { break }
            let key = rest[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            rest = rest[rest.index(after: equals)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var escaped = false
                while let c = rest.first {
                    rest = rest.dropFirst()
                    if escaped { value.append(c); escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { break } else { value.append(c) }
                }
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = rest[..<end].trimmingCharacters(in: .whitespaces)
                rest = rest[end...]
            }
            parameters[key] = value
        }
        return Challenge(scheme: scheme, parameters: parameters)
    }

    /// The `Authorization` value that answers `challenge`, fetching a token for Bearer.
    /// `header` runs one GET with extra headers and returns status and body (the caller's
    /// curl, with its header file).
    public static func authorization(for challenge: Challenge, credentials: RegistryCredentials?, what: String,
                                     get: (_ url: String, _ authorization: String?) throws -> (status: Int, body: Data)) throws -> String {
        switch challenge.scheme {
        case "basic":
            guard let credentials else {
                throw RegistryError.unauthorized(what: what, detail: "the registry asks for a user and password (Basic) and none are configured")
            }
            return credentials.basicHeader
        case "bearer":
            guard let realm = challenge.parameters["realm"], realm.hasPrefix("https://") || realm.hasPrefix("http://") else {
                throw RegistryError.unauthorized(what: what, detail: "the registry's Bearer challenge names no http(s) realm")
            }
            var query: [String] = []
            if let service = challenge.parameters["service"] { query.append("service=" + escape(service)) }
            if let scope = challenge.parameters["scope"] {
                for one in scope.split(separator: " ") { query.append("scope=" + escape(String(one))) }
            }
            let url = realm + (query.isEmpty ? "" : (realm.contains("?") ? "&" : "?") + query.joined(separator: "&"))
            let answer = try get(url, credentials?.basicHeader)
            guard answer.status == 200 else {
                throw RegistryError.unauthorized(what: what, detail: "the token service \(realm) answered \(answer.status)"
                                                 + (credentials == nil ? " to an anonymous request (no credentials are configured for this registry)" : " for user \(credentials!.username)"))
            }
            struct Token: Decodable { var token: String?; var access_token: String? }
            guard let token = try? JSONDecoder().decode(Token.self, from: answer.body), let value = token.token ?? token.access_token, !value.isEmpty else {
                throw RegistryError.unauthorized(what: what, detail: "the token service \(realm) gave no token")
            }
            return "Bearer " + value
        default:
            throw RegistryError.unauthorized(what: what, detail: "the registry asks for '\(challenge.scheme)' authentication, which slipway does not speak (Basic, Bearer)")
        }
    }

    static func escape(_ text: String) -> String {
        let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    /// Writes `Authorization: VALUE` into a new file readable only by this user, for
    /// `curl --header @FILE`; the caller removes it.
    public static func headerFile(_ authorization: String, directory: String) throws -> String {
        let path = "\(directory)/authorization-\(UInt32.random(in: .min ... .max))"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw RegistryError.unexpected(what: path, detail: String(cString: strerror(errno))) }
        defer { close(fd) }
        let line = Array("Authorization: \(authorization)\n".utf8)
        guard write(fd, line, line.count) == line.count else { throw RegistryError.unexpected(what: path, detail: String(cString: strerror(errno))) }
        return path
    }
}
