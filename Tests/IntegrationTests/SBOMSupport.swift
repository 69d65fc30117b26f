import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif
@testable import SlipwayArchive
@testable import SlipwayRelease

// The SBOM's outside checks (docs/sbom.md): SPDX with spdx-tools' own validator, CycloneDX
// with cyclonedx-python-lib's JSON-schema validation (both in the venv scripts/sbom-validators
// makes), the provenance's DSSE signature with Debian's python3-securesystemslib, and the
// packages against dpkg-query on the tree.

enum SBOMValidators {
    /// `$SLIPWAY_SBOM_PYTHON` (scripts/test sets it), else the venv's python when it exists.
    static let python: String? = {
        let candidate = ProcessInfo.processInfo.environment["SLIPWAY_SBOM_PYTHON"]
            ?? URL(fileURLWithPath: recipesDirectory).deletingLastPathComponent().path + "/.build-sbom-tools/bin/python"
        return access(candidate, X_OK) == 0 ? candidate : nil
    }()

    static let spdxScript = """
        import sys
        from spdx_tools.spdx.parser.parse_anything import parse_file
        from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
        document = parse_file(sys.argv[1])
        messages = validate_full_spdx_document(document)
        for message in messages: print(message.validation_message)
        sys.exit(1 if messages else 0)
        """

    static let cycloneDXScript = """
        import sys
        from cyclonedx.schema import SchemaVersion
        from cyclonedx.validation.json import JsonStrictValidator
        error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())
        if error: print(error)
        sys.exit(1 if error else 0)
        """

    /// DSSE (PAE) over the envelope's payload, verified with securesystemslib's Ed25519 key
    /// from the raw public key (hex); prints the statement's predicateType.
    static let dsseScript = """
        import base64, json, sys
        from securesystemslib.signer import SSlibKey, Signature
        envelope = json.load(open(sys.argv[1]))
        payload = base64.b64decode(envelope["payload"])
        kind = envelope["payloadType"].encode()
        pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)
        key = SSlibKey(sys.argv[3], "ed25519", "ed25519", {"public": sys.argv[2]})
        for signature in envelope["signatures"]:
            if signature["keyid"] != sys.argv[3]: continue
            key.verify_signature(Signature(signature["keyid"], base64.b64decode(signature["sig"]).hex()), pae)
            print(json.loads(payload)["predicateType"])
            sys.exit(0)
        sys.exit("no signature by " + sys.argv[3])
        """

    /// Runs `script` with `python` and the arguments; the result's output names the problems.
    static func script(_ python: String, _ script: String, _ arguments: [String]) throws -> CommandResult {
        try runTool(python, ["-c", script] + arguments)
    }

    /// Whether Debian's python3 imports securesystemslib.
    static var hasSecuresystemslib: Bool {
        (try? runTool("/usr/bin/python3", ["-c", "import securesystemslib.signer"]))?.ok ?? false
    }
}

extension Requirement {
    static let sbomValidators = Requirement.that(
        SBOMValidators.python != nil,
        "no venv with spdx-tools and cyclonedx-python-lib — scripts/sbom-validators makes it (scripts/test runs it)")
    static let securesystemslib = Requirement.deferred(
        "Debian's python3 does not import securesystemslib — scripts/setup installs python3-securesystemslib") {
        SBOMValidators.hasSecuresystemslib
    }
}

/// Checks a stored release's SBOM: both formats validate with their own tools, and the
/// Debian packages are exactly those `dpkg-query -W` lists in the tree (name, version,
/// architecture). Returns the packages.
@discardableResult
func checkSBOM(_ release: StoredRelease, tree: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [PackageRecord] {
    let python = try #require(SBOMValidators.python)
    let spdx = try SBOMValidators.script(python, SBOMValidators.spdxScript, [release.directory + "/" + SBOM.Format.spdx.fileName])
    #expect(spdx.ok, "spdx-tools finds the SPDX document invalid: \(spdx.out) \(spdx.err)", sourceLocation: sourceLocation)
    let cdx = try SBOMValidators.script(python, SBOMValidators.cycloneDXScript, [release.directory + "/" + SBOM.Format.cyclonedx.fileName])
    #expect(cdx.ok, "the CycloneDX document does not validate against the 1.5 schema: \(cdx.out) \(cdx.err)", sourceLocation: sourceLocation)

    let packages = try release.packages()
    let listed = try runChecked("dpkg-query", ["--admindir=\(tree)/var/lib/dpkg", "-W", "-f", "${db:Status-Status}\t${Package}\t${Version}\t${Architecture}\n"])
    let expected = listed.out.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
        .filter { $0.first == "installed" }.map { "\($0[1]) \($0[2]) \($0[3])" }.sorted()
    let debian = packages.filter { $0.ecosystem == .deb }.map { "\($0.name) \($0.version) \($0.architecture ?? "")" }.sorted()
    #expect(!expected.isEmpty)
    let onlySBOM = Set(debian).subtracting(expected).sorted()
    let onlyDpkg = Set(expected).subtracting(debian).sorted()
    #expect(debian == expected, "the SBOM lists \(debian.count) Debian packages, dpkg-query \(expected.count): only in the SBOM \(onlySBOM), only in dpkg \(onlyDpkg)",
            sourceLocation: sourceLocation)
    return packages
}

/// Verifies `release`'s provenance with securesystemslib against `publicKey`; checks it
/// names the archive.
func checkProvenance(_ release: StoredRelease, publicKey: ReleasePublicKey, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let path = release.directory + "/" + Provenance.fileName
    let verified = try SBOMValidators.script("/usr/bin/python3", SBOMValidators.dsseScript,
                                          [path, FileHasher.hex(publicKey.rawRepresentation), publicKey.keyID])
    #expect(verified.ok && verified.out.contains("https://slsa.dev/provenance/v1"),
            "securesystemslib does not verify the provenance: \(verified.out) \(verified.err)", sourceLocation: sourceLocation)
    let statement = try Provenance.verify(try Data(contentsOf: URL(fileURLWithPath: path)), publicKey: publicKey, source: path)
    #expect(Provenance.subjects(of: statement).contains { $0.digest?.sha256 == release.manifest.archive.sha256 }, sourceLocation: sourceLocation)
}

/// `run`, under a name the enum's own members do not shadow.
private func runTool(_ tool: String, _ arguments: [String]) throws -> CommandResult { try run(tool, arguments) }
