import Foundation
import TOMLKit
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The node's settings: `/etc/slipway/node.toml`, then command-line flags over it.
///
///     root = "/var/lib/slipway"
///     backend = "dir"                 # dir | btrfs | zfs | lvm
///     keep = 5                        # releases kept by `prune` without --keep
///     trusted_keys = ["/etc/slipway/release.pub"]   # listing keys requires a valid signature
///     require_signature = false       # true: refuse unsigned releases (needs trusted_keys)
///     require_sbom = false            # true: refuse releases without a signed SBOM (docs/sbom.md)
///     verify_landed = false           # true: read every landed file back and hash it (docs/node.md)
///     allow_unsigned = false          # true: with trusted_keys, still land unsigned releases (warns)
///     lock_timeout = 60               # seconds a command waits for the app's lock
///     hook_timeout = 300              # seconds a hook (pre_activate, start, reload) may run
///     [btrfs]                         # the backend's own parameters, read by the backend
///     mount = "/srv/slipway"
///     [zfs]
///     dataset = "tank/slipway"
///     [schroot]
///     enabled = false
///     directory = "/etc/schroot/chroot.d"
///     [front]                         # nginx in front of services with a `command`
///     directory = "/etc/nginx/slipway"  # <app>.conf written here, included in http {}
///     pid_file = "/run/nginx.pid"      # nginx's master: HUP to reload, its workers followed
///     ports = "20000-29999"            # versions' private ports on 127.0.0.1
///     drain_timeout = 30               # seconds old workers may finish in-flight requests
///     servers = true                   # also write a server block listening on [service] port
///     [front.listen]                   # per app, where that server listens instead
///     web = "127.0.0.1:18081"
///
/// Unknown keys are errors naming the key; a backend table is a free string table that its
/// backend validates.
public struct NodeSettings: Sendable, Equatable {
    public static let defaultPath = "/etc/slipway/node.toml"
    public static let backendNames = BackendKind.names

    public var root: String = "/var/lib/slipway"
    public var backend: BackendKind = .dir
    /// Parameters of every backend table present, by backend name.
    public var backendTables: [String: [String: String]] = [:]
    public var keep: Int = 5
    /// Paths of trusted Ed25519 public key files.
    public var trustedKeys: [String] = []
    /// Refuse releases without a valid signature (implied by `trustedKeys` unless
    /// `allowUnsigned`).
    public var requireSignature: Bool = false
    /// The explicit opt-out: with trusted keys, an unsigned release still lands, with a warning
    /// on every use. A signature that is given must still verify.
    public var allowUnsigned: Bool = false
    /// Refuse a release whose signed manifest lists no SBOM, or that comes without it
    /// (docs/sbom.md). Needs trusted keys: an SBOM is only worth what its signature is.
    public var requireSBOM: Bool = false
    /// Hash every file of a landed tree from the disk, after the write, rather than the
    /// bytes as they were written (docs/node.md "What apply checks").
    public var verifyLanded: Bool = false
    public var lockTimeout: Double = 60
    public var hookTimeout: Double = 300
    /// Credentials for registries a pull-mode fetch asks (docker's config.json format;
    /// docs/registry.md). A missing file means none.
    public var registryAuth: String = "/etc/slipway/registry-auth.json"
    /// The certs.d root for HTTPS servers with a private CA or client certificates
    /// (`HOST[:PORT]/*.crt`, `NAME.cert` + `NAME.key`); nil: the podman and docker roots.
    public var registryCerts: String? = nil
    public var schrootEnabled: Bool = false
    public var schrootDirectory: String = "/etc/schroot/chroot.d"
    /// The front that makes switches graceful (`[front]`); nil: none configured.
    public var front: FrontSettings?
    /// Where the settings came from (the file, or "defaults").
    public var source: String = "defaults"

    public init() {}

    /// Whether a release must carry a signature that verifies with a trusted key: listing
    /// trusted keys means yes, unless `allow_unsigned` opts out (docs/security.md).
    public var signatureRequired: Bool { requireSignature || (!trustedKeys.isEmpty && !allowUnsigned) }

    /// Checks settings that only make sense together (after command-line flags are applied).
    public func validate() throws {
        if requireSignature && trustedKeys.isEmpty {
            throw NodeError.settings(path: source, detail: "require_signature (--require-signature) is set but no trusted key is listed; add trusted_keys or --trust FILE.pub, the public key files releases are signed with")
        }
        if requireSBOM && (trustedKeys.isEmpty || allowUnsigned) {
            throw NodeError.settings(path: source, detail: "require_sbom needs signed releases: list trusted_keys (and do not set allow_unsigned); an unsigned SBOM proves nothing")
        }
        if requireSignature && allowUnsigned {
            throw NodeError.settings(path: source, detail: "require_signature and allow_unsigned contradict each other; set one of them")
        }
    }

    /// The parameters of the selected backend (`[btrfs]`, `[zfs]` …), empty when absent.
    public var backendParameters: [String: String] { backendTables[backend.rawValue] ?? [:] }

    /// The parameters of the backend `name`.
    public func parameters(for name: String) -> [String: String] { backendTables[name] ?? [:] }

    /// The layout of `app` under `root`.
    public func layout(app: String) -> NodeLayout { NodeLayout(root: root, app: app) }

    /// Loads `path`; when `path` is nil the default file is read if it exists, else the
    /// defaults are used. A file named explicitly must exist.
    public static func load(path: String?) throws -> NodeSettings {
        let file = path ?? defaultPath
        guard NodeFiles.exists(file) else {
            if path != nil { throw NodeError.settings(path: file, detail: "the settings file does not exist") }
            return NodeSettings()
        }
        let data = try NodeFiles.read(file)
        return try parse(String(decoding: data, as: UTF8.self), source: file)
    }

    /// Parses node.toml text; `source` names it in errors.
    public static func parse(_ text: String, source: String = defaultPath) throws -> NodeSettings {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw NodeError.settings(path: source, detail: "line \(error.source.begin.line): \(error.description)")
        } catch {
            throw NodeError.settings(path: source, detail: "not valid TOML: \(error)")
        }
        var settings = NodeSettings()
        settings.source = source
        func fail(_ key: String, _ detail: String) -> NodeError { .settings(path: source, detail: "\(key): \(detail)") }
        func string(_ key: String, _ value: TOMLValueConvertible) throws -> String {
            guard let text = value.string else { throw fail(key, "expected a string, found a \(value.type)") }
            return text
        }
        func bool(_ key: String, _ value: TOMLValueConvertible) throws -> Bool {
            guard let flag = value.bool else { throw fail(key, "expected true or false, found a \(value.type)") }
            return flag
        }
        func seconds(_ key: String, _ value: TOMLValueConvertible) throws -> Double {
            guard let number = value.double ?? value.int.map(Double.init), number > 0 else {
                throw fail(key, "expected a positive number of seconds")
            }
            return number
        }
        for key in table.keys.sorted() {
            guard let value = table[key] else { continue }
            switch key {
            case "root":
                settings.root = try string(key, value)
                guard settings.root.hasPrefix("/") else { throw fail(key, "must be an absolute path") }
            case "backend":
                let name = try string(key, value)
                guard let kind = BackendKind(rawValue: name) else {
                    throw fail(key, "unknown backend '\(name)'; use one of \(backendNames.joined(separator: ", "))")
                }
                settings.backend = kind
            case "keep":
                guard let keep = value.int, keep >= 1 else { throw fail(key, "expected an integer of at least 1") }
                settings.keep = keep
            case "trusted_keys":
                guard let array = value.array else { throw fail(key, "expected an array of public key file paths") }
                settings.trustedKeys = try array.map { element in
                    guard let path = element.string else { throw fail(key, "expected an array of strings") }
                    return path
                }
            case "require_signature": settings.requireSignature = try bool(key, value)
            case "allow_unsigned": settings.allowUnsigned = try bool(key, value)
            case "require_sbom": settings.requireSBOM = try bool(key, value)
            case "verify_landed": settings.verifyLanded = try bool(key, value)
            case "lock_timeout": settings.lockTimeout = try seconds(key, value)
            case "hook_timeout": settings.hookTimeout = try seconds(key, value)
            case "registry_auth":
                let path = try string(key, value)
                guard path.hasPrefix("/") else { throw fail(key, "expected an absolute path") }
                settings.registryAuth = path
            case "registry_certs":
                let path = try string(key, value)
                guard path.hasPrefix("/") else { throw fail(key, "expected an absolute path") }
                settings.registryCerts = path
            case "schroot":
                guard let sub = value.table else { throw fail(key, "expected a table [schroot]") }
                for subkey in sub.keys.sorted() {
                    guard let subvalue = sub[subkey] else { continue }
                    switch subkey {
                    case "enabled": settings.schrootEnabled = try bool("schroot.enabled", subvalue)
                    case "directory": settings.schrootDirectory = try string("schroot.directory", subvalue)
                    default: throw fail("schroot.\(subkey)", "unknown key; [schroot] takes enabled and directory")
                    }
                }
            case "front":
                guard let sub = value.table else { throw fail(key, "expected a table [front]") }
                var front = FrontSettings()
                for subkey in sub.keys.sorted() {
                    guard let subvalue = sub[subkey] else { continue }
                    let name = "front.\(subkey)"
                    switch subkey {
                    case "type":
                        guard try string(name, subvalue) == "nginx" else { throw fail(name, "the only front slipway drives is \"nginx\"") }
                    case "directory":
                        front.directory = try string(name, subvalue)
                        guard front.directory.hasPrefix("/") else { throw fail(name, "must be an absolute path") }
                    case "pid_file":
                        front.pidFile = try string(name, subvalue)
                        guard front.pidFile.hasPrefix("/") else { throw fail(name, "must be an absolute path") }
                    case "ports":
                        let text = try string(name, subvalue)
                        let parts = text.split(separator: "-").compactMap { Int($0) }
                        guard parts.count == 2, parts[0] >= 1024, parts[0] <= parts[1], parts[1] <= 65535 else {
                            throw fail(name, "expected \"LOW-HIGH\", a range of unprivileged TCP ports (e.g. \"20000-29999\")")
                        }
                        front.ports = parts[0]...parts[1]
                    case "drain_timeout": front.drainTimeout = try seconds(name, subvalue)
                    case "servers": front.servers = try bool(name, subvalue)
                    case "listen":
                        guard let apps = subvalue.table else { throw fail(name, "expected a table [front.listen] of app = \"[ADDRESS:]PORT\"") }
                        for app in apps.keys {
                            guard let text = apps[app]?.string ?? apps[app]?.int.map(String.init),
                                  let port = Int(text.split(separator: ":").last ?? ""), (1...65535).contains(port) else {
                                throw fail("\(name).\(app)", "expected \"[ADDRESS:]PORT\", e.g. \"127.0.0.1:8080\" or 8080")
                            }
                            front.listen[app] = text
                        }
                    default: throw fail(name, "unknown key; [front] takes type, directory, pid_file, ports, drain_timeout, servers and [front.listen]")
                    }
                }
                settings.front = front
            case _ where backendNames.contains(key):
                guard let sub = value.table else { throw fail(key, "expected a table [\(key)] of the backend's parameters") }
                var parameters: [String: String] = [:]
                for subkey in sub.keys {
                    guard let subvalue = sub[subkey] else { continue }
                    if let text = subvalue.string {
                        parameters[subkey] = text
                    } else if let number = subvalue.int {
                        parameters[subkey] = String(number)
                    } else if let flag = subvalue.bool {
                        parameters[subkey] = String(flag)
                    } else {
                        throw fail("\(key).\(subkey)", "expected a string, integer or boolean")
                    }
                }
                settings.backendTables[key] = parameters
            default:
                throw fail(key, "unknown key; node.toml takes root, backend, keep, trusted_keys, require_signature, allow_unsigned, require_sbom, verify_landed, lock_timeout, hook_timeout, registry_auth, registry_certs, [schroot], [front] and a table per backend ([btrfs], [zfs], [lvm])")
            }
        }
        try settings.validate()
        return settings
    }

    /// The trusted public keys, loaded.
    public func loadTrustedKeys() throws -> [ReleasePublicKey] {
        try trustedKeys.map { try ReleaseSigning.loadPublicKey(path: $0) }
    }
}

/// The node's front (`[front]` in node.toml): the nginx that clients reach, whose upstream a
/// graceful switch moves from the old version's private port to the new one's
/// (docs/service.md).
public struct FrontSettings: Sendable, Equatable {
    /// Where `<app>.conf` is written; nginx's `http {}` must `include` `<directory>/*.conf`.
    public var directory = "/etc/nginx/slipway"
    /// nginx's master pid file: the reload is a HUP to it, and its workers are followed.
    public var pidFile = "/run/nginx.pid"
    /// The versions' private ports on 127.0.0.1.
    public var ports = 20000...29999
    /// Seconds the old workers may take to finish their requests after the reload.
    public var drainTimeout: Double = 30
    /// Also write a `server` listening on the service's `port` (false: the operator's own
    /// server blocks `proxy_pass http://slipway-<app>`).
    public var servers = true
    /// Per app, where that server listens instead of the service's `port`
    /// (`[front.listen] web = "127.0.0.1:18081"`): several nodes on one machine, or one
    /// address of a host with several.
    public var listen: [String: String] = [:]

    public init() {}
}
