import Foundation
import Glibc
import Crypto
import Synchronization
import SlipwaySystem
import SlipwayArchive

/// The OCI distribution API over `curl`, one request per run (the same tool the nodes fetch
/// with; no HTTP stack inside slipway). A `401` is answered once per request from its
/// challenge (`RegistryAuth`), and the `Authorization` found is sent from then on, from a
/// private header file, never on curl's command line (docs/registry.md, "Credentials").
public struct RegistryClient: Sendable {
    public let location: RegistryLocation
    let runner = CommandRunner()
    /// Scratch space for request and response bodies and the header file.
    public let scratch: String
    let credentials: RegistryCredentials?
    /// curl's TLS arguments for the registry (`RegistryTLS`): a CA bundle, a client certificate.
    public let tlsArguments: [String]
    /// The `Authorization` value the last challenge was answered with.
    private let authorization = AuthorizationBox()

    final class AuthorizationBox: Sendable {
        let value = Mutex<String?>(nil)
    }

    /// `credentials` default to the controller's file for the registry's host
    /// (`RegistryCredentials.controllerFile`), `tlsRoots` to the controller's certs.d roots
    /// (`RegistryTLS.controllerRoots`).
    public init(location: RegistryLocation, scratch: String, credentials: RegistryCredentials?? = nil, tlsRoots: [String]? = nil) throws {
        guard CommandRunner.isInstalled("curl") else { throw RegistryError.toolMissing("curl") }
        self.location = location
        self.scratch = scratch
        if location.scheme == "https", let tls = try RegistryTLS.find(host: location.host, roots: tlsRoots ?? RegistryTLS.controllerRoots()) {
            tlsArguments = try tls.curlArguments(scratch: scratch)
        } else {
            tlsArguments = []
        }
        if let given = credentials {
            self.credentials = given
        } else if let file = RegistryCredentials.controllerFile() {
            self.credentials = try RegistryCredentials.load(host: location.host, file: file)
        } else {
            self.credentials = nil
        }
    }

    /// Runs `body` with a client whose scratch directory is a new private one in the
    /// temporary directory ($TMPDIR, else /tmp), removed afterwards with what it holds.
    public static func withScratch<T>(location: RegistryLocation, credentials: RegistryCredentials?? = nil, tlsRoots: [String]? = nil,
                                      _ body: (RegistryClient) throws -> T) throws -> T {
        try withScratchDirectory { scratch in
            try body(try RegistryClient(location: location, scratch: scratch, credentials: credentials, tlsRoots: tlsRoots))
        }
    }

    /// Runs `body` with a new private directory in the temporary directory, removed afterwards.
    public static func withScratchDirectory<T>(_ body: (String) throws -> T) throws -> T {
        var template = Array("\(FileManager.default.temporaryDirectory.path)/slipway-registry-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw RegistryError.unexpected(what: "mkdtemp", detail: String(cString: strerror(errno))) }
        let scratch = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        return try body(scratch)
    }

    public static let manifestMediaType = "application/vnd.oci.image.manifest.v1+json"
    public static let indexMediaType = "application/vnd.oci.image.index.v1+json"

    /// One response: status, the headers slipway reads (lower-case names), and the body when
    /// it was kept.
    struct Response {
        var status: Int
        var headers: [String: String]
        var body: Data
    }

    enum Body {
        case none
        case data(Data)
        case file(String)
    }

    /// Runs one request. `output` keeps the body in a file instead of memory. A `401` with a
    /// challenge is answered (`RegistryAuth`) and the request made once more.
    func request(_ method: String, _ url: String, headers: [String] = [], body: Body = .none,
                 output: String? = nil) throws -> Response {
        let sent = authorization.value.withLock { $0 }
        let response = try perform(method, url, headers: headers, body: body, output: output, authorization: sent)
        guard response.status == 401, let header = response.headers["www-authenticate"], let challenge = RegistryAuth.parse(header) else {
            return response
        }
        let answer = try RegistryAuth.authorization(for: challenge, credentials: credentials, what: "\(method) \(url)") { tokenURL, basic in
            let token = try perform("GET", tokenURL, headers: [], body: .none, output: nil, authorization: basic)
            return (token.status, token.body)
        }
        authorization.value.withLock { $0 = answer }
        let again = try perform(method, url, headers: headers, body: body, output: output, authorization: answer)
        if again.status == 401 {
            throw RegistryError.unauthorized(what: "\(method) \(url)", detail: credentials == nil
                ? "the registry refuses anonymous access (no credentials are configured for \(location.host))"
                : "the registry refuses the credentials of \(credentials!.username)")
        }
        return again
    }

    /// One curl run, with `authorization` from a header file.
    func perform(_ method: String, _ url: String, headers: [String], body: Body,
                 output: String?, authorization: String?) throws -> Response {
        let bodyPath = output ?? "\(scratch)/response-\(UInt32.random(in: .min ... .max))"
        defer { if output == nil { unlink(bodyPath) } }
        var arguments = ["curl", "--silent", "--show-error", "--globoff", "--location", "--max-redirs", "5",
                         "--connect-timeout", "10", "--dump-header", "-", "--output", bodyPath, "--request", method]
        if method == "HEAD" { arguments = arguments.filter { $0 != "--request" && $0 != "HEAD" } + ["--head"] }
        for header in headers { arguments += ["--header", header] }
        var headerFile: String? = nil
        defer { if let headerFile { unlink(headerFile) } }
        if let authorization {
            headerFile = try RegistryAuth.headerFile(authorization, directory: scratch)
            arguments += ["--header", "@" + headerFile!]
        }
        arguments += tlsArguments
        var input = Command.Input.null
        switch body {
        case .none: break
        case let .data(data):
            arguments += ["--data-binary", "@-"]
            input = .bytes(data)
        case let .file(path):
            arguments += ["--upload-file", path, "--header", "Expect:"]
            // --upload-file sets PUT; the method given wins.
        }
        arguments += ["--url", url]
        let result = try runner.runAllowingFailure(Command(arguments, input: input))
        guard result.succeeded else {
            throw RegistryError.unreachable(url: url, detail: HTTPDownload.curlDetail(result))
        }
        // Header blocks of interim answers (100 Continue) and redirects come first; the last is the answer.
        let text = String(decoding: result.standardOutput, as: UTF8.self)
        let blocks = text.components(separatedBy: "\r\n\r\n").filter { $0.hasPrefix("HTTP/") }
        guard let last = blocks.last else { throw RegistryError.unreachable(url: url, detail: "no HTTP answer") }
        var lines = last.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
            throw RegistryError.unreachable(url: url, detail: "a malformed status line")
        }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let data = output == nil ? ((try? Data(contentsOf: URL(fileURLWithPath: bodyPath))) ?? Data()) : Data()
        return Response(status: status, headers: headers, body: data)
    }

    /// The registry's own error text (`{"errors":[{"code":…,"message":…}]}`), or the body's start.
    static func detail(_ body: Data) -> String {
        struct Errors: Decodable {
            struct Item: Decodable { var code: String?; var message: String? }
            var errors: [Item]
        }
        if let errors = try? JSONDecoder().decode(Errors.self, from: body), !errors.errors.isEmpty {
            return errors.errors.map { [$0.code, $0.message].compactMap { $0 }.joined(separator: ": ") }.joined(separator: "; ")
        }
        return String(decoding: body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func check(_ response: Response, _ method: String, _ url: String, expect: Set<Int>) throws {
        guard expect.contains(response.status) else {
            throw RegistryError.http(method: method, url: url, status: response.status, detail: Self.detail(response.body))
        }
    }

    /// The `Authorization` value a GET of `url` needs (answering the registry's challenge to
    /// a HEAD), nil when the registry lets it through as it is. A node's fetch hands it to
    /// its own curl through a header file.
    public func authorization(for url: String) throws -> String? {
        let response = try request("HEAD", url)
        guard response.status < 400 || response.status == 404 else {
            try check(response, "HEAD", url, expect: [200])
            return nil
        }
        return authorization.value.withLock { $0 }
    }

    /// A resumable download of `url` into `path` with what this client talks to the registry
    /// with: the `Authorization` it last answered a challenge with (`authorization(for:)`),
    /// through a header file in its scratch directory, and its TLS arguments.
    public func download(_ url: String, to path: String, size: UInt64,
                         stallTimeout: Double = HTTPDownload.defaultStallTimeout) throws -> HTTPDownload {
        let headerFile = try authorization.value.withLock { $0 }.map { try RegistryAuth.headerFile($0, directory: scratch) }
        return HTTPDownload(url: url, path: path, size: size, stallTimeout: stallTimeout, headerFile: headerFile, tlsArguments: tlsArguments)
    }

    /// Checks that the registry speaks the distribution API (`GET /v2/`).
    public func ping() throws {
        let url = "\(location.scheme)://\(location.host)/v2/"
        try check(try request("GET", url), "GET", url, expect: [200])
    }

    /// Whether the repository holds the blob.
    public func hasBlob(_ digest: String) throws -> Bool {
        let url = location.blobURL(digest)
        let response = try request("HEAD", url)
        if response.status == 404 { return false }
        try check(response, "HEAD", url, expect: [200])
        return true
    }

    /// What `putBlob` did.
    public enum BlobOutcome: String, Sendable {
        /// The repository had it.
        case present
        /// Mounted from another repository of the registry: no bytes sent.
        case mounted
        /// Uploaded.
        case uploaded
    }

    /// Makes sure the repository holds the file as the blob `digest`: nothing when it has it,
    /// a cross-repository mount when one of `mountFrom` has it, else a monolithic upload.
    public func putBlob(path: String, digest: String, mountFrom: [String] = []) throws -> BlobOutcome {
        if try hasBlob(digest) { return .present }
        let uploads = "\(location.apiBase)/blobs/uploads/"
        var start: Response? = nil
        for other in mountFrom where other != location.repository {
            let url = uploads + "?mount=\(digest)&from=\(other)"
            let response = try request("POST", url)
            if response.status == 201 { return .mounted }
            try check(response, "POST", url, expect: [202])
            start = response
            break
        }
        if start == nil {
            let response = try request("POST", uploads)
            try check(response, "POST", uploads, expect: [202])
            start = response
        }
        guard let where_ = start?.headers["location"] else {
            throw RegistryError.unexpected(what: "POST \(uploads)", detail: "the registry gave no Location for the upload")
        }
        let target = absolute(where_)
        let url = target + (target.contains("?") ? "&" : "?") + "digest=\(digest)"
        let response = try request("PUT", url, headers: ["Content-Type: application/octet-stream"], body: .file(path))
        try check(response, "PUT", url, expect: [201])
        if let stored = response.headers["docker-content-digest"], stored != digest {
            throw RegistryError.digestMismatch(what: "blob upload", expected: digest, actual: stored)
        }
        return .uploaded
    }

    /// A Location header may be a path on the registry.
    func absolute(_ location: String) -> String {
        location.hasPrefix("http://") || location.hasPrefix("https://") ? location : "\(self.location.scheme)://\(self.location.host)\(location)"
    }

    /// Stores a manifest (or index) under `reference` (a tag or its digest); returns its digest.
    @discardableResult
    public func putManifest(_ bytes: Data, mediaType: String, reference: String) throws -> String {
        let digest = Self.digest(bytes)
        let url = location.manifestURL(reference)
        let response = try request("PUT", url, headers: ["Content-Type: \(mediaType)"], body: .data(bytes))
        try check(response, "PUT", url, expect: [201])
        if let stored = response.headers["docker-content-digest"], stored != digest {
            throw RegistryError.digestMismatch(what: "manifest \(reference)", expected: digest, actual: stored)
        }
        return digest
    }

    /// A manifest as the registry holds it: bytes, digest (checked against the bytes when the
    /// reference is a digest) and media type; nil when there is none.
    public func manifest(_ reference: String, accept: [String] = [RegistryClient.manifestMediaType]) throws -> (bytes: Data, digest: String, mediaType: String)? {
        let url = location.manifestURL(reference)
        let response = try request("GET", url, headers: ["Accept: \(accept.joined(separator: ", "))"])
        if response.status == 404 { return nil }
        try check(response, "GET", url, expect: [200])
        let digest = Self.digest(response.body)
        if reference.hasPrefix("sha256:"), digest != reference {
            throw RegistryError.digestMismatch(what: "manifest \(reference)", expected: reference, actual: digest)
        }
        return (response.body, digest, response.headers["content-type"] ?? "")
    }

    /// Downloads a blob into `path` with the resumable `HTTPDownload` (a partial file is
    /// resumed with a Range request) and checks its size and digest; a wrong file is removed.
    /// Returns the bytes it downloaded (0 when the file was complete already).
    @discardableResult
    public func fetchBlob(_ digest: String, size: UInt64, to path: String, what: String, log: (String) -> Void = { _ in }) throws -> UInt64 {
        let url = location.blobURL(digest)
        var fetched: UInt64 = 0
        let have = UInt64((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)??.uint64Value ?? 0)
        if have != size {
            // Answer any challenge on a HEAD first: a ranged GET that got a 401 would append its body.
            let head = try request("HEAD", url)
            try check(head, "HEAD", url, expect: [200])
            let download = try self.download(url, to: path, size: size)
            do {
                fetched = try download.run(runner: runner, log: log)
            } catch let failure as HTTPDownload.Failure {
                throw RegistryError.unreachable(url: url, detail: failure.detail + (failure.bytes > 0 ? "; \(failure.bytes) of \(failure.size) bytes are kept, pull again to resume" : ""))
            }
        }
        let hash = try FileHasher.sha256(path: path)
        guard hash.size == size, "sha256:" + hash.hex == digest else {
            unlink(path)
            throw RegistryError.digestMismatch(what: what, expected: "\(digest) (\(size) bytes)", actual: "sha256:\(hash.hex) (\(hash.size) bytes)")
        }
        return fetched
    }

    public static func digest(_ data: Data) -> String {
        "sha256:" + SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}
