import Testing

@testable import SQL

/// Ways a client may try to hide a statement from the classifier. Each must still be seen.
@Suite struct EvasionTests {
    @Test(arguments: [
        "DrOp TaBlE x",
        "DROP/**/TABLE x",
        "DROP--x\nTABLE x",
        "DROP /* a /* nested */ comment */ TABLE x",
        "DROP\tTABLE\nx",
        "DROP\u{0C}TABLE\u{0B}x",
        "\n\n  DROP TABLE x  \n",
        "/* leading */ -- and a line\nDROP TABLE x",
        "DROP TABLE \"x\"",
        "DROP TABLE IF EXISTS x CASCADE",
    ])
    func dropIsSeenThroughCaseCommentsAndWhitespace(_ sql: String) {
        #expect(kinds(sql) == [.drop(.table)], "\(sql)")
        #expect(blocked(sql, by: "DROP"))
    }

    @Test func quotedKeywordsAreIdentifiersNotCommands() {
        #expect(kind("\"DROP\" TABLE x") == .unknown)
        #expect(kind("SELECT \"drop\" FROM \"table\"") == .select)
        #expect(!blocked("SELECT \"DROP\", \"TRUNCATE\" FROM t", by: "DROP"))
    }

    @Test func keywordsInsideConstantsAreData() {
        #expect(kinds("SELECT 'DROP TABLE x'") == [.select])
        #expect(kinds("SELECT $$; DROP TABLE x; $$") == [.select])
        #expect(kinds("SELECT $q$ $$; DROP TABLE x; $$ $q$") == [.select])
        #expect(kinds("SELECT 1 -- ; DROP TABLE x") == [.select])
        #expect(kinds("SELECT 1 /* ; DROP TABLE x */") == [.select])
        #expect(kinds("SELECT E'\\'; DROP TABLE x; --'") == [.select])
        #expect(kinds("SELECT 'a'';DROP TABLE x;--'") == [.select])
        #expect(kinds("SELECT \"a;DROP TABLE x\" FROM t") == [.select])
        #expect(kinds("SELECT U&'\\0027; DROP TABLE x; --'") == [.select])
        #expect(!blocked("SELECT 'DROP TABLE x', $$TRUNCATE t$$", by: "DROP"))
    }

    @Test func backslashQuoteDependsOnStandardConformingStrings() {
        let sql = "SELECT 'a\\'; DROP TABLE x; --'"
        // On: the string is 'a\' and a DROP follows.
        #expect(kinds(sql) == [.select, .drop(.table)])
        // Off: \' is an escaped quote and there is only one SELECT.
        #expect(kinds(sql, standardConformingStrings: false) == [.select])
    }

    @Test func keywordsSplitByCommentsAreNotKeywords() {
        // PostgreSQL reads DR/**/OP as two words (a syntax error); so does the lexer.
        #expect(kind("DR/**/OP TABLE x") == .unknown)
        #expect(kinds("COPY t FROM/**/PROGRAM 'id'") == [.copy(.from, .program)])
        #expect(kinds("COPY t\nFROM\tPROGRAM 'id'") == [.copy(.from, .program)])
    }

    @Test func everyStatementOfAMultiStatementStringIsClassified() {
        #expect(kinds("SELECT 1; DROP TABLE x") == [.select, .drop(.table)])
        #expect(kinds("SELECT 1;DROP TABLE x;") == [.select, .drop(.table)])
        #expect(blocked("SELECT 1; DROP TABLE x", by: "DROP"))
        #expect(kinds("BEGIN; TRUNCATE t; COMMIT") == [.begin, .truncate, .commit])
    }

    @Test func parenthesesDoNotHideTheStatement() {
        #expect(kind("(SELECT 1)") == .select)
        #expect(kind("((((DELETE FROM t))))") == .delete)
    }

    @Test func writesHiddenInsideOtherStatements() {
        #expect(blocked("WITH d AS (DELETE FROM t) SELECT 1", by: "DELETE"))
        #expect(blocked("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", by: "DELETE"))
        #expect(blocked("EXPLAIN ANALYZE DELETE FROM t", by: "DELETE"))
        #expect(blocked("EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t", by: "DELETE"))
        #expect(blocked("explain analyse delete from t", by: "DELETE"))
        #expect(!blocked("EXPLAIN DELETE FROM t", by: "DELETE"))
        #expect(blocked("PREPARE p AS DELETE FROM t", by: "DELETE"))
        #expect(blocked("COPY (DELETE FROM t RETURNING *) TO STDOUT", by: "DELETE"))
        #expect(blocked("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", by: "DELETE"))
        #expect(blocked("CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u", by: "DELETE"))
        #expect(statement("EXPLAIN ANALYZE DELETE FROM t").isUnboundedWrite)
        #expect(statement("WITH d AS (UPDATE t SET a = 1) SELECT 1").isUnboundedWrite)
    }

    @Test func dangerousFunctionsAreSeenHoweverTheyAreWritten() {
        let forbidden = QualifiedName(["pg_read_file"])
        for sql in [
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT PG_READ_FILE('/etc/passwd')",
            "SELECT pg_catalog.pg_read_file('/etc/passwd')",
            "SELECT pg_catalog . /* x */ pg_read_file ('/etc/passwd')",
            "SELECT \"pg_read_file\"('/etc/passwd')",
            "SELECT \"pg_catalog\".\"pg_read_file\"('/etc/passwd')",
            "SELECT U&\"pg\\005fread\\005ffile\"('/etc/passwd')",
            "SELECT * FROM pg_read_file('/etc/passwd')",
            "SELECT * FROM t WHERE x = (SELECT pg_read_file('/etc/passwd'))",
            "WITH a AS (SELECT pg_read_file('/etc/passwd')) SELECT * FROM a",
            "SELECT 1; SELECT pg_read_file('/etc/passwd')",
            "SELECT length(pg_read_file('/etc/passwd'))",
            "SELECT xmlparse(CONTENT pg_read_file('/etc/passwd'))",
            "SELECT now() AT TIME ZONE pg_read_file('/etc/passwd')",
            "SELECT ARRAY[pg_read_file('/etc/passwd')]",
            "SELECT CASE WHEN true THEN pg_read_file('/etc/passwd') END",
            "EXPLAIN ANALYZE SELECT pg_read_file('/etc/passwd')",
            "CREATE TABLE x AS SELECT pg_read_file('/etc/passwd')",
            "INSERT INTO t VALUES (pg_read_file('/etc/passwd'))",
            "UPDATE t SET a = pg_read_file('/etc/passwd')",
            "CALL pg_read_file('/etc/passwd')",
        ] {
            #expect(SQLParser.statements(in: sql).contains { $0.calls(forbidden) }, "\(sql)")
        }
        #expect(!statement("SELECT 'pg_read_file(1)', $$pg_read_file('x')$$").calls(forbidden))
        #expect(!statement("SELECT \"PG_READ_FILE\"('x')").calls(forbidden))
    }

    @Test func opaqueCodeIsItsOwnKind() {
        #expect(blocked("DO $$ BEGIN EXECUTE 'DROP TABLE x'; END $$", by: "DO"))
        #expect(!blocked("DO $$ BEGIN EXECUTE 'DROP TABLE x'; END $$", by: "DROP"))
        #expect(blocked("CALL cleanup()", by: "CALL"))
        #expect(blocked("EXECUTE stmt(1)", by: "EXECUTE"))
    }

    @Test func unicodeIdentifiers() {
        #expect(targets("DROP TABLE übertabelle, \"Ärger\", 表") == ["übertabelle", "Ärger", "表"])
        #expect(targets("DROP TABLE U&\"\\00e4rger\"") == ["ärger"])
        #expect(kind("DROP TABLE café; ") == .drop(.table))
    }

    @Test func veryLongStatementIsLinear() {
        // 1 MiB: one SELECT with a long IN list, long strings and comments, then a DROP.
        var sql = "SELECT * FROM t WHERE a IN ("
        while sql.utf8.count < 1 << 20 {
            sql += "1234, 'a string; with DROP TABLE', /* ; */ f(x), "
        }
        sql += "0); DROP TABLE x"
        let clock = ContinuousClock()
        var all: [SQLStatement] = []
        let elapsed = clock.measure { all = SQLParser.statements(in: sql) }
        #expect(all.map(\.kind) == [.select, .drop(.table)])
        #expect(all[0].functions.map(\.description) == ["f"])
        print("1 MiB statement classified in \(elapsed)")
    }

    @Test func deeplyNestedInputIsLinear() {
        let depth = 100_000
        let sql = String(repeating: "(", count: depth) + "SELECT 1" + String(repeating: ")", count: depth)
        #expect(kinds(sql) == [.select])
        let nestedComment = String(repeating: "/*", count: depth) + String(repeating: "*/", count: depth) + "SELECT 1"
        #expect(kinds(nestedComment) == [.select])
        let calls = "SELECT " + String(repeating: "f(", count: depth) + String(repeating: ")", count: depth)
        #expect(functions(calls) == ["f"])
        let ctes =
            "WITH " + (0..<20_000).map { "c\($0) AS (SELECT 1) SEARCH" }.joined(separator: " WITH ") + " SELECT 1"
        _ = SQLParser.statements(in: ctes)
        let unclosed = "SELECT " + String(repeating: "$a$ ", count: 1) + String(repeating: "$ab", count: 100_000)
        #expect(kinds(unclosed) == [.unparseable])
    }
}
