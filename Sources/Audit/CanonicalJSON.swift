#if canImport(Glibc)
import Glibc
#endif

/// The one byte form of an ``AuditValue`` that the evidence log stores and hashes.
///
/// Two parties that hold the same value must produce the same bytes, or the Merkle tree over the
/// entries could not be recomputed by an auditor. The form follows RFC 8785 (JCS) restricted to
/// integers:
/// - UTF-8, no insignificant whitespace;
/// - object members sorted by the UTF-8 bytes of their keys (RFC 8785 sorts by UTF-16 code units;
///   the two orders differ only between U+E000...U+FFFF and supplementary characters, and UTF-8 is
///   what an auditor's tools compare by default);
/// - integers in shortest decimal form (`-0` never appears), no floats;
/// - strings escape only `"`, `\`, `\b \f \n \r \t`, and other control characters as `\u00xx` with
///   lowercase hex; everything else, including U+2028, U+2029 and DEL, is literal UTF-8.
///
/// Canonical text never contains a raw newline, so one entry is always one line.
public enum CanonicalJSON {
    /// The canonical bytes of `value`.
    public static func encode(_ value: AuditValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(value, into: &out)
        return out
    }

    /// Parses JSON into a value.
    ///
    /// Accepts any RFC 8259 text whose numbers are integers in `Int64.min...UInt64.max`; rejects
    /// duplicate keys, nesting deeper than 64 and invalid UTF-8. With `requireCanonical`, the text must
    /// also be exactly `encode` of its value.
    public static func decode(_ bytes: [UInt8], requireCanonical: Bool = false) throws(AuditError) -> AuditValue {
        // The canonical check is made while parsing (no whitespace, members in order, the encoder's
        // escapes and integers), not by encoding the value again: verifiers read every entry of an
        // export this way.
        var parser = Parser(bytes: bytes, canonical: requireCanonical)
        return try parser.parseDocument()
    }

    /// Whether `bytes` is the canonical encoding of some value.
    public static func isCanonical(_ bytes: [UInt8]) -> Bool {
        (try? decode(bytes, requireCanonical: true)) != nil
    }

    // MARK: encoding

    static func write(_ value: AuditValue, into out: inout [UInt8]) {
        switch value {
        case .null:
            out.append(contentsOf: "null".utf8)
        case .bool(let b):
            out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i):
            writeInteger(i, into: &out)
        case .uint(let u):
            writeInteger(u, into: &out)
        case .string(let s):
            writeString(s, into: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (n, element) in elements.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                write(element, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (n, key) in sortedKeys(members.keys).enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                write(members[key]!, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func sortedKeys<S: Sequence<String>>(_ keys: S) -> [String] {
        keys.sorted(by: precedes)
    }

    /// Byte order of the UTF-8 of `a` and `b` (the canonical member order), without decoding.
    static func precedes(_ a: String, _ b: String) -> Bool {
        var a = a
        var b = b
        return a.withUTF8 { x in
            b.withUTF8 { y in
                let common = min(x.count, y.count)
                if common > 0, let px = x.baseAddress, let py = y.baseAddress {
                    let order = memcmp(px, py, common)
                    if order != 0 { return order < 0 }
                }
                return x.count < y.count
            }
        }
    }

    static func writeInteger<T: BinaryInteger>(_ value: T, into out: inout [UInt8]) {
        if value == 0 {
            out.append(UInt8(ascii: "0"))
            return
        }
        // Work in the magnitude so Int64.min needs no special case.
        var magnitude = value.magnitude
        if value < 0 { out.append(UInt8(ascii: "-")) }
        var digits:
            (
                UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8
            ) =
                (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            while magnitude > 0 {
                buffer[count] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: magnitude % 10)
                magnitude /= 10
                count += 1
            }
            for i in stride(from: count - 1, through: 0, by: -1) {
                out.append(buffer[i])
            }
        }
    }

    static func writeString(_ string: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var string = string
        let plain = string.withUTF8 { bytes in
            // Most strings need no escape: copy them in one piece.
            guard !bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") })
            else { return false }
            out.append(contentsOf: bytes)
            return true
        }
        if plain {
            out.append(UInt8(ascii: "\""))
            return
        }
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""):
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"):
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "\\"))
            case 0x08:
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "b"))
            case 0x0C:
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "f"))
            case 0x0A:
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "n"))
            case 0x0D:
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "r"))
            case 0x09:
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "t"))
            case 0x00..<0x20:
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0x0F)])
            default:
                out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    // MARK: decoding

    struct Parser {
        let bytes: [UInt8]
        var position = 0
        /// Accept only the exact bytes ``CanonicalJSON/encode(_:)`` writes.
        let canonical: Bool
        static let maximumDepth = 64

        init(bytes: [UInt8], canonical: Bool = false) {
            self.bytes = bytes
            self.canonical = canonical
        }

        func notCanonical(_ what: String) -> AuditError {
            AuditError(.invalidJSON, "JSON is valid but not canonical at byte \(position): \(what)")
        }

        mutating func parseDocument() throws(AuditError) -> AuditValue {
            try skipWhitespace()
            let value = try parseValue(depth: 0)
            try skipWhitespace()
            guard position == bytes.count else { throw failure("unexpected data after the JSON value") }
            return value
        }

        func failure(_ what: String) -> AuditError {
            AuditError(.invalidJSON, "invalid JSON at byte \(position): \(what)")
        }

        mutating func skipWhitespace() throws(AuditError) {
            while position < bytes.count {
                switch bytes[position] {
                case 0x20, 0x09, 0x0A, 0x0D:
                    if canonical { throw notCanonical("whitespace") }
                    position += 1
                default: return
                }
            }
        }

        mutating func expect(_ literal: String) throws(AuditError) {
            for byte in literal.utf8 {
                guard position < bytes.count, bytes[position] == byte else {
                    throw failure("expected '\(literal)'")
                }
                position += 1
            }
        }

        mutating func parseValue(depth: Int) throws(AuditError) -> AuditValue {
            guard position < bytes.count else { throw failure("unexpected end of input") }
            switch bytes[position] {
            case UInt8(ascii: "n"):
                try expect("null")
                return .null
            case UInt8(ascii: "t"):
                try expect("true")
                return .bool(true)
            case UInt8(ascii: "f"):
                try expect("false")
                return .bool(false)
            case UInt8(ascii: "\""):
                return .string(try parseString())
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                return try parseNumber()
            case UInt8(ascii: "["):
                guard depth < Self.maximumDepth else { throw failure("nesting deeper than \(Self.maximumDepth)") }
                position += 1
                var elements: [AuditValue] = []
                try skipWhitespace()
                if position < bytes.count && bytes[position] == UInt8(ascii: "]") {
                    position += 1
                    return .array(elements)
                }
                while true {
                    try skipWhitespace()
                    elements.append(try parseValue(depth: depth + 1))
                    try skipWhitespace()
                    guard position < bytes.count else { throw failure("unterminated array") }
                    if bytes[position] == UInt8(ascii: ",") {
                        position += 1
                    } else if bytes[position] == UInt8(ascii: "]") {
                        position += 1
                        return .array(elements)
                    } else {
                        throw failure("expected ',' or ']'")
                    }
                }
            case UInt8(ascii: "{"):
                guard depth < Self.maximumDepth else { throw failure("nesting deeper than \(Self.maximumDepth)") }
                position += 1
                var members: [String: AuditValue] = [:]
                try skipWhitespace()
                if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
                    position += 1
                    return .object(members)
                }
                var previousKey: String?
                while true {
                    try skipWhitespace()
                    guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
                        throw failure("expected a member name")
                    }
                    let keyStart = position
                    let key = try parseString()
                    if canonical {
                        // Strictly increasing byte order: sorted, and no duplicates.
                        if let previousKey, !CanonicalJSON.precedes(previousKey, key) {
                            position = keyStart
                            throw previousKey == key
                                ? failure("duplicate member name \"\(key)\"")
                                : notCanonical("member \"\(key)\" is out of order")
                        }
                        previousKey = key
                    }
                    try skipWhitespace()
                    try expect(":")
                    try skipWhitespace()
                    let value = try parseValue(depth: depth + 1)
                    guard members.updateValue(value, forKey: key) == nil else {
                        position = keyStart
                        throw failure("duplicate member name \"\(key)\"")
                    }
                    try skipWhitespace()
                    guard position < bytes.count else { throw failure("unterminated object") }
                    if bytes[position] == UInt8(ascii: ",") {
                        position += 1
                    } else if bytes[position] == UInt8(ascii: "}") {
                        position += 1
                        return .object(members)
                    } else {
                        throw failure("expected ',' or '}'")
                    }
                }
            default:
                throw failure("unexpected character")
            }
        }

        mutating func parseNumber() throws(AuditError) -> AuditValue {
            let start = position
            var negative = false
            if bytes[position] == UInt8(ascii: "-") {
                negative = true
                position += 1
            }
            let digitsStart = position
            var magnitude: UInt64 = 0
            while position < bytes.count, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") {
                let digit = UInt64(bytes[position] - UInt8(ascii: "0"))
                let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times10.addingReportingOverflow(digit)
                guard !o1 && !o2 else {
                    position = start
                    throw failure("integer out of range")
                }
                magnitude = sum
                position += 1
            }
            let digitCount = position - digitsStart
            guard digitCount > 0 else { throw failure("expected digits") }
            if canonical && negative && magnitude == 0 {
                position = start
                throw notCanonical("-0")
            }
            if digitCount > 1 && bytes[digitsStart] == UInt8(ascii: "0") {
                position = digitsStart
                throw failure("leading zero")
            }
            if position < bytes.count {
                switch bytes[position] {
                case UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"):
                    throw failure("only integers are allowed in audit entries")
                default:
                    break
                }
            }
            if negative {
                if magnitude <= UInt64(Int64.max) {
                    return .int(-Int64(magnitude))
                } else if magnitude == UInt64(Int64.max) + 1 {
                    return .int(Int64.min)
                }
                position = start
                throw failure("integer out of range")
            }
            if let signed = Int64(exactly: magnitude) {
                return .int(signed)
            }
            return .uint(magnitude)
        }

        mutating func parseString() throws(AuditError) -> String {
            position += 1  // opening quote
            // Fast path: no escape before the closing quote (nearly every string in an entry).
            var end = position
            while end < bytes.count {
                let byte = bytes[end]
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
                end += 1
            }
            if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
                guard let string = String(validating: bytes[position..<end], as: UTF8.self) else {
                    throw failure("string is not valid UTF-8")
                }
                position = end + 1
                return string
            }
            var buffer: [UInt8] = []
            while true {
                guard position < bytes.count else { throw failure("unterminated string") }
                let byte = bytes[position]
                switch byte {
                case UInt8(ascii: "\""):
                    position += 1
                    guard let string = String(validating: buffer, as: UTF8.self) else {
                        throw failure("string is not valid UTF-8")
                    }
                    return string
                case UInt8(ascii: "\\"):
                    position += 1
                    guard position < bytes.count else { throw failure("unterminated escape") }
                    let escape = bytes[position]
                    position += 1
                    if canonical {
                        try checkCanonicalEscape(escape)
                    }
                    switch escape {
                    case UInt8(ascii: "\""): buffer.append(0x22)
                    case UInt8(ascii: "\\"): buffer.append(0x5C)
                    case UInt8(ascii: "/"): buffer.append(0x2F)
                    case UInt8(ascii: "b"): buffer.append(0x08)
                    case UInt8(ascii: "f"): buffer.append(0x0C)
                    case UInt8(ascii: "n"): buffer.append(0x0A)
                    case UInt8(ascii: "r"): buffer.append(0x0D)
                    case UInt8(ascii: "t"): buffer.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try parseHex4()
                        if (0xD800..<0xDC00).contains(scalar) {
                            guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
                                bytes[position + 1] == UInt8(ascii: "u")
                            else { throw failure("unpaired surrogate") }
                            position += 2
                            let low = try parseHex4()
                            guard (0xDC00..<0xE000).contains(low) else { throw failure("unpaired surrogate") }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else if (0xDC00..<0xE000).contains(scalar) {
                            throw failure("unpaired surrogate")
                        }
                        buffer.append(contentsOf: Unicode.Scalar(scalar)!.utf8)
                    default:
                        throw failure("invalid escape")
                    }
                case 0x00..<0x20:
                    throw failure("raw control character in string")
                default:
                    buffer.append(byte)
                    position += 1
                }
            }
        }

        /// The encoder writes `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and `\u00xx` (lower-case hex)
        /// for the other control characters only. `position` is just past the escape letter.
        func checkCanonicalEscape(_ escape: UInt8) throws(AuditError) {
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"),
                UInt8(ascii: "r"), UInt8(ascii: "t"):
                return
            case UInt8(ascii: "u"):
                guard position + 4 <= bytes.count, bytes[position] == UInt8(ascii: "0"),
                    bytes[position + 1] == UInt8(ascii: "0")
                else { throw notCanonical("\\u escape of a character the encoder writes as it is") }
                let high = bytes[position + 2]
                let low = bytes[position + 3]
                func lowerHex(_ b: UInt8) -> UInt8? {
                    switch b {
                    case UInt8(ascii: "0")...UInt8(ascii: "9"): b - UInt8(ascii: "0")
                    case UInt8(ascii: "a")...UInt8(ascii: "f"): b - UInt8(ascii: "a") + 10
                    default: nil
                    }
                }
                guard let h = lowerHex(high), let l = lowerHex(low), h < 2 else {
                    throw notCanonical("\\u escape of a character the encoder writes as it is")
                }
                switch h << 4 | l {
                case 0x08, 0x09, 0x0A, 0x0C, 0x0D: throw notCanonical("\\u escape of a character with a short escape")
                default: return
                }
            default:
                throw notCanonical("escape the encoder does not write")
            }
        }

        mutating func parseHex4() throws(AuditError) -> UInt32 {
            guard position + 4 <= bytes.count else { throw failure("truncated \\u escape") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[position]
                let digit: UInt32
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
                default: throw failure("invalid hex digit in \\u escape")
                }
                value = value << 4 | digit
                position += 1
            }
            return value
        }
    }
}
