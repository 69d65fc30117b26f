import ArgumentParser
import Foundation
import SlipwaySystem
import SlipwayRelease
import SlipwayRegistry

/// `slipway publish NAME@V --to oci://HOST[:PORT]/REPO`: the release as an OCI artifact.
struct Publish: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Put a release (and its cached deltas) into an OCI registry as an artifact tagged with its version.")

    @Argument(help: ArgumentHelp("The release.", valueName: "NAME@V")) var reference: String
    @Option(help: ArgumentHelp("The registry and repository: oci://HOST[:PORT]/REPO (HTTPS) or oci+http://HOST[:PORT]/REPO.", valueName: "LOCATION"))
    var to: String
    @Option(help: ArgumentHelp("Another repository of the same registry to mount blobs from instead of uploading them (repeatable).", valueName: "REPO"))
    var mountFrom: [String] = []
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws {
        _ = try parseReference(reference)
        _ = try RegistryLocation(parsing: to)
    }

    func run(_ context: CommandContext) throws {
        let release = try storeOptions.releaseStore.release(try parseReference(reference))
        let report = try withRegistry(to) { client in
            try ReleaseRegistry.publish(release, client: client, mountFrom: mountFrom, log: { context.output.verbose($0) })
        }
        let uploaded = report.blobs.filter { $0.outcome == "uploaded" }.count
        let deltas = report.artifacts.filter { $0.kind == "delta" }.compactMap(\.base)
        try context.output.result(report, text: [
            "\(report.release) → \(report.location):\(report.tag) @ \(report.digest)",
            "blobs: \(uploaded) uploaded (\(ByteCount.format(report.bytesUploaded))), \(report.blobs.count - uploaded) already there or mounted"
                + (deltas.isEmpty ? "" : "; deltas from \(deltas.joined(separator: ", "))"),
        ])
    }
}

/// `slipway pull NAME@V --from oci://…`: a published release back into the local store.
struct Pull: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Bring a release published in an OCI registry into the local store, checked as `verify` checks it, with its published deltas from versions the store has.")

    @Argument(help: ArgumentHelp("The release.", valueName: "NAME@V")) var reference: String
    @Option(help: ArgumentHelp("The registry and repository: oci://HOST[:PORT]/REPO or oci+http://HOST[:PORT]/REPO.", valueName: "LOCATION"))
    var from: String
    @Option(help: ArgumentHelp("The public key the release must be signed with (without it a signature is kept unchecked).", valueName: "FILE.pub"))
    var trust: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var global: GlobalOptions
    var wantsJSON: Bool { json }

    func validate() throws {
        _ = try parseReference(reference)
        _ = try RegistryLocation(parsing: from)
    }

    func run(_ context: CommandContext) throws {
        let reference = try parseReference(reference)
        let key = try trust.map { try ReleaseSigning.loadPublicKey(path: $0) }
        let store = storeOptions.releaseStore
        let report = try withRegistry(from) { client in
            try ReleaseRegistry.pull(reference, client: client, store: store, trust: key, log: { context.output.verbose($0) })
        }
        let signature = switch report.signature {
        case "verified": "signature verified with key \(key?.keyID ?? "")"
        case "unchecked": "signed, signature not checked (no --trust)"
        default: "unsigned"
        }
        try context.output.result(report, text: [
            "\(report.release) ← \(report.location):\(report.tag) @ \(report.digest): "
                + (report.outcome == "added" ? "added (\(ByteCount.format(report.bytesFetched)) fetched)" : "already in the store")
                + "; \(signature)",
        ] + (report.deltasFrom.isEmpty ? [] : ["deltas from \(report.deltasFrom.joined(separator: ", ")) fetched into the store's cache"])
          + report.deltasSkipped.map { "delta from \($0)" })
    }
}

/// Runs `body` with a client for `location` (the controller's credentials).
func withRegistry<T>(_ location: String, _ body: (RegistryClient) throws -> T) throws -> T {
    try RegistryClient.withScratch(location: try RegistryLocation(parsing: location), body)
}
