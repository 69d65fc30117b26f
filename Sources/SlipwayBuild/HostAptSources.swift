import Foundation
import SlipwayRecipe
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// The host's own apt sources, handed to mmdebstrap as mirror arguments so the project never
/// names a mirror host: the tree is bootstrapped from wherever this machine gets its
/// packages (the same rule as scripts/lib/common.sh).
enum HostAptSources {
    /// One repository: a base URI and the suites it serves.
    struct Entry: Equatable {
        var uri: String
        var suites: [String]
    }

    static func candidateFiles(root: String = "") -> [String] {
        var files = ["\(root)/etc/apt/sources.list"]
        let directory = "\(root)/etc/apt/sources.list.d"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        files += names.filter { $0.hasSuffix(".list") || $0.hasSuffix(".sources") }.map { "\(directory)/\($0)" }
        return files.filter { access($0, R_OK) == 0 }
    }

    /// The host's source files that serve `suite`.
    static func files(for suite: String, root: String = "") -> [String] {
        candidateFiles(root: root).filter { file in
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return false }
            return entries(text: text).contains { $0.suites.contains(suite) }
        }
    }

    /// The repositories a sources text (one-line or deb822) enables.
    static func entries(text: String) -> [Entry] {
        var result: [Entry] = []
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let active = lines.filter { !$0.hasPrefix("#") }
        if active.contains(where: { $0.lowercased().hasPrefix("uris:") }) {
            // deb822: stanzas separated by blank lines.
            var stanza: [String: String] = [:]
            func flush() {
                defer { stanza = [:] }
                guard stanza["enabled"]?.lowercased() != "no", stanza["types"]?.split(separator: " ").contains("deb") ?? true,
                      let uris = stanza["uris"], let suites = stanza["suites"] else { return }
                for uri in uris.split(separator: " ") {
                    result.append(Entry(uri: String(uri), suites: suites.split(separator: " ").map(String.init)))
                }
            }
            for line in lines + [""] {
                if line.isEmpty { flush(); continue }
                if line.hasPrefix("#") { continue }
                guard let colon = line.firstIndex(of: ":") else { continue }
                stanza[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        } else {
            for line in active where line.hasPrefix("deb ") {
                var words = line.split(separator: " ").map(String.init).dropFirst()
                if words.first?.hasPrefix("[") == true {
                    while let word = words.first, !word.hasSuffix("]") { words = words.dropFirst() }
                    words = words.dropFirst()
                }
                let parts = Array(words)
                if parts.count >= 2 { result.append(Entry(uri: parts[0], suites: [parts[1]])) }
            }
        }
        return result
    }

    /// Repositories named by mmdebstrap mirror arguments (files, one-line sources, URLs).
    static func entries(mirrorArguments: [String], suite: String) -> [Entry] {
        mirrorArguments.flatMap { argument -> [Entry] in
            if argument.hasPrefix("/"), let text = try? String(contentsOfFile: argument, encoding: .utf8) {
                return entries(text: text)
            }
            if argument.hasPrefix("deb ") { return entries(text: argument) }
            return [Entry(uri: argument, suites: [suite])]
        }
    }
}
