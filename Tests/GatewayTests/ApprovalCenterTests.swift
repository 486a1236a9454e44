import Approvals
import Audit
import Foundation
import Logging
import Policy
import Synchronization
import Testing

@testable import Gateway

/// The approval center on a real evidence log with a hand-driven clock: every event becomes its
/// entry, a held statement's session hears its verdict only after the deciding entry is durable,
/// watchers see what they may, and requests a previous run left pending are recorded at start.
@Suite struct ApprovalCenterTests {
    static let requester = Identity(uid: 1001, user: "svc-ci", groups: ["dba"], unit: "ci.service", pid: 42)
    static let dana = Identity(uid: 2001, user: "dana", groups: ["dba"])
    static let alice = Identity(uid: 2002, user: "alice", groups: ["staff"])
    static let rule = Applied(
        rule: "writes",
        spec: ApproveSpec(
            match: StatementMatcher(statements: [StatementName(parsing: "DELETE")!]),
            approvers: IdentityMatcher([.group("dba")]), required: 1, timeout: .seconds(60), grant: .seconds(300)))

    /// A clock the test moves.
    final class Clock: Sendable {
        private let now = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        var date: Date { now.withLock { $0 } }
        func advance(_ seconds: Double) { now.withLock { $0 = $0.addingTimeInterval(seconds) } }
    }

    /// Verdicts a held session received, in order.
    final class Inbox: Sendable {
        private let items = Mutex<[ApprovalCenter.Verdict]>([])
        func add(_ v: ApprovalCenter.Verdict) { items.withLock { $0.append(v) } }
        var all: [ApprovalCenter.Verdict] { items.withLock { $0 } }
    }

    static func withCenter(_ body: (ApprovalCenter, AuditLog, Clock) async throws -> Void) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("approvals-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let logger = Logger(label: "t", factory: { _ in SwiftLogNoOpLogHandler() })
        let log = try AuditLog.open(path: dir + "/audit.db", durability: .crash, logger: logger)
        defer { log.close() }
        let clock = Clock()
        let center = ApprovalCenter(audit: log, webhook: nil, logger: logger, clock: { clock.date })
        try await body(center, log, clock)
    }

    static func hold(
        _ center: ApprovalCenter, _ inbox: Inbox, text: String = "DELETE FROM t WHERE id = 1"
    ) async throws -> ApprovalCenter.HoldOutcome {
        let request = ApprovalCenter.HoldRequest(
            requester: requester, resource: "orders-db", session: "s1", statementNumber: 3, rule: rule,
            statement: HeldStatement(text: text), displayText: text, displayParameters: [], webhookSecret: nil)
        return try await withCheckedThrowingContinuation { continuation in
            center.hold(request, deliver: { inbox.add($0) }, completion: { continuation.resume(with: $0) })
        }
    }

    static func kinds(_ log: AuditLog) throws -> [String] {
        try log.query(AuditQuery()).map(\.kind)
    }

    static func fields(_ log: AuditLog, kind: String) throws -> [String: AuditValue] {
        guard let record = try log.query(AuditQuery(kind: kind)).last,
            case .object(let members) = try CanonicalJSON.decode(record.body)
        else { return [:] }
        return members
    }

    @Test func anApprovalIsRecordedBeforeTheSessionHearsIt() async throws {
        try await Self.withCenter { center, log, _ in
            let inbox = Inbox()
            guard case .held(let request) = try await Self.hold(center, inbox) else {
                Issue.record("expected a held statement")
                return
            }
            #expect(try Self.kinds(log) == ["approval.requested"], "the request is durable when hold completes")
            let requested = try Self.fields(log, kind: "approval.requested")
            #expect(requested["statement"] == .uint(3) && requested["request"] == .string(request.id))
            #expect(requested["requester"]?.object?["unit"] == .string("ci.service"))

            #expect(throws: ApprovalError.self) {
                try center.approve(
                    request.id, by: Self.requester, reason: nil, grant: nil, digest: request.statementDigest)
            }
            #expect(throws: ApprovalError.self) {
                try center.approve(request.id, by: Self.alice, reason: nil, grant: nil, digest: request.statementDigest)
            }
            #expect(inbox.all.isEmpty, "refusals release nothing")
            let (message, grant) = try center.approve(
                request.id, by: Self.dana, reason: "ok", grant: nil, digest: request.statementDigest)
            #expect(message.contains("runs now") && grant == nil)
            // approve() returns once the entry is durable, and the verdict follows it.
            #expect(try Self.kinds(log) == ["approval.requested", "approval.approved"])
            guard case .approved(let id, let by)? = inbox.all.first else {
                Issue.record("expected the approval, got \(inbox.all)")
                return
            }
            #expect(id == request.id && by == ["dana"])
            #expect(center.pending().isEmpty)
        }
    }

    @Test func aDenialAndATimeoutFailTheStatementWithTheirEntries() async throws {
        try await Self.withCenter { center, log, clock in
            let denied = Inbox()
            guard case .held(let first) = try await Self.hold(center, denied) else { return }
            _ = try center.deny(first.id, by: Self.dana, reason: "not during the freeze")
            guard case .denied(_, let by, let reason)? = denied.all.first else {
                Issue.record("expected a denial, got \(denied.all)")
                return
            }
            #expect(by == "dana" && reason == "not during the freeze")

            let late = Inbox()
            guard case .held(let second) = try await Self.hold(center, late, text: "DELETE FROM t WHERE id = 2") else {
                return
            }
            clock.advance(59)
            center.sweep()
            #expect(late.all.isEmpty, "not yet")
            clock.advance(2)
            center.sweep()
            try await waitFor { !late.all.isEmpty }
            guard case .timedOut(let id, let timeout)? = late.all.first else {
                Issue.record("expected a timeout, got \(late.all)")
                return
            }
            #expect(id == second.id && timeout == .seconds(60))
            #expect(try Self.kinds(log).suffix(2) == ["approval.requested", "approval.timed_out"])
        }
    }

    @Test func aGrantWindowLetsTheNextStatementThroughUntilItExpires() async throws {
        try await Self.withCenter { center, log, clock in
            let inbox = Inbox()
            guard case .held(let request) = try await Self.hold(center, inbox) else { return }
            let (_, grant) = try center.approve(
                request.id, by: Self.dana, reason: nil, grant: .seconds(120), digest: request.statementDigest)
            #expect(grant != nil)
            guard case .granted(let g) = try await Self.hold(center, Inbox(), text: "DELETE FROM t WHERE id = 9") else {
                Issue.record("expected the window to cover the next statement")
                return
            }
            #expect(g.id == grant?.id && g.uses == 1)
            #expect(try Self.kinds(log).last == "grant.used", "durable before the statement is let through")
            clock.advance(121)
            center.sweep()
            try await waitFor { (try? Self.kinds(log).last) == "grant.expired" }
            guard case .held = try await Self.hold(center, Inbox(), text: "DELETE FROM t WHERE id = 10") else {
                Issue.record("an expired window lets nothing through")
                return
            }
        }
    }

    @Test func watchersSeeWhatTheyMayDecideOrOwn() async throws {
        try await Self.withCenter { center, _, _ in
            guard case .held = try await Self.hold(center, Inbox()) else { return }
            let forDana = center.events(after: 0, visibleTo: Self.dana, all: false, wait: .seconds(1))
            #expect(forDana.events.map(\.event) == ["requested"])
            let forAlice = center.events(after: 0, visibleTo: Self.alice, all: false, wait: .seconds(1))
            #expect(forAlice.events.isEmpty)
            let forRequester = center.events(after: 0, visibleTo: Identity(uid: 1001), all: false, wait: .seconds(1))
            #expect(forRequester.events.count == 1)
            let forAuditor = center.events(after: 0, visibleTo: Self.alice, all: true, wait: .seconds(1))
            #expect(forAuditor.events.count == 1 && forAuditor.sequence == 1)
        }
    }

    @Test func requestsThePreviousRunLeftPendingAreRecordedAtStart() async throws {
        try await Self.withCenter { center, log, _ in
            _ = try await log.append(kind: AuditKind.daemonStarted, subject: AuditSubject(), fields: [:])
            guard case .held(let lost) = try await Self.hold(center, Inbox()) else { return }
            guard case .held(let decided) = try await Self.hold(center, Inbox(), text: "DELETE FROM t WHERE id = 5")
            else { return }
            _ = try center.deny(decided.id, by: Self.dana, reason: "no")
            // A new run starts.
            _ = try await log.append(kind: AuditKind.daemonStarted, subject: AuditSubject(), fields: [:])
            center.recordLostAtStart()
            try await waitFor { (try? Self.kinds(log).last) == "approval.lost" }
            #expect(try Self.fields(log, kind: "approval.lost")["requests"] == .array([.string(lost.id)]))
        }
    }
}

/// Polls `condition` for up to five seconds.
func waitFor(_ condition: @Sendable () -> Bool) async throws {
    for _ in 0..<500 {
        if condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("condition not met within 5 s")
}

extension AuditValue {
    var object: [String: AuditValue]? {
        if case .object(let o) = self { return o }
        return nil
    }
}
