import Foundation
import Glibc

/// Trust for an HTTPS server with a private CA, and a client certificate for mutual TLS, the
/// way podman, skopeo and docker find them (docs/registry.md, "TLS"): a directory per server
/// named `HOST[:PORT]` under a `certs.d` root holds
///
/// - `*.crt`: CA certificates (PEM), trusted besides the system's own;
/// - `NAME.cert` with `NAME.key`: a client certificate and its key.
///
/// The roots searched are `/etc/slipway/certs.d`, `/etc/containers/certs.d` and
/// `/etc/docker/certs.d`, in that order, unless one root is named (the controller's
/// `$SLIPWAY_CERTS_D`, a node's `registry_certs`); the first that has a directory for the
/// server is used, and none means the system's trust alone.
public struct RegistryTLS: Sendable {
    /// The directory the files came from.
    public var directory: String
    /// CA certificates, sorted by name.
    public var authorities: [String]
    /// The client certificate and its key.
    public var client: (certificate: String, key: String)?

    public static let defaultRoots = ["/etc/slipway/certs.d", "/etc/containers/certs.d", "/etc/docker/certs.d"]

    /// Where the system's CA bundle lives (Debian's ca-certificates).
    static let systemBundles = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"]

    /// The certs.d roots for the controller: `$SLIPWAY_CERTS_D` alone, else the defaults.
    public static func controllerRoots(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        if let root = environment["SLIPWAY_CERTS_D"], !root.isEmpty { return [root] }
        return defaultRoots
    }

    /// The files for `host` (`HOST[:PORT]`, as in the URL) under the first of `roots` that has
    /// a directory for it; nil when none has. A `.cert` without its `.key` (or the reverse),
    /// or two client pairs, is an error that names the directory.
    public static func find(host: String, roots: [String]) throws -> RegistryTLS? {
        // A host name never holds a slash; one that did could reach outside the root.
        guard !host.isEmpty, !host.contains("/"), host != ".", host != ".." else { return nil }
        for root in roots {
            let directory = "\(root)/\(host)"
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
            } catch {
                throw RegistryError.unexpected(what: directory, detail: "cannot list the TLS directory: \(error.localizedDescription)")
            }
            let authorities = names.filter { $0.hasSuffix(".crt") }.map { "\(directory)/\($0)" }
            let certificates = names.filter { $0.hasSuffix(".cert") }
            let keys = names.filter { $0.hasSuffix(".key") }
            var client: (String, String)? = nil
            for certificate in certificates {
                let key = String(certificate.dropLast(".cert".count)) + ".key"
                guard keys.contains(key) else {
                    throw RegistryError.unexpected(what: "\(directory)/\(certificate)", detail: "a client certificate without its key \(key) beside it")
                }
                guard client == nil else {
                    throw RegistryError.unexpected(what: directory, detail: "more than one client certificate (.cert); keep one")
                }
                client = ("\(directory)/\(certificate)", "\(directory)/\(key)")
            }
            for key in keys where !certificates.contains(String(key.dropLast(".key".count)) + ".cert") {
                throw RegistryError.unexpected(what: "\(directory)/\(key)", detail: "a client key without its certificate (.cert) beside it")
            }
            return RegistryTLS(directory: directory, authorities: authorities, client: client)
        }
        return nil
    }

    /// The host of an `https://HOST[:PORT]/…` URL; nil for another scheme.
    public static func host(ofHTTPS url: String) -> String? {
        guard url.lowercased().hasPrefix("https://") else { return nil }
        let rest = url.dropFirst("https://".count)
        let host = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        // user@host is no registry's form; the part after @ is the server.
        return host.split(separator: "@").last.map(String.init)
    }

    /// curl's arguments: `--cacert` with a bundle of the system's CAs and these (written into
    /// `scratch`, since curl takes one file and a file replaces the system's store), and
    /// `--cert`/`--key` for the client.
    public func curlArguments(scratch: String) throws -> [String] {
        var arguments: [String] = []
        if !authorities.isEmpty {
            var bundle = Data()
            if let system = Self.systemBundles.first(where: { FileManager.default.isReadableFile(atPath: $0) }),
               let bytes = FileManager.default.contents(atPath: system) {
                bundle.append(bytes)
                bundle.append(0x0A)
            }
            for authority in authorities {
                guard let bytes = FileManager.default.contents(atPath: authority) else {
                    throw RegistryError.unexpected(what: authority, detail: "cannot read the CA certificate")
                }
                bundle.append(bytes)
                bundle.append(0x0A)
            }
            let path = "\(scratch)/ca-bundle-\(UInt32.random(in: .min ... .max)).pem"
            guard FileManager.default.createFile(atPath: path, contents: bundle, attributes: [.posixPermissions: 0o644]) else {
                throw RegistryError.unexpected(what: path, detail: "cannot write the CA bundle: \(String(cString: strerror(errno)))")
            }
            arguments += ["--cacert", path]
        }
        if let client {
            // curl reads `--cert FILE:PASSPHRASE`; the colon of HOST:PORT in the path is escaped.
            let certificate = client.certificate.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: ":", with: "\\:")
            arguments += ["--cert", certificate, "--key", client.key]
        }
        return arguments
    }
}
