import Testing

@testable import SQL

@Suite struct PolicyPatternTests {
    @Test func aVerbMatchesEveryObject() {
        #expect(StatementKind.drop(.table).matches(policyName: "DROP"))
        #expect(StatementKind.drop(.function).matches(policyName: "drop"))
        #expect(StatementKind.drop(.materializedView).matches(policyName: "DROP"))
        #expect(!StatementKind.dropTableLike.matches(policyName: "TRUNCATE"))
        #expect(StatementKind.alter(.system).matches(policyName: "ALTER"))
        #expect(StatementKind.alter(.system).matches(policyName: "ALTER SYSTEM"))
    }

    @Test func objectNamesMatchWholeWords() {
        #expect(StatementKind.create(.function).matches(policyName: "CREATE FUNCTION"))
        #expect(StatementKind.create(.function).matches(policyName: "CREATE OR REPLACE FUNCTION"))
        #expect(StatementKind.create(.function).matches(policyName: "  create   function "))
        #expect(!StatementKind.create(.procedure).matches(policyName: "CREATE FUNCTION"))
        #expect(!StatementKind.drop(.tablespace).matches(policyName: "DROP TABLE"))
        #expect(StatementKind.drop(.routine).matches(policyName: "DROP FUNCTION"))
        #expect(StatementKind.create(.user).matches(policyName: "CREATE ROLE"))
        #expect(StatementKind.create(.materializedView).matches(policyName: "CREATE MATERIALIZED VIEW"))
        #expect(!StatementKind.create(.materializedView).matches(policyName: "CREATE VIEW"))
    }

    @Test func copyVariants() {
        let fromProgram = StatementKind.copy(.from, .program)
        #expect(fromProgram.description == "COPY FROM PROGRAM")
        #expect(fromProgram.matches(policyName: "COPY"))
        #expect(fromProgram.matches(policyName: "COPY FROM"))
        #expect(fromProgram.matches(policyName: "COPY PROGRAM"))
        #expect(fromProgram.matches(policyName: "COPY FROM PROGRAM"))
        #expect(!fromProgram.matches(policyName: "COPY TO"))
        #expect(!StatementKind.copy(.from, .standardStream).matches(policyName: "COPY PROGRAM"))
        #expect(StatementKind.copy(.to, .standardStream).matches(policyName: "COPY TO STDOUT"))
    }

    @Test func synonyms() {
        #expect(StatementKind.commit.matches(policyName: "END"))
        #expect(StatementKind.rollback.matches(policyName: "ABORT"))
        #expect(StatementKind.begin.matches(policyName: "START TRANSACTION"))
        #expect(StatementKind.analyze.matches(policyName: "ANALYSE"))
        #expect(StatementKind.explain(analyze: true).matches(policyName: "EXPLAIN"))
        #expect(!StatementKind.explain(analyze: false).matches(policyName: "EXPLAIN ANALYZE"))
    }

    @Test func unknownNamesAreRejected() {
        #expect(StatementPattern("DRPO") == nil)
        #expect(StatementPattern("") == nil)
        #expect(StatementPattern("DROP TABLE NOW") == nil)
        #expect(StatementPattern("drop table")?.description == "DROP TABLE")
    }

    @Test func everyKindHasANameThatMatchesIt() {
        for kind in StatementKind.allKinds {
            #expect(StatementPattern(kind.description)?.matches(kind) == true, "\(kind)")
        }
        #expect(Set(StatementKind.allKinds.map(\.description)).count == StatementKind.allKinds.count)
    }

    @Test func statementsMatchThroughTheirEffectiveKinds() {
        let pattern = StatementPattern("DELETE")!
        #expect(statement("WITH d AS (DELETE FROM t) SELECT 1").matches(pattern))
        #expect(!statement("SELECT 1").matches(pattern))
        #expect(statement("SELECT 1").matches(StatementPattern("SELECT")!))
    }
}

extension StatementKind {
    fileprivate static let dropTableLike = StatementKind.drop(.table)
}
