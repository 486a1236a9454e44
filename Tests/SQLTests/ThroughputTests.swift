import Testing

@testable import SQL

/// Prints lexing and classification throughput on a mixed workload (no timing assertion: the
/// figure depends on the machine and the build configuration, which is printed too).
@Suite struct ThroughputTests {
    static let workload: [String] = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
        "UPDATE pgbench_accounts SET abalance = abalance + -1434 WHERE aid = 48213;",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -1434, CURRENT_TIMESTAMP);",
        "BEGIN;", "COMMIT;",
        """
        SELECT c.id, c.email, o.total, lower(c.name) AS name FROM public.customers c \
        JOIN orders o ON o.customer_id = c.id LEFT JOIN "Regions" r USING (region_id) \
        WHERE o.created_at > now() - interval '30 days' AND c.status IN ('active', 'trial') \
        ORDER BY o.total DESC LIMIT 50; -- dashboard
        """,
        """
        WITH recent AS (SELECT customer_id, sum(total) AS s FROM orders WHERE created_at > $1 GROUP BY 1) \
        SELECT * FROM recent r JOIN customers c ON c.id = r.customer_id WHERE r.s > $2::numeric(12, 2);
        """,
        "DELETE FROM sessions WHERE expires_at < now() /* cleanup */;",
        "COPY orders (id, total) FROM STDIN WITH (FORMAT csv);",
        """
        CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN \
        NEW.updated_at := now(); RETURN NEW; END $fn$;
        """,
        "SELECT set_config('search_path', 'public', false), E'line\\nbreak', 'it''s';",
    ]

    @Test func mixedWorkload() {
        #if DEBUG
        let size = 1 << 20
        #else
        let size = 8 << 20
        #endif
        var text = ""
        while text.utf8.count < size {
            for statement in Self.workload { text += statement + "\n" }
        }
        let bytes = Array(text.utf8)
        let clock = ContinuousClock()
        // Per query, as the proxy does: one Query message at a time.
        let queries = Self.workload.map { Array($0.utf8) }
        var statementCount = 0
        var queryBytes = 0
        let perQuery = clock.measure {
            for _ in 0..<(bytes.count / queries.map(\.count).reduce(0, +)) {
                for query in queries {
                    statementCount += SQLParser.statements(in: query).count
                    queryBytes += query.count
                }
            }
        }
        var lexedTokens = 0
        let lexOnly = clock.measure {
            lexedTokens = bytes.withUnsafeBufferPointer { Lexer.tokenize($0).count }
        }
        var bulkStatements = 0
        let bulk = clock.measure { bulkStatements = SQLParser.statements(in: bytes).count }
        #expect(bulkStatements > 0 && statementCount > 0 && lexedTokens > 0)
        #if DEBUG
        let configuration = "debug"
        #else
        let configuration = "release"
        #endif
        func rate(_ count: Int, _ duration: Duration) -> String {
            let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
            let mbPerSecond = Double(count) / seconds / 1_048_576
            return "\((mbPerSecond * 10).rounded() / 10) MiB/s"
        }
        print(
            """
            SQL throughput (\(configuration), single core): \
            per query \(rate(queryBytes, perQuery)) (\(statementCount) statements), \
            one \(bytes.count >> 20) MiB string \(rate(bytes.count, bulk)), lexer alone \(rate(bytes.count, lexOnly))
            """)
    }
}
