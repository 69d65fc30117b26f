import Crypto
import Foundation
import SlipwayArchive
import SlipwaySystem

/// The SBOM of a release (docs/sbom.md) in SPDX 2.3 JSON and CycloneDX 1.5 JSON, written from
/// a `ReleaseContents`. The bytes depend only on the contents, the release's name, version,
/// creation time and archive digest, so a reproducible build gives a byte-identical SBOM.
public enum SBOM {
    public enum Format: String, CaseIterable, Sendable {
        case spdx, cyclonedx

        /// The file name in the store, on a node and as a manifest attachment.
        public var fileName: String {
            switch self {
            case .spdx: "sbom.spdx.json"
            case .cyclonedx: "sbom.cdx.json"
            }
        }

        public var mediaType: String {
            switch self {
            case .spdx: "application/spdx+json"
            case .cyclonedx: "application/vnd.cyclonedx+json"
            }
        }
    }

    /// What identifies the document: the release and its archive.
    public struct Subject: Sendable {
        public var name: String
        public var version: String
        public var created: Int64
        public var archiveSHA256: String

        public init(name: String, version: String, created: Int64, archiveSHA256: String) {
            self.name = name
            self.version = version
            self.created = created
            self.archiveSHA256 = archiveSHA256
        }
    }

    public static func render(_ contents: ReleaseContents, subject: Subject, format: Format) throws -> Data {
        switch format {
        case .spdx: try spdx(contents, subject: subject)
        case .cyclonedx: try cycloneDX(contents, subject: subject)
        }
    }

    /// The SBOM in every format, as attachments for `ReleaseStore.add`.
    public static func attachments(_ contents: ReleaseContents, subject: Subject) throws -> [ReleaseStore.AttachmentContent] {
        try Format.allCases.map { .init(file: $0.fileName, mediaType: $0.mediaType, data: try render(contents, subject: subject, format: $0)) }
    }

    static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return try encoder.encode(value) + Data("\n".utf8)
    }

    static func timestamp(_ seconds: Int64) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                      Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }

    /// A UUID (version 5 layout) derived from the subject, so a rebuild gives the same one.
    static func uuid(_ subject: Subject, _ purpose: String) -> String {
        var bytes = Array(SHA256.hash(data: Data("\(purpose)\n\(subject.name)@\(subject.version)\n\(subject.archiveSHA256)".utf8)).prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x50
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = FileHasher.hex(bytes)
        let h = Array(hex)
        return String(h[0..<8]) + "-" + String(h[8..<12]) + "-" + String(h[12..<16]) + "-" + String(h[16..<20]) + "-" + String(h[20..<32])
    }

    // MARK: Package URLs

    /// `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-12` (purl-spec).
    public static func purl(_ package: ReleaseContents.DebianPackage, distribution: String?) -> String {
        var qualifiers = ["arch=" + percentEncoded(package.architecture)]
        if let distribution { qualifiers.append("distro=" + percentEncoded(distribution)) }
        return "pkg:deb/debian/\(percentEncoded(package.name))@\(percentEncoded(package.version))?" + qualifiers.joined(separator: "&")
    }

    /// `pkg:pypi/NAME@VERSION`, the name normalised as PEP 503 and purl-spec say.
    public static func purl(_ distribution: ReleaseContents.PythonDistribution) -> String {
        "pkg:pypi/\(percentEncoded(normalizedPythonName(distribution.name)))@\(percentEncoded(distribution.version))"
    }

    /// PEP 503: lowercase, runs of `-_.` as one `-`.
    public static func normalizedPythonName(_ name: String) -> String {
        var result = ""
        var pendingDash = false
        for character in name.lowercased() {
            if character == "-" || character == "_" || character == "." {
                pendingDash = true
            } else {
                if pendingDash, !result.isEmpty { result.append("-") }
                pendingDash = false
                result.append(character)
            }
        }
        return result
    }

    static func percentEncoded(_ text: String) -> String {
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_~".utf8)
        var result = ""
        for byte in text.utf8 {
            if allowed.contains(byte) { result.append(Character(Unicode.Scalar(byte))) } else { result += String(format: "%%%02X", byte) }
        }
        return result
    }

    // MARK: Licenses

    /// Debian's short license names (DEP-5) that have an SPDX identifier, by lowercase name.
    static let spdxLicense: [String: String] = [
        "GPL-1": "GPL-1.0-only", "GPL-1+": "GPL-1.0-or-later", "GPL-2": "GPL-2.0-only", "GPL-2+": "GPL-2.0-or-later",
        "GPL-3": "GPL-3.0-only", "GPL-3+": "GPL-3.0-or-later", "LGPL-2": "LGPL-2.0-only", "LGPL-2+": "LGPL-2.0-or-later",
        "LGPL-2.1": "LGPL-2.1-only", "LGPL-2.1+": "LGPL-2.1-or-later", "LGPL-3": "LGPL-3.0-only", "LGPL-3+": "LGPL-3.0-or-later",
        "AGPL-3": "AGPL-3.0-only", "AGPL-3+": "AGPL-3.0-or-later", "GFDL-1.2": "GFDL-1.2-only", "GFDL-1.2+": "GFDL-1.2-or-later",
        "GFDL-1.3": "GFDL-1.3-only", "GFDL-1.3+": "GFDL-1.3-or-later", "Expat": "MIT", "MIT": "MIT", "X11": "X11",
        "BSD-2-clause": "BSD-2-Clause", "BSD-3-clause": "BSD-3-Clause", "BSD-4-clause": "BSD-4-Clause", "ISC": "ISC",
        "Zlib": "Zlib", "zlib": "Zlib", "Apache-2.0": "Apache-2.0", "Apache-2": "Apache-2.0", "MPL-1.1": "MPL-1.1",
        "MPL-2.0": "MPL-2.0", "Artistic": "Artistic-1.0", "Artistic-2.0": "Artistic-2.0", "PSF-2": "PSF-2.0",
        "Python": "Python-2.0", "Python-2.0": "Python-2.0", "CC0-1.0": "CC0-1.0", "CC0": "CC0-1.0", "OpenSSL": "OpenSSL",
        "curl": "curl", "PostgreSQL": "PostgreSQL", "Sleepycat": "Sleepycat", "Unlicense": "Unlicense", "WTFPL": "WTFPL",
        "BSL-1.0": "BSL-1.0", "FSFAP": "FSFAP", "FSFUL": "FSFUL", "FSFULLR": "FSFULLR", "Unicode-DFS-2016": "Unicode-DFS-2016",
        "EPL-1.0": "EPL-1.0", "EPL-2.0": "EPL-2.0", "CC-BY-3.0": "CC-BY-3.0", "CC-BY-4.0": "CC-BY-4.0",
        "CC-BY-SA-3.0": "CC-BY-SA-3.0", "CC-BY-SA-4.0": "CC-BY-SA-4.0", "OFL-1.1": "OFL-1.1", "BSD-1-clause": "BSD-1-Clause",
        "0BSD": "0BSD", "MIT-0": "MIT-0", "GPL-2.0+": "GPL-2.0-or-later", "LGPL-2.0+": "LGPL-2.0-or-later",
        // No version: any version.
        "GPL": "GPL-1.0-or-later", "LGPL": "LGPL-2.0-or-later",
    ].reduce(into: [:]) { $0[$1.key.lowercased()] = $1.value }

    /// An SPDX license expression for a Debian license field: known names joined by `or`/`and`
    /// become SPDX identifiers; anything else becomes one `LicenseRef-` (returned as `ref`).
    static func licenseExpression(_ debian: String) -> (expression: String, ref: (id: String, name: String)?) {
        let tokens = debian.replacingOccurrences(of: ",", with: " ").split(whereSeparator: \.isWhitespace).map(String.init)
        var parts: [String] = []
        var expectLicense = true
        for token in tokens {
            if expectLicense, let id = spdxLicense[token.lowercased()] {
                parts.append(id)
                expectLicense = false
            } else if !expectLicense, ["or", "and"].contains(token.lowercased()) {
                parts.append(token.uppercased())
                expectLicense = true
            } else {
                parts = []
                break
            }
        }
        if !parts.isEmpty, !expectLicense {
            return (parts.count == 1 ? parts[0] : parts.joined(separator: " "), nil)
        }
        let id = "LicenseRef-debian-" + String(debian.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") ? $0 : "-" })
        return (id, (id, debian))
    }

    // MARK: SPDX 2.3

    struct SPDXDocument: Codable {
        struct CreationInfo: Codable { var created: String; var creators: [String] }
        struct Checksum: Codable { var algorithm: String; var checksumValue: String }
        struct ExternalRef: Codable { var referenceCategory: String; var referenceType: String; var referenceLocator: String }
        struct Package: Codable {
            var SPDXID: String
            var name: String
            var versionInfo: String?
            var downloadLocation = "NOASSERTION"
            var filesAnalyzed = false
            var licenseConcluded = "NOASSERTION"
            var licenseDeclared = "NOASSERTION"
            var copyrightText = "NOASSERTION"
            var supplier: String?
            var sourceInfo: String?
            var primaryPackagePurpose: String?
            var checksums: [Checksum]?
            var externalRefs: [ExternalRef]?
        }
        struct File: Codable {
            var SPDXID: String
            var fileName: String
            var checksums: [Checksum]
            var licenseConcluded = "NOASSERTION"
            var copyrightText = "NOASSERTION"
        }
        struct Relationship: Codable { var spdxElementId: String; var relationshipType: String; var relatedSpdxElement: String }
        struct ExtractedLicense: Codable { var licenseId: String; var name: String; var extractedText: String }

        var spdxVersion = "SPDX-2.3"
        var dataLicense = "CC0-1.0"
        var SPDXID = "SPDXRef-DOCUMENT"
        var name: String
        var documentNamespace: String
        var creationInfo: CreationInfo
        var documentDescribes: [String]
        var packages: [Package]
        var files: [File]?
        var relationships: [Relationship]
        var hasExtractedLicensingInfos: [ExtractedLicense]?
    }

    static func spdxID(_ kind: String, _ index: Int, _ name: String) -> String {
        "SPDXRef-\(kind)-\(index)-" + String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") ? $0 : "-" })
    }

    static func spdx(_ contents: ReleaseContents, subject: Subject) throws -> Data {
        let root = "SPDXRef-Release"
        var packages = [SPDXDocument.Package(
            SPDXID: root, name: subject.name, versionInfo: subject.version, supplier: nil, sourceInfo: nil,
            primaryPackagePurpose: "CONTAINER", checksums: [.init(algorithm: "SHA256", checksumValue: subject.archiveSHA256)], externalRefs: nil)]
        var relationships = [SPDXDocument.Relationship(spdxElementId: "SPDXRef-DOCUMENT", relationshipType: "DESCRIBES", relatedSpdxElement: root)]
        var extracted: [String: String] = [:]
        for (index, package) in contents.debian.enumerated() {
            let id = spdxID("deb", index, package.name)
            var declared = "NOASSERTION"
            if let license = package.license {
                let (expression, ref) = licenseExpression(license)
                declared = expression
                if let ref { extracted[ref.id] = ref.name }
            }
            var source = "built package from: \(package.source) \(package.sourceVersion)"
            if package.source == package.name, package.sourceVersion == package.version { source = "built package from its own source" }
            packages.append(SPDXDocument.Package(
                SPDXID: id, name: package.name, versionInfo: package.version, licenseDeclared: declared, supplier: nil,
                sourceInfo: source, primaryPackagePurpose: "LIBRARY", checksums: nil,
                externalRefs: [.init(referenceCategory: "PACKAGE-MANAGER", referenceType: "purl",
                                     referenceLocator: purl(package, distribution: contents.distribution))]))
            relationships.append(.init(spdxElementId: root, relationshipType: "CONTAINS", relatedSpdxElement: id))
        }
        for (index, distribution) in contents.python.enumerated() {
            let id = spdxID("pypi", index, distribution.name)
            packages.append(SPDXDocument.Package(
                SPDXID: id, name: distribution.name, versionInfo: distribution.version, supplier: nil,
                sourceInfo: "installed at /\(distribution.location)", primaryPackagePurpose: "LIBRARY", checksums: nil,
                externalRefs: [.init(referenceCategory: "PACKAGE-MANAGER", referenceType: "purl", referenceLocator: purl(distribution))]))
            relationships.append(.init(spdxElementId: root, relationshipType: "CONTAINS", relatedSpdxElement: id))
        }
        var files: [SPDXDocument.File] = []
        for (index, file) in contents.files.enumerated() {
            let id = spdxID("File", index, (file.path as NSString).lastPathComponent)
            files.append(.init(SPDXID: id, fileName: "./" + file.path,
                               checksums: [.init(algorithm: "SHA1", checksumValue: file.sha1), .init(algorithm: "SHA256", checksumValue: file.sha256)]))
            // A package whose files were not analysed may not CONTAIN files (SPDX 2.3
            // §7.8): the document describes them beside the release.
            relationships.append(.init(spdxElementId: "SPDXRef-DOCUMENT", relationshipType: "DESCRIBES", relatedSpdxElement: id))
        }
        let document = SPDXDocument(
            name: "\(subject.name)@\(subject.version)",
            documentNamespace: "https://spdx.org/spdxdocs/slipway-\(subject.name)-\(subject.version)-\(uuid(subject, "spdx"))",
            creationInfo: .init(created: timestamp(subject.created), creators: ["Tool: slipway-\(SlipwayVersion.string)"]),
            documentDescribes: [root] + files.map(\.SPDXID), packages: packages, files: files.isEmpty ? nil : files, relationships: relationships,
            hasExtractedLicensingInfos: extracted.isEmpty ? nil : extracted.sorted { $0.key < $1.key }.map {
                .init(licenseId: $0.key, name: $0.value,
                      extractedText: "The package's machine-readable debian/copyright names this license \"\($0.value)\"; see /usr/share/doc/<package>/copyright.")
            })
        return try encode(document)
    }

    // MARK: CycloneDX 1.5

    struct CycloneDXDocument: Codable {
        struct Hash: Codable { var alg: String; var content: String }
        struct License: Codable {
            struct Named: Codable { var name: String }
            var license: Named?
            var expression: String?
        }
        struct Property: Codable { var name: String; var value: String }
        struct Component: Codable {
            var type: String
            var bomRef: String
            var name: String
            var version: String?
            var purl: String?
            var hashes: [Hash]?
            var licenses: [License]?
            var properties: [Property]?

            enum CodingKeys: String, CodingKey {
                case type, bomRef = "bom-ref", name, version, purl, hashes, licenses, properties
            }
        }
        struct Tools: Codable { var components: [Component] }
        struct Metadata: Codable { var timestamp: String; var tools: Tools; var component: Component }
        struct Dependency: Codable { var ref: String; var dependsOn: [String] }

        var bomFormat = "CycloneDX"
        var specVersion = "1.5"
        var serialNumber: String
        var version = 1
        var metadata: Metadata
        var components: [Component]
        var dependencies: [Dependency]
    }

    static func cycloneDX(_ contents: ReleaseContents, subject: Subject) throws -> Data {
        typealias Component = CycloneDXDocument.Component
        let root = "release:\(subject.name)@\(subject.version)"
        var components: [Component] = []
        for package in contents.debian {
            let purl = purl(package, distribution: contents.distribution)
            var licenses: [CycloneDXDocument.License]?
            if let license = package.license {
                let (expression, ref) = licenseExpression(license)
                licenses = [ref == nil ? .init(license: nil, expression: expression) : .init(license: .init(name: license), expression: nil)]
            }
            components.append(Component(type: "library", bomRef: purl, name: package.name, version: package.version, purl: purl,
                                        hashes: nil, licenses: licenses,
                                        properties: [.init(name: "slipway:deb:source", value: "\(package.source) \(package.sourceVersion)")]))
        }
        for distribution in contents.python {
            let purl = purl(distribution)
            components.append(Component(type: "library", bomRef: purl + "#/" + distribution.location, name: distribution.name,
                                        version: distribution.version, purl: purl, hashes: nil, licenses: nil,
                                        properties: [.init(name: "slipway:python:location", value: "/" + distribution.location)]))
        }
        for file in contents.files {
            components.append(Component(type: "file", bomRef: "file:/" + file.path, name: "/" + file.path, version: nil, purl: nil,
                                        hashes: [.init(alg: "SHA-1", content: file.sha1), .init(alg: "SHA-256", content: file.sha256)],
                                        licenses: nil, properties: nil))
        }
        let document = CycloneDXDocument(
            serialNumber: "urn:uuid:" + uuid(subject, "cyclonedx"),
            metadata: .init(
                timestamp: timestamp(subject.created),
                tools: .init(components: [Component(type: "application", bomRef: "tool:slipway", name: "slipway", version: SlipwayVersion.string)]),
                component: Component(type: "container", bomRef: root, name: subject.name, version: subject.version,
                                     hashes: [.init(alg: "SHA-256", content: subject.archiveSHA256)])),
            components: components,
            dependencies: [.init(ref: root, dependsOn: components.map(\.bomRef))])
        return try encode(document)
    }

    // MARK: Reading back

    /// The packages an SPDX document written by slipway lists (for `diff --packages`, plans,
    /// `status --packages`): Debian packages and Python distributions, told apart by purl.
    public static func packages(spdx data: Data, source: String) throws -> [PackageRecord] {
        let document: SPDXDocument
        do {
            document = try JSONDecoder().decode(SPDXDocument.self, from: data)
        } catch {
            throw ReleaseError.manifestMalformed(path: source, detail: "not an SPDX document: \(ReleaseManifest.describe(error))")
        }
        return document.packages.compactMap { package in
            guard let locator = package.externalRefs?.first(where: { $0.referenceType == "purl" })?.referenceLocator,
                  let record = PackageRecord(purl: locator, name: package.name, version: package.versionInfo ?? "") else { return nil }
            return record
        }
    }
}

/// One package of an SBOM, as a package diff compares them.
public struct PackageRecord: Codable, Equatable, Sendable {
    public enum Ecosystem: String, Codable, Sendable { case deb, pypi }
    public var ecosystem: Ecosystem
    public var name: String
    public var version: String
    /// The Debian architecture; nil for Python.
    public var architecture: String?

    public init(ecosystem: Ecosystem, name: String, version: String, architecture: String? = nil) {
        self.ecosystem = ecosystem
        self.name = name
        self.version = version
        self.architecture = architecture
    }

    init?(purl: String, name: String, version: String) {
        if purl.hasPrefix("pkg:deb/") {
            var architecture: String?
            if let query = purl.split(separator: "?", maxSplits: 1).dropFirst().first {
                for pair in query.split(separator: "&") where pair.hasPrefix("arch=") {
                    architecture = String(pair.dropFirst(5)).removingPercentEncoding
                }
            }
            self.init(ecosystem: .deb, name: name, version: version, architecture: architecture)
        } else if purl.hasPrefix("pkg:pypi/") {
            self.init(ecosystem: .pypi, name: name, version: version)
        } else {
            return nil
        }
    }

    /// What a package is matched by across versions: ecosystem, name (PEP 503 for Python)
    /// and architecture.
    var key: String {
        switch ecosystem {
        case .deb: "deb:\(name):\(architecture ?? "")"
        case .pypi: "pypi:\(SBOM.normalizedPythonName(name))"
        }
    }

    /// `name` for amd64/all Debian packages and Python, `name:arch` for a foreign one.
    public var displayName: String {
        switch ecosystem {
        case .deb: (architecture == nil || architecture == "all" || architecture == "amd64") ? name : "\(name):\(architecture!)"
        case .pypi: "\(name) (pypi)"
        }
    }
}

/// The package changes between two SBOMs (`diff --packages`, deploy's plan and summary).
public struct PackageChanges: Codable, Equatable, Sendable {
    public struct Upgrade: Codable, Equatable, Sendable {
        public var ecosystem: PackageRecord.Ecosystem
        public var name: String
        public var architecture: String?
        public var from: String
        public var to: String
    }

    public var added: [PackageRecord]
    public var removed: [PackageRecord]
    /// Version changes, also downgrades: "upgraded" is what operators say.
    public var upgraded: [Upgrade]

    public var isEmpty: Bool { added.isEmpty && removed.isEmpty && upgraded.isEmpty }

    public init(old: [PackageRecord], new: [PackageRecord]) {
        let before = Dictionary(old.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        let after = Dictionary(new.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        let order: (PackageRecord, PackageRecord) -> Bool = { ($0.ecosystem.rawValue, $0.name) < ($1.ecosystem.rawValue, $1.name) }
        added = after.values.filter { before[$0.key] == nil }.sorted(by: order)
        removed = before.values.filter { after[$0.key] == nil }.sorted(by: order)
        upgraded = after.values.compactMap { package -> (PackageRecord, String)? in
            guard let old = before[package.key], old.version != package.version else { return nil }
            return (package, old.version)
        }.sorted { order($0.0, $1.0) }.map {
            Upgrade(ecosystem: $0.0.ecosystem, name: $0.0.name, architecture: $0.0.architecture, from: $0.1, to: $0.0.version)
        }
    }

    /// One line: `openssl 3.0.11 → 3.0.13, 2 added, 1 removed` (at most `limit` upgrades by name).
    public func summary(limit: Int = 3) -> String {
        if isEmpty { return "no package changes" }
        var parts = upgraded.prefix(limit).map { "\(displayName($0)) \($0.from) → \($0.to)" }
        if upgraded.count > limit { parts.append("\(upgraded.count - limit) more upgraded") }
        if !added.isEmpty { parts.append("\(added.count) added") }
        if !removed.isEmpty { parts.append("\(removed.count) removed") }
        return parts.joined(separator: ", ")
    }

    func displayName(_ upgrade: Upgrade) -> String {
        PackageRecord(ecosystem: upgrade.ecosystem, name: upgrade.name, version: upgrade.to, architecture: upgrade.architecture).displayName
    }

    /// One line per change, for `diff --packages`.
    public var textLines: [String] {
        if isEmpty { return ["no package changes"] }
        return added.map { "+ \($0.displayName) \($0.version)" }
            + removed.map { "- \($0.displayName) \($0.version)" }
            + upgraded.map { "~ \(displayName($0)) \($0.from) → \($0.to)" }
            + ["\(added.count) added, \(removed.count) removed, \(upgraded.count) upgraded"]
    }
}

extension StoredRelease {
    /// The packages its SPDX SBOM lists; `attachmentMissing` when it has none.
    public func packages() throws -> [PackageRecord] {
        let file = SBOM.Format.spdx.fileName
        guard let data = try attachment(file) else { throw ReleaseError.attachmentMissing(release: reference.description, file: file) }
        return try SBOM.packages(spdx: data, source: directory + "/" + file)
    }
}
