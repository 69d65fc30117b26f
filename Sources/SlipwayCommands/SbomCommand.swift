import ArgumentParser
import Foundation
import SlipwaySystem
import SlipwayRelease

/// `slipway sbom NAME@V [--format spdx|cyclonedx] [--provenance]`: a release's SBOM or
/// provenance, as stored and checked against the manifest's digest (docs/sbom.md).
struct Sbom: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "sbom",
        abstract: "Print a release's SBOM (SPDX 2.3 or CycloneDX 1.5 JSON) or its signed provenance.",
        discussion: "The bytes are checked against the digest the manifest records; with --trust the manifest's signature (and the provenance's) is checked too."
    )

    enum FormatName: String, ExpressibleByArgument, CaseIterable {
        case spdx, cyclonedx
        var format: SBOM.Format { self == .spdx ? .spdx : .cyclonedx }
    }

    @Argument(help: ArgumentHelp("The release.", valueName: "NAME@V")) var release: String
    @Option(help: "spdx or cyclonedx.") var format: FormatName = .spdx
    @Flag(help: "Print the provenance (a DSSE envelope of an in-toto SLSA statement) instead.") var provenance = false
    @Option(help: ArgumentHelp("Check the manifest's signature (and the provenance's) against this public key.", valueName: "FILE.pub"))
    var trust: String?
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws { _ = try parseReference(release) }

    func run(_ context: CommandContext) throws {
        let stored = try storeOptions.releaseStore.release(try parseReference(release))
        if let trust {
            let key = try ReleaseSigning.loadPublicKey(path: trust)
            guard let file = stored.signatureFile else { throw ReleaseError.signatureMissing(path: stored.signaturePath, keyID: key.keyID) }
            try ReleaseSigning.verify(stored.manifestBytes, signature: try ReleaseSigning.parseSignatureFile(file, source: stored.signaturePath),
                                      publicKey: key, source: stored.signaturePath)
        }
        let file = provenance ? Provenance.fileName : format.format.fileName
        guard let data = try stored.attachment(file) else {
            throw ReleaseError.attachmentMissing(release: stored.reference.description, file: file)
        }
        if provenance, let trust {
            _ = try Provenance.verify(data, publicKey: try ReleaseSigning.loadPublicKey(path: trust), source: stored.directory + "/" + file)
        }
        context.output.emit(1, String(decoding: data, as: UTF8.self))
    }
}
