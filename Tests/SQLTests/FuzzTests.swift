import Testing

@testable import SQL

/// Random and mutated input must never crash the lexer, splitter, classifier or redaction, and
/// the statements found must lie inside the input in order. Inputs that once crashed are kept in
/// `regressions` below.
@Suite struct FuzzTests {
    /// A small deterministic generator (SplitMix64) so failures reproduce.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let fragments: [String] = [
        "SELECT", "DROP", "TABLE", "WITH", "AS", "(", ")", "[", "]", ";", ",", ".", "::", "'", "''", "\"", "$$", "$a$",
        "$1", "E'", "U&\"", "U&'", "UESCAPE", "\\", "--", "\n", "/*", "*/", "DELETE", "FROM", "WHERE", "UPDATE", "SET",
        "INSERT", "INTO", "EXPLAIN", "ANALYZE", "PREPARE", "CREATE", "FUNCTION", "BEGIN", "ATOMIC", "END", "CASE",
        "f", "x", "0x", "1e", "1.", "é", "\u{0}", "\u{FF}", " ", "\t", "+-", "JOIN", "ON", "USING", "ONLY", "SEARCH",
        "CYCLE", "COPY", "TO", "PROGRAM", "ROWS", "LATERAL", "IS", "DISTINCT", "MERGE", "THEN", "DO", "!",
    ]

    static func check(_ bytes: [UInt8], standardConformingStrings: Bool = true) {
        let all = SQLParser.statements(in: bytes, standardConformingStrings: standardConformingStrings)
        var previousEnd = 0
        for statement in all {
            #expect(statement.range.lowerBound >= previousEnd && statement.range.upperBound <= bytes.count)
            #expect(!statement.range.isEmpty)
            #expect(statement.effectiveKinds.first == statement.kind || statement.kind == .unparseable)
            previousEnd = statement.range.upperBound
        }
        let text = String(decoding: bytes, as: UTF8.self)
        _ = SQLParser.redactLiterals(text, standardConformingStrings: standardConformingStrings)
        _ = QualifiedName(parsing: text)
        _ = StatementPattern(text)
    }

    @Test func randomBytes() {
        var generator = Generator(state: 1)
        for _ in 0..<3_000 {
            let count = Int.random(in: 0..<64, using: &generator)
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            Self.check(bytes, standardConformingStrings: Bool.random(using: &generator))
        }
    }

    @Test func randomSQLishFragments() {
        var generator = Generator(state: 2)
        for _ in 0..<5_000 {
            let count = Int.random(in: 0..<24, using: &generator)
            var text = ""
            for _ in 0..<count {
                text += Self.fragments.randomElement(using: &generator)!
                if Bool.random(using: &generator) { text += " " }
            }
            Self.check(Array(text.utf8), standardConformingStrings: Bool.random(using: &generator))
        }
    }

    @Test func truncationsOfRealStatements() {
        let sql = """
            WITH d AS (DELETE FROM "T" WHERE a = E'x\\'y' RETURNING *) SELECT f($1::numeric(3,1)), $$;$$ \
            FROM d JOIN U&"\\0061" ON true /* c /* n */ */; CREATE FUNCTION g() BEGIN ATOMIC SELECT 1; END
            """
        let bytes = Array(sql.utf8)
        for end in 0...bytes.count {
            Self.check(Array(bytes[..<end]))
            Self.check(Array(bytes[end...]))
        }
    }

    /// Inputs that crashed or misbehaved during development.
    static let regressions: [String] = [
        "U&\"", "U&\"\\", "U&\"\\+", "U&\"\\D800\"", "U&\"\\D800\\0041\"", "U&\"x\" UESCAPE", "U&\"x\" UESCAPE '",
        "U&\"x\" UESCAPE ''''", "U&\"x\" /*", "$", "$$", "$a", "$a$", "E'\\", "'", "\"", "/*", "/*/", "-", "0x", "1e+",
        ".", "..", "::", ":=", "((", "))", "WITH", "WITH a", "WITH a AS", "WITH a AS (", "WITH a AS (SELECT 1) SEARCH",
        "EXPLAIN (", "EXPLAIN (ANALYZE", "PREPARE", "PREPARE p AS", "COPY", "COPY (", "CREATE", "CREATE INDEX ON",
        "DROP TRIGGER t ON", "GRANT ON", "SET SESSION", "SELECT * FROM", "SELECT * FROM ROWS", "UPDATE", "UPDATE t *",
        "DELETE FROM ONLY", "SECURITY LABEL FOR", "REINDEX", "VACUUM (", "INSERT INTO t (", "SELECT a IS DISTINCT FROM",
    ]

    @Test(arguments: regressions)
    func regression(_ sql: String) {
        Self.check(Array(sql.utf8))
    }
}
