import Foundation
import Crypto
import SlipwayRelease

/// Where releases live in an OCI registry: `oci://HOST[:PORT]/REPO` (HTTPS) or
/// `oci+http://HOST[:PORT]/REPO` (plain HTTP, for a registry on a private network or
/// loopback). docs/registry.md.
public struct RegistryLocation: Sendable, Equatable, CustomStringConvertible {
    /// `https` or `http`.
    public var scheme: String
    /// `HOST[:PORT]` as given.
    public var host: String
    /// The repository (`team/web`).
    public var repository: String

    public init(scheme: String, host: String, repository: String) {
        self.scheme = scheme
        self.host = host
        self.repository = repository
    }

    /// The registry of a blob URL (`SCHEME://HOST/v2/REPO/blobs/sha256:HEX`, what a pull-mode
    /// deploy hands a node); nil for any other URL.
    public init?(blobURL url: String) {
        let scheme: String
        let rest: Substring
        if url.hasPrefix("https://") { scheme = "https"; rest = url.dropFirst(8) } else if url.hasPrefix("http://") { scheme = "http"; rest = url.dropFirst(7) } else { return nil }
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        let host = String(rest[..<slash])
        let path = rest[slash...]
        guard path.hasPrefix("/v2/"), let blobs = path.range(of: "/blobs/sha256:", options: .backwards) else { return nil }
        let repository = String(path[path.index(path.startIndex, offsetBy: 4)..<blobs.lowerBound])
        guard (try? Self.validate(repository: repository, in: url)) != nil, !host.isEmpty else { return nil }
        self.init(scheme: scheme, host: host, repository: repository)
    }

    /// Whether `text` names a registry (and is not an http:// store).
    public static func isRegistry(_ text: String) -> Bool {
        text.hasPrefix("oci://") || text.hasPrefix("oci+http://")
    }

    /// Reads `oci://HOST[:PORT]/REPO` or `oci+http://HOST[:PORT]/REPO`.
    public init(parsing text: String) throws {
        let scheme: String
        let rest: Substring
        if text.hasPrefix("oci://") {
            scheme = "https"
            rest = text.dropFirst("oci://".count)
        } else if text.hasPrefix("oci+http://") {
            scheme = "http"
            rest = text.dropFirst("oci+http://".count)
        } else {
            throw RegistryError.badLocation(text, "give oci://HOST[:PORT]/REPO (HTTPS) or oci+http://HOST[:PORT]/REPO (plain HTTP)")
        }
        guard let slash = rest.firstIndex(of: "/") else {
            throw RegistryError.badLocation(text, "it names no repository after the host (oci://HOST[:PORT]/REPO)")
        }
        let host = String(rest[..<slash])
        var repository = String(rest[rest.index(after: slash)...])
        while repository.hasSuffix("/") { repository.removeLast() }
        guard !host.isEmpty, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-:[]".contains($0)) }) else {
            throw RegistryError.badLocation(text, "'\(host)' is not a host name or address with an optional :PORT")
        }
        try Self.validate(repository: repository, in: text)
        self.init(scheme: scheme, host: host, repository: repository)
    }

    /// The distribution spec's repository name: path components of lower-case letters and
    /// digits joined by `.`, `_`, `__` or runs of `-`.
    static func validate(repository: String, in text: String) throws {
        guard !repository.isEmpty, repository.utf8.count <= 255 else {
            throw RegistryError.badLocation(text, "the repository name is empty or longer than 255 bytes")
        }
        for component in repository.split(separator: "/", omittingEmptySubsequences: false) {
            let bytes = Array(component.utf8)
            func alnum(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) }
            var ok = !bytes.isEmpty && alnum(bytes.first!) && alnum(bytes.last!)
            var i = 0
            while ok && i < bytes.count {
                if alnum(bytes[i]) { i += 1; continue }
                // A separator: ".", "_", "__" or "-"+, between alphanumerics.
                let start = i
                if bytes[i] == UInt8(ascii: "-") {
                    while i < bytes.count && bytes[i] == UInt8(ascii: "-") { i += 1 }
                } else if bytes[i] == UInt8(ascii: "_") {
                    i += 1
                    if i < bytes.count && bytes[i] == UInt8(ascii: "_") { i += 1 }
                } else if bytes[i] == UInt8(ascii: ".") {
                    i += 1
                } else {
                    ok = false
                }
                if ok && (start == 0 || i >= bytes.count) { ok = false }
            }
            guard ok else {
                throw RegistryError.badLocation(text, "repository component '\(component)' is not lower-case letters and digits joined by '.', '_', '__' or '-'")
            }
        }
    }

    public var description: String { (scheme == "https" ? "oci://" : "oci+http://") + host + "/" + repository }

    /// `SCHEME://HOST/v2/REPO`.
    public var apiBase: String { "\(scheme)://\(host)/v2/\(repository)" }

    /// Where a blob is fetched from, by digest (`sha256:HEX`).
    public func blobURL(_ digest: String) -> String { "\(apiBase)/blobs/\(digest)" }

    public func manifestURL(_ reference: String) -> String { "\(apiBase)/manifests/\(reference)" }
}

/// Tags for releases and deltas. A version that is a valid tag (`[A-Za-z0-9_][A-Za-z0-9._-]`,
/// at most 128 characters) is its own tag; another (`1.0+deb12`, `2~rc1`) becomes its
/// characters with each one a tag cannot hold replaced by `_`, then `-` and the first 12 hex
/// digits of the SHA-256 of the version, so two versions never share a tag. The artifact's
/// annotations carry the version itself, and `pull` checks it.
public enum RegistryTag {
    static let tagCharacters = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-".utf8)

    public static func isValid(_ tag: String) -> Bool {
        guard let first = tag.utf8.first, tag.utf8.count <= 128 else { return false }
        return first != UInt8(ascii: ".") && first != UInt8(ascii: "-") && tag.utf8.allSatisfy(tagCharacters.contains)
    }

    /// The tag of a release's version.
    public static func forVersion(_ version: String) -> String {
        if isValid(version) { return version }
        let hash = SHA256.hash(data: Data(version.utf8)).map { String(format: "%02x", $0) }.joined()
        var mapped = String(decoding: version.utf8.map { tagCharacters.contains($0) ? $0 : UInt8(ascii: "_") }, as: UTF8.self)
        if mapped.hasPrefix(".") || mapped.hasPrefix("-") { mapped = "_" + mapped }
        return String(mapped.prefix(128 - 13)) + "-" + hash.prefix(12)
    }

    /// The tag of the delta that takes a node from `base` to `version`.
    public static func forDelta(version: String, base: String) -> String {
        forVersion("\(version).delta-from.\(base)")
    }
}
