import Approvals
import Audit
import Control
import Foundation
import Logging
import NIOCore
import Policy
import Synchronization

/// The daemon's one ``ApprovalBook``, behind a lock, and everything around it that does I/O:
/// evidence for every event, the held sessions' callbacks, the expiry timer, watchers of
/// `interlock approvals watch`, and webhooks.
///
/// Ordering: a held statement is released or failed only after the entry that decides it
/// (`approval.approved` with `complete`, `approval.denied`, `approval.timed_out`, `grant.used`) is
/// durable, so the log never shows a statement running without the decision that let it run.
/// If that entry cannot be written the statement fails (fail closed).
final class ApprovalCenter: Sendable {
    /// How a held statement ends, delivered to its session (on whatever thread; the session hops to
    /// its event loop).
    enum Verdict: Sendable {
        case approved(request: String, by: [String])
        case denied(request: String, by: String, reason: String)
        case timedOut(request: String, timeout: Duration)
        /// The decision could not be recorded: the statement must not run.
        case unrecorded(request: String)
    }

    /// What ``hold(_:deliver:)`` did.
    enum HoldOutcome: Sendable {
        /// An open grant window covers the statement: run it (its `grant.used` entry is durable).
        case granted(Grant)
        /// The statement waits (its `approval.requested` entry is durable); the verdict comes later.
        case held(ApprovalRequest)
    }

    /// A statement to hold, with who asked and where.
    struct HoldRequest: Sendable {
        var requester: Identity
        var resource: String
        var session: String
        var statementNumber: UInt64
        var rule: Applied<ApproveSpec>
        var statement: HeldStatement
        var displayText: String
        var displayParameters: [String?]
        var webhookSecret: [UInt8]?
    }

    private struct Waiter: Sendable {
        var deliver: @Sendable (Verdict) -> Void
        var webhook: (url: String, secret: [UInt8])?
    }

    private struct State: Sendable {
        var book = ApprovalBook()
        var waiters: [String: Waiter] = [:]
        var sequence: UInt64 = 0
        var recent: [WatchEntry] = []
    }

    /// An event kept for watchers, with what decides who may see it.
    private struct WatchEntry: Sendable {
        var info: ApprovalEventInfo
        var approvers: IdentityMatcher
        var owner: UInt32

        func visible(to identity: Identity, all: Bool) -> Bool {
            all || owner == identity.uid || approvers.matches(identity)
        }
    }

    /// Events kept for `approvals watch` to catch up on.
    static let watchMemory = 512

    private let state = Mutex(State())
    private let changed = NSCondition()
    let audit: AuditLog
    let logger: Logger
    private let clock: @Sendable () -> Date
    private let webhook: WebhookNotifier?

    init(
        audit: AuditLog, webhook: WebhookNotifier?, logger: Logger,
        clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.audit = audit
        self.webhook = webhook
        self.logger = logger
        self.clock = clock
    }

    // MARK: Sessions

    /// Holds a statement, or lets it through an open grant window. `completion` runs once the entry
    /// saying which is durable (or with the error that kept it from being written); `deliver` later
    /// gets the verdict of a held statement.
    func hold(
        _ h: HoldRequest, deliver: @escaping @Sendable (Verdict) -> Void,
        completion: @escaping @Sendable (Result<HoldOutcome, AuditError>) -> Void
    ) {
        let now = clock()
        let (event, outcome): (ApprovalEvent, HoldOutcome) = state.withLock { s in
            if case .grantUsed(let g)? = s.book.useGrant(
                identity: h.requester, rule: h.rule.rule, resource: h.resource, now: now)
            {
                return (.grantUsed(g), .granted(g))
            }
            let request = s.book.request(
                requester: h.requester, resource: h.resource, session: h.session, rule: h.rule, statement: h.statement,
                recordedText: h.displayText, now: now)
            s.waiters[request.id] = Waiter(
                deliver: deliver,
                webhook: h.rule.spec.webhook.flatMap { spec in h.webhookSecret.map { (spec.url, $0) } })
            return (.requested(request), .held(request))
        }
        var extra: [String: AuditValue] = ["statement": .uint(h.statementNumber)]
        if case .requested = event, !h.displayParameters.isEmpty {
            extra["parameters"] = .array(h.displayParameters.map { $0.map { .string($0) } ?? .null })
        }
        record(event, now: now, extra: extra) { [self] result in
            switch result {
            case .success:
                completion(.success(outcome))
                if case .held(let request) = outcome { notifyWebhook(request) }
            case .failure(let error):
                if case .held(let request) = outcome {
                    // Nobody may approve what the log does not show: drop the request.
                    _ = state.withLock { s in
                        s.waiters[request.id] = nil
                        return s.book.withdraw(request.id, now: clock())
                    }
                }
                completion(.failure(error))
            }
        }
    }

    /// The client went away, or cancelled, while its statement waited. Quiet when the request has
    /// already ended (a decision and a disconnect may cross).
    func withdraw(_ id: String, reason: String) {
        let now = clock()
        let events = state.withLock { s in
            s.waiters[id] = nil
            return s.book.withdraw(id, now: now)
        }
        for event in events {
            record(event, now: now, extra: ["reason": .string(reason)]) { _ in }
        }
    }

    /// The released statement ended with `result` (`statement.end`'s words). `releasedBy` is the
    /// request whose approval released it, or the grant window it ran under.
    func executed(releasedBy: String, subject: AuditSubject, statement: UInt64, result: String, sqlState: String?) {
        var fields: [String: AuditValue] = [
            releasedBy.hasPrefix("grt-") ? "grant" : "request": .string(releasedBy), "statement": .uint(statement),
            "result": .string(result),
        ]
        if let sqlState { fields["sqlstate"] = .string(sqlState) }
        append("approval.executed", subject: subject, fields: fields) { _ in }
    }

    // MARK: Approvers

    /// One approver's yes. Throws the book's refusal; returns once the decision is durable (and the
    /// statement released when it completes the request), with a sentence for the approver.
    func approve(
        _ id: String, by approver: Identity, reason: String?, grant: Duration?, digest: String
    ) throws(ApprovalError) -> (message: String, grant: Grant?) {
        let now = clock()
        let (events, waiter) = try state.withLock { s throws(ApprovalError) in
            let events = try s.book.approve(
                id, approver: approver, reason: reason, grant: grant, digest: digest, now: now)
            var waiter: Waiter?
            if events.contains(where: { if case .approved(_, _, _, true) = $0 { true } else { false } }) {
                waiter = s.waiters.removeValue(forKey: id.lowercased())
            }
            return (events, waiter)
        }
        var opened: Grant?
        var message = ""
        let done = DispatchGroup()
        for event in events {
            switch event {
            case .approved(let request, _, _, let complete):
                done.enter()
                record(event, now: now) { result in
                    defer { done.leave() }
                    guard complete, let waiter else { return }
                    switch result {
                    case .success:
                        waiter.deliver(.approved(request: request.id, by: Self.approvers(of: events)))
                    case .failure:
                        waiter.deliver(.unrecorded(request: request.id))
                    }
                }
                message =
                    complete
                    ? "approved \(request.id): the statement runs now"
                    : "approved \(request.id); it needs \(request.required) distinct approvers"
            case .grantOpened(let g):
                opened = g
                done.enter()
                record(event, now: now) { _ in done.leave() }
            default:
                done.enter()
                record(event, now: now) { _ in done.leave() }
            }
        }
        _ = done.wait(timeout: .now() + 10)
        if let opened {
            message += "; grant window \(opened.id) open until \(AuditLog.formatTime(opened.until))"
        }
        return (message, opened)
    }

    /// One approver's no: the statement fails with their name and reason.
    func deny(_ id: String, by approver: Identity, reason: String) throws(ApprovalError) -> String {
        let now = clock()
        let (events, waiter) = try state.withLock { s throws(ApprovalError) in
            let events = try s.book.deny(id, approver: approver, reason: reason, now: now)
            return (events, s.waiters.removeValue(forKey: id.lowercased()))
        }
        let done = DispatchGroup()
        for event in events {
            done.enter()
            record(event, now: now) { _ in
                defer { done.leave() }
                if case .denied(let request, let by, let reason) = event {
                    waiter?.deliver(.denied(request: request.id, by: by.displayName, reason: reason))
                }
            }
        }
        _ = done.wait(timeout: .now() + 10)
        return "denied \(id.lowercased()): the statement fails with your reason"
    }

    /// Ends a grant window early.
    func revoke(_ id: String, by revoker: Identity) throws(ApprovalError) -> String {
        let now = clock()
        let events = try state.withLock { s throws(ApprovalError) in try s.book.revokeGrant(id, by: revoker, now: now) }
        let done = DispatchGroup()
        for event in events {
            done.enter()
            record(event, now: now) { _ in done.leave() }
        }
        _ = done.wait(timeout: .now() + 10)
        if case .grantExpired? = events.first { return "\(id.lowercased()) had already expired" }
        return "revoked \(id.lowercased())"
    }

    func pending() -> [PendingApproval] {
        let now = clock()
        return state.withLock { $0.book.pending(now: now) }
    }

    func grants() -> [GrantStatus] {
        let now = clock()
        return state.withLock { $0.book.grants(now: now) }
    }

    /// Events after `sequence` (nil: after the newest one now) that `identity` may see (`all`:
    /// auditors and admins), waiting up to `wait` for one.
    func events(
        after sequence: UInt64?, visibleTo identity: Identity, all: Bool, wait: Duration
    )
        -> (events: [ApprovalEventInfo], sequence: UInt64)
    {
        let deadline = Date().addingTimeInterval(Double(wait.components.seconds))
        let start = sequence ?? state.withLock { $0.sequence }
        changed.lock()
        defer { changed.unlock() }
        while true {
            let (events, last) = state.withLock { s in
                (
                    s.recent.filter { $0.info.sequence > start && $0.visible(to: identity, all: all) }.map(\.info),
                    s.sequence
                )
            }
            if !events.isEmpty || Date() >= deadline { return (events, max(last, start)) }
            _ = changed.wait(until: deadline)
        }
    }

    // MARK: Time

    /// Fails what waited too long and closes windows past their end; call about once a second.
    func sweep() {
        let now = clock()
        let (events, waiters): ([ApprovalEvent], [String: Waiter]) = state.withLock { s in
            let events = s.book.expire(now: now)
            var waiters: [String: Waiter] = [:]
            for case .timedOut(let request) in events {
                waiters[request.id] = s.waiters.removeValue(forKey: request.id)
            }
            return (events, waiters)
        }
        for event in events {
            record(event, now: now) { result in
                guard case .timedOut(let request) = event, let waiter = waiters[request.id] else { return }
                switch result {
                case .success:
                    waiter.deliver(
                        .timedOut(
                            request: request.id,
                            timeout: .seconds(request.deadline.timeIntervalSince(request.createdAt))))
                case .failure:
                    waiter.deliver(.unrecorded(request: request.id))
                }
            }
        }
    }

    /// At start (after `daemon.started`): requests the previous run left pending (their connections ended with it) are
    /// recorded as lost. Found in the log: `approval.requested` entries since the previous
    /// `daemon.started` with no entry that ended them.
    func recordLostAtStart() {
        do {
            // Called after this run's own `daemon.started`: the previous run began at the one before.
            var q = AuditQuery(kind: AuditKind.daemonStarted)
            q.limit = 2
            let starts = try audit.query(q)
            guard starts.count == 2 else { return }
            let previousStart = starts[0].index
            // One pass over the previous run's approval entries, in index order.
            var open: Set<String> = []
            q = AuditQuery(kind: "approval.", afterIndex: previousStart)
            q.limit = 100_000
            q.oldestFirst = true
            for record in try audit.query(q) {
                guard case .object(let m)? = try? CanonicalJSON.decode(record.body),
                    case .string(let id)? = m["request"]
                else { continue }
                switch record.kind {
                case "approval.requested":
                    open.insert(id)
                case "approval.denied", "approval.timed_out", "approval.withdrawn":
                    open.remove(id)
                case "approval.approved" where m["complete"] == .bool(true):
                    open.remove(id)
                default:
                    break
                }
            }
            let lost = open.sorted()
            guard !lost.isEmpty else { return }
            logger.notice("approval requests lost at restart", metadata: ["requests": "\(lost)"])
            append(
                "approval.lost", subject: AuditSubject(),
                fields: [
                    "requests": .array(lost.map { .string($0) }),
                    "reason": .string("the daemon stopped while they waited; their connections ended with it"),
                ]
            ) { _ in }
        } catch {
            logger.error("cannot look for approval requests lost at restart", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Evidence and watchers

    /// Appends the event's entry, then tells watchers; `completion` gets the write's result.
    private func record(
        _ event: ApprovalEvent, now: Date, extra: [String: AuditValue] = [:],
        completion: @escaping @Sendable (Result<AuditRecord, AuditError>) -> Void
    ) {
        let (kind, subject, fields) = Self.evidence(event)
        append(kind, subject: subject, fields: fields.merging(extra) { a, _ in a }, completion: completion)
        var entry = Self.watchEntry(event, at: now)
        state.withLock { s in
            s.sequence += 1
            entry.info.sequence = s.sequence
            s.recent.append(entry)
            if s.recent.count > Self.watchMemory { s.recent.removeFirst(s.recent.count - Self.watchMemory) }
        }
        changed.lock()
        changed.broadcast()
        changed.unlock()
    }

    private func append(
        _ kind: String, subject: AuditSubject, fields: [String: AuditValue],
        completion: @escaping @Sendable (Result<AuditRecord, AuditError>) -> Void
    ) {
        let logger = self.logger
        audit.append(kind: kind, subject: subject, fields: fields) { result in
            if case .failure(let error) = result {
                logger.critical(
                    "could not record approval evidence", metadata: ["kind": "\(kind)", "error": "\(error)"])
            }
            completion(result)
        }
    }

    private func notifyWebhook(_ request: ApprovalRequest) {
        guard let webhook,
            let target = state.withLock({ $0.waiters[request.id]?.webhook })
        else { return }
        let info = Self.info(request, approvals: [], now: request.createdAt, mayDecide: false)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        struct Body: Encodable {
            var event = "approval.requested"
            var request: ApprovalInfo
            var approve: String
            var deny: String
        }
        let body = Body(
            request: info, approve: "interlock approvals approve \(request.id)",
            deny: "interlock approvals deny \(request.id) --reason TEXT")
        guard let bytes = try? encoder.encode(body) else { return }
        let subject = AuditSubject(user: request.requester.user, resource: request.resource, session: request.session)
        webhook.post(
            url: target.url, event: "approval.requested", deliveryID: request.id, body: Array(bytes),
            secret: target.secret
        ) { [self] delivery in
            var fields: [String: AuditValue] = [
                "request": .string(request.id), "url": .string(delivery.url),
                "attempts": .int(Int64(delivery.attempts)),
                "delivered": .bool(delivery.delivered),
            ]
            if let status = delivery.status { fields["http_status"] = .int(Int64(status)) }
            if let error = delivery.error { fields["error"] = .string(error) }
            append("approval.notified", subject: subject, fields: fields) { _ in }
        }
    }

    static func approvers(of events: [ApprovalEvent]) -> [String] {
        events.compactMap { if case .approved(_, let by, _, _) = $0 { by.displayName } else { nil } }
    }

    static func identityValue(_ i: Identity) -> AuditValue {
        var o: [String: AuditValue] = ["uid": .uint(UInt64(i.uid))]
        if let user = i.user { o["user"] = .string(user) }
        return .object(o)
    }

    /// The entry of one event: kind, subject (the requester's session), fields.
    static func evidence(_ event: ApprovalEvent) -> (String, AuditSubject, [String: AuditValue]) {
        func subject(_ r: ApprovalRequest) -> AuditSubject {
            AuditSubject(user: r.requester.user ?? "uid:\(r.requester.uid)", resource: r.resource, session: r.session)
        }
        func grantSubject(_ g: Grant) -> AuditSubject {
            AuditSubject(user: g.holder.user ?? "uid:\(g.holder.uid)", resource: g.resource)
        }
        func grantFields(_ g: Grant) -> [String: AuditValue] {
            [
                "grant": .string(g.id), "request": .string(g.requestID), "rule": .string(g.rule),
                "until": .string(AuditLog.formatTime(g.until)), "uses": .int(Int64(g.uses)),
            ]
        }
        switch event {
        case .requested(let r):
            var requester: [String: AuditValue] = ["uid": .uint(UInt64(r.requester.uid))]
            if let user = r.requester.user { requester["user"] = .string(user) }
            if let unit = r.requester.unit { requester["unit"] = .string(unit) }
            if let pid = r.requester.pid { requester["pid"] = .int(Int64(pid)) }
            if let exe = r.requester.executable { requester["executable"] = .string(exe) }
            var fields: [String: AuditValue] = [
                "request": .string(r.id), "rule": .string(r.rule), "text": .string(r.statementText),
                "digest": .string(r.statementDigest), "approvers": .string("\(r.approvers)"),
                "required": .int(Int64(r.required)), "deadline": .string(AuditLog.formatTime(r.deadline)),
                "requester": .object(requester),
            ]
            if let g = r.maximumGrant { fields["maximum_grant_s"] = .int(g.components.seconds) }
            return ("approval.requested", subject(r), fields)
        case .approved(let r, let by, let reason, let complete):
            var fields: [String: AuditValue] = [
                "request": .string(r.id), "approver": identityValue(by), "complete": .bool(complete),
                "digest": .string(r.statementDigest), "required": .int(Int64(r.required)),
            ]
            if let reason { fields["reason"] = .string(reason) }
            return ("approval.approved", subject(r), fields)
        case .denied(let r, let by, let reason):
            return (
                "approval.denied", subject(r),
                ["request": .string(r.id), "approver": identityValue(by), "reason": .string(reason)]
            )
        case .timedOut(let r):
            return (
                "approval.timed_out", subject(r),
                ["request": .string(r.id), "deadline": .string(AuditLog.formatTime(r.deadline))]
            )
        case .withdrawn(let r):
            return ("approval.withdrawn", subject(r), ["request": .string(r.id)])
        case .grantOpened(let g):
            var fields = grantFields(g)
            fields["approvers"] = .array(g.approvedBy.map { identityValue($0) })
            fields["holder"] = identityValue(g.holder)
            return ("grant.opened", grantSubject(g), fields)
        case .grantUsed(let g):
            return ("grant.used", grantSubject(g), grantFields(g))
        case .grantRevoked(let g, let by):
            var fields = grantFields(g)
            fields["by"] = identityValue(by)
            return ("grant.revoked", grantSubject(g), fields)
        case .grantExpired(let g):
            return ("grant.expired", grantSubject(g), grantFields(g))
        }
    }

    // MARK: What the CLI sees

    static func requester(_ i: Identity) -> RequesterInfo {
        RequesterInfo(uid: i.uid, user: i.user, unit: i.unit, pid: i.pid, executable: i.executable)
    }

    static func info(_ r: ApprovalRequest, approvals: [Approval], now: Date, mayDecide: Bool) -> ApprovalInfo {
        ApprovalInfo(
            id: r.id, requester: requester(r.requester), resource: r.resource, session: r.session, rule: r.rule,
            statement: r.statementText, digest: r.statementDigest, approvers: "\(r.approvers)", required: r.required,
            approvedBy: approvals.map(\.approver.displayName), createdAt: AuditLog.formatTime(r.createdAt),
            deadline: AuditLog.formatTime(r.deadline), ageSeconds: max(0, Int(now.timeIntervalSince(r.createdAt))),
            secondsLeft: max(0, Int(r.deadline.timeIntervalSince(now).rounded(.up))),
            maximumGrantSeconds: r.maximumGrant.map { Int($0.components.seconds) }, mayDecide: mayDecide)
    }

    static func info(_ g: Grant, now: Date) -> GrantInfo {
        GrantInfo(
            id: g.id, holder: requester(g.holder), rule: g.rule, resource: g.resource, request: g.requestID,
            approvedBy: g.approvedBy.map(\.displayName), openedAt: AuditLog.formatTime(g.openedAt),
            until: AuditLog.formatTime(g.until), secondsLeft: max(0, Int(g.until.timeIntervalSince(now).rounded(.up))),
            uses: g.uses)
    }

    private static func watchEntry(_ event: ApprovalEvent, at now: Date) -> WatchEntry {
        let info = watchInfo(event, at: now)
        switch event {
        case .requested(let r), .approved(let r, _, _, _), .denied(let r, _, _), .timedOut(let r), .withdrawn(let r):
            return WatchEntry(info: info, approvers: r.approvers, owner: r.requester.uid)
        case .grantOpened(let g), .grantUsed(let g), .grantRevoked(let g, _), .grantExpired(let g):
            return WatchEntry(info: info, approvers: g.approvers, owner: g.holder.uid)
        }
    }

    static func watchInfo(_ event: ApprovalEvent, at now: Date) -> ApprovalEventInfo {
        let at = AuditLog.formatTime(now)
        switch event {
        case .requested(let r):
            return ApprovalEventInfo(
                sequence: 0, event: "requested", at: at, request: info(r, approvals: [], now: now, mayDecide: false))
        case .approved(let r, let by, let reason, let complete):
            return ApprovalEventInfo(
                sequence: 0, event: complete ? "approved" : "approved_partly", at: at,
                request: info(r, approvals: [], now: now, mayDecide: false), by: by.displayName, reason: reason)
        case .denied(let r, let by, let reason):
            return ApprovalEventInfo(
                sequence: 0, event: "denied", at: at, request: info(r, approvals: [], now: now, mayDecide: false),
                by: by.displayName, reason: reason)
        case .timedOut(let r):
            return ApprovalEventInfo(
                sequence: 0, event: "timed_out", at: at, request: info(r, approvals: [], now: now, mayDecide: false))
        case .withdrawn(let r):
            return ApprovalEventInfo(
                sequence: 0, event: "withdrawn", at: at, request: info(r, approvals: [], now: now, mayDecide: false))
        case .grantOpened(let g):
            return ApprovalEventInfo(sequence: 0, event: "grant_opened", at: at, grant: info(g, now: now))
        case .grantUsed(let g):
            return ApprovalEventInfo(sequence: 0, event: "grant_used", at: at, grant: info(g, now: now))
        case .grantRevoked(let g, let by):
            return ApprovalEventInfo(
                sequence: 0, event: "grant_revoked", at: at, grant: info(g, now: now), by: by.displayName)
        case .grantExpired(let g):
            return ApprovalEventInfo(sequence: 0, event: "grant_expired", at: at, grant: info(g, now: now))
        }
    }
}
