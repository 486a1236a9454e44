/// One lexical token of PostgreSQL SQL: a kind and a byte range of the input. Comments and white
/// space are not tokens; they only leave gaps between token ranges.
struct Token: Equatable {
    enum Kind: UInt8 {
        /// An unquoted identifier or key word (``Token/keyword`` says which key word, if one we know).
        case word
        /// `"..."`, with `""` standing for one quote.
        case quotedIdentifier
        /// `U&"..."` with `\XXXX`/`\+XXXXXX` escapes (and an optional `UESCAPE 'c'` clause inside the range).
        case unicodeIdentifier
        /// Any string constant: `'...'`, `E'...'`, `B'...'`, `X'...'`, `N'...'`, `U&'...'`, `$tag$...$tag$`.
        case string
        case number
        /// `$1`, `$2`, ...
        case parameter
        case leftParen, rightParen, leftBracket, rightBracket, comma, semicolon, dot, colon
        /// `::`
        case typecast
        /// An operator: a run of operator characters (`<>`, `||`, `->>`, `=`, `:=`, ...).
        case op
        /// Any other byte, returned on its own as PostgreSQL does (`\`, `{`, a NUL, ...).
        case other
        /// An unterminated quoted identifier, string, dollar-quoted string or block comment, or an
        /// invalid escape in a `U&` identifier. Always the last token: it runs to the end of input.
        case error
    }

    var start: Int
    var end: Int
    var kind: Kind
    /// ``Keyword`` raw value of a `.word`, 0 for none.
    var keywordValue: UInt8 = 0
    /// The escape byte of a `.unicodeIdentifier` (`\` unless `UESCAPE` says otherwise).
    var escape: UInt8 = 0

    var keyword: Keyword? { keywordValue == 0 ? nil : Keyword(rawValue: keywordValue) }

    @inline(__always)
    func isKeyword(_ keyword: Keyword) -> Bool { keywordValue == keyword.rawValue }

    /// A name part: an unquoted word or a quoted identifier.
    var isName: Bool { kind == .word || kind == .quotedIdentifier || kind == .unicodeIdentifier }
}

/// Character classes of PostgreSQL's scanner (scan.l), as a 256-entry table.
enum ByteClass {
    static let identifierStart: UInt8 = 1
    static let identifierContinue: UInt8 = 2
    static let digit: UInt8 = 4
    static let operatorChar: UInt8 = 8
    static let space: UInt8 = 16
    static let hexDigit: UInt8 = 32

    static let table: [UInt8] = {
        var table = [UInt8](repeating: 0, count: 256)
        for byte in 0..<256 {
            var value: UInt8 = 0
            let isLetter = (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            if isLetter || byte == 0x5F || byte >= 0x80 { value |= identifierStart | identifierContinue }
            if byte >= 0x30 && byte <= 0x39 { value |= digit | identifierContinue | hexDigit }
            if (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66) { value |= hexDigit }
            if byte == 0x24 { value |= identifierContinue }
            if Array("~!@#^&|`?+-*/%<>=".utf8).contains(UInt8(byte)) { value |= operatorChar }
            // space, \t, \n, \v, \f, \r
            if byte == 0x20 || (byte >= 0x09 && byte <= 0x0D) { value |= space }
            table[byte] = value
        }
        return table
    }()
}

/// The PostgreSQL lexer over UTF-8 bytes. It never fails: malformed input ends in one `.error` token.
///
/// The rules are those of PostgreSQL's `scan.l`: identifiers fold ASCII to lower case, `E''` strings
/// take backslash escapes, plain `''` strings do too when `standard_conforming_strings` is off,
/// dollar-quote tags cannot start with a digit (`$1` is a parameter), block comments nest, and an
/// operator never contains `--` or `/*` and loses a trailing `+`/`-` unless it has one of `~!@#^&|`?%`.
struct Lexer {
    private let bytes: UnsafeBufferPointer<UInt8>
    private let standardConformingStrings: Bool
    private let classes: UnsafeBufferPointer<UInt8>
    private let keywords = KeywordTable.shared
    private var index = 0

    /// Tokenizes all of `bytes`.
    static func tokenize(_ bytes: UnsafeBufferPointer<UInt8>, standardConformingStrings: Bool = true) -> [Token] {
        ByteClass.table.withUnsafeBufferPointer { classes in
            var lexer = Lexer(bytes: bytes, standardConformingStrings: standardConformingStrings, classes: classes)
            var tokens: [Token] = []
            tokens.reserveCapacity(bytes.count / 5 + 4)
            while let token = lexer.next() {
                tokens.append(token)
                if token.kind == .error { break }
            }
            return tokens
        }
    }

    private init(
        bytes: UnsafeBufferPointer<UInt8>, standardConformingStrings: Bool, classes: UnsafeBufferPointer<UInt8>
    ) {
        self.bytes = bytes
        self.standardConformingStrings = standardConformingStrings
        self.classes = classes
    }

    @inline(__always)
    private func byte(at position: Int) -> UInt8 {
        position < bytes.count ? bytes[position] : 0
    }

    @inline(__always)
    private func has(_ mask: UInt8, at position: Int) -> Bool {
        position < bytes.count && classes[Int(bytes[position])] & mask != 0
    }

    /// Skips white space and comments. Returns false at an unterminated block comment (index then
    /// points at its `/*`).
    @inline(__always)
    private mutating func skipTrivia() -> Bool {
        while index < bytes.count {
            let current = bytes[index]
            if classes[Int(current)] & ByteClass.space != 0 {
                index += 1
            } else if current == UInt8(ascii: "-") && byte(at: index + 1) == UInt8(ascii: "-") {
                index += 2
                while index < bytes.count && bytes[index] != 0x0A && bytes[index] != 0x0D { index += 1 }
            } else if current == UInt8(ascii: "/") && byte(at: index + 1) == UInt8(ascii: "*") {
                guard let end = blockCommentEnd(from: index) else { return false }
                index = end
            } else {
                return true
            }
        }
        return true
    }

    /// The index after the `*/` closing the (nested) comment opened at `start`, or nil.
    private func blockCommentEnd(from start: Int) -> Int? {
        var position = start + 2
        var depth = 1
        while position + 1 < bytes.count {
            let current = bytes[position]
            if current == UInt8(ascii: "*") && bytes[position + 1] == UInt8(ascii: "/") {
                depth -= 1
                position += 2
                if depth == 0 { return position }
            } else if current == UInt8(ascii: "/") && bytes[position + 1] == UInt8(ascii: "*") {
                depth += 1
                position += 2
            } else {
                position += 1
            }
        }
        return nil
    }

    private mutating func next() -> Token? {
        guard skipTrivia() else {
            defer { index = bytes.count }
            return Token(start: index, end: bytes.count, kind: .error)
        }
        guard index < bytes.count else { return nil }
        let start = index
        let current = bytes[index]
        let currentClass = classes[Int(current)]

        if currentClass & ByteClass.identifierStart != 0 {
            let next = byte(at: index + 1)
            switch current | 0x20 {
            case UInt8(ascii: "e") where next == UInt8(ascii: "'"):
                return quoted(start: start, from: index + 1, backslashEscapes: true)
            case UInt8(ascii: "b"), UInt8(ascii: "x"):
                // Bit strings never take backslash escapes.
                if next == UInt8(ascii: "'") { return quoted(start: start, from: index + 1, backslashEscapes: false) }
            case UInt8(ascii: "n"):
                // N'...' is NCHAR followed by an ordinary string.
                if next == UInt8(ascii: "'") {
                    return quoted(start: start, from: index + 1, backslashEscapes: !standardConformingStrings)
                }
            case UInt8(ascii: "u") where next == UInt8(ascii: "&"):
                let quote = byte(at: index + 2)
                if quote == UInt8(ascii: "'") || quote == UInt8(ascii: "\"") { return unicode(start: start) }
            default:
                break
            }
            return word(start: start)
        }
        if currentClass & ByteClass.digit != 0 { return number(start: start) }
        switch current {
        case UInt8(ascii: "'"):
            return quoted(start: start, from: index, backslashEscapes: !standardConformingStrings)
        case UInt8(ascii: "\""):
            guard let end = quotedEnd(from: index, quote: current, backslashEscapes: false) else {
                return unterminated(start)
            }
            index = end
            return Token(start: start, end: end, kind: .quotedIdentifier)
        case UInt8(ascii: "$"):
            return dollar(start: start)
        case UInt8(ascii: "("): return single(.leftParen)
        case UInt8(ascii: ")"): return single(.rightParen)
        case UInt8(ascii: "["): return single(.leftBracket)
        case UInt8(ascii: "]"): return single(.rightBracket)
        case UInt8(ascii: ","): return single(.comma)
        case UInt8(ascii: ";"): return single(.semicolon)
        case UInt8(ascii: "."):
            if has(ByteClass.digit, at: index + 1) { return number(start: start) }
            return single(.dot)
        case UInt8(ascii: ":"):
            let next = byte(at: index + 1)
            if next == UInt8(ascii: ":") {
                index += 2
                return Token(start: start, end: index, kind: .typecast)
            }
            if next == UInt8(ascii: "=") {
                index += 2
                return Token(start: start, end: index, kind: .op)
            }
            return single(.colon)
        default:
            if currentClass & ByteClass.operatorChar != 0 { return op(start: start) }
            return single(.other)
        }
    }

    @inline(__always)
    private mutating func single(_ kind: Token.Kind) -> Token {
        index += 1
        return Token(start: index - 1, end: index, kind: kind)
    }

    private mutating func unterminated(_ start: Int) -> Token {
        index = bytes.count
        return Token(start: start, end: bytes.count, kind: .error)
    }

    private mutating func word(start: Int) -> Token {
        var packedLow: UInt64 = 0
        var packedHigh: UInt64 = 0
        var plainASCII = true
        var position = start
        while position < bytes.count {
            let current = bytes[position]
            guard classes[Int(current)] & ByteClass.identifierContinue != 0 else { break }
            let offset = position - start
            if offset < 16 && plainASCII {
                let lower = current | 0x20
                if (lower >= UInt8(ascii: "a") && lower <= UInt8(ascii: "z")) || current == UInt8(ascii: "_") {
                    let folded = current == UInt8(ascii: "_") ? current : lower
                    if offset < 8 {
                        packedLow |= UInt64(folded) << UInt64(offset * 8)
                    } else {
                        packedHigh |= UInt64(folded) << UInt64((offset - 8) * 8)
                    }
                } else {
                    plainASCII = false
                }
            }
            position += 1
        }
        index = position
        var token = Token(start: start, end: position, kind: .word)
        if plainASCII && position - start <= 16, let keyword = keywords.lookup(packedLow, packedHigh) {
            token.keywordValue = keyword.rawValue
        }
        return token
    }

    private mutating func number(start: Int) -> Token {
        var position = start
        let first = bytes[position]
        let radix = byte(at: position + 1) | 0x20
        if first == UInt8(ascii: "0")
            && (radix == UInt8(ascii: "x") || radix == UInt8(ascii: "o") || radix == UInt8(ascii: "b"))
            && has(ByteClass.hexDigit, at: position + 2)
        {
            position += 2
            while has(ByteClass.hexDigit, at: position) || byte(at: position) == UInt8(ascii: "_") { position += 1 }
            index = position
            return Token(start: start, end: position, kind: .number)
        }
        while has(ByteClass.digit, at: position) || (position > start && byte(at: position) == UInt8(ascii: "_")) {
            position += 1
        }
        if byte(at: position) == UInt8(ascii: ".") && byte(at: position + 1) != UInt8(ascii: ".") {
            position += 1
            while has(ByteClass.digit, at: position) || byte(at: position) == UInt8(ascii: "_") { position += 1 }
        }
        if byte(at: position) | 0x20 == UInt8(ascii: "e") {
            let sign = byte(at: position + 1)
            if has(ByteClass.digit, at: position + 1) {
                position += 1
            } else if (sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-")) && has(ByteClass.digit, at: position + 2)
            {
                position += 2
            }
            while has(ByteClass.digit, at: position) { position += 1 }
        }
        index = position
        return Token(start: start, end: position, kind: .number)
    }

    /// The index after the closing quote of the quoted text opening at `openQuote`, or nil.
    private func quotedEnd(from openQuote: Int, quote: UInt8, backslashEscapes: Bool) -> Int? {
        var position = openQuote + 1
        while position < bytes.count {
            let current = bytes[position]
            if current == quote {
                if byte(at: position + 1) == quote && position + 1 < bytes.count {
                    position += 2
                    continue
                }
                return position + 1
            }
            if backslashEscapes && current == UInt8(ascii: "\\") {
                position += 2
                continue
            }
            position += 1
        }
        return nil
    }

    private mutating func quoted(start: Int, from openQuote: Int, backslashEscapes: Bool) -> Token {
        guard let end = quotedEnd(from: openQuote, quote: UInt8(ascii: "'"), backslashEscapes: backslashEscapes) else {
            return unterminated(start)
        }
        index = end
        return Token(start: start, end: end, kind: .string)
    }

    /// `U&'...'` or `U&"..."`, with an optional `UESCAPE 'c'` clause folded into the token.
    private mutating func unicode(start: Int) -> Token {
        let quote = bytes[start + 2]
        guard let end = quotedEnd(from: start + 2, quote: quote, backslashEscapes: false) else {
            return unterminated(start)
        }
        index = end
        var escape = UInt8(ascii: "\\")
        var tokenEnd = end
        // Look past trivia for UESCAPE 'c'; if it is not there, rewind.
        if skipTrivia(), index + 7 <= bytes.count, !has(ByteClass.identifierContinue, at: index + 7) {
            var matches = true
            for (offset, expected) in "uescape".utf8.enumerated() where bytes[index + offset] | 0x20 != expected {
                matches = false
                break
            }
            if matches {
                index += 7
                let clauseStart = index
                guard skipTrivia(), byte(at: index) == UInt8(ascii: "'"), index + 2 < bytes.count,
                    bytes[index + 2] == UInt8(ascii: "'"), byte(at: index + 3) != UInt8(ascii: "'"),
                    Self.isValidEscape(bytes[index + 1], classes: classes)
                else {
                    _ = clauseStart
                    return unterminated(start)
                }
                escape = bytes[index + 1]
                tokenEnd = index + 3
            }
        }
        index = tokenEnd
        if quote == UInt8(ascii: "\"") {
            var token = Token(start: start, end: tokenEnd, kind: .unicodeIdentifier)
            token.escape = escape
            guard
                Self.decodeUnicodeEscapes(
                    UnsafeBufferPointer(rebasing: bytes[(start + 3)..<(end - 1)]), escape: escape, quote: quote,
                    into: nil)
            else { return unterminated(start) }
            return token
        }
        return Token(start: start, end: tokenEnd, kind: .string)
    }

    private static func isValidEscape(_ byte: UInt8, classes: UnsafeBufferPointer<UInt8>) -> Bool {
        !(classes[Int(byte)] & (ByteClass.hexDigit | ByteClass.space) != 0 || byte == UInt8(ascii: "+")
            || byte == UInt8(ascii: "'") || byte == UInt8(ascii: "\""))
    }

    /// Decodes the body of a `U&"..."` identifier (between the quotes, doubled quotes still doubled)
    /// into UTF-8, appending to `output` when given. Returns false on an invalid escape or code point.
    static func decodeUnicodeEscapes(
        _ body: UnsafeBufferPointer<UInt8>, escape: UInt8, quote: UInt8, into output: UnsafeMutablePointer<[UInt8]>?
    ) -> Bool {
        var position = 0
        var pendingHighSurrogate: UInt32? = nil
        func hex(_ count: Int) -> UInt32? {
            guard position + count <= body.count else { return nil }
            var value: UInt32 = 0
            for offset in 0..<count {
                let byte = body[position + offset]
                let digit: UInt32
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
                default: return nil
                }
                value = value << 4 | digit
            }
            position += count
            return value
        }
        while position < body.count {
            let byte = body[position]
            if byte == escape {
                if position + 1 < body.count && body[position + 1] == escape {
                    guard pendingHighSurrogate == nil else { return false }
                    output?.pointee.append(escape)
                    position += 2
                    continue
                }
                position += 1
                let scalarValue: UInt32?
                if position < body.count && body[position] == UInt8(ascii: "+") {
                    position += 1
                    scalarValue = hex(6)
                } else {
                    scalarValue = hex(4)
                }
                guard var value = scalarValue else { return false }
                if let high = pendingHighSurrogate {
                    guard value >= 0xDC00 && value <= 0xDFFF else { return false }
                    value = 0x10000 + ((high - 0xD800) << 10) + (value - 0xDC00)
                    pendingHighSurrogate = nil
                } else if value >= 0xD800 && value <= 0xDBFF {
                    pendingHighSurrogate = value
                    continue
                }
                guard value != 0, let scalar = Unicode.Scalar(value) else { return false }
                if let output { output.pointee.append(contentsOf: String(Character(scalar)).utf8) }
                continue
            }
            guard pendingHighSurrogate == nil else { return false }
            output?.pointee.append(byte)
            position += (byte == quote && position + 1 < body.count && body[position + 1] == quote) ? 2 : 1
        }
        return pendingHighSurrogate == nil
    }

    /// `$1` (parameter), `$tag$...$tag$` / `$$...$$` (string), or a lone `$`.
    private mutating func dollar(start: Int) -> Token {
        var position = start + 1
        if has(ByteClass.digit, at: position) {
            while has(ByteClass.digit, at: position) { position += 1 }
            index = position
            return Token(start: start, end: position, kind: .parameter)
        }
        if has(ByteClass.identifierStart, at: position) {
            position += 1
            while position < bytes.count && bytes[position] != UInt8(ascii: "$")
                && classes[Int(bytes[position])] & ByteClass.identifierContinue != 0
            {
                position += 1
            }
        }
        guard byte(at: position) == UInt8(ascii: "$") && position < bytes.count else {
            // PostgreSQL returns the `$` by itself (then fails to parse it).
            return single(.other)
        }
        let tag = UnsafeBufferPointer(rebasing: bytes[start...position])
        position += 1
        while position < bytes.count {
            if bytes[position] == UInt8(ascii: "$") && position + tag.count <= bytes.count {
                var matches = true
                for offset in 1..<tag.count where bytes[position + offset] != tag[offset] {
                    matches = false
                    break
                }
                if matches {
                    index = position + tag.count
                    return Token(start: start, end: index, kind: .string)
                }
            }
            position += 1
        }
        return unterminated(start)
    }

    private mutating func op(start: Int) -> Token {
        var end = start
        while has(ByteClass.operatorChar, at: end) { end += 1 }
        // An operator stops before a comment start.
        var position = start
        while position + 1 < end {
            let pair = (bytes[position], bytes[position + 1])
            if (pair.0 == UInt8(ascii: "-") && pair.1 == UInt8(ascii: "-"))
                || (pair.0 == UInt8(ascii: "/") && pair.1 == UInt8(ascii: "*"))
            {
                end = position
                break
            }
            position += 1
        }
        // A multi-character operator ending in + or - keeps it only if it has one of ~!@#^&|`?%.
        if end - start > 1 && (bytes[end - 1] == UInt8(ascii: "+") || bytes[end - 1] == UInt8(ascii: "-")) {
            var special = false
            for position in start..<(end - 1) {
                switch bytes[position] {
                case UInt8(ascii: "~"), UInt8(ascii: "!"), UInt8(ascii: "@"), UInt8(ascii: "#"), UInt8(ascii: "^"),
                    UInt8(ascii: "&"), UInt8(ascii: "|"), UInt8(ascii: "`"), UInt8(ascii: "?"), UInt8(ascii: "%"):
                    special = true
                default:
                    break
                }
                if special { break }
            }
            if !special {
                while end - start > 1 && (bytes[end - 1] == UInt8(ascii: "+") || bytes[end - 1] == UInt8(ascii: "-")) {
                    end -= 1
                }
            }
        }
        index = end
        return Token(start: start, end: end, kind: .op)
    }
}
