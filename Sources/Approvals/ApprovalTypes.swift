import Foundation
import Policy

/// One held statement waiting for approvers: everything the CLI lists and the evidence records,
/// and what a decision is checked against.
///
/// It copies what it needs from the rule (approvers, required, timeout, grant) rather than
/// keeping the rule: a policy reload while the statement waits must not change who may decide
/// about it or how long it may wait.
public struct ApprovalRequest: Sendable, Hashable {
    /// `apr-` and ten base32 characters.
    public var id: String
    public var requester: Identity
    public var resource: String
    /// The gateway's session id (as in `session.open` evidence).
    public var session: String
    /// The `approve:` rule that holds the statement.
    public var rule: String
    /// The statement as approvers see it and evidence records it: masked by the caller.
    public var statementText: String
    /// HMAC-SHA256 (hex) of the exact statement and its parameters; an approval names it, so it
    /// releases this statement and no other.
    public var statementDigest: String
    /// Who may decide (the rule's `approvers:`), minus the requester.
    public var approvers: IdentityMatcher
    /// Distinct approvers needed.
    public var required: Int
    public var createdAt: Date
    /// `createdAt` plus the rule's `timeout`: then the statement fails.
    public var deadline: Date
    /// The longest window an approval may open; nil: none.
    public var maximumGrant: Duration?
}

/// One approver's yes.
public struct Approval: Sendable, Hashable {
    public var approver: Identity
    public var reason: String?
    /// The window this approver agreed to (`--grant`); nil: this statement only.
    public var grant: Duration?
    public var at: Date
}

/// A time-boxed window opened by an approval: until `until`, statements of the same uid that the
/// same rule holds on the same resource run without a new request.
public struct Grant: Sendable, Hashable {
    /// `grt-` and ten base32 characters.
    public var id: String
    /// Whose statements it lets through; matched by uid only (the authoritative part).
    public var holder: Identity
    public var rule: String
    public var resource: String
    /// The request whose approval opened it.
    public var requestID: String
    /// Everyone who approved that request.
    public var approvedBy: [Identity]
    /// Who may revoke it besides the holder: the rule's approvers when it opened.
    public var approvers: IdentityMatcher
    public var openedAt: Date
    public var until: Date
    /// Statements let through so far.
    public var uses: Int
}

/// What an operation on the ``ApprovalBook`` did, as values: the gateway turns each into an
/// evidence entry, releases or fails the held statement, and streams them to `approvals watch`.
public enum ApprovalEvent: Sendable, Hashable {
    /// A statement is held (what ``ApprovalBook/request(requester:resource:session:rule:statement:recordedText:now:)``
    /// created, as an event, so evidence and watchers take one path).
    case requested(ApprovalRequest)
    /// One approver said yes; `complete` when `required` distinct approvers now have, and the
    /// statement may run.
    case approved(ApprovalRequest, by: Identity, reason: String?, complete: Bool)
    /// One approver said no: the statement fails with their name and reason.
    case denied(ApprovalRequest, by: Identity, reason: String)
    /// Nobody decided before the deadline: the statement fails.
    case timedOut(ApprovalRequest)
    /// The client went away or cancelled while waiting.
    case withdrawn(ApprovalRequest)
    case grantOpened(Grant)
    /// A statement ran under the window instead of waiting (`uses` counts it).
    case grantUsed(Grant)
    case grantRevoked(Grant, by: Identity)
    case grantExpired(Grant)
}

/// A pending request as `approvals list` shows it.
public struct PendingApproval: Sendable, Hashable {
    public var request: ApprovalRequest
    /// The yes so far, in order (fewer than `required`).
    public var approvals: [Approval]
    public var age: Duration
    /// Until the deadline; zero once it has passed (the next expiry sweep fails it).
    public var timeLeft: Duration
}

/// An open grant window as `approvals grants` shows it.
public struct GrantStatus: Sendable, Hashable {
    public var grant: Grant
    public var timeLeft: Duration
}

extension Duration {
    /// Seconds as Foundation counts them (to move a `Date`).
    var timeInterval: TimeInterval {
        let c = components
        return TimeInterval(c.seconds) + TimeInterval(c.attoseconds) / 1e18
    }
}

extension Date {
    /// The time from `earlier` to `self`, never negative.
    func duration(since earlier: Date) -> Duration {
        .seconds(max(0, timeIntervalSince(earlier)))
    }
}
