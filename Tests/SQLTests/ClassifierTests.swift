import Testing

@testable import SQL

@Suite struct ClassifierTests {
    @Test(arguments: [
        ("SELECT 1", StatementKind.select),
        ("INSERT INTO t VALUES (1)", .insert),
        ("UPDATE t SET a = 1 WHERE b", .update),
        ("DELETE FROM t WHERE a", .delete),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DO NOTHING", .merge),
        ("COPY t FROM STDIN", .copy(.from, .standardStream)),
        ("COPY t (a, b) TO STDOUT WITH (FORMAT csv)", .copy(.to, .standardStream)),
        ("COPY (SELECT 1) TO PROGRAM 'gzip > /tmp/x'", .copy(.to, .program)),
        ("COPY t FROM PROGRAM 'curl evil'", .copy(.from, .program)),
        ("COPY t TO '/tmp/out'", .copy(.to, .file)),
        ("COPY BINARY t FROM '/tmp/in'", .copy(.from, .file)),
        ("CREATE TABLE t (a int)", .create(.table)),
        ("CREATE TEMP TABLE t AS SELECT 1", .create(.table)),
        ("CREATE UNLOGGED TABLE IF NOT EXISTS t (a int)", .create(.table)),
        ("CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)", .create(.index)),
        ("CREATE OR REPLACE VIEW v AS SELECT 1", .create(.view)),
        ("CREATE MATERIALIZED VIEW m AS SELECT 1", .create(.materializedView)),
        ("CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql", .create(.function)),
        ("CREATE PROCEDURE p() LANGUAGE sql AS $$ $$", .create(.procedure)),
        ("CREATE ROLE r LOGIN", .create(.role)),
        ("CREATE USER u WITH PASSWORD 'x'", .create(.user)),
        ("CREATE EXTENSION IF NOT EXISTS dblink", .create(.extension)),
        ("CREATE SCHEMA s", .create(.schema)),
        ("CREATE CONSTRAINT TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", .create(.trigger)),
        ("CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()", .create(.eventTrigger)),
        ("CREATE FOREIGN DATA WRAPPER w", .create(.foreignDataWrapper)),
        ("CREATE TRUSTED PROCEDURAL LANGUAGE plx", .create(.language)),
        ("CREATE TEXT SEARCH CONFIGURATION c (COPY = english)", .create(.textSearch)),
        ("CREATE FROBNICATOR x", .create(.other)),
        ("ALTER TABLE t ADD COLUMN c int", .alter(.table)),
        ("ALTER SYSTEM SET work_mem = '1GB'", .alter(.system)),
        ("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO r", .alter(.defaultPrivileges)),
        ("ALTER USER MAPPING FOR u SERVER s OPTIONS (SET password 'x')", .alter(.userMapping)),
        ("DROP TABLE a, b", .drop(.table)),
        ("DROP INDEX CONCURRENTLY IF EXISTS i", .drop(.index)),
        ("DROP OWNED BY r", .drop(.owned)),
        ("TRUNCATE t", .truncate),
        ("GRANT SELECT ON t TO r", .grant),
        ("REVOKE ALL ON t FROM r", .revoke),
        ("BEGIN", .begin), ("BEGIN ISOLATION LEVEL SERIALIZABLE", .begin), ("START TRANSACTION", .begin),
        ("COMMIT", .commit), ("END", .commit), ("ROLLBACK", .rollback), ("ABORT", .rollback),
        ("ROLLBACK TO SAVEPOINT s", .rollback), ("SAVEPOINT s", .savepoint), ("RELEASE SAVEPOINT s", .release),
        ("PREPARE TRANSACTION 'x'", .prepareTransaction), ("COMMIT PREPARED 'x'", .commitPrepared),
        ("ROLLBACK PREPARED 'x'", .rollbackPrepared),
        ("SET search_path = public", .set), ("RESET ALL", .reset), ("SHOW work_mem", .show),
        ("PREPARE p (int) AS SELECT $1", .prepare), ("EXECUTE p (1)", .execute), ("DEALLOCATE ALL", .deallocate),
        ("DO $$ BEGIN EXECUTE 'DROP TABLE x'; END $$", .do), ("DO LANGUAGE plpgsql $$ $$", .do),
        ("CALL p(1)", .call),
        ("EXPLAIN SELECT 1", .explain(analyze: false)),
        ("EXPLAIN ANALYZE SELECT 1", .explain(analyze: true)),
        ("VALUES (1), (2)", .values), ("TABLE t", .table),
        ("LISTEN c", .listen), ("NOTIFY c, 'x'", .notify), ("UNLISTEN *", .unlisten),
        ("VACUUM (VERBOSE, ANALYZE) t", .vacuum), ("ANALYZE t", .analyze), ("ANALYSE t", .analyze),
        ("CLUSTER t USING i", .cluster), ("REINDEX TABLE CONCURRENTLY t", .reindex),
        ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", .lock), ("DISCARD ALL", .discard),
        ("COMMENT ON TABLE t IS 'x'", .comment), ("SECURITY LABEL FOR selinux ON TABLE t IS 'x'", .securityLabel),
        ("REFRESH MATERIALIZED VIEW CONCURRENTLY m", .refreshMaterializedView),
        ("IMPORT FOREIGN SCHEMA r FROM SERVER s INTO l", .importForeignSchema),
        ("LOAD 'auto_explain'", .load), ("FETCH 10 FROM c", .fetch), ("MOVE NEXT IN c", .move),
        ("CLOSE c", .close), ("DECLARE c CURSOR FOR SELECT 1", .declare), ("CHECKPOINT", .checkpoint),
        ("FROBNICATE everything", .unknown), ("42", .unknown), ("\"select\" 1", .unknown),
    ])
    func kinds(_ sql: String, expected: StatementKind) {
        #expect(kind(sql) == expected, "\(sql)")
    }

    @Test func withTakesTheKindOfTheMainStatement() {
        #expect(kind("WITH a AS (SELECT 1) SELECT * FROM a") == .select)
        #expect(kind("WITH RECURSIVE a(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM a) DELETE FROM t") == .delete)
        #expect(
            kind("WITH a AS MATERIALIZED (SELECT 1), b AS NOT MATERIALIZED (SELECT 2) UPDATE t SET x = 1") == .update)
        #expect(kind("WITH delete AS (SELECT 1) SELECT * FROM delete") == .select)
        #expect(kind("WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a") == .insert)
        #expect(
            kind(
                "WITH RECURSIVE s AS (SELECT 1) SEARCH DEPTH FIRST BY a, b SET o CYCLE a SET c TO 1 DEFAULT 0 USING p SELECT 1"
            ) == .select)
    }

    @Test func dataModifyingCTEsCountForBlocking() {
        let cte = statement("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d")
        #expect(cte.kind == .select)
        #expect(cte.effectiveKinds == [.select, .delete])
        #expect(cte.isUnboundedWrite)
        #expect(!cte.hasWhere)
        let bounded = statement("WITH u AS (UPDATE t SET a = 1 WHERE id = 2 RETURNING *) SELECT * FROM u")
        #expect(bounded.effectiveKinds == [.select, .update])
        #expect(!bounded.isUnboundedWrite)
        #expect(
            statement("WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT 1").effectiveKinds == [.select, .insert])
        // A CTE body with its own WITH still counts.
        #expect(
            statement("WITH a AS (WITH b AS (SELECT 1) DELETE FROM t) SELECT 1").effectiveKinds == [.select, .delete])
        #expect(
            statement("COPY (DELETE FROM t RETURNING *) TO STDOUT").effectiveKinds == [
                .copy(.to, .standardStream), .delete,
            ])
    }

    @Test func otherHiddenWrites() {
        #expect(
            statement("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 2").effectiveKinds == [
                .insert, .update,
            ])
        #expect(statement("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING").effectiveKinds == [.insert])
        #expect(
            statement(
                "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (1)"
            ).effectiveKinds == [.merge, .delete, .insert])
        let selectInto = statement("SELECT * INTO TEMP copy_of FROM t")
        #expect(selectInto.effectiveKinds == [.select, .create(.table)])
        #expect(selectInto.targets.map(\.description) == ["copy_of", "t"])
        #expect(statement("SELECT 1 FOR UPDATE").effectiveKinds == [.select])
    }

    @Test func explainClassifiesTheInnerStatement() {
        let plain = statement("EXPLAIN DELETE FROM t")
        #expect(plain.kind == .explain(analyze: false))
        #expect(plain.innerKind == .delete)
        #expect(plain.effectiveKinds == [.explain(analyze: false)])
        #expect(!plain.isUnboundedWrite)
        let analyzed = statement("EXPLAIN ANALYZE VERBOSE DELETE FROM t")
        #expect(analyzed.effectiveKinds == [.explain(analyze: true), .delete])
        #expect(analyzed.isUnboundedWrite)
        #expect(analyzed.targets.map(\.description) == ["t"])
        #expect(
            statement("EXPLAIN ANALYSE DELETE FROM t WHERE a").effectiveKinds == [.explain(analyze: true), .delete])
        #expect(statement("EXPLAIN ANALYSE DELETE FROM t WHERE a").hasWhere)
        #expect(kind("EXPLAIN (ANALYZE) DELETE FROM t") == .explain(analyze: true))
        #expect(kind("EXPLAIN (COSTS off, ANALYZE true, FORMAT json) SELECT 1") == .explain(analyze: true))
        #expect(kind("EXPLAIN (ANALYZE off) DELETE FROM t") == .explain(analyze: false))
        #expect(kind("EXPLAIN (ANALYZE 0) DELETE FROM t") == .explain(analyze: false))
        #expect(kind("EXPLAIN (ANALYZE 'false') DELETE FROM t") == .explain(analyze: false))
        #expect(kind("EXPLAIN (ANALYZE maybe) DELETE FROM t") == .explain(analyze: true))
        #expect(statement("EXPLAIN (SELECT 1)").innerKind == .select)
        #expect(
            statement("EXPLAIN ANALYZE WITH d AS (DELETE FROM t) SELECT 1").effectiveKinds == [
                .explain(analyze: true), .select, .delete,
            ])
    }

    @Test func prepareClassifiesTheStatementItPrepares() {
        let prepared = statement("PREPARE p (int) AS DELETE FROM t WHERE id = $1")
        #expect(prepared.kind == .prepare)
        #expect(prepared.innerKind == .delete)
        #expect(prepared.effectiveKinds == [.prepare, .delete])
        #expect(prepared.hasWhere)
        #expect(statement("PREPARE p AS DELETE FROM t").isUnboundedWrite)
        #expect(statement("EXECUTE p(1)").targets.map(\.description) == ["p"])
    }

    @Test func leadingParentheses() {
        #expect(kind("(SELECT 1)") == .select)
        #expect(kind("((SELECT 1) UNION (SELECT 2))") == .select)
        #expect(kind("(VALUES (1))") == .values)
        #expect(statement("(SELECT * FROM t WHERE a)").hasWhere)
    }

    @Test func targetsOfWrites() {
        #expect(targets("INSERT INTO public.Customers (a) VALUES (1)") == ["public.customers"])
        #expect(targets("INSERT INTO \"Public\".\"Customers\" SELECT * FROM s") == ["\"Public\".\"Customers\"", "s"])
        #expect(targets("UPDATE ONLY t AS x SET a = 1 FROM u WHERE x.id = u.id") == ["t", "u"])
        #expect(targets("DELETE FROM ONLY t USING u, v WHERE t.a = u.a") == ["t", "u", "v"])
        #expect(targets("TRUNCATE TABLE a, ONLY b, c * RESTART IDENTITY") == ["a", "b", "c"])
        #expect(targets("TRUNCATE a") == ["a"])
        #expect(targets("DROP TABLE IF EXISTS a, s.b CASCADE") == ["a", "s.b"])
        #expect(targets("DROP FUNCTION f(int), g(text, int)") == ["f", "g"])
        #expect(targets("DROP TRIGGER tr ON t") == ["tr", "t"])
        #expect(targets("ALTER TABLE IF EXISTS ONLY x RENAME TO y") == ["x"])
        #expect(targets("ALTER TABLE ALL IN TABLESPACE a SET TABLESPACE b").isEmpty)
        #expect(targets("COPY s.t (a) FROM STDIN") == ["s.t"])
        #expect(targets("CREATE TABLE IF NOT EXISTS s.t (a int REFERENCES u (id))") == ["s.t"])
        #expect(targets("CREATE INDEX ON ONLY t (a)") == ["t"])
        #expect(targets("CREATE INDEX IF NOT EXISTS i ON t USING btree (a)") == ["i", "t"])
        #expect(targets("CREATE POLICY p ON t USING (true)") == ["p", "t"])
        #expect(targets("CREATE RULE r AS ON DELETE TO t DO INSTEAD NOTHING") == ["r", "t"])
        #expect(targets("GRANT SELECT, UPDATE (a) ON TABLE a, b TO r") == ["a", "b"])
        #expect(targets("GRANT EXECUTE ON FUNCTION f(int) TO r") == ["f"])
        #expect(targets("GRANT ALL ON ALL TABLES IN SCHEMA s TO r") == ["s"])
        #expect(targets("REVOKE admin FROM bob") == ["admin"])
        #expect(targets("LOCK t1, t2") == ["t1", "t2"])
        #expect(targets("VACUUM FULL ANALYZE t (a), u") == ["t", "u"])
        #expect(targets("COMMENT ON COLUMN t.c IS 'x'") == ["t.c"])
        #expect(targets("SET SESSION AUTHORIZATION bob") == ["session_authorization"])
        #expect(targets("SET LOCAL search_path TO x") == ["search_path"])
        #expect(targets("SET ROLE admin") == ["role"])
        #expect(targets("SET TIME ZONE 'UTC'") == ["timezone"])
        #expect(targets("IMPORT FOREIGN SCHEMA r FROM SERVER s INTO l") == ["l"])
    }

    @Test func relationsOfSelect() {
        #expect(
            targets("SELECT * FROM a, b AS x, c y JOIN d ON true LEFT JOIN e USING (id)") == ["a", "b", "c", "d", "e"])
        #expect(
            targets("SELECT * FROM s.a WHERE x IN (SELECT y FROM b WHERE EXISTS (SELECT 1 FROM c))") == [
                "s.a", "b", "c",
            ])
        #expect(targets("SELECT * FROM (SELECT * FROM a) s, LATERAL (SELECT * FROM b) l") == ["a", "b"])
        #expect(targets("SELECT * FROM ONLY a NATURAL JOIN (b CROSS JOIN c)") == ["a", "b", "c"])
        #expect(targets("SELECT * FROM generate_series(1, 3) g, t") == ["t"])
        #expect(targets("SELECT * FROM a JOIN b ON a.x = b.x, c") == ["a", "b", "c"])
        #expect(targets("SELECT * FROM a WHERE a.x = ANY(ARRAY[1, 2])") == ["a"])
        #expect(targets("SELECT extract(year FROM d), substring(s FROM 2 FOR 3) FROM t") == ["t"])
        #expect(targets("SELECT a IS DISTINCT FROM b FROM t") == ["t"])
        #expect(targets("SELECT * FROM ROWS FROM (f(), g()) x") == [])
        #expect(targets("WITH c AS (SELECT * FROM a) SELECT * FROM c") == ["a", "c"])
        #expect(targets("INSERT INTO t SELECT * FROM s ON CONFLICT (id) DO UPDATE SET a = 1, b = 2") == ["t", "s"])
        #expect(targets("SELECT * FROM \"Mixed\".\"Case\"") == ["\"Mixed\".\"Case\""])
        #expect(targets("SELECT * FROM café") == ["café"])
        #expect(targets("COPY t FROM STDIN").count == 1)
        #expect(targets("FETCH NEXT FROM cur").isEmpty)
    }

    @Test func whereAtTheStatementsOwnLevel() {
        #expect(statement("UPDATE t SET a = 1 WHERE id = 2").hasWhere)
        #expect(!statement("UPDATE t SET a = 1 WHERE id = 2").isUnboundedWrite)
        #expect(statement("UPDATE t SET a = 1").isUnboundedWrite)
        #expect(statement("DELETE FROM t").isUnboundedWrite)
        #expect(statement("DELETE FROM t WHERE CURRENT OF c").hasWhere)
        let sub = statement("DELETE FROM t USING (SELECT * FROM u WHERE u.a) s")
        #expect(!sub.hasWhere)
        #expect(sub.isUnboundedWrite)
        let subSet = statement("UPDATE t SET a = (SELECT max(b) FROM u WHERE u.id = 1)")
        #expect(!subSet.hasWhere)
        #expect(subSet.isUnboundedWrite)
        let cte = statement("WITH x AS (SELECT 1 WHERE true) DELETE FROM t")
        #expect(!cte.hasWhere)
        #expect(cte.isUnboundedWrite)
        #expect(statement("TRUNCATE t").isUnboundedWrite)
        #expect(!statement("SELECT * FROM t").isUnboundedWrite)
        #expect(!statement("INSERT INTO t SELECT * FROM s").isUnboundedWrite)
        #expect(statement("SELECT * FROM t WHERE a").hasWhere)
    }

    @Test func functionCalls() {
        #expect(functions("SELECT pg_read_file('/etc/passwd')") == ["pg_read_file"])
        #expect(functions("SELECT PG_CATALOG.PG_READ_FILE('/x')") == ["pg_catalog.pg_read_file"])
        #expect(functions("SELECT \"pg_read_file\"('/x'), \"Odd\"()") == ["pg_read_file", "\"Odd\""])
        #expect(
            functions("SELECT lower(upper(x)) FROM t WHERE length(y) > coalesce(z, 1)") == [
                "lower", "upper", "length", "coalesce",
            ])
        #expect(functions("SELECT * FROM t WHERE a IN (1) AND EXISTS (SELECT 1) AND b = ANY (ARRAY[1])").isEmpty)
        #expect(functions("SELECT x::numeric(10, 2), CAST(y AS varchar(3)), z::s.mytype(4)").isEmpty)
        #expect(functions("SELECT count(*) FILTER (WHERE a) OVER (PARTITION BY b) FROM t").map { $0 } == ["count"])
        #expect(functions("SELECT * FROM f(1) AS x(a int, b text)") == ["f"])
        #expect(functions("SELECT * FROM dblink('c', 'DELETE FROM t') AS (x text)") == ["dblink"])
        #expect(functions("WITH c(a) AS (SELECT lo_export(1, '/x')) SELECT * FROM c") == ["lo_export"])
        #expect(functions("SELECT (SELECT max(a) FROM (SELECT pg_ls_dir('.') a) s)") == ["max", "pg_ls_dir"])
        #expect(functions("INSERT INTO t (a, b) VALUES (now(), DEFAULT)") == ["now"])
        #expect(
            functions("CREATE TABLE t (a numeric(10, 2), b mytype(3) DEFAULT gen(), c int REFERENCES u (id))") == [
                "gen"
            ])
        #expect(
            functions("CREATE FUNCTION f(a int, b mytype(1)) RETURNS TABLE (x int) AS 'select 1' LANGUAGE sql").isEmpty)
        #expect(
            functions("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION audit_fn()") == ["audit_fn"])
        #expect(functions("CALL s.proc(1, f(2))") == ["s.proc", "f"])
        #expect(functions("DROP FUNCTION f(int), g(int)").isEmpty)
        #expect(
            functions("ALTER TABLE t ADD COLUMN c mytype(3), ALTER COLUMN d TYPE other(2) USING conv(d)") == ["conv"])
        #expect(functions("CREATE INDEX ON t (lower(a))") == ["lower"])
        #expect(functions("SELECT now() AT TIME ZONE pg_read_file('/x')") == ["now", "pg_read_file"])
        #expect(functions("SELECT trim(BOTH pg_read_file('/x') FROM y)") == ["trim", "pg_read_file"])
        #expect(functions("SELECT concat(VARIADIC f(1))") == ["concat", "f"])
        #expect(functions("SELECT left('abc', 1), replace(a, b, c)") == ["left", "replace"])
        #expect(functions("SELECT load('x'), comment(1)") == ["load", "comment"])
        #expect(functions("SELECT 1 FROM t WHERE a = 1 OR pg_sleep(10) IS NULL") == ["pg_sleep"])
        #expect(functions("EXPLAIN (ANALYZE) SELECT f()") == ["f"])
        #expect(functions("PREPARE p (int) AS SELECT f($1)") == ["f"])
    }

    @Test func functionsInsideCTEsAndSubqueriesAtAnyDepth() {
        let sql = """
            WITH a AS (SELECT f1() FROM (SELECT f2() FROM t WHERE x = (SELECT f3())) s)
            SELECT f4() FROM a WHERE EXISTS (SELECT f5((SELECT f6())))
            """
        #expect(functions(sql) == ["f1", "f2", "f3", "f4", "f5", "f6"])
    }

    @Test func qualifiedNames() {
        #expect(QualifiedName(parsing: "pg_catalog.PG_READ_FILE") == QualifiedName(["pg_catalog", "pg_read_file"]))
        #expect(QualifiedName(parsing: "\"Odd\".x") == QualifiedName(["Odd", "x"]))
        #expect(QualifiedName(parsing: "a b") == nil)
        #expect(QualifiedName(parsing: "") == nil)
        #expect(QualifiedName(["pg_catalog", "pg_read_file"]).matches(QualifiedName(["pg_read_file"])))
        #expect(QualifiedName(["pg_read_file"]).matches(QualifiedName(["pg_catalog", "pg_read_file"])))
        #expect(!QualifiedName(["other", "pg_read_file"]).matches(QualifiedName(["pg_catalog", "pg_read_file"])))
        #expect(QualifiedName(["a\"b", "C"]).description == "\"a\"\"b\".\"C\"")
        // PostgreSQL keeps 63 bytes of a name.
        let long = String(repeating: "a", count: 70)
        #expect(statement("DROP TABLE \(long)").targets == [QualifiedName([String(repeating: "a", count: 63)])])
        // U&"..." names are decoded.
        #expect(functions("SELECT U&\"pg_read\\005ffile\"('/x')") == ["pg_read_file"])
        #expect(functions("SELECT U&\"pg_read!005ffile\" UESCAPE '!' ('/x')") == ["pg_read_file"])
        #expect(functions("SELECT U&\"\\+01F600\"()") == ["😀"])
    }
}

@Suite("SQL: COPY output")
struct CopyOutputTests {
    static func output(_ sql: String) -> CopyOutput? {
        SQLParser.statements(in: sql).first?.copyOut
    }

    @Test func aTableCopyIsDescribedAsASelectOfItsColumns() {
        #expect(Self.output("COPY customers TO STDOUT")?.query == "SELECT * FROM customers")
        #expect(
            Self.output("copy public.\"Orders\" (id, \"E-mail\") to stdout")?.query
                == "SELECT id, \"E-mail\" FROM public.\"Orders\"")
        #expect(
            Self.output("COPY (SELECT email FROM c WHERE x = ')') TO STDOUT")?.query
                == "SELECT email FROM c WHERE x = ')'")
    }

    @Test func formatsAndOptionsOldAndNewSyntax() {
        let csv = Self.output("COPY t TO STDOUT WITH (FORMAT csv, HEADER true)")
        #expect(csv?.format == .csv && csv?.header == true && csv?.hasLayoutOptions == false)
        let old = Self.output("COPY t TO STDOUT CSV HEADER")
        #expect(old?.format == .csv && old?.header == true)
        #expect(Self.output("COPY t TO STDOUT (FORMAT csv, HEADER off)")?.header == false)
        #expect(Self.output("COPY BINARY t TO STDOUT")?.format == .binary)
        #expect(Self.output("COPY t TO STDOUT (FORMAT binary)")?.format == .binary)
        #expect(Self.output("COPY t TO STDOUT (DELIMITER ';')")?.hasLayoutOptions == true)
        #expect(Self.output("COPY t TO STDOUT WITH NULL AS 'x'")?.hasLayoutOptions == true)
        #expect(Self.output("COPY t TO STDOUT")?.format == .text)
    }

    @Test func onlyCopyToStdoutHasAnOutput() {
        #expect(Self.output("COPY t FROM STDIN") == nil)
        #expect(Self.output("COPY t TO '/tmp/x'") == nil)
        #expect(Self.output("SELECT 1") == nil)
    }
}
