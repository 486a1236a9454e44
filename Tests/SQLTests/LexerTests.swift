import Testing

@testable import SQL

@Suite struct LexerTests {
    @Test func identifiersKeywordsAndPunctuation() {
        let tokens = lex("SELECT a.b, \"X\"\"y\" FROM t;")
        #expect(tokens.map(\.0) == [.word, .word, .dot, .word, .comma, .quotedIdentifier, .word, .word, .semicolon])
        #expect(tokens[5].1 == "\"X\"\"y\"")
    }

    @Test func keywordsAreRecognisedCaseInsensitively() {
        var sql = "SeLeCt select_ x SELECT"
        let keywords = sql.withUTF8 { Lexer.tokenize($0).map(\.keyword) }
        #expect(keywords == [.select, nil, nil, .select])
    }

    @Test func everyKeywordFitsTheTable() {
        #expect(Keyword.allCases.count < 256)
        for keyword in Keyword.allCases {
            var text = String(describing: keyword).uppercased()
            let found = text.withUTF8 { Lexer.tokenize($0).first?.keyword }
            #expect(found == keyword)
        }
    }

    @Test func stringConstants() {
        #expect(lex("'it''s'").map(\.0) == [.string])
        #expect(lex("E'\\n\\''").map(\.0) == [.string])
        #expect(lex("e'a\\\\' x").map(\.0) == [.string, .word])
        #expect(lex("B'0101' X'ff' N'nat'").map(\.0) == [.string, .string, .string])
        #expect(lex("U&'d\\0061t\\+000061'").map(\.0) == [.string])
        #expect(lex("U&'d!0061t' UESCAPE '!' x").map(\.0) == [.string, .word])
    }

    @Test func standardConformingStringsDecidesWhatABackslashDoes() {
        // On (the default since 9.1): the backslash is literal, the string ends at the second quote.
        #expect(lexKinds("'a\\' x '") == [.string, .word, .error])
        // Off: the backslash escapes the quote.
        #expect(lexKinds("'a\\' x '", standardConformingStrings: false) == [.string])
        #expect(lexKinds("N'a\\' x '", standardConformingStrings: false) == [.string])
        // Bit strings never take backslash escapes.
        #expect(lexKinds("X'\\' x", standardConformingStrings: false) == [.string, .word])
    }

    @Test func dollarQuotes() {
        #expect(lex("$$a;b$$").map(\.0) == [.string])
        #expect(lex("$fn$ $$ inner $$ $fn$").map(\.0) == [.string])
        #expect(lex("$a$ $ab$ $a$ x").map(\.1) == ["$a$ $ab$ $a$", "x"])
        #expect(lex("$1 + $23").map(\.0) == [.parameter, .op, .parameter])
        #expect(lex("$1$").map(\.0) == [.parameter, .other])
        #expect(lex("$_x$y$_x$").map(\.0) == [.string])
        #expect(lex("a$b$ c").map(\.1) == ["a$b$", "c"])
        #expect(lex("$tag$ unterminated").map(\.0) == [.error])
    }

    @Test func numbers() {
        #expect(
            lex("1 1.5 .5 1e10 1.5E-3 0x1F 0o17 0b101 1_000 1..2").map(\.1) == [
                "1", "1.5", ".5", "1e10", "1.5E-3", "0x1F", "0o17", "0b101", "1_000", "1", ".", ".2",
            ])
    }

    @Test func operators() {
        #expect(lex("a<>b").map(\.1) == ["a", "<>", "b"])
        #expect(lex("a::int").map(\.0) == [.word, .typecast, .word])
        #expect(lex("x := 1").map(\.1) == ["x", ":=", "1"])
        #expect(lex("a[1:2]").map(\.0) == [.word, .leftBracket, .number, .colon, .number, .rightBracket])
        // An operator stops before a comment.
        #expect(lex("1+--x\n2").map(\.1) == ["1", "+", "2"])
        #expect(lex("1*/*x*/2").map(\.1) == ["1", "*", "2"])
        // Trailing + or - is dropped unless the operator has one of ~!@#^&|`?%.
        #expect(lex("a=-1").map(\.1) == ["a", "=", "-", "1"])
        #expect(lex("a@-1").map(\.1) == ["a", "@-", "1"])
        #expect(lex("a->>'k'").map(\.1) == ["a", "->>", "'k'"])
    }

    @Test func comments() {
        #expect(lex("-- only a comment").isEmpty)
        #expect(lex("/* a /* nested */ still */ x").map(\.1) == ["x"])
        #expect(lex("/* a /* nested */ x").map(\.0) == [.error])
        #expect(lex("a -- c\r b").map(\.1) == ["a", "b"])
        #expect(lex("a\u{0B}\u{0C}\t\r\nb").map(\.1) == ["a", "b"])
    }

    @Test func quotedIdentifiers() {
        #expect(lex("\"unterminated").map(\.0) == [.error])
        #expect(lex("U&\"d\\0061t\"").map(\.0) == [.unicodeIdentifier])
        #expect(lex("U&\"d!0061t\" UESCAPE '!'").map(\.0) == [.unicodeIdentifier])
        #expect(lex("U&\"bad\\00\"").map(\.0) == [.error])
        #expect(lex("U&\"x\" UESCAPE 'ab'").map(\.0) == [.error])
        #expect(lex("u & \"x\"").map(\.0) == [.word, .op, .quotedIdentifier])
    }

    @Test func unicodeIdentifiersAreWords() {
        #expect(lex("SELECT café, 日本 FROM ünïcödé").map(\.1) == ["SELECT", "café", ",", "日本", "FROM", "ünïcödé"])
    }

    @Test func otherBytes() {
        #expect(lex("\\ { }").map(\.0) == [.other, .other, .other])
        #expect(lex("a\u{0}b").map(\.0) == [.word, .other, .word])
    }
}
