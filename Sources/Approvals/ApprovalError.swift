/// Why a decision or a revocation was refused, with a stable ``code`` for programs and a
/// ``message`` the CLI prints as it is ("svc-ci cannot approve its own request apr-...").
///
/// A refused operation changes nothing in the ``ApprovalBook``: the request stays pending (or the
/// grant open) exactly as before, so an approver who made a mistake can simply try again.
public struct ApprovalError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Stable identifier of the kind of refusal; safe to match on and to print in JSON.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Sendable {
            case unknownRequest = "unknown_request"
            case alreadyFinished = "already_finished"
            case timedOut = "timed_out"
            case ownRequest = "own_request"
            case notAnApprover = "not_an_approver"
            case alreadyApproved = "already_approved"
            case digestMismatch = "digest_mismatch"
            case grantNotAllowed = "grant_not_allowed"
            case grantTooLong = "grant_too_long"
            case invalidGrant = "invalid_grant"
            case reasonRequired = "reason_required"
            case unknownGrant = "unknown_grant"
        }

        fileprivate let base: Base

        /// No pending request has this id, and none finished recently under it.
        public static let unknownRequest = Code(base: .unknownRequest)
        /// The request was already approved, denied, timed out or withdrawn.
        public static let alreadyFinished = Code(base: .alreadyFinished)
        /// The request's deadline has passed; it is failing (the next expiry sweep reports it).
        public static let timedOut = Code(base: .timedOut)
        /// The approver is the requester (same uid): nobody decides about their own statement.
        public static let ownRequest = Code(base: .ownRequest)
        /// The rule's `approvers:` do not match this identity.
        public static let notAnApprover = Code(base: .notAnApprover)
        /// This approver (uid) already approved the request; `required` counts distinct people.
        public static let alreadyApproved = Code(base: .alreadyApproved)
        /// The digest given is not the held statement's: the approver saw another statement.
        public static let digestMismatch = Code(base: .digestMismatch)
        /// `--grant` on a rule without `grant:`.
        public static let grantNotAllowed = Code(base: .grantNotAllowed)
        /// `--grant` longer than the rule's `grant:`.
        public static let grantTooLong = Code(base: .grantTooLong)
        /// `--grant` of zero or less.
        public static let invalidGrant = Code(base: .invalidGrant)
        /// A denial without a reason: the requester is owed one.
        public static let reasonRequired = Code(base: .reasonRequired)
        /// No open grant window has this id.
        public static let unknownGrant = Code(base: .unknownGrant)

        /// `unknown_request`, `own_request`, ...
        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "approvals \(code): \(message)" }
}
