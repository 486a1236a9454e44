import NIOCore
import Policy
import Testing

@testable import PostgresWire

@Suite("Session: statements held for approval")
struct SessionApprovalTests {
    static let rule = Applied(
        rule: "writes-need-approval",
        spec: ApproveSpec(
            match: StatementMatcher(statements: ["DELETE", "UPDATE"].map { StatementName(parsing: $0)! }),
            approvers: IdentityMatcher([.group("dba")]), required: 1, timeout: .seconds(600)))

    static var rules: ApplicableRules {
        CompiledRules([Rule(name: rule.rule, approve: rule.spec)])
            .rules(for: Identity(uid: 1001, user: "svc-ci"), resource: "orders-db")
    }

    static func holds(_ actions: [SessionAction]) -> [PostgresApprovalHold] {
        actions.compactMap { if case .requestApproval(let h) = $0 { h } else { nil } }
    }

    static var denial: PostgresErrorFields {
        var f = PostgresErrorFields()
        f[.severity] = "ERROR"
        f[.sqlState] = "42501"
        f[.message] = "denied by alice: not now"
        return f
    }

    @Test func aMatchingQueryIsRecordedAndHeldUntilApproved() {
        var h = SessionHarness.established(rules: Self.rules)
        let actions = h.client(.query("DELETE FROM orders WHERE id = 7"))
        #expect(actions.records.count == 1)
        #expect(actions.records.first?.decision == .approve(rule: "writes-need-approval"))
        let hold = Self.holds(actions)
        #expect(hold.count == 1)
        #expect(hold.first?.exactText == "DELETE FROM orders WHERE id = 7")
        #expect(hold.first?.rule.rule == "writes-need-approval")
        // The record becomes durable: still nothing reaches the server.
        #expect(h.completeRecords(actions).serverBytes.isEmpty)
        // A later query waits behind the held one, unjudged (no record yet).
        let later = h.client(.query("SELECT 1"))
        #expect(later.records.isEmpty && later.serverBytes.isEmpty)

        var notice = PostgresErrorFields()
        notice[.severity] = "NOTICE"
        notice[.message] = "held"
        var pending: [SessionAction] = []
        h.machine.approvalPending(hold[0].id, notice: notice, into: &pending)
        #expect(pending.toClient == [.noticeResponse(notice)])

        var released: [SessionAction] = []
        h.machine.approvalGranted(hold[0].id, into: &released)
        #expect(released.toServer == [.query("DELETE FROM orders WHERE id = 7")])
        // The paused query is judged now: recorded, then forwarded once durable.
        #expect(released.records.map(\.text) == ["SELECT 1"])
        #expect(h.completeRecords(released).toServer == [.query("SELECT 1")])
        let answer = h.server(.commandComplete(tag: "DELETE 1"), .readyForQuery(.idle))
        #expect(answer.outcomes.first?.result == .completed(commandTag: "DELETE 1"))
    }

    @Test func aDeniedQueryGetsTheErrorAndTheSessionGoesOnInItsTransaction() {
        var h = SessionHarness.established(rules: Self.rules)
        _ = h.completeRecords(h.client(.query("BEGIN")))
        _ = h.server(.commandComplete(tag: "BEGIN"), .readyForQuery(.inTransaction))
        let actions = h.client(.query("UPDATE orders SET state = 'x'"))
        _ = h.completeRecords(actions)
        let hold = Self.holds(actions)[0]
        var refused: [SessionAction] = []
        h.machine.approvalRefused(hold.id, error: Self.denial, outcome: "denied", into: &refused)
        #expect(refused.serverBytes.isEmpty, "a denied statement never reaches the server")
        #expect(refused.toClient == [.errorResponse(Self.denial), .readyForQuery(.inTransaction)])
        #expect(refused.outcomes.map(\.result) == [.notApproved("denied")])
        #expect(h.machine.heldClientBytes == 0)
        let commit = h.client(.query("COMMIT"))
        #expect(h.completeRecords(commit).toServer == [.query("COMMIT")])
    }

    @Test func aHeldExecuteIsReleasedWithItsBatchAndItsParametersAreBound() {
        var h = SessionHarness.established(rules: Self.rules)
        var actions: [SessionAction] = []
        actions += h.client(.parse(.init(name: "del", query: "DELETE FROM orders WHERE id = $1")))
        actions += h.client(.bind(.init(portal: "", statement: "del", parameters: [ByteBuffer(string: "7")])))
        actions += h.client(.execute(portal: "", maxRows: 0))
        actions += h.client(.sync)
        let hold = Self.holds(actions)
        #expect(hold.count == 1)
        #expect(hold.first?.parameters == [.text(Array("7".utf8))])
        #expect(hold.first?.displayParameters == ["7"])
        #expect(h.completeRecords(actions).toServer.isEmpty)
        #expect(
            actions.toServer == [
                .parse(.init(name: "del", query: "DELETE FROM orders WHERE id = $1")),
                .bind(.init(portal: "", statement: "del", parameters: [ByteBuffer(string: "7")])),
            ], "Parse and Bind run nothing and pass; Execute waits")
        var released: [SessionAction] = []
        h.machine.approvalGranted(hold[0].id, into: &released)
        #expect(released.toServer == [.execute(portal: "", maxRows: 0), .sync])
    }

    @Test func aRefusedExecuteSkipsItsBatchUntilSync() {
        var h = SessionHarness.established(rules: Self.rules)
        var actions: [SessionAction] = []
        actions += h.client(.parse(.init(name: "", query: "DELETE FROM orders WHERE id = $1")))
        actions += h.client(.bind(.init(portal: "", statement: "", parameters: [ByteBuffer(string: "7")])))
        actions += h.client(.execute(portal: "", maxRows: 0))
        actions += h.client(.parse(.init(name: "", query: "SELECT 2")))
        actions += h.client(.sync)
        _ = h.completeRecords(actions)
        let hold = Self.holds(actions)[0]
        var refused: [SessionAction] = []
        h.machine.approvalRefused(hold.id, error: Self.denial, outcome: "timed_out", into: &refused)
        // The Parse after the Execute is skipped like the server would; Sync still goes (Bind reached it).
        #expect(refused.toServer == [.sync])
        #expect(refused.outcomes.map(\.result) == [.notApproved("timed_out")])
        let answer = h.server(.parseComplete, .bindComplete, .readyForQuery(.idle))
        #expect(
            answer.toClient == [.parseComplete, .bindComplete, .errorResponse(Self.denial), .readyForQuery(.idle)])
    }

    @Test func theNoticeWaitsBehindEarlierAnswers() {
        var h = SessionHarness.established(rules: Self.rules)
        let first = h.client(.query("SELECT 1"))
        let held = h.client(.query("DELETE FROM orders"))
        _ = h.completeRecords(first + held)
        let hold = Self.holds(held)[0]
        var notice = PostgresErrorFields()
        notice[.severity] = "NOTICE"
        notice[.message] = "held"
        var pending: [SessionAction] = []
        h.machine.approvalPending(hold.id, notice: notice, into: &pending)
        #expect(pending.toClient.isEmpty, "SELECT 1's answer comes first")
        let answer = h.server(row("1"), .commandComplete(tag: "SELECT 1"), .readyForQuery(.idle))
        #expect(answer.toClient.last == .noticeResponse(notice))
    }

    @Test func aDisconnectWhileHeldEndsTheHeldStatementAsConnectionClosed() {
        var h = SessionHarness.established(rules: Self.rules)
        let held = h.client(.query("DELETE FROM orders"))
        _ = h.completeRecords(held)
        let closed = h.machine.clientClosed()
        #expect(closed.outcomes.map(\.result) == [.connectionClosed])
        #expect(closed.closes)
    }

    @Test func aBlockWinsOverAnApprovalInTheSameString() {
        let rules = CompiledRules([
            Rule(name: Self.rule.rule, approve: Self.rule.spec),
            Rule(name: "no-ddl", block: TestRules.blockDDL().spec),
        ]).rules(for: Identity(uid: 1001, user: "svc-ci"), resource: "orders-db")
        var h = SessionHarness.established(rules: rules)
        let actions = h.client(.query("DELETE FROM orders; DROP TABLE orders"))
        #expect(Self.holds(actions).isEmpty)
        #expect(actions.blockedRecords.count == 2)
    }

    @Test func approversSeeTheStatementWithDetectedValuesMasked() {
        let rules = CompiledRules([
            Rule(name: Self.rule.rule, approve: Self.rule.spec),
            Rule(name: "pii", mask: TestRules.mask(detectors: [.email], method: .redact).spec),
        ]).rules(for: Identity(uid: 1001, user: "svc-ci"), resource: "orders-db")
        var h = SessionHarness.established(rules: rules)
        let actions = h.client(.query("DELETE FROM customers WHERE email = 'alice@example.com'"))
        let hold = Self.holds(actions)[0]
        #expect(hold.exactText.contains("alice@example.com"), "the digest covers the statement as sent")
        #expect(!hold.displayText.contains("alice@example.com"), "approvers read it masked: \(hold.displayText)")
    }
}
