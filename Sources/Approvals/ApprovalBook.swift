import Crypto
import Foundation
import Policy

/// The approval state of one daemon: pending requests, the approvals collected for each, and
/// open grant windows.
///
/// A value with no clock, no timers and no I/O, like the wire state machines: every operation
/// takes `now` and returns what happened as ``ApprovalEvent``s, so the gateway (which owns the
/// book behind a lock) records evidence, releases or fails held statements and notifies watchers
/// by running the events, and tests drive time by hand. Nothing here survives a restart, on
/// purpose: a held statement's client connection does not either.
///
/// Deadlines are enforced in two places: ``expire(now:)`` reports what ran out (call it on a
/// timer), and every decision or grant lookup refuses what has run out even if the sweep has not
/// come yet, so a late timer never lets anything through (fail closed).
public struct ApprovalBook: Sendable {
    private struct Pending: Sendable {
        var request: ApprovalRequest
        var approvals: [Approval]
    }

    /// How a request ended, kept for a while so a late approver hears "already denied by alice"
    /// rather than "unknown request".
    private enum Outcome: Sendable {
        case approved
        case denied(by: String)
        case timedOut
        case withdrawn
    }

    /// How many finished requests are remembered for those messages.
    static let finishedMemory = 1024

    private var waiting: [String: Pending] = [:]
    private var windows: [String: Grant] = [:]
    private var finished: [String: Outcome] = [:]
    private var finishedOrder: [String] = []
    private let digester: StatementDigester

    /// - Parameter digestKey: the key of statement digests; a fresh random one unless a test needs
    ///   fixed digests. It never leaves the process.
    public init(digestKey: SymmetricKey = SymmetricKey(size: .bits256)) {
        digester = StatementDigester(key: digestKey)
    }

    // MARK: Requests

    /// The digest an approval of `statement` must name (what ``ApprovalRequest/statementDigest``
    /// holds for it).
    public func digest(of statement: HeldStatement) -> String { digester.digest(statement) }

    /// Holds `statement` under `rule` and returns the new request (record it as
    /// ``ApprovalEvent/requested(_:)``).
    ///
    /// Ask ``useGrant(identity:rule:resource:now:)`` first: an open window means no request.
    /// - Parameter recordedText: the statement as approvers may read it, already masked.
    public mutating func request(
        requester: Identity, resource: String, session: String, rule: Applied<ApproveSpec>, statement: HeldStatement,
        recordedText: String, now: Date
    ) -> ApprovalRequest {
        var rng = SystemRandomNumberGenerator()
        var id = ShortID.make(prefix: "apr-", using: &rng)
        while waiting[id] != nil || finished[id] != nil { id = ShortID.make(prefix: "apr-", using: &rng) }
        let request = ApprovalRequest(
            id: id, requester: requester, resource: resource, session: session, rule: rule.rule,
            statementText: recordedText, statementDigest: digester.digest(statement), approvers: rule.spec.approvers,
            required: rule.spec.required, createdAt: now,
            deadline: now.addingTimeInterval(rule.spec.timeout.timeInterval),
            maximumGrant: rule.spec.grant)
        waiting[id] = Pending(request: request, approvals: [])
        return request
    }

    /// One approver's yes to the statement with `digest`.
    ///
    /// Complete when `required` distinct approvers (by uid) said yes: the events then say
    /// `complete: true`, the request leaves the book, and when every approver asked for a window
    /// (`grant`), one opens for the shortest of them: with two approvers, neither opens a window the
    /// other did not agree to.
    ///
    /// Refused (``ApprovalError``, nothing changes): an unknown, finished or timed-out request;
    /// the requester's own uid, even when the approvers' group contains it; an identity the rule's
    /// approvers do not match; the same uid twice; another statement's digest; a grant the rule
    /// does not allow or longer than its `grant:`.
    public mutating func approve(
        _ id: String, approver: Identity, reason: String?, grant: Duration?, digest: String, now: Date
    ) throws(ApprovalError) -> [ApprovalEvent] {
        let id = ShortID.normalise(id)
        var entry = try decidable(id, by: approver, verb: "approve", now: now)
        let request = entry.request
        if entry.approvals.contains(where: { $0.approver.uid == approver.uid }) {
            throw ApprovalError(
                .alreadyApproved, "\(approver.displayName) already approved \(id); it needs a different approver")
        }
        guard digest.lowercased() == request.statementDigest else {
            throw ApprovalError(
                .digestMismatch,
                "digest \(digest) is not the statement held by \(id) (\(request.statementDigest)); list the request again"
            )
        }
        if let grant {
            guard grant > .zero else { throw ApprovalError(.invalidGrant, "a grant must be longer than zero") }
            guard let maximum = request.maximumGrant else {
                throw ApprovalError(
                    .grantNotAllowed, "rule \(request.rule) does not allow grant windows; approve without --grant")
            }
            guard grant <= maximum else {
                throw ApprovalError(
                    .grantTooLong,
                    "rule \(request.rule) allows grant windows of at most \(Self.describe(maximum)), not \(Self.describe(grant))"
                )
            }
        }
        entry.approvals.append(Approval(approver: approver, reason: Self.clean(reason), grant: grant, at: now))
        let complete = entry.approvals.count >= request.required
        var events: [ApprovalEvent] = [.approved(request, by: approver, reason: Self.clean(reason), complete: complete)]
        guard complete else {
            waiting[id] = entry
            return events
        }
        finish(id, .approved)
        let asked = entry.approvals.map(\.grant)
        if asked.allSatisfy({ $0 != nil }), let shortest = asked.compactMap({ $0 }).min() {
            var rng = SystemRandomNumberGenerator()
            var gid = ShortID.make(prefix: "grt-", using: &rng)
            while windows[gid] != nil { gid = ShortID.make(prefix: "grt-", using: &rng) }
            let g = Grant(
                id: gid, holder: request.requester, rule: request.rule, resource: request.resource, requestID: id,
                approvedBy: entry.approvals.map(\.approver), approvers: request.approvers, openedAt: now,
                until: now.addingTimeInterval(shortest.timeInterval), uses: 0)
            windows[gid] = g
            events.append(.grantOpened(g))
        }
        return events
    }

    /// One approver's no: it ends the request, whatever others approved before.
    ///
    /// Refused like ``approve(_:approver:reason:grant:digest:now:)`` for who may decide, and
    /// without a non-empty `reason` (the requester's error carries it).
    public mutating func deny(
        _ id: String, approver: Identity, reason: String, now: Date
    ) throws(ApprovalError) -> [ApprovalEvent] {
        let id = ShortID.normalise(id)
        let entry = try decidable(id, by: approver, verb: "deny", now: now)
        guard let reason = Self.clean(reason) else {
            throw ApprovalError(.reasonRequired, "a denial needs a reason: the requester is told it")
        }
        finish(id, .denied(by: approver.displayName))
        return [.denied(entry.request, by: approver, reason: reason)]
    }

    /// The client disconnected or cancelled while its statement waited. Not an error when the
    /// request already ended (a decision and a disconnect may cross): then nothing happens.
    public mutating func withdraw(_ id: String, now: Date) -> [ApprovalEvent] {
        let id = ShortID.normalise(id)
        guard let entry = waiting[id] else { return [] }
        finish(id, .withdrawn)
        return [.withdrawn(entry.request)]
    }

    // MARK: Time

    /// Requests whose deadline has come time out; windows whose end has come expire. Oldest
    /// first. Call it on a timer (a second is plenty: decisions refuse late requests anyway).
    public mutating func expire(now: Date) -> [ApprovalEvent] {
        var events: [ApprovalEvent] = []
        let late = waiting.values.filter { now >= $0.request.deadline }.sorted { Self.older($0.request, $1.request) }
        for entry in late {
            finish(entry.request.id, .timedOut)
            events.append(.timedOut(entry.request))
        }
        let ended = windows.values.filter { now >= $0.until }.sorted { ($0.until, $0.id) < ($1.until, $1.id) }
        for g in ended {
            windows[g.id] = nil
            events.append(.grantExpired(g))
        }
        return events
    }

    // MARK: Grants

    /// The open window that lets `identity`'s statement held by `rule` on `resource` run now, if
    /// any: same uid, same rule, same resource, not past its end. A lookup; nothing is counted.
    ///
    /// A window covers statements held *after* it opens; requests already pending stay pending
    /// (each was shown to approvers as one statement and is decided as one).
    public func grant(for identity: Identity, rule: String, resource: String, now: Date) -> Grant? {
        windows.values.filter { g in
            g.holder.uid == identity.uid && g.rule == rule && g.resource == resource && now < g.until
        }
        .min { ($0.openedAt, $0.id) < ($1.openedAt, $1.id) }
    }

    /// Lets one statement run under an open window: ``ApprovalEvent/grantUsed(_:)`` with the use
    /// counted, or nil when no window applies (then hold the statement with ``request(requester:resource:session:rule:statement:recordedText:now:)``).
    public mutating func useGrant(identity: Identity, rule: String, resource: String, now: Date) -> ApprovalEvent? {
        guard var g = grant(for: identity, rule: rule, resource: resource, now: now) else { return nil }
        g.uses += 1
        windows[g.id] = g
        return .grantUsed(g)
    }

    /// Ends a window early. Allowed to the rule's approvers (as they were when it opened) and to
    /// the holder giving it up. A window already past its end is reported as expired instead.
    public mutating func revokeGrant(
        _ id: String, by revoker: Identity, now: Date
    ) throws(ApprovalError)
        -> [ApprovalEvent]
    {
        let id = ShortID.normalise(id)
        guard let g = windows[id] else { throw ApprovalError(.unknownGrant, "no open grant window \(id)") }
        guard revoker.uid == g.holder.uid || g.approvers.matches(revoker) else {
            throw ApprovalError(
                .notAnApprover,
                "\(revoker.displayName) cannot revoke \(id): only \(g.approvers) or \(g.holder.displayName) may")
        }
        windows[id] = nil
        return now >= g.until ? [.grantExpired(g)] : [.grantRevoked(g, by: revoker)]
    }

    // MARK: Listings

    /// Pending requests, oldest first, with age and time left.
    public func pending(now: Date) -> [PendingApproval] {
        waiting.values.sorted { Self.older($0.request, $1.request) }.map { e in
            PendingApproval(
                request: e.request, approvals: e.approvals, age: now.duration(since: e.request.createdAt),
                timeLeft: e.request.deadline.duration(since: now))
        }
    }

    /// Open windows, oldest first, with time left; those past their end are left out.
    public func grants(now: Date) -> [GrantStatus] {
        windows.values.filter { now < $0.until }.sorted { ($0.openedAt, $0.id) < ($1.openedAt, $1.id) }.map {
            GrantStatus(grant: $0, timeLeft: $0.until.duration(since: now))
        }
    }

    // MARK: Helpers

    /// The pending entry `id` if `decider` may decide about it now, else why not. The requester
    /// check comes before the approvers check so the message is the true reason even when the
    /// requester is in the approvers' group.
    private func decidable(_ id: String, by decider: Identity, verb: String, now: Date) throws(ApprovalError) -> Pending
    {
        guard let entry = waiting[id] else {
            switch finished[id] {
            case nil: throw ApprovalError(.unknownRequest, "no pending approval request \(id)")
            case .approved?: throw ApprovalError(.alreadyFinished, "\(id) was already approved")
            case .denied(let by)?: throw ApprovalError(.alreadyFinished, "\(id) was already denied by \(by)")
            case .timedOut?: throw ApprovalError(.alreadyFinished, "\(id) already timed out")
            case .withdrawn?: throw ApprovalError(.alreadyFinished, "\(id) was withdrawn: the client went away")
            }
        }
        let request = entry.request
        guard now < request.deadline else { throw ApprovalError(.timedOut, "\(id) timed out; the statement fails") }
        guard decider.uid != request.requester.uid else {
            throw ApprovalError(.ownRequest, "\(decider.displayName) cannot \(verb) their own request \(id)")
        }
        guard request.approvers.matches(decider) else {
            throw ApprovalError(
                .notAnApprover,
                "\(decider.displayName) cannot \(verb) \(id): rule \(request.rule) needs one of \(request.approvers)")
        }
        return entry
    }

    private mutating func finish(_ id: String, _ outcome: Outcome) {
        waiting[id] = nil
        finished[id] = outcome
        finishedOrder.append(id)
        if finishedOrder.count > Self.finishedMemory {
            let drop = finishedOrder.count - Self.finishedMemory
            for old in finishedOrder.prefix(drop) { finished[old] = nil }
            finishedOrder.removeFirst(drop)
        }
    }

    private static func older(_ a: ApprovalRequest, _ b: ApprovalRequest) -> Bool {
        (a.createdAt, a.id) < (b.createdAt, b.id)
    }

    /// Trimmed, nil when nothing is left.
    private static func clean(_ reason: String?) -> String? {
        guard let r = reason?.trimmingCharacters(in: .whitespacesAndNewlines), !r.isEmpty else { return nil }
        return r
    }

    /// `30m`, `1h30m`, `45s`: how the policy file writes durations.
    static func describe(_ d: Duration) -> String {
        var s = Int(d.components.seconds)
        var out = ""
        if s >= 3600 {
            out += "\(s / 3600)h"
            s %= 3600
        }
        if s >= 60 {
            out += "\(s / 60)m"
            s %= 60
        }
        if s > 0 || out.isEmpty { out += "\(s)s" }
        return out
    }
}
