import Foundation
import SlipwayNodeProtocol
import SlipwayRelease

/// The node's journal (`state.json`) written and read without JSONEncoder and JSONDecoder.
/// Every switch reads the journal and writes it again with one more activation; with its
/// 200 activations, JSONDecoder and JSONEncoder and the Swift runtime's first
/// protocol-conformance lookups they cause took a fifth of a `node activate`
/// (docs/engineering.md, "Start-up").
///
/// Writing gives the very bytes `JSONEncoder` gives with `[.prettyPrinted, .sortedKeys,
/// .withoutEscapingSlashes]` (`NodeStateFastCodecTests` holds them equal), or nil for what it
/// does not write itself (a string with a quote, backslash or control character, a number
/// that is not plain decimal), and the caller uses JSONEncoder.
///
/// Reading answers only for what `JSONDecoder` decodes to the very same journal: any
/// unknown or repeated key, missing member, wrong type, unknown word, number outside JSON's
/// grammar or string JSONScanner does not take makes it give up with nil, and the caller
/// decodes with `JSONDecoder`, whose verdict and error text stand.
enum NodeStateFastCodec {
    // MARK: Writing

    static func encode(_ state: NodeState) -> Data? {
        var out = Writer()
        out.bytes.reserveCapacity(160 * state.activations.count + 300 * state.releases.count + 100)
        out.raw("{\n  \"activations\" : [")
        let activationsWritten = out.objects(state.activations) { out, activation in
            var first = true
            out.key("at", level: 3, first: &first)
            guard out.number(activation.at) else { return false }
            if let detail = activation.detail {
                out.key("detail", level: 3, first: &first)
                guard out.string(detail) else { return false }
            }
            if let from = activation.from {
                out.key("from", level: 3, first: &first)
                guard out.string(from) else { return false }
            }
            out.key("kind", level: 3, first: &first)
            guard out.string(activation.kind.rawValue) else { return false }
            out.key("result", level: 3, first: &first)
            guard out.string(activation.result.rawValue) else { return false }
            out.key("to", level: 3, first: &first)
            return out.string(activation.to)
        }
        guard activationsWritten else { return nil }
        out.raw(",\n  \"app\" : ")
        guard out.string(state.app) else { return nil }
        out.raw(",\n  \"formatVersion\" : ")
        out.bytes.append(contentsOf: Array(String(state.formatVersion).utf8))
        out.raw(",\n  \"releases\" : [")
        let releasesWritten = out.objects(state.releases) { out, release in
            var first = true
            if let sha256 = release.archiveSHA256 {
                out.key("archiveSHA256", level: 3, first: &first)
                guard out.string(sha256) else { return false }
            }
            out.key("origin", level: 3, first: &first)
            out.raw("{")
            var firstInOrigin = true
            if let base = release.origin.base {
                out.key("base", level: 4, first: &firstInOrigin)
                guard out.string(base) else { return false }
            }
            out.key("kind", level: 4, first: &firstInOrigin)
            guard out.string(release.origin.kind.rawValue) else { return false }
            out.raw("\n      }")
            out.key("receivedAt", level: 3, first: &first)
            guard out.number(release.receivedAt) else { return false }
            out.key("version", level: 3, first: &first)
            return out.string(release.version)
        }
        guard releasesWritten else { return nil }
        out.raw("\n}")
        return Data(out.bytes)
    }

    struct Writer {
        var bytes: [UInt8] = []

        mutating func raw(_ text: StaticString) {
            bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        }

        /// The elements of a top-level array, after its `[`: each an object at the second
        /// level whose members `members` writes, then the `]`; `[`, two new lines, `]` when
        /// empty, as JSONEncoder writes it. False when `members` could not write one.
        mutating func objects<Element>(_ elements: [Element], _ members: (inout Writer, Element) -> Bool) -> Bool {
            if elements.isEmpty {
                raw("\n\n  ]")
                return true
            }
            for (index, element) in elements.enumerated() {
                raw(index == 0 ? "\n    {" : ",\n    {")
                guard members(&self, element) else { return false }
                raw("\n    }")
            }
            raw("\n  ]")
            return true
        }

        /// `,` before all but the first member, a new line, the indentation, `"key" : `.
        mutating func key(_ key: StaticString, level: Int, first: inout Bool) {
            if !first { bytes.append(UInt8(ascii: ",")) }
            first = false
            bytes.append(0x0A)
            bytes.append(contentsOf: repeatElement(0x20, count: 2 * level))
            bytes.append(UInt8(ascii: "\""))
            raw(key)
            raw("\" : ")
        }

        /// False for a string JSONEncoder would escape (a quote, a backslash, a control
        /// character); `/` is written as it is (`.withoutEscapingSlashes`).
        mutating func string(_ value: String) -> Bool {
            var value = value
            return value.withUTF8 { utf8 in
                guard !utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else { return false }
                bytes.append(UInt8(ascii: "\""))
                bytes.append(contentsOf: utf8)
                bytes.append(UInt8(ascii: "\""))
                return true
            }
        }

        /// A finite number as JSONEncoder writes it: Swift's shortest round-trip text, without
        /// the `.0` of an integral value. False for what that text would put in exponent form
        /// (or a negative zero), which JSONEncoder is left to write.
        mutating func number(_ value: Double) -> Bool {
            guard value.isFinite, !(value == 0 && value.sign == .minus) else { return false }
            var text = value.description
            guard !text.contains(where: { $0 == "e" || $0 == "E" }) else { return false }
            if text.hasSuffix(".0") { text.removeLast(2) }
            bytes.append(contentsOf: Array(text.utf8))
            return true
        }
    }

    // MARK: Reading

    static func decode(_ data: Data) -> NodeState? {
        data.withUnsafeBytes { JSONScanner.document($0) { $0.nodeState() } }
    }
}

/// The journal's shape; each returns nil (or false) for anything it does not expect.
extension JSONScanner {
    /// What `read` makes of the whole of `raw`: nil when it gives up or bytes other than
    /// white space follow what it read.
    static func document<Value>(_ raw: UnsafeRawBufferPointer, _ read: (inout JSONScanner) -> Value?) -> Value? {
        guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
        var scanner = JSONScanner(bytes: UnsafeBufferPointer(start: base, count: raw.count))
        guard let value = read(&scanner) else { return nil }
        scanner.skipSpace()
        return scanner.at == scanner.bytes.count ? value : nil
    }

    // The keys of each object, numbered; a switch over strings, not a dictionary keyed by
    // bytes, whose first use would cost a protocol-conformance scan of the whole binary.
    private static func stateKey(_ key: String) -> Int? {
        switch key { case "formatVersion": 0; case "app": 1; case "releases": 2; case "activations": 3; default: nil }
    }
    private static func releaseKey(_ key: String) -> Int? {
        switch key { case "version": 0; case "receivedAt": 1; case "archiveSHA256": 2; case "origin": 3; default: nil }
    }
    private static func originKey(_ key: String) -> Int? {
        switch key { case "kind": 0; case "base": 1; default: nil }
    }
    private static func activationKey(_ key: String) -> Int? {
        switch key { case "kind": 0; case "from": 1; case "to": 2; case "at": 3; case "result": 4; case "detail": 5; default: nil }
    }

    fileprivate mutating func nodeState() -> NodeState? {
        var formatVersion: Int?, app: String?, releases: [NodeState.Release]?, activations: [NodeState.Activation]?
        let read = members(Self.stateKey) { scanner, field in
            switch field {
            case 0: formatVersion = scanner.number(max: UInt64(Int.max)).map { Int($0) }; return formatVersion != nil
            case 1: app = scanner.text(); return app != nil
            case 2: releases = scanner.elements { $0.release() }; return releases != nil
            default: activations = scanner.elements { $0.activation() }; return activations != nil
            }
        }
        guard read, let formatVersion, let app, let releases, let activations else { return nil }
        var state = NodeState(app: app, releases: releases, activations: activations)
        state.formatVersion = formatVersion
        return state
    }

    private mutating func release() -> NodeState.Release? {
        var version: String?, receivedAt: Double?, sha256: String?, origin: NodeState.Origin?
        let read = members(Self.releaseKey) { scanner, field in
            switch field {
            case 0: version = scanner.text(); return version != nil
            case 1: receivedAt = scanner.double(); return receivedAt != nil
            case 2: return scanner.optionalText(into: &sha256)
            default: origin = scanner.origin(); return origin != nil
            }
        }
        guard read, let version, let receivedAt, let origin else { return nil }
        return NodeState.Release(version: version, receivedAt: receivedAt, archiveSHA256: sha256, origin: origin)
    }

    private mutating func origin() -> NodeState.Origin? {
        var kind: OriginKind?, base: String?
        let read = members(Self.originKey) { scanner, field in
            switch field {
            case 0: kind = scanner.text().flatMap(OriginKind.init(rawValue:)); return kind != nil
            default: return scanner.optionalText(into: &base)
            }
        }
        guard read, let kind else { return nil }
        return NodeState.Origin(kind: kind, base: base)
    }

    private mutating func activation() -> NodeState.Activation? {
        var kind: SwitchKind?, from: String?, to: String?, at: Double?, result: SwitchResult?, detail: String?
        let read = members(Self.activationKey) { scanner, field in
            switch field {
            case 0: kind = scanner.text().flatMap(SwitchKind.init(rawValue:)); return kind != nil
            case 1: return scanner.optionalText(into: &from)
            case 2: to = scanner.text(); return to != nil
            case 3: at = scanner.double(); return at != nil
            case 4: result = scanner.text().flatMap(SwitchResult.init(rawValue:)); return result != nil
            default: return scanner.optionalText(into: &detail)
            }
        }
        guard read, let kind, let to, let at, let result else { return nil }
        return NodeState.Activation(kind: kind, from: from, to: to, at: at, result: result, detail: detail)
    }

    /// An object whose keys `number` all knows, each at most once; `member` reads the value
    /// of the key so numbered.
    mutating func members(_ number: (String) -> Int?, _ member: (inout JSONScanner, Int) -> Bool) -> Bool {
        guard take(Self.openBrace) else { return false }
        if take(Self.closeBrace) { return true }
        var seen = 0
        while true {
            skipSpace()
            guard let key = text(), let field = number(key), seen & (1 << field) == 0, take(Self.colon) else { return false }
            seen |= 1 << field
            skipSpace()
            guard member(&self, field) else { return false }
            if take(Self.comma) { continue }
            return take(Self.closeBrace)
        }
    }

    private mutating func elements<Element>(_ element: (inout JSONScanner) -> Element?) -> [Element]? {
        guard take(Self.openBracket) else { return nil }
        var values: [Element] = []
        if take(Self.closeBracket) { return values }
        while true {
            skipSpace()
            guard let value = element(&self) else { return nil }
            values.append(value)
            if take(Self.comma) { continue }
            return take(Self.closeBracket) ? values : nil
        }
    }

    mutating func text() -> String? {
        string().flatMap { String(validating: $0, as: UTF8.self) }
    }

    /// A string, or null (nil, as JSONDecoder has it for an optional).
    private mutating func optionalText(into value: inout String?) -> Bool {
        if literal("null") { value = nil; return true }
        value = text()
        return value != nil
    }
}
