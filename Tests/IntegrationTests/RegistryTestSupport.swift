import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension Requirement {
    /// Debian's docker-registry (distribution 2.8) and curl, which slipway talks to it with.
    static let registry = Requirement.tools(["docker-registry", "curl"])
}

/// A real OCI registry (Debian's `docker-registry`, distribution 2.8) on `address`, with its
/// configuration and storage in `scratch`; started for a test and stopped by its pid.
final class RegistryServer {
    let address: String
    let port: Int
    let storage: String
    /// Its standard error: the access log (one line per request) and its own messages.
    let log: String
    private let process = Process()

    /// Serving HTTPS with these files (`PrivateCA.serve`): its certificate and key, and the CA
    /// whose client certificates it requires.
    let tls: PrivateCA?

    var hostPort: String { "\(address):\(port)" }
    /// `oci+http://ADDRESS:PORT/REPO`, or `oci://…` with TLS.
    func location(_ repository: String) -> String { (tls == nil ? "oci+http://" : "oci://") + "\(hostPort)/\(repository)" }

    /// `auth`: a section for the configuration (`TokenService.registryConfig`). `tls`: serve
    /// HTTPS with the CA's server certificate and require a client certificate it signed.
    init(address: String = "127.0.0.1", scratch: String, auth: String? = nil, tls: PrivateCA? = nil) throws {
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        self.address = address
        storage = scratch + "/storage"
        log = scratch + "/registry.log"
        self.tls = tls
        port = address == "127.0.0.1" ? try freeLocalPort() : 20000 + Int.random(in: 0..<2000)
        let config = """
            version: 0.1
            log:
              level: info
              formatter: text
            storage:
              filesystem:
                rootdirectory: \(storage)
              delete:
                enabled: true
            http:
              addr: \(address):\(port)
            """ + (tls.map { "\n" + $0.registryConfig } ?? "") + (auth.map { "\n" + $0 } ?? "")
        try Data(config.utf8).write(to: URL(fileURLWithPath: scratch + "/config.yml"))
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.executableURL = URL(fileURLWithPath: toolPath("docker-registry") ?? "/usr/bin/docker-registry")
        process.arguments = ["serve", scratch + "/config.yml"]
        process.standardInput = FileHandle.nullDevice
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        try? handle.close()
        for _ in 0..<200 {
            let probe = tls.map { ["--cacert", $0.caCertificate, "--cert", $0.clientCertificate, "--key", $0.clientKey, "https://\(hostPort)/v2/"] }
                ?? ["http://\(hostPort)/v2/"]
            if let answer = try? run("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}"] + probe), ["200", "401"].contains(answer.out) { return }
            if !process.isRunning { break }
            usleep(50_000)
        }
        stop()
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        throw TestSupportError.commandFailed("docker-registry serve on \(hostPort)", -1, "did not answer: \(text.suffix(2000))")
    }

    /// Requests for `path` (a substring of the URL path) in the access log, by method.
    func requests(_ method: String, containing path: String) -> Int {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.contains("\"\(method) ") && $0.contains(path) }.count
    }

    /// The HTTP statuses of the requests for `path` (a substring of the URL path), in order.
    func statuses(_ method: String, containing path: String) -> [Int] {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.contains("\"\(method) ") && $0.contains(path) }.compactMap { line in
            guard let quote = line.range(of: "HTTP/1.1\" ") ?? line.range(of: "HTTP/1.0\" ") else { return nil }
            return Int(line[quote.upperBound...].prefix { $0.isNumber })
        }
    }

    /// The file the registry keeps a blob's bytes in.
    func blobFile(_ digest: String) -> String {
        let hex = String(digest.dropFirst("sha256:".count))
        return "\(storage)/docker/registry/v2/blobs/sha256/\(hex.prefix(2))/\(hex)/data"
    }

    /// Stops it by its pid (SIGTERM, then SIGKILL after 5 s).
    func stop() { stopDaemon(process) }

    deinit { stop() }
}

/// A token service for a registry's Bearer flow (distribution's token authentication): it
/// checks a user and password given with Basic and signs an ES256 JWT that grants the
/// scope asked for, with its self-signed certificate in the header (`x5c`) and in the
/// registry's `rootcertbundle`. Anonymous requests get a token that grants nothing. Debian's
/// python3 and python3-cryptography run it; stopped by its pid.
final class TokenService {
    static let python = "/usr/bin/python3"
    let port: Int
    let certificate: String
    let service = "slipway-test"
    let issuer = "slipway-test-issuer"
    let log: String
    private let process = Process()

    var realm: String { "http://127.0.0.1:\(port)/token" }

    init(user: String, password: String, scratch: String) throws {
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        port = try freeLocalPort()
        certificate = scratch + "/token.pem"
        log = scratch + "/token.log"
        let script = scratch + "/token_service.py"  // not token.py: that would shadow the standard module
        try Data(Self.source.utf8).write(to: URL(fileURLWithPath: script))
        process.executableURL = URL(fileURLWithPath: Self.python)
        process.arguments = [script, String(port), certificate, issuer, service, user, password]
        process.standardInput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        try? handle.close()
        for _ in 0..<200 where process.isRunning {
            if access(certificate, F_OK) == 0, isListening(port) { return }
            usleep(50_000)
        }
        stop()
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        throw TestSupportError.commandFailed("token service on 127.0.0.1:\(port)", -1, "did not start: \(text.suffix(2000))")
    }

    /// The registry configuration's `auth` section.
    var registryConfig: String {
        """
        auth:
          token:
            realm: \(realm)
            service: \(service)
            issuer: \(issuer)
            rootcertbundle: \(certificate)
        """
    }

    func stop() { stopDaemon(process) }

    deinit { stop() }

    static let source = #"""
    import base64, datetime, json, os, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from urllib.parse import urlparse, parse_qs
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    port, cert_path, issuer, service, user, password = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def token(subject, access):
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        t = int(time.time())
        claims = {"iss": issuer, "sub": subject, "aud": service, "exp": t + 300, "nbf": t - 10, "iat": t,
                  "jti": os.urandom(8).hex(), "access": access}
        signing = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
        r, s = decode_dss_signature(key.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
        return signing + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            query = parse_qs(urlparse(self.path).query)
            auth = self.headers.get("Authorization", "")
            subject = ""
            if auth.startswith("Basic "):
                given = base64.b64decode(auth[6:]).decode()
                if given != user + ":" + password:
                    self.send_response(401); self.end_headers(); return
                subject = user
            access = []
            for scope in query.get("scope", []):
                kind, _, rest = scope.partition(":")
                repo, _, actions = rest.rpartition(":")
                if subject:
                    access.append({"type": kind, "name": repo, "actions": [a for a in actions.split(",") if a]})
            body = json.dumps({"token": token(subject, access)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, fmt, *args):
            sys.stderr.write("token: " + (fmt % args) + " auth=" + ("basic" if self.headers.get("Authorization", "").startswith("Basic ") else "none") + "\n")

    server = HTTPServer(("127.0.0.1", int(port)), Handler)
    with open(cert_path + ".tmp", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    os.rename(cert_path + ".tmp", cert_path)
    server.serve_forever()
    """#
}

/// nginx in front of a registry on 127.0.0.1:`port`, passing every request through
/// (uncached), optionally slowed to `rate` per response (`limit_rate`), so that a test can
/// cut a blob transfer in the middle by killing it; stopped by its pid.
final class RegistryProxy {
    let port: Int
    private let process = Process()

    init(upstream: String, port: Int? = nil, rate: String? = nil, scratch: String) throws {
        try FileManager.default.createDirectory(atPath: scratch + "/temp", withIntermediateDirectories: true)
        self.port = try port ?? freeLocalPort()
        let config = """
            daemon off;
            master_process off;
            \(geteuid() == 0 ? "user root;" : "")
            worker_processes 1;
            pid \(scratch)/nginx.pid;
            error_log \(scratch)/error.log;
            events { worker_connections 64; }
            http {
                access_log \(scratch)/access.log;
                client_body_temp_path \(scratch)/temp; proxy_temp_path \(scratch)/temp; fastcgi_temp_path \(scratch)/temp;
                uwsgi_temp_path \(scratch)/temp; scgi_temp_path \(scratch)/temp;
                server {
                    listen 127.0.0.1:\(self.port);
                    location / {
                        proxy_pass http://\(upstream);
                        client_max_body_size 0;
                        \(rate.map { "limit_rate \($0);" } ?? "")
                    }
                }
            }
            """
        try Data(config.utf8).write(to: URL(fileURLWithPath: scratch + "/nginx.conf"))
        process.executableURL = URL(fileURLWithPath: NginxServer.binary)
        process.arguments = ["-c", scratch + "/nginx.conf", "-p", scratch + "/", "-e", scratch + "/error.log"]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<200 where process.isRunning {
            if isListening(self.port) { return }
            usleep(25_000)
        }
        stop()
        throw TestSupportError.commandFailed("nginx proxy on 127.0.0.1:\(self.port)", -1, "did not listen")
    }

    /// Kills it at once (SIGKILL, by pid): its connections drop mid-transfer.
    func kill9() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func stop() { stopDaemon(process, signal: SIGQUIT) }

    deinit { stop() }
}

/// A private CA made with openssl for a TLS test: the CA, a server certificate for
/// 127.0.0.1 and a client certificate, all signed by it, in `directory`.
struct PrivateCA {
    let directory: String
    var caCertificate: String { directory + "/ca.crt" }
    var serverCertificate: String { directory + "/server.crt" }
    var serverKey: String { directory + "/server.key" }
    var clientCertificate: String { directory + "/client.cert" }
    var clientKey: String { directory + "/client.key" }

    init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func openssl(_ arguments: [String]) throws {
            let result = try run("openssl", arguments)
            guard result.ok else { throw TestSupportError.commandFailed("openssl \(arguments.first ?? "")", result.status, result.err) }
        }
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                     "-subj", "/CN=slipway test CA", "-keyout", directory + "/ca.key", "-out", caCertificate,
                     "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        for (name, subject, extra) in [("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                                           ("client", "/CN=node", "extendedKeyUsage=clientAuth")] {
            let key = directory + "/\(name).key"
            let request = directory + "/\(name).csr"
            let extensions = directory + "/\(name).ext"
            try Data((extra + "\n").utf8).write(to: URL(fileURLWithPath: extensions))
            try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subject,
                         "-keyout", key, "-out", request])
            try openssl(["x509", "-req", "-in", request, "-CA", caCertificate, "-CAkey", directory + "/ca.key", "-CAcreateserial",
                         "-days", "2", "-extfile", extensions, "-out", directory + "/\(name)" + (name == "server" ? ".crt" : ".cert")])
        }
    }

    /// The registry configuration's `http.tls` (indented under `http:`).
    var registryConfig: String {
        """
          tls:
            certificate: \(serverCertificate)
            key: \(serverKey)
            clientcas:
              - \(caCertificate)
        """
    }

    /// A certs.d root with `HOST:PORT/` holding the CA and, with `client`, the client pair.
    func certsRoot(at root: String, host: String, client: Bool) throws -> String {
        let directory = root + "/" + host
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: caCertificate, toPath: directory + "/ca.crt")
        if client {
            try FileManager.default.copyItem(atPath: clientCertificate, toPath: directory + "/client.cert")
            try FileManager.default.copyItem(atPath: clientKey, toPath: directory + "/client.key")
        }
        return root
    }
}
