import Foundation
import SlipwayNodeProtocol
import SlipwayRelease
import SlipwayArchive
import SlipwaySystem

/// Finds the bytes of one member of a JSON document's top-level object without decoding the
/// rest. A switch needs only a landed manifest's `[service]`, but the manifest carries every
/// entry of the tree (megabytes for a full rootfs); decoding it all, even into a type that
/// keeps only `service`, cost more than the rest of the switch together. The scan only skips
/// strings and nested brackets, a few milliseconds for a 2 MB manifest.
enum JSONTopLevelMember {
    /// What the scan found for `key`.
    enum Found: Equatable {
        /// The member's value, exactly as written (an object, `null`, …).
        case value(Data)
        /// The object has no such member.
        case absent
        /// The document is not a plain object the scan understands (malformed, or a key
        /// written with escapes): decode it whole instead.
        case undecided
    }

    static func find(_ key: String, in data: Data) -> Found {
        let target = Array(key.utf8)
        return data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> Found in
            let bytes = raw.bindMemory(to: UInt8.self)
            var scanner = Scanner(bytes: bytes)
            scanner.skipSpace()
            guard scanner.take(UInt8(ascii: "{")) else { return .undecided }
            scanner.skipSpace()
            if scanner.take(UInt8(ascii: "}")) { return .absent }
            while true {
                scanner.skipSpace()
                guard scanner.peek == UInt8(ascii: "\""), let keyRange = scanner.skipString() else { return .undecided }
                let name = bytes[(keyRange.lowerBound + 1)..<(keyRange.upperBound - 1)]
                if name.contains(UInt8(ascii: "\\")) { return .undecided }
                scanner.skipSpace()
                guard scanner.take(UInt8(ascii: ":")) else { return .undecided }
                scanner.skipSpace()
                guard let valueRange = scanner.skipValue() else { return .undecided }
                if name.elementsEqual(target) {
                    return .value(Data(bytes[valueRange]))
                }
                scanner.skipSpace()
                if scanner.take(UInt8(ascii: ",")) { continue }
                return scanner.take(UInt8(ascii: "}")) ? .absent : .undecided
            }
        }
    }

    private struct Scanner {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func take(_ byte: UInt8) -> Bool {
            guard peek == byte else { return false }
            index += 1
            return true
        }

        mutating func skipSpace() {
            while let byte = peek, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { index += 1 }
        }

        /// Skips a string starting at its opening quote; returns its range with both quotes.
        mutating func skipString() -> Range<Int>? {
            let start = index
            index += 1
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\\"): index += 2
                case UInt8(ascii: "\""):
                    index += 1
                    return start..<index
                default: index += 1
                }
            }
            return nil
        }

        /// Skips one value (string, object, array or scalar); returns its range.
        mutating func skipValue() -> Range<Int>? {
            let start = index
            guard let first = peek else { return nil }
            switch first {
            case UInt8(ascii: "\""):
                return skipString()
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                while let byte = peek {
                    switch byte {
                    case UInt8(ascii: "\""):
                        guard skipString() != nil else { return nil }
                        continue
                    case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"):
                        depth -= 1
                        if depth == 0 {
                            index += 1
                            return start..<index
                        }
                    default: break
                    }
                    index += 1
                }
                return nil
            default:
                while let byte = peek, byte != UInt8(ascii: ","), byte != UInt8(ascii: "}"), byte != UInt8(ascii: "]"),
                      byte != 0x20, byte != 0x0A, byte != 0x0D, byte != 0x09 {
                    index += 1
                }
                return index > start ? start..<index : nil
            }
        }
    }
}
