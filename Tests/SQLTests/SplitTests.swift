import Testing

@testable import SQL

@Suite struct SplitTests {
    @Test func splitsAtTopLevelSemicolonsAndKeepsRanges() {
        let sql = "SELECT 1;  DROP TABLE x ; ;\n-- done\n"
        let all = SQLParser.statements(in: sql)
        #expect(all.map(\.text) == ["SELECT 1", "DROP TABLE x"])
        #expect(all.map(\.range) == [0..<8, 11..<23])
        #expect(all.map(\.kind) == [.select, .drop(.table)])
    }

    @Test func whitespaceAndCommentsAloneAreNoStatement() {
        #expect(SQLParser.statements(in: "").isEmpty)
        #expect(SQLParser.statements(in: " \n\t;; /* c */ -- x").isEmpty)
    }

    @Test func commentsInsideAStatementStayInItsText() {
        #expect(statement("/* lead */ SELECT /* mid */ 1 -- tail").text == "SELECT /* mid */ 1")
    }

    @Test func semicolonsInsideLiteralsAndCommentsDoNotSplit() {
        #expect(
            kinds("SELECT ';'; SELECT \";\"; SELECT $$;$$; SELECT 1 /* ; */; SELECT 2 -- ;\n") == [
                .select, .select, .select, .select, .select,
            ])
        #expect(kinds("SELECT E'\\';'; SELECT 1") == [.select, .select])
    }

    @Test func semicolonInsideParenthesesDoesNotSplit() {
        // Rule actions may be a parenthesised list of statements.
        let rule = "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); DELETE FROM b WHERE x)"
        #expect(kinds(rule) == [.create(.rule)])
    }

    @Test func unbalancedParenthesesMakeTheStatementUnparseable() {
        #expect(kinds("SELECT (1; DROP TABLE x") == [.unparseable])
        #expect(kinds("SELECT 1); DROP TABLE x") == [.unparseable, .drop(.table)])
    }

    @Test func beginAtomicBodiesKeepTheirSemicolons() {
        let sql = """
            CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql
            BEGIN ATOMIC
              SELECT CASE WHEN true THEN 1 END;
              SELECT 2;
            END; DROP TABLE x
            """
        #expect(kinds(sql) == [.create(.function), .drop(.table)])
        // A BEGIN that is not BEGIN ATOMIC does not hold the statement open.
        #expect(
            kinds("CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql RETURN begin; DROP TABLE t") == [
                .create(.function), .drop(.table),
            ])
        #expect(kinds("CREATE FUNCTION f() BEGIN ATOMIC SELECT 1;") == [.unparseable])
    }

    @Test func unterminatedInputEndsInAnUnparseableStatement() {
        #expect(kinds("SELECT 1; SELECT 'oops") == [.select, .unparseable])
        #expect(kinds("SELECT 1; DROP TABLE /* x") == [.select, .unparseable])
        #expect(kinds("SELECT $a$ ; DROP TABLE x") == [.unparseable])
        #expect(kinds("SELECT \"x; DROP TABLE y") == [.unparseable])
        // What was recognised before the error still counts for blocking.
        #expect(statement("DROP TABLE 'x").effectiveKinds == [.unparseable, .drop(.table)])
    }

    @Test func bytesInput() {
        let bytes: [UInt8] = Array("SELECT 1; SELECT 2".utf8)
        #expect(SQLParser.statements(in: bytes).count == 2)
        #expect(SQLParser.statements(in: bytes[10...]).map(\.text) == ["SELECT 2"])
        #expect(SQLParser.statements(in: bytes.lazy.map { $0 }).count == 2)
    }
}
