import Foundation

/// A JSON scanner over UTF-8 bytes for the fast decoders (the manifest's entries,
/// `ManifestFastDecoder`; the node's journal, `NodeStateFastCodec`): each reads the one
/// shape it expects and gives up with nil on anything else, and its caller then decodes with
/// `JSONDecoder`, whose verdict and error text stand.
package struct JSONScanner {
    package let bytes: UnsafeBufferPointer<UInt8>
    package var at = 0

    package init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    package static let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\"), colon = UInt8(ascii: ":"), comma = UInt8(ascii: ",")
    package static let openBrace = UInt8(ascii: "{"), closeBrace = UInt8(ascii: "}"), openBracket = UInt8(ascii: "["), closeBracket = UInt8(ascii: "]")

    package mutating func skipSpace() {
        while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x0A || bytes[at] == 0x0D || bytes[at] == 0x09 { at += 1 }
    }

    package mutating func take(_ byte: UInt8) -> Bool {
        skipSpace()
        guard at < bytes.count, bytes[at] == byte else { return false }
        at += 1
        return true
    }

    package mutating func literal(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard at + count <= bytes.count else { return false }
        for index in 0..<count where bytes[at + index] != word.utf8Start[index] { return false }
        at += count
        return true
    }

    /// Plain decimal digits, no sign, fraction, exponent or leading zero, at most `max`.
    package mutating func number(max: UInt64) -> UInt64? {
        let start = at
        var value: UInt64 = 0
        while at < bytes.count, bytes[at] >= 0x30, bytes[at] <= 0x39 {
            let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times.addingReportingOverflow(UInt64(bytes[at] - 0x30))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
            at += 1
        }
        guard at > start, at - start == 1 || bytes[start] != 0x30, value <= max else { return nil }
        // A fraction or an exponent is JSONDecoder's to judge.
        if at < bytes.count, bytes[at] == UInt8(ascii: ".") || bytes[at] == UInt8(ascii: "e") || bytes[at] == UInt8(ascii: "E") { return nil }
        return value
    }

    /// A JSON string's UTF-8 bytes (escapes resolved); nil for anything JSONDecoder might
    /// judge differently (bytes that are not UTF-8, a raw control character, a lone
    /// surrogate, an unknown escape).
    package mutating func string() -> [UInt8]? {
        guard at < bytes.count, bytes[at] == Self.quote else { return nil }
        at += 1
        let start = at
        // The common case: no escape.
        while at < bytes.count, bytes[at] != Self.quote, bytes[at] != Self.backslash, bytes[at] >= 0x20 { at += 1 }
        guard at < bytes.count, bytes[at] >= 0x20 else { return nil }
        var out = Array(UnsafeBufferPointer(rebasing: bytes[start..<at]))
        while bytes[at] != Self.quote {
            if bytes[at] == Self.backslash {
                at += 1
                guard at < bytes.count else { return nil }
                switch bytes[at] {
                case Self.quote, Self.backslash, UInt8(ascii: "/"): out.append(bytes[at])
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    guard var scalar = hex4(at + 1) else { return nil }
                    at += 4
                    if scalar >= 0xD800, scalar < 0xDC00 {
                        // A high surrogate must be followed by an escaped low one.
                        guard at + 6 < bytes.count, bytes[at + 1] == Self.backslash, bytes[at + 2] == UInt8(ascii: "u"),
                              let low = hex4(at + 3), low >= 0xDC00, low < 0xE000 else { return nil }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        at += 6
                    } else if scalar >= 0xDC00, scalar < 0xE000 {
                        return nil
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { return nil }
                    out.append(contentsOf: Array(String(Character(unicode)).utf8))
                default: return nil
                }
                at += 1
            } else {
                guard bytes[at] >= 0x20 else { return nil }
                out.append(bytes[at])
                at += 1
            }
            guard at < bytes.count else { return nil }
        }
        at += 1
        guard out.allSatisfy({ $0 < 0x80 }) || String(validating: out, as: UTF8.self) != nil else { return nil }
        return out
    }

    /// A JSON number (`-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`) as a finite
    /// Double, correctly rounded as JSONDecoder reads it; nil for anything else.
    package mutating func double() -> Double? {
        let start = at
        func digits() -> Int {
            let from = at
            while at < bytes.count, bytes[at] >= 0x30, bytes[at] <= 0x39 { at += 1 }
            return at - from
        }
        if at < bytes.count, bytes[at] == UInt8(ascii: "-") { at += 1 }
        let integerStart = at
        let integerDigits = digits()
        guard integerDigits > 0, integerDigits == 1 || bytes[integerStart] != 0x30 else { return nil }
        if at < bytes.count, bytes[at] == UInt8(ascii: ".") {
            at += 1
            guard digits() > 0 else { return nil }
        }
        if at < bytes.count, bytes[at] == UInt8(ascii: "e") || bytes[at] == UInt8(ascii: "E") {
            at += 1
            if at < bytes.count, bytes[at] == UInt8(ascii: "+") || bytes[at] == UInt8(ascii: "-") { at += 1 }
            guard digits() > 0 else { return nil }
        }
        guard let value = Double(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<at]), as: UTF8.self)),
              value.isFinite else { return nil }
        return value
    }

    package func hex4(_ from: Int) -> UInt32? {
        guard from + 4 <= bytes.count else { return nil }
        var value: UInt32 = 0
        for index in from..<from + 4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case 0x30...0x39: digit = UInt32(byte - 0x30)
            case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
            default: return nil
            }
            value = value << 4 | digit
        }
        return value
    }

    /// Moves past one JSON value without decoding it (JSONDecoder judges it later);
    /// nil-safe on truncated input.
    package mutating func skipValue(depth: Int) -> Bool {
        guard depth < 64 else { return false }
        skipSpace()
        guard at < bytes.count else { return false }
        switch bytes[at] {
        case Self.quote: return string() != nil
        case Self.openBrace, Self.openBracket:
            let close = bytes[at] == Self.openBrace ? Self.closeBrace : Self.closeBracket
            let isObject = close == Self.closeBrace
            at += 1
            if take(close) { return true }
            while true {
                if isObject {
                    skipSpace()
                    guard string() != nil, take(Self.colon) else { return false }
                }
                guard skipValue(depth: depth + 1) else { return false }
                if take(Self.comma) { continue }
                return take(close)
            }
        default:
            // A number, true, false or null: up to the next delimiter.
            let start = at
            while at < bytes.count, ![Self.comma, Self.closeBrace, Self.closeBracket, 0x20, 0x0A, 0x0D, 0x09].contains(bytes[at]) { at += 1 }
            return at > start
        }
    }
}
