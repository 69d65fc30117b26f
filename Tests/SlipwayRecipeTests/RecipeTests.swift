import Foundation
import Testing
@testable import SlipwayRecipe
@testable import SlipwayBuild
@testable import SlipwayNode
@testable import SlipwayNodeProtocol
@testable import SlipwayRelease
@testable import SlipwayArchive
@testable import SlipwaySystem
@testable import SlipwayTestSupport

/// Parses `text` as a recipe file in a fresh directory (with `files` created there first).
private func parseRecipe(_ text: String, files: [String: String] = [:]) throws -> Recipe {
    try withTemporaryDirectory { dir in
        for (name, contents) in files {
            let path = dir + "/" + name
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try writeFile(path, contents)
        }
        try writeFile(dir + "/recipe.toml", text)
        return try Recipe.load(path: dir + "/recipe.toml")
    }
}

/// The RecipeError a recipe text raises.
private func recipeError(_ text: String, files: [String: String] = [:]) -> RecipeError? {
    do {
        _ = try parseRecipe(text, files: files)
        return nil
    } catch let error as RecipeError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

@Suite("Recipe")
struct RecipeTests {
    @Test func minimalRecipeGetsDefaults() throws {
        let recipe = try parseRecipe("""
            [release]
            name = "web"

            [base]
            type = "debian"
            suite = "bookworm"
            """)
        #expect(recipe.release.name == "web")
        #expect(recipe.release.version == nil)
        #expect(recipe.release.sourceDateEpoch == nil)
        #expect(recipe.release.compression == .xz)
        guard case let .debian(base) = recipe.base else {
            Issue.record("expected a debian base")
            return
        }
        #expect(base.variant == "minbase")
        #expect(base.mirror.isEmpty)
        #expect(base.include.isEmpty)
        #expect(recipe.cleanup.enabled)
        #expect(recipe.cleanup.cleans("ssh-host-keys"))
        #expect(!recipe.cleanup.cleans("pycache"))
        #expect(recipe.users.isEmpty && recipe.files.isEmpty && recipe.run.isEmpty && recipe.packages.isEmpty)
        #expect(recipe.venv == nil && recipe.app == nil && recipe.service == nil)
    }

    @Test func fullRecipeIsRead() throws {
        let recipe = try parseRecipe("""
            packages = ["curl"]

            [release]
            name = "web"
            version = "1.2.3"
            source_date_epoch = 1700000000
            compression = "zstd"

            [base]
            type = "scratch"

            [[groups]]
            name = "app"
            gid = 901

            [[users]]
            name = "web"
            uid = 990
            group = "app"
            home = "/srv/web"
            groups = ["app"]

            [[files]]
            source = "conf/app.conf"
            dest = "/etc/app.conf"
            mode = "0640"
            owner = "web:app"
            template = true

            [app]
            source = "bin/app"
            dest = "/usr/local/bin/app"
            mode = 0o755

            [venv]
            requirements = "requirements.txt"
            packages = ["gunicorn==23.0.0"]
            pip_options = ["--prefer-binary"]

            [[run]]
            name = "migrate"
            command = "echo hi"
            environment = { A = "1" }

            [cleanup]
            keep = ["logs"]
            remove = ["/usr/share/doc/*"]
            pycache = true

            [service]
            reload = "kill -HUP 1"
            shared_dirs = ["/var/log/app"]

            [service.health]
            url = "http://127.0.0.1:8000/health"
            retries = 7

            [vars]
            port = "8000"
            """, files: ["conf/app.conf": "x", "bin/app": "y", "requirements.txt": "gunicorn\n"])
        #expect(recipe.release.version == "1.2.3")
        #expect(recipe.release.sourceDateEpoch == 1_700_000_000)
        #expect(recipe.release.compression == .zstd)
        #expect(recipe.base == .scratch)
        #expect(recipe.packages == ["curl"])
        #expect(recipe.groups == [GroupSpec(name: "app", gid: 901)])
        #expect(recipe.users.first?.group == "app")
        #expect(recipe.users.first?.shell == "/usr/sbin/nologin")
        #expect(recipe.users.first?.createHome == true)
        #expect(recipe.files.first?.mode == 0o640)
        #expect(recipe.files.first?.template == true)
        #expect(recipe.files.first?.source.hasSuffix("/conf/app.conf") == true)
        #expect(recipe.files.first?.line == 23)
        #expect(recipe.app?.mode == 0o755)
        #expect(recipe.venv?.path == "/opt/app/venv")
        #expect(recipe.venv?.python == "/usr/bin/python3")
        #expect(recipe.run.first?.shell == ["/bin/sh"])
        #expect(recipe.run.first?.environment == ["A": "1"])
        #expect(recipe.run.first?.line == 40)
        #expect(!recipe.cleanup.cleans("logs"))
        #expect(recipe.cleanup.cleans("pycache"))
        #expect(recipe.service?.health?.retries == 7)
        #expect(recipe.service?.health?.timeoutSeconds == 10)
        #expect(recipe.service?.sharedDirectories == ["var/log/app"])
        #expect(recipe.vars == ["port": "8000"])
    }

    @Test func syntaxErrorNamesFileLineAndColumn() throws {
        let error = try #require(recipeError("""
            [release]
            name = "web"
            version = = "1"
            """))
        guard case let .syntax(file, line, _, _) = error else {
            Issue.record("expected a syntax error, got \(error)")
            return
        }
        #expect(file.hasSuffix("recipe.toml"))
        #expect(line == 3)
        #expect(error.description.contains("recipe.toml:3:"))
    }

    @Test func unknownKeyNamesFileLineAndKey() throws {
        let error = try #require(recipeError("""
            [release]
            name = "web"

            [base]
            type = "debian"
            suite = "bookworm"
            varient = "minbase"
            """))
        #expect(error.description.contains("recipe.toml:7"), "\(error)")
        #expect(error.description.contains("'base.varient'"))
        #expect(error.description.contains("variant"), "the message lists the allowed keys")
    }

    @Test func unknownKeyInArrayOfTables() throws {
        let error = try #require(recipeError("""
            [release]
            name = "web"
            [base]
            type = "scratch"
            [[users]]
            name = "a"
            [[users]]
            name = "b"
            uidd = 3
            """))
        #expect(error.description.contains("recipe.toml:9"), "\(error)")
        #expect(error.description.contains("users[1].uidd"))
    }

    @Test func unknownTopLevelTable() throws {
        let error = try #require(recipeError("""
            [release]
            name = "web"
            [base]
            type = "scratch"
            [servise]
            start = "x"
            """))
        #expect(error.description.contains("recipe.toml:5"), "\(error)")
        #expect(error.description.contains("'servise'"))
    }

    @Test func wrongTypeNamesExpectedAndFound() throws {
        let error = try #require(recipeError("""
            [release]
            name = "web"
            source_date_epoch = "yesterday"
            [base]
            type = "scratch"
            """))
        guard case let .wrongType(_, line, key, expected, found) = error else {
            Issue.record("expected a wrong type error, got \(error)")
            return
        }
        #expect(line == 3)
        #expect(key == "release.source_date_epoch")
        #expect(expected == "an integer")
        #expect(found == "a string")
    }

    @Test func wrongTypeInArray() throws {
        let error = try #require(recipeError("""
            packages = ["curl", 3]
            [release]
            name = "web"
            [base]
            type = "debian"
            suite = "bookworm"
            """))
        #expect(error.description.contains("recipe.toml:1"), "\(error)")
        #expect(error.description.contains("'packages' must be an array of strings"))
    }

    @Test func missingSourceFileIsNamed() throws {
        let error = try #require(recipeError("""
            [release]
            name = "web"
            [base]
            type = "scratch"

            [[files]]
            source = "conf/missing.conf"
            dest = "/etc/missing.conf"
            """))
        guard case let .sourceNotFound(_, line, key, path) = error else {
            Issue.record("expected sourceNotFound, got \(error)")
            return
        }
        #expect(line == 7)
        #expect(key == "files[0].source")
        #expect(path.hasSuffix("/conf/missing.conf"))
    }

    @Test func missingRequiredKeys() throws {
        let noBase = try #require(recipeError("""
            [release]
            name = "web"
            """))
        #expect(noBase.description.contains("'base' is required"))
        let noSuite = try #require(recipeError("""
            [release]
            name = "web"
            [base]
            type = "debian"
            """))
        #expect(noSuite.description.contains("recipe.toml:3"), "\(noSuite)")
        #expect(noSuite.description.contains("base.suite"))
    }

    @Test func invalidValues() throws {
        let badType = try #require(recipeError("""
            [release]
            name = "web"
            [base]
            type = "docker"
            """))
        #expect(badType.description.contains("recipe.toml:4"))
        let badMode = try #require(recipeError("""
            [release]
            name = "web"
            [base]
            type = "scratch"
            [[files]]
            source = "a"
            dest = "/a"
            mode = "rwx"
            """, files: ["a": "x"]))
        #expect(badMode.description.contains("recipe.toml:8"), "\(badMode)")
        let relativeDest = try #require(recipeError("""
            [release]
            name = "web"
            [base]
            type = "scratch"
            [[files]]
            source = "a"
            dest = "etc/a"
            """, files: ["a": "x"]))
        #expect(relativeDest.description.contains("absolute"))
        let badKeep = try #require(recipeError("""
            [release]
            name = "web"
            [base]
            type = "scratch"
            [cleanup]
            keep = ["everything"]
            """))
        #expect(badKeep.description.contains("recipe.toml:6"))
        let badName = try #require(recipeError("""
            [release]
            name = "../web"
            [base]
            type = "scratch"
            """))
        #expect(badName.description.contains("recipe.toml:2"))
    }

    @Test func unreadableRecipe() throws {
        #expect(throws: RecipeError.self) { try Recipe.load(path: "/nonexistent/recipe.toml") }
    }

    @Test func exampleRecipesParse() throws {
        // The repository's own recipes (node-base needs a release build of slipway).
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        for name in ["hello-static", "python-web"] {
            let recipe = try Recipe.load(path: "\(root)/recipes/\(name).toml")
            #expect(recipe.release.name == name)
        }
    }

    @Test func templateExpansion() throws {
        let text = try RecipeTemplate.expand("a {{name}} b {{ version }} {{x}}", variables: ["name": "web", "version": "1", "x": "y"]) { name in
            throw BuildError.templateVariable(file: "r", line: nil, source: "s", name: name, known: [])
        }
        #expect(text == "a web b 1 y")
        #expect(throws: BuildError.self) {
            _ = try RecipeTemplate.expand("{{nope}}", variables: [:]) { name in
                throw BuildError.templateVariable(file: "r", line: 3, source: "s", name: name, known: [])
            }
        }
    }

    @Test func hostAptSourcesParsing() {
        let deb822 = """
            Types: deb
            URIs: http://example.invalid/debian
            Suites: bookworm bookworm-updates
            Components: main

            Types: deb
            URIs: http://example.invalid/other
            Suites: bookworm
            Enabled: no
            """
        #expect(HostAptSources.entries(text: deb822) == [.init(uri: "http://example.invalid/debian", suites: ["bookworm", "bookworm-updates"])])
        let oneLine = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://example.invalid/debian bookworm main\ndeb-src http://x bookworm main\n"
        #expect(HostAptSources.entries(text: oneLine) == [.init(uri: "http://example.invalid/debian", suites: ["bookworm"])])
    }

    @Test func mountinfoUnescape() {
        #expect(Mounts.unescape("/tmp/a\\040b") == "/tmp/a b")
        #expect(Mounts.unescape("/plain") == "/plain")
    }
}

// Issue 13: what a recipe cannot say.
extension RecipeTests {
    /// A name or version starting with '-' would reach ssh and the node's commands as an
    /// option ("Unknown option '-rf'"): refused when the recipe is read, with file and line.
    @Test("a name or version starting with '-' is refused when the recipe is read",
          arguments: [("name = \"-rf\"\nversion = \"1\"", "release.name", 2), ("name = \"web\"\nversion = \"--force\"", "release.version", 3)])
    func dashNameOrVersionIsRefused(release: String, key: String, line: Int) throws {
        let error = try #require(recipeError("""
            [release]
            \(release)

            [base]
            type = "scratch"
            """))
        #expect(error.description.contains("recipe.toml:\(line)"), "\(error)")
        #expect(error.description.contains("'\(key)'"), "\(error)")
        #expect(error.description.contains("starts with '-'"), "\(error)")
    }

    /// shared_dirs that the node would refuse at apply time ('..', the tree's root, empty or
    /// '.' components) are refused at build time, naming file, line and key.
    @Test("shared_dirs with '..' or naming the tree's root are refused when the recipe is read",
          arguments: ["/var/lib/../../../etc", "../outside", "var/..", "/", "//", "/var//lib", "/var/./lib"])
    func badSharedDirectoryIsRefused(path: String) throws {
        let error = try #require(recipeError("""
            [release]
            name = "web"

            [base]
            type = "scratch"

            [service]
            start = "true"
            shared_dirs = ["/var/log/app", "\(path)"]
            """))
        #expect(error.description.contains("recipe.toml:9"), "\(error)")
        #expect(error.description.contains("'service.shared_dirs'"), "\(error)")
        #expect(error.description.contains(path), "\(error)")
    }

    @Test("tree paths in shared_dirs are accepted, with or without the leading '/'")
    func plainSharedDirectoriesAreAccepted() throws {
        let recipe = try parseRecipe("""
            [release]
            name = "web"

            [base]
            type = "scratch"

            [service]
            shared_dirs = ["/var/log/app", "srv/data/", "/opt/app..d"]
            """)
        #expect(recipe.service?.sharedDirectories == ["var/log/app", "srv/data/", "opt/app..d"])
        for path in recipe.service?.sharedDirectories ?? [] { _ = try NodeTreeCheck.validRelative(path) }
    }
}
