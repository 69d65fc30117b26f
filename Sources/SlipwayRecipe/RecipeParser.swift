import Foundation
import TOMLKit
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

extension Recipe {
    /// Reads and validates the recipe at `path`; every problem is a `RecipeError` naming
    /// the file and line. `variables` override `[vars]` values (`slipway build --var`); each
    /// must be declared there.
    public static func load(path: String, variables: [String: String] = [:]) throws -> Recipe {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            let reason = access(path, F_OK) == 0 ? "permission denied or not a file" : "no such file"
            throw RecipeError.unreadable(file: path, detail: reason)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw RecipeError.unreadable(file: path, detail: "it is not UTF-8 text")
        }
        let absolute = URL(fileURLWithPath: path).standardizedFileURL
        return try parse(text: text, file: path, directory: absolute.deletingLastPathComponent().path, variables: variables)
    }

    /// Parses recipe text; `file` is the name used in messages and `directory` the one
    /// relative host paths are resolved against.
    public static func parse(text: String, file: String, directory: String, variables: [String: String] = [:]) throws -> Recipe {
        let root = try TOMLTableReader.document(text: text, file: file)
        var vars = try root.stringTable("vars") ?? [:]
        for (name, value) in variables.sorted(by: { $0.key < $1.key }) {
            guard vars[name] != nil else {
                throw RecipeError.invalidValue(
                    file: file, line: nil, key: "--var \(name)", value: "\"\(value)\"",
                    reason: vars.isEmpty ? "the recipe has no [vars]" : "the recipe's [vars] has no '\(name)' (it has \(vars.keys.sorted().joined(separator: ", ")))")
            }
            vars[name] = value
        }
        return try RecipeReader(file: file, directory: directory, vars: vars).read(root)
    }
}

/// Turns the validated tables into a `Recipe`.
private struct RecipeReader {
    let file: String
    let directory: String
    /// `[vars]` with the build's overrides; `{{name}}` in host paths expands to them.
    let vars: [String: String]

    func hostPath(_ path: String) -> String {
        path.hasPrefix("/") ? path : URL(fileURLWithPath: directory).appendingPathComponent(path).standardizedFileURL.path
    }

    /// A host path that must exist, after `{{name}}` expansion from `[vars]` (so a path can
    /// be given at build time: `--var name=PATH`).
    func existingHostPath(_ table: TOMLTableReader, _ key: String, _ path: String) throws -> String {
        let expanded = try RecipeTemplate.expand(path, variables: vars) { name in
            throw table.invalid(key, "\"\(path)\"", "it uses {{\(name)}}, which [vars] does not define")
        }
        let resolved = hostPath(expanded)
        guard access(resolved, F_OK) == 0 else {
            guard expanded != path else {
                throw RecipeError.sourceNotFound(file: file, line: table.line(key), key: table.keyPath(key), path: resolved)
            }
            let names = vars.keys.sorted().filter { path.contains("{{\($0)}}") || path.contains("{{ \($0) }}") }
            throw table.invalid(key, "\"\(path)\"", "\(resolved) does not exist; give another path at build time with "
                                + names.map { "--var \($0)=PATH" }.joined(separator: " "))
        }
        return resolved
    }

    /// A path inside the tree: absolute, without `..`.
    func treePath(_ table: TOMLTableReader, _ key: String, _ path: String) throws -> String {
        guard path.hasPrefix("/") else { throw table.invalid(key, "\"\(path)\"", "paths inside the tree are absolute, like /opt/app") }
        guard !path.split(separator: "/").contains("..") else { throw table.invalid(key, "\"\(path)\"", "it must not contain '..'") }
        return path
    }

    func read(_ root: TOMLTableReader) throws -> Recipe {
        guard let releaseTable = try root.table("release") else {
            throw root.missing("release", "add a [release] table with at least name = \"…\"")
        }
        let release = try readRelease(releaseTable)
        guard let baseTable = try root.table("base") else {
            throw root.missing("base", "add a [base] table with type = \"debian\", \"tarball\" or \"scratch\"")
        }
        let base = try readBase(baseTable)
        let groups = try root.tables("groups").map(readGroup)
        let users = try root.tables("users").map(readUser)
        let packages = try root.stringArray("packages") ?? []
        let files = try root.tables("files").map(readFile)
        let app = try root.table("app").map(readApp)
        let venv = try root.table("venv").map(readVenv)
        let run = try root.tables("run").enumerated().map { try readRun($1, index: $0) }
        let cleanup = try root.table("cleanup").map(readCleanup) ?? CleanupSpec(enabled: true, keep: [], remove: [], pycache: false)
        let service = try root.table("service").map(readService)
        try root.finish()
        for name in users.map(\.name) + groups.map(\.name) where !Self.isValidAccountName(name) {
            throw RecipeError.invalidValue(file: file, line: nil, key: "users/groups name", value: "\"\(name)\"", reason: "use lower-case letters, digits, '-' and '_', starting with a letter or '_'")
        }
        return Recipe(file: file, directory: directory, release: release, base: base, groups: groups, users: users,
                      packages: packages, files: files, app: app, venv: venv, run: run, cleanup: cleanup,
                      service: service, vars: vars)
    }

    static func isValidAccountName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.utf8.count <= 32,
              ("a"..."z").contains(first) || first == "_" else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" }
    }

    func readRelease(_ table: TOMLTableReader) throws -> ReleaseSection {
        let name = try table.requiredString("name", hint: "name the app, like name = \"web\"")
        do { try ReleaseStore.validate(name: name) } catch { throw table.invalid("name", "\"\(name)\"", Output.message(for: error)) }
        let version = try table.string("version")
        if let version {
            do { try ReleaseStore.validate(version: version) } catch { throw table.invalid("version", "\"\(version)\"", Output.message(for: error)) }
        }
        let epoch = try table.int("source_date_epoch")
        if let epoch, epoch < 0 { throw table.invalid("source_date_epoch", String(epoch), "it is seconds since 1970 and cannot be negative") }
        var compression = ArchiveCompression.xz
        if let text = try table.string("compression") {
            guard let parsed = ArchiveCompression(rawValue: text) else {
                throw table.invalid("compression", "\"\(text)\"", "use \"xz\", \"zstd\" or \"none\"")
            }
            compression = parsed
        }
        try table.finish()
        return ReleaseSection(name: name, version: version, sourceDateEpoch: epoch.map(Int64.init), compression: compression)
    }

    func readBase(_ table: TOMLTableReader) throws -> BaseSpec {
        let type = try table.requiredString("type", hint: "say type = \"debian\", \"tarball\" or \"scratch\"")
        let base: BaseSpec
        switch type {
        case "debian":
            let suite = try table.requiredString("suite", hint: "name the Debian suite, like suite = \"bookworm\"")
            let variant = try table.string("variant") ?? "minbase"
            let allowedVariants = ["extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important", "debootstrap", "standard"]
            guard allowedVariants.contains(variant) else {
                throw table.invalid("variant", "\"\(variant)\"", "use one of \(allowedVariants.joined(separator: ", "))")
            }
            base = .debian(DebianBase(
                suite: suite, variant: variant,
                include: try table.stringArray("include") ?? [],
                exclude: try table.stringArray("exclude") ?? [],
                components: try table.stringArray("components") ?? [],
                architecture: try table.string("architecture"),
                mirror: (try table.stringOrArray("mirror") ?? []).map { entry in
                    // A relative path to a sources file is the recipe's; URLs and one-line
                    // sources pass through.
                    entry.contains("://") || entry.contains(" ") || entry.hasPrefix("/") ? entry : hostPath(entry)
                }))
        case "tarball":
            let path = try table.requiredString("path", hint: "give the rootfs tarball, like path = \"rootfs.tar.xz\"")
            base = .tarball(path: try existingHostPath(table, "path", path))
        case "scratch":
            base = .scratch
        default:
            throw table.invalid("type", "\"\(type)\"", "use \"debian\", \"tarball\" or \"scratch\"")
        }
        try table.finish()
        return base
    }

    func readGroup(_ table: TOMLTableReader) throws -> GroupSpec {
        let group = GroupSpec(name: try table.requiredString("name", hint: "name the group"), gid: try table.int("gid"))
        try table.finish()
        return group
    }

    func readUser(_ table: TOMLTableReader) throws -> UserSpec {
        let name = try table.requiredString("name", hint: "name the user")
        let uid = try table.int("uid")
        var group: String?
        if let gid = try table.int("gid") { group = String(gid) }
        if let named = try table.string("group") {
            if group != nil { throw table.invalid("group", "\"\(named)\"", "give gid or group, not both") }
            group = named
        }
        let home = try table.string("home").map { try treePath(table, "home", $0) }
        let user = UserSpec(
            name: name, uid: uid, group: group, home: home ?? "/nonexistent",
            shell: try table.string("shell") ?? "/usr/sbin/nologin",
            groups: try table.stringArray("groups") ?? [],
            createHome: try table.bool("create_home") ?? (home != nil))
        try table.finish()
        return user
    }

    func readFile(_ table: TOMLTableReader) throws -> FileSpec {
        let source = try table.requiredString("source", hint: "give the host file or directory to copy (relative to the recipe)")
        let dest = try table.requiredString("dest", hint: "give the path inside the tree, like dest = \"/etc/app.conf\"")
        let spec = FileSpec(
            source: try existingHostPath(table, "source", source), dest: try treePath(table, "dest", dest),
            mode: try table.mode("mode"), owner: try table.string("owner"), template: try table.bool("template") ?? false,
            line: table.line)
        try table.finish()
        return spec
    }

    func readApp(_ table: TOMLTableReader) throws -> AppSpec {
        let source = try table.requiredString("source", hint: "give the binary or directory to install (relative to the recipe)")
        let dest = try table.requiredString("dest", hint: "give where it goes in the tree, like dest = \"/usr/local/bin/app\"")
        let spec = AppSpec(source: try existingHostPath(table, "source", source), dest: try treePath(table, "dest", dest),
                           mode: try table.mode("mode"), owner: try table.string("owner"), line: table.line)
        try table.finish()
        return spec
    }

    func readVenv(_ table: TOMLTableReader) throws -> VenvSpec {
        let path = try treePath(table, "path", try table.string("path") ?? "/opt/app/venv")
        let requirements = try table.string("requirements").map { try existingHostPath(table, "requirements", $0) }
        let wheelDir = try table.string("wheel_dir").map { try existingHostPath(table, "wheel_dir", $0) }
        let spec = VenvSpec(
            path: path, python: try table.string("python") ?? "/usr/bin/python3", requirements: requirements,
            packages: try table.stringArray("packages") ?? [], pipOptions: try table.stringArray("pip_options") ?? [],
            wheelDir: wheelDir, systemSitePackages: try table.bool("system_site_packages") ?? false)
        try table.finish()
        return spec
    }

    func readRun(_ table: TOMLTableReader, index: Int) throws -> RunStep {
        let command = try table.requiredString("command", hint: "give a shell command line, run with /bin/sh -c inside the tree")
        let shell = try table.stringArray("shell") ?? ["/bin/sh"]
        if shell.isEmpty { throw table.invalid("shell", "[]", "give the shell's argv, like [\"/bin/sh\"]") }
        let step = RunStep(name: try table.string("name") ?? "run[\(index)]", command: command, shell: shell,
                           environment: try table.stringTable("environment") ?? [:], line: table.line)
        try table.finish()
        return step
    }

    func readCleanup(_ table: TOMLTableReader) throws -> CleanupSpec {
        let keep = try table.stringArray("keep") ?? []
        for item in keep where !CleanupSpec.items.contains(item) {
            throw table.invalid("keep", "\"\(item)\"", "the items are \(CleanupSpec.items.joined(separator: ", "))")
        }
        let remove = try table.stringArray("remove") ?? []
        for glob in remove where !glob.hasPrefix("/") || glob.split(separator: "/").contains("..") {
            throw table.invalid("remove", "\"\(glob)\"", "globs are absolute tree paths without '..', like /usr/share/doc/*")
        }
        let spec = CleanupSpec(enabled: try table.bool("enabled") ?? true, keep: keep, remove: remove,
                               pycache: try table.bool("pycache") ?? false)
        try table.finish()
        return spec
    }

    func readService(_ table: TOMLTableReader) throws -> ServiceSpec {
        var health: HealthCheck?
        if let healthTable = try table.table("health") {
            let command = try healthTable.string("command")
            let url = try healthTable.string("url")
            guard (command == nil) != (url == nil) else {
                throw healthTable.missing("command", "give either command = \"…\" or url = \"http://…\" (one of them)")
            }
            if let url, !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
                throw healthTable.invalid("url", "\"\(url)\"", "a health URL starts with http:// or https://")
            }
            let defaults = HealthCheck()
            health = HealthCheck(
                command: command, url: url,
                timeoutSeconds: try healthTable.double("timeout") ?? defaults.timeoutSeconds,
                retries: try healthTable.int("retries") ?? defaults.retries,
                intervalSeconds: try healthTable.double("interval") ?? defaults.intervalSeconds)
            try healthTable.finish()
        }
        let shared = try table.stringArray("shared_dirs")
        for path in shared ?? [] {
            // The node binds the app's shared/<path> over each and refuses anything else there: fail
            // here, at build time, not at the first apply.
            let trimmed = path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            let parts = trimmed.isEmpty ? [] : trimmed.split(separator: "/", omittingEmptySubsequences: false)
            if parts.contains("..") {
                throw table.invalid("shared_dirs", "\"\(path)\"", "it must not contain '..': a shared directory is a tree path like /var/lib/app")
            }
            if parts.isEmpty || parts.contains(where: { $0.isEmpty || $0 == "." }) {
                throw table.invalid("shared_dirs", "\"\(path)\"", "give a directory inside the tree, like /var/lib/app (not the tree's root, no '.' or empty components)")
            }
        }
        let command = try table.string("command")
        let start = try table.string("start"), reload = try table.string("reload"), stop = try table.string("stop")
        if command != nil, let (key, _) = [("start", start), ("reload", reload), ("stop", stop)].first(where: { $0.1 != nil }) {
            throw table.invalid(key, "\"\(start ?? reload ?? stop ?? "")\"",
                                "command runs the app itself (started beside the old version, stopped with stop_signal); drop \(key)")
        }
        let stopSignal = try table.string("stop_signal")
        if let stopSignal, ServiceSpec.stopSignals[stopSignal] == nil {
            throw table.invalid("stop_signal", "\"\(stopSignal)\"",
                                "one of \(ServiceSpec.stopSignals.keys.sorted().joined(separator: ", ")) (without SIG)")
        }
        let port = try table.int("port")
        if let port, !(1...65535).contains(port) { throw table.invalid("port", String(port), "a TCP port, 1 to 65535") }
        let stopTimeout = try table.double("stop_timeout")
        if let stopTimeout, !(stopTimeout > 0) { throw table.invalid("stop_timeout", String(stopTimeout), "a number of seconds above 0") }
        let spec = ServiceSpec(
            start: start, reload: reload, stop: stop,
            preActivate: try table.string("pre_activate"), health: health,
            sharedDirectories: shared.map { $0.map { $0.hasPrefix("/") ? String($0.drop(while: { $0 == "/" })) : $0 } },
            command: command, user: try table.string("user"), port: port, stopSignal: stopSignal, stopTimeout: stopTimeout)
        try table.finish()
        return spec
    }
}
