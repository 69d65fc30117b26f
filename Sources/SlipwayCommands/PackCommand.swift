import ArgumentParser
import SlipwaySystem
import SlipwayArchive
import SlipwayRelease
import SlipwayRecipe
import SlipwayBuild
import SlipwayExport
import SlipwayNodeProtocol
import SlipwayNode
import SlipwayFleet

/// `slipway pack DIR --name NAME --version V`: a tree into a new release in the store.
struct Pack: SlipwayCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Pack a directory tree into a release in the store.",
        discussion: "With SOURCE_DATE_EPOCH set, mtimes are clamped to it and it is the release's creation time."
    )

    @Argument(help: ArgumentHelp("The root of the tree to pack.", valueName: "DIR"))
    var dir: String

    @Option(help: "The app name.")
    var name: String

    @Option(help: "The release version (a new one: releases are immutable).")
    var version: String

    @Option(help: "xz (default), zstd or none.")
    var compression: ArchiveCompression = .xz

    @Option(help: "xz preset 0-9 (default 6) or zstd level 1-19 (default 9).")
    var level: Int?

    @Option(help: "Compression threads (default: one per core); the archive's bytes do not depend on it.")
    var threads: Int = 0

    @Option(name: .customLong("sign-key"), help: ArgumentHelp("Sign the manifest with this private key.", valueName: "FILE"))
    var signKey: String?

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if threads < 0 { throw ValidationError("--threads is 0 (one per core) or more.") }
        do {
            try ReleaseStore.validate(name: name)
            try ReleaseStore.validate(version: version)
        } catch {
            throw ValidationError(Output.message(for: error))
        }
        if let level {
            switch compression {
            case .xz where !(0...9).contains(level): throw ValidationError("--level for xz is 0 to 9.")
            case .zstd where !(1...19).contains(level): throw ValidationError("--level for zstd is 1 to 19.")
            case .none: throw ValidationError("--level needs --compression xz or zstd.")
            default: break
            }
        }
    }

    func run(_ context: CommandContext) throws {
        let output = context.output
        let (created, sourceDateEpoch) = try ReleaseManifest.creationTime()
        // Load the key first: a bad key must not cost a whole pack.
        let key = try signKey.map { try ReleaseSigning.loadSigningKey(path: $0) }
        let store = storeOptions.releaseStore
        let progress = output.progress()
        let configuration = ArchiveWriterConfiguration(
            compression: compression, level: level, threads: threads, sourceDateEpoch: sourceDateEpoch, progress: progress)
        output.verbose("packing \(dir) as \(name)@\(version) into store \(store.root)")
        let result: ReleaseStore.AddResult
        do {
            result = try store.add(tree: dir, name: name, version: version, created: created,
                                   configuration: configuration, signingKey: key, attachments: { packed in
                // A tree with a dpkg database or Python distributions gets an SBOM (docs/sbom.md).
                let contents = try ReleaseContents.read(tree: dir, entries: packed.entries)
                guard !contents.debian.isEmpty || !contents.python.isEmpty else { return [] }
                let subject = SBOM.Subject(name: name, version: version, created: created, archiveSHA256: packed.archiveSHA256)
                return try SBOM.attachments(contents, subject: subject)
            })
        } catch {
            progress.closeLine()
            throw error
        }
        let release = result.release
        switch result.outcome {
        case .added:
            let signed = key.map { ", signed with key \($0.keyID)" } ?? ", unsigned"
            output.result([
                "\(release.reference) stored in \(release.directory)",
                "archive: \(ByteCount.format(release.manifest.archive.size)), sha256 \(release.manifest.archive.sha256)\(signed)",
            ])
        case .alreadyPresent:
            output.result("\(release.reference) is already in the store with the same archive (sha256 \(release.manifest.archive.sha256)); nothing changed")
        }
    }
}
