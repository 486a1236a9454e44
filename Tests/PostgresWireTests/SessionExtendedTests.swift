import Masking
import NIOCore
import Policy
import Testing

@testable import PostgresWire

@Suite("Session: extended query protocol")
struct SessionExtendedTests {
    static let blocking = TestRules.rules(blocks: [TestRules.blockDDL()])

    @Test func parseBindExecuteSyncIsRecordedPerExecuteWithItsParameters() {
        var harness = SessionHarness.established(rules: Self.blocking)
        var actions: [SessionAction] = []
        actions += harness.client(.parse(.init(name: "s1", query: "SELECT name FROM customers WHERE id = $1")))
        actions += harness.client(.bind(.init(portal: "", statement: "s1", parameters: [ByteBuffer(string: "42")])))
        actions += harness.client(.execute(portal: "", maxRows: 0))
        actions += harness.client(.sync)
        #expect(actions.toServer.count == 2, "Parse and Bind go at once; Execute waits for its record")
        #expect(actions.records.count == 1)
        let evidence = actions.records[0]
        #expect(evidence.origin == .execute(statement: "s1", portal: ""))
        #expect(evidence.text == "SELECT name FROM customers WHERE id = $1")
        #expect(evidence.parameters == ["42"])
        #expect(evidence.kinds == ["SELECT"])
        let released = harness.machine.recordCompleted(evidence.id)
        #expect(released.toServer == [.execute(portal: "", maxRows: 0), .sync])

        let answer = harness.server(
            .parseComplete, .bindComplete, row("Alice"), .commandComplete(tag: "SELECT 1"), .readyForQuery(.idle))
        #expect(answer.toClient.count == 5)
        #expect(answer.outcomes.map(\.result) == [.completed(commandTag: "SELECT 1")])
        #expect(answer.outcomes.first?.rowsSent == 1)
    }

    @Test func aBlockedParseInAPipelineAnswersInOrderWithOneReadyForQuery() {
        var harness = SessionHarness.established(rules: Self.blocking)
        var actions: [SessionAction] = []
        actions += harness.client(.parse(.init(name: "", query: "SELECT 1")))
        actions += harness.client(.bind(.init(portal: "", statement: "")))
        actions += harness.client(.execute(portal: "", maxRows: 0))
        actions += harness.client(.parse(.init(name: "", query: "DROP TABLE customers")))
        actions += harness.client(.bind(.init(portal: "", statement: "")))
        actions += harness.client(.execute(portal: "", maxRows: 0))
        actions += harness.client(.sync)
        #expect(actions.blockedRecords.count == 1)
        #expect(actions.blockedRecords.first?.origin == .parse(statement: ""))
        #expect(actions.records.count == 1, "only the allowed Execute is recorded for forwarding")
        #expect(actions.toClient.isEmpty, "the error waits for the answers to what was forwarded before it")
        actions += harness.completeRecords(actions)
        #expect(
            actions.toServer == [
                .parse(.init(name: "", query: "SELECT 1")), .bind(.init(portal: "", statement: "")),
                .execute(portal: "", maxRows: 0), .sync,
            ], "nothing of the blocked statement reaches the server; the Sync does")

        let answer = harness.server(
            .parseComplete, .bindComplete, row("1"), .commandComplete(tag: "SELECT 1"), .readyForQuery(.idle))
        let messages = answer.toClient
        #expect(messages.count == 6)
        #expect(
            Array(messages.prefix(4)) == [.parseComplete, .bindComplete, row("1"), .commandComplete(tag: "SELECT 1")])
        guard case .errorResponse(let fields) = messages[4] else {
            Issue.record("expected the blocked Parse's ErrorResponse fifth, got \(messages)")
            return
        }
        #expect(fields[.sqlState] == "42501")
        #expect(messages[5] == .readyForQuery(.idle))
        #expect(messages.filter { if case .readyForQuery = $0 { true } else { false } }.count == 1)
    }

    @Test func aBatchWithOnlyABlockedStatementIsAnsweredByUsAlone() {
        var harness = SessionHarness.established(rules: Self.blocking)
        var actions: [SessionAction] = []
        actions += harness.client(.parse(.init(name: "", query: "TRUNCATE orders")))
        actions += harness.client(.bind(.init(portal: "", statement: "")))
        actions += harness.client(.describe(.portal("")))
        actions += harness.client(.execute(portal: "", maxRows: 0))
        actions += harness.client(.sync)
        #expect(actions.serverBytes.isEmpty)
        #expect(actions.toClient.count == 2)
        #expect(actions.toClient.last == .readyForQuery(.idle))
        // The session goes on.
        let next = harness.client(.parse(.init(name: "", query: "SELECT 1")))
        #expect(next.toServer.count == 1)
    }

    @Test func aServerErrorSkipsTheRestOfTheBatchLikeTheServerDoes() {
        var harness = SessionHarness.established()
        var actions: [SessionAction] = []
        actions += harness.client(.parse(.init(name: "", query: "SELECT 1/0")))
        actions += harness.client(.bind(.init(portal: "", statement: "")))
        actions += harness.client(.execute(portal: "", maxRows: 0))
        actions += harness.client(.parse(.init(name: "", query: "SELECT 2")))
        actions += harness.client(.bind(.init(portal: "", statement: "")))
        actions += harness.client(.execute(portal: "", maxRows: 0))
        actions += harness.client(.sync)
        let records = actions.records
        #expect(records.count == 2)
        _ = harness.completeRecords(actions)
        var error = PostgresErrorFields()
        error[.severity] = "ERROR"
        error[.sqlState] = "22012"
        error[.message] = "division by zero"
        let answer = harness.server(.parseComplete, .bindComplete, .errorResponse(error), .readyForQuery(.idle))
        #expect(answer.toClient == [.parseComplete, .bindComplete, .errorResponse(error), .readyForQuery(.idle)])
        #expect(answer.outcomes.map(\.result) == [.failed(sqlState: "22012"), .notExecuted])
        #expect(answer.outcomes.map(\.id) == records.map(\.id))
    }

    @Test func aServerErrorBeforeTheClientsSyncDiscardsUntilSync() {
        var harness = SessionHarness.established()
        _ = harness.client(.parse(.init(name: "", query: "SELECT nope")))
        var error = PostgresErrorFields()
        error[.severity] = "ERROR"
        error[.sqlState] = "42703"
        _ = harness.client(.flush)
        #expect(harness.server(.errorResponse(error)).toClient == [.errorResponse(error)])
        // The server skips these until Sync; so do we (they are not forwarded, not recorded).
        let skipped = harness.client(.bind(.init(portal: "", statement: "")))
        #expect(skipped.isEmpty)
        let sync = harness.client(.sync)
        #expect(sync.toServer == [.sync])
        #expect(harness.server(.readyForQuery(.idle)).toClient == [.readyForQuery(.idle)])
    }

    @Test func describeAndPortalSuspendedArePassedThrough() {
        var harness = SessionHarness.established()
        var actions: [SessionAction] = []
        actions += harness.client(.parse(.init(name: "s", query: "SELECT id FROM big", parameterTypes: [])))
        actions += harness.client(.describe(.statement("s")))
        actions += harness.client(.bind(.init(portal: "p", statement: "s")))
        actions += harness.client(.execute(portal: "p", maxRows: 1))
        actions += harness.client(.sync)
        _ = harness.completeRecords(actions)
        let answer = harness.server(
            .parseComplete, .parameterDescription([]), .rowDescription([field("id", type: 23)]), .bindComplete,
            row("1"), .portalSuspended, .readyForQuery(.inTransaction))
        #expect(answer.toClient.count == 7)
        #expect(answer.outcomes.map(\.result) == [.suspended])
        let again = harness.client(.execute(portal: "p", maxRows: 1))
        #expect(again.records.first?.origin == .execute(statement: "s", portal: "p"))
    }

    @Test func closeAndFlushAreForwardedAndAnswered() {
        var harness = SessionHarness.established()
        #expect(harness.client(.close(.statement("s"))).toServer == [.close(.statement("s"))])
        #expect(harness.client(.flush).toServer == [.flush])
        #expect(harness.server(.closeComplete).toClient == [.closeComplete])
        #expect(harness.client(.sync).toServer == [.sync])
        #expect(harness.server(.readyForQuery(.idle)).toClient == [.readyForQuery(.idle)])
    }

    @Test func copyFromStdinInTheExtendedProtocolIgnoresTheSyncSentDuringTheCopy() {
        // libpq sends Parse/Bind/Execute/Sync, then the copy data, CopyDone and another Sync; the server ignores
        // the first Sync because it arrives during COPY FROM STDIN.
        var harness = SessionHarness.established()
        var actions: [SessionAction] = []
        actions += harness.client(.parse(.init(name: "", query: "COPY t FROM STDIN")))
        actions += harness.client(.bind(.init(portal: "", statement: "")))
        actions += harness.client(.execute(portal: "", maxRows: 0))
        actions += harness.client(.sync)
        _ = harness.completeRecords(actions)
        _ = harness.server(.parseComplete, .bindComplete, .copyInResponse(.init(format: .text, columnFormats: [.text])))
        #expect(harness.client(.copyData(ByteBuffer(string: "1\n"))).toServer.count == 1)
        _ = harness.client(.copyDone)
        _ = harness.client(.sync)
        let answer = harness.server(.commandComplete(tag: "COPY 1"), .readyForQuery(.idle))
        #expect(answer.toClient == [.commandComplete(tag: "COPY 1"), .readyForQuery(.idle)])
        #expect(answer.closeError == nil)
        #expect(harness.client(.query("SELECT 1")).records.count == 1)
    }

    @Test func aFlushAfterABlockedParseStillReachesTheServer() {
        // A client that sends Flush and waits before its Sync must get the answers queued before our error.
        var harness = SessionHarness.established(rules: Self.blocking)
        _ = harness.client(.parse(.init(name: "a", query: "SELECT 1")))
        _ = harness.client(.parse(.init(name: "b", query: "DROP TABLE t")))
        #expect(harness.client(.flush).toServer == [.flush])
        let answer = harness.server(.parseComplete)
        #expect(answer.toClient.count == 2)
        guard case .errorResponse = answer.toClient.last else {
            Issue.record("expected the blocked Parse's error after ParseComplete")
            return
        }
        #expect(harness.client(.sync).toServer == [.sync])
    }
}
