import Testing

@testable import SQL

@Suite struct RedactionTests {
    @Test func constantsAreReplacedAndCommentsDropped() {
        #expect(
            SQLParser.redactLiterals("SELECT * FROM t WHERE email = 'a@b.c' AND n > 42 -- secret\n")
                == "SELECT * FROM t WHERE email = '?' AND n > ?")
        #expect(
            SQLParser.redactLiterals("INSERT INTO t VALUES (E'x\\'y', $$z$$, B'01', X'ff', 1.5e3, -7)")
                == "INSERT INTO t VALUES ('?', '?', '?', '?', ?, -?)")
        #expect(SQLParser.redactLiterals("SELECT /* pw=hunter2 */ $1, \"Col\"::int") == "SELECT $1, \"Col\"::int")
        #expect(SQLParser.redactLiterals("SELECT U&'\\0041' UESCAPE '\\'") == "SELECT '?'")
    }

    @Test func unterminatedLiteralsLeakNothing() {
        #expect(SQLParser.redactLiterals("SELECT 'secret") == "SELECT '?'")
        #expect(SQLParser.redactLiterals("SELECT $x$ secret") == "SELECT '?'")
        #expect(SQLParser.redactLiterals("SELECT 1 /* secret") == "SELECT ?")
    }

    @Test func followsStandardConformingStrings() {
        #expect(SQLParser.redactLiterals("SELECT 'it\\'s', 1", standardConformingStrings: false) == "SELECT '?', ?")
        #expect(SQLParser.redactLiterals("SELECT 'it\\'s', 1") == "SELECT '?'s'?'")
    }
}
