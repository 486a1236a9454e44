/// A possibly schema-qualified object name as PostgreSQL resolves it, so that policy can compare
/// names without caring how the client spelled them.
///
/// Unquoted parts are folded to lower case, quoted parts keep their case (`"Orders"` stays
/// `Orders`), `U&"..."` escapes are decoded, and each part is cut to 63 bytes like PostgreSQL's
/// `NAMEDATALEN`. `public.customers` has the parts `["public", "customers"]`.
public struct QualifiedName: Hashable, Sendable, CustomStringConvertible {
    /// The name's parts, outermost first (database or schema, then object).
    public var parts: [String]

    /// A name from parts that are already normalised (as PostgreSQL stores them).
    public init(_ parts: [String]) {
        self.parts = parts
    }

    /// Parses a name written as in SQL (`pg_catalog.pg_read_file`, `"Orders"`, `PUBLIC.Customers`),
    /// for example one from a policy file. Returns nil if `text` is not a dotted name.
    public init?(parsing text: String) {
        var text = text
        let parsed: QualifiedName? = text.withUTF8 { bytes in
            let tokens = Lexer.tokenize(bytes)
            return tokens.withUnsafeBufferPointer { tokens in
                guard let (name, end) = Self.parse(tokens, at: 0, in: bytes), end == tokens.count else { return nil }
                return name
            }
        }
        guard let parsed else { return nil }
        self = parsed
    }

    /// The last part: the object's own name without its schema.
    public var name: String { parts.last ?? "" }

    /// Parts joined by dots, each part double-quoted when it would not survive as an unquoted word.
    public var description: String {
        parts.map { part in
            let plain =
                !part.isEmpty
                && part.utf8.enumerated().allSatisfy { offset, byte in
                    (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || byte == UInt8(ascii: "_")
                        || byte >= 0x80 || (offset > 0 && (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")))
                }
            return plain ? part : "\"" + part.replacingAll("\"", with: "\"\"") + "\""
        }.joined(separator: ".")
    }

    /// Whether this name and `other` can denote the same object: their parts agree from the last one
    /// backwards for as long as both have parts. So `pg_catalog.pg_read_file` matches `pg_read_file`
    /// and the reverse (an unqualified name may resolve to any schema on the search path).
    public func matches(_ other: QualifiedName) -> Bool {
        guard !parts.isEmpty, !other.parts.isEmpty else { return false }
        for (mine, theirs) in zip(parts.reversed(), other.parts.reversed()) where mine != theirs {
            return false
        }
        return true
    }

    /// Parses `name(.name)*` at `index`; returns the name and the index after it.
    static func parse(
        _ tokens: UnsafeBufferPointer<Token>, at index: Int, in bytes: UnsafeBufferPointer<UInt8>
    ) -> (QualifiedName, Int)? {
        guard index < tokens.count, tokens[index].isName else { return nil }
        var parts = [part(tokens[index], in: bytes)]
        var position = index + 1
        while position + 1 < tokens.count && tokens[position].kind == .dot && tokens[position + 1].isName {
            parts.append(part(tokens[position + 1], in: bytes))
            position += 2
        }
        return (QualifiedName(parts), position)
    }

    /// The normalised text of one name token.
    static func part(_ token: Token, in bytes: UnsafeBufferPointer<UInt8>) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(token.end - token.start)
        switch token.kind {
        case .word:
            for byte in bytes[token.start..<token.end] {
                output.append(byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte)
            }
        case .quotedIdentifier:
            var position = token.start + 1
            while position < token.end - 1 {
                output.append(bytes[position])
                position += bytes[position] == UInt8(ascii: "\"") ? 2 : 1
            }
        case .unicodeIdentifier:
            // The body ends at the last double quote before any UESCAPE clause.
            var bodyEnd = token.end - 1
            while bodyEnd > token.start + 3 && bytes[bodyEnd] != UInt8(ascii: "\"") { bodyEnd -= 1 }
            let body = UnsafeBufferPointer(rebasing: bytes[(token.start + 3)..<bodyEnd])
            _ = withUnsafeMutablePointer(to: &output) { pointer in
                Lexer.decodeUnicodeEscapes(body, escape: token.escape, quote: UInt8(ascii: "\""), into: pointer)
            }
        default:
            output.append(contentsOf: bytes[token.start..<token.end])
        }
        truncateToNameLength(&output)
        return String(decoding: output, as: UTF8.self)
    }

    /// PostgreSQL keeps the first 63 bytes of an identifier, cut at a character boundary.
    private static func truncateToNameLength(_ bytes: inout [UInt8]) {
        guard bytes.count > 63 else { return }
        var cut = 63
        while cut > 0 && bytes[cut] & 0xC0 == 0x80 { cut -= 1 }
        bytes.removeSubrange(cut...)
    }
}

extension String {
    /// `replacing(_:with:)` without Foundation or the newer standard library.
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var result = ""
        result.reserveCapacity(utf8.count)
        for character in self {
            if character == target { result += replacement } else { result.append(character) }
        }
        return result
    }
}
