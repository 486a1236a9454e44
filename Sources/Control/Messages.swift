/// The control socket's protocol: one JSON request per line from the client, one JSON response per
/// line from the daemon. Both the daemon and the `interlock` CLI use these types, so the field names
/// here are the stable, documented names that `--json` output also uses (docs/operators.md).
///
/// This module is deliberately free of NIO: the CLI is a small blocking client.

/// What a peer may do, decided by the daemon from `SO_PEERCRED`.
public enum AccessLevel: String, Codable, Sendable, Comparable {
    /// Not root, not in `interlock-admin` or `interlock-auditors`.
    case none
    /// Members of `interlock-auditors`: status, rules, evidence.
    case read
    /// Root and members of `interlock-admin`: everything, including reload and uninstall.
    case admin

    private var rank: Int {
        switch self {
        case .none: 0
        case .read: 1
        case .admin: 2
        }
    }

    public static func < (a: AccessLevel, b: AccessLevel) -> Bool { a.rank < b.rank }
}

public enum ControlCommand: String, Codable, Sendable, CaseIterable {
    case status
    case rulesShow = "rules.show"
    case auditList = "audit.list"
    case reload
    case uninstall
    case auditPublicKey = "audit.public-key"
    case auditExport = "audit.export"
    case approvalsList = "approvals.list"
    case approvalsApprove = "approvals.approve"
    case approvalsDeny = "approvals.deny"
    case approvalsWatch = "approvals.watch"
    case approvalsGrants = "approvals.grants"
    case approvalsRevoke = "approvals.revoke"
    case sessionsList = "sessions.list"
    case auditBlob = "audit.blob"
    case auditRotateKey = "audit.rotate-key"

    /// The least access a peer needs for this command. Approvals need none at the socket: approvers
    /// are whoever the rules name, and the daemon checks each request and decision against them.
    public var requiredAccess: AccessLevel {
        switch self {
        case .status, .rulesShow, .auditList, .auditPublicKey, .auditExport, .sessionsList, .auditBlob: .read
        case .reload, .uninstall, .auditRotateKey: .admin
        case .approvalsList, .approvalsApprove, .approvalsDeny, .approvalsWatch, .approvalsGrants, .approvalsRevoke:
            .none
        }
    }
}

public struct ControlRequest: Codable, Sendable, Equatable {
    public var command: ControlCommand
    public var audit: AuditQueryArgs?
    public var approval: ApprovalArgs?
    public var export: ExportArgs?
    /// `audit.blob`: the blob's name (SHA-256, lower-case hex).
    public var blob: String?
    /// `audit.rotate-key` and `audit.public-key`.
    public var key: KeyArgs?

    public init(
        command: ControlCommand, audit: AuditQueryArgs? = nil, approval: ApprovalArgs? = nil, export: ExportArgs? = nil,
        blob: String? = nil, key: KeyArgs? = nil
    ) {
        self.blob = blob
        self.key = key
        self.command = command
        self.audit = audit
        self.approval = approval
        self.export = export
    }
}

/// Arguments of `audit.rotate-key` and `audit.public-key`.
public struct KeyArgs: Codable, Sendable, Equatable {
    /// `rotate-key`: why (recorded in the `log.key_rotated` entry).
    public var reason: String?
    /// `public-key`: answer the whole key chain (`chain`), not only the current key.
    public var all: Bool?

    public init(reason: String? = nil, all: Bool? = nil) {
        self.reason = reason
        self.all = all
    }
}

/// `audit.rotate-key`: what changed.
public struct KeyRotationInfo: Codable, Sendable, Equatable {
    public var oldKey: String
    public var newKey: String
    /// The `log.key_rotated` entry's index: the old key's last checkpoint has exactly this size.
    public var index: UInt64

    public init(oldKey: String, newKey: String, index: UInt64) {
        self.oldKey = oldKey
        self.newKey = newKey
        self.index = index
    }

    enum CodingKeys: String, CodingKey {
        case index
        case oldKey = "old_key"
        case newKey = "new_key"
    }
}

/// `audit.public-key --all`: the genesis key, then each rotation.
public struct KeyChainInfo: Codable, Sendable, Equatable {
    public struct Rotation: Codable, Sendable, Equatable {
        public var index: UInt64
        public var key: String
        public var reason: String

        public init(index: UInt64, key: String, reason: String) {
            self.index = index
            self.key = key
            self.reason = reason
        }
    }

    public var genesisKey: String
    public var rotations: [Rotation]

    public init(genesisKey: String, rotations: [Rotation]) {
        self.genesisKey = genesisKey
        self.rotations = rotations
    }

    enum CodingKeys: String, CodingKey {
        case rotations
        case genesisKey = "genesis_key"
    }
}

/// `audit.export`: one page of an export bundle. The first page (no `after`) fixes the checkpoint
/// every later page proves against (`size`).
public struct ExportArgs: Codable, Sendable, Equatable {
    /// The checkpoint size to prove against; nil: the newest (the daemon signs one first).
    public var size: UInt64?
    /// Entries with an index greater than this.
    public var after: UInt64?
    /// At most this many entries (default and maximum 2000).
    public var limit: Int?
    /// A checkpoint the auditor kept (its signed note): the first page adds a consistency proof
    /// from it.
    public var trustedCheckpoint: String?
    /// After the last page: the daemon selects the same entries again, counts and hashes them, and
    /// answers the signed manifest (in `message`).
    public var seal: Bool?

    public init(
        size: UInt64? = nil, after: UInt64? = nil, limit: Int? = nil, trustedCheckpoint: String? = nil,
        seal: Bool? = nil
    ) {
        self.size = size
        self.after = after
        self.limit = limit
        self.trustedCheckpoint = trustedCheckpoint
        self.seal = seal
    }

    enum CodingKeys: String, CodingKey {
        case size, after, limit, seal
        case trustedCheckpoint = "trusted_checkpoint"
    }
}

/// One entry of an export with its proof.
public struct ExportedEntry: Codable, Sendable, Equatable {
    public var index: UInt64
    public var leafHash: String
    public var proof: [String]
    /// The entry's canonical JSON, exactly as hashed.
    public var entry: String

    public init(index: UInt64, leafHash: String, proof: [String], entry: String) {
        self.index = index
        self.leafHash = leafHash
        self.proof = proof
        self.entry = entry
    }

    enum CodingKeys: String, CodingKey {
        case index, proof, entry
        case leafHash = "leaf_hash"
    }
}

public struct ExportConsistency: Codable, Sendable, Equatable {
    public var from: UInt64
    public var to: UInt64
    public var proof: [String]

    public init(from: UInt64, to: UInt64, proof: [String]) {
        self.from = from
        self.to = to
        self.proof = proof
    }
}

public struct ExportPage: Codable, Sendable, Equatable {
    public var origin: String
    public var applianceID: String
    public var verifierKey: String
    public var checkpointSize: UInt64
    /// The signed note of `checkpointSize`.
    public var checkpoint: String
    /// First page: older signed notes (the first checkpoint that covered the first entry).
    public var olderCheckpoints: [String]
    /// First page: consistency proofs from the older checkpoints (and the trusted one) to `checkpointSize`.
    public var consistency: [ExportConsistency]
    public var entries: [ExportedEntry]
    /// Pass as `after` for the next page; nil: this was the last.
    public var next: UInt64?
    /// First page: the genesis and every `log.key_rotated` entry up to `checkpointSize`, with
    /// proofs, whatever the query selects (the bundle's chain.jsonl).
    public var chain: [ExportedEntry]?

    public init(
        origin: String, applianceID: String, verifierKey: String, checkpointSize: UInt64, checkpoint: String,
        olderCheckpoints: [String], consistency: [ExportConsistency], entries: [ExportedEntry], next: UInt64?,
        chain: [ExportedEntry]? = nil
    ) {
        self.chain = chain
        self.origin = origin
        self.applianceID = applianceID
        self.verifierKey = verifierKey
        self.checkpointSize = checkpointSize
        self.checkpoint = checkpoint
        self.olderCheckpoints = olderCheckpoints
        self.consistency = consistency
        self.entries = entries
        self.next = next
    }

    enum CodingKeys: String, CodingKey {
        case origin, checkpoint, consistency, entries, next, chain
        case applianceID = "appliance_id"
        case verifierKey = "verifier_key"
        case checkpointSize = "checkpoint_size"
        case olderCheckpoints = "older_checkpoints"
    }
}

/// Arguments of the `approvals.*` commands.
public struct ApprovalArgs: Codable, Sendable, Equatable {
    /// `approve`, `deny`: the request (`apr-...`); `revoke`: the grant (`grt-...`).
    public var id: String?
    /// `approve`: the digest of the statement the approver read (from `approvals list`); the
    /// approval binds to it and releases that statement only.
    public var digest: String?
    public var reason: String?
    /// `approve --grant`: a window such as `30m`, `1h`, `90s`.
    public var grant: String?
    /// `watch`: only events after this sequence number; nil: from now.
    public var after: UInt64?
    /// `watch`: how long the daemon may wait for an event before answering with none (1...60 s).
    public var waitSeconds: Int?

    public init(
        id: String? = nil, digest: String? = nil, reason: String? = nil, grant: String? = nil, after: UInt64? = nil,
        waitSeconds: Int? = nil
    ) {
        self.id = id
        self.digest = digest
        self.reason = reason
        self.grant = grant
        self.after = after
        self.waitSeconds = waitSeconds
    }

    enum CodingKeys: String, CodingKey {
        case id, digest, reason, grant, after
        case waitSeconds = "wait_seconds"
    }
}

/// Who opened a held statement's connection, as the gateway identified it.
public struct RequesterInfo: Codable, Sendable, Equatable {
    public var uid: UInt32
    public var user: String?
    public var unit: String?
    public var pid: Int32?
    public var executable: String?

    public init(uid: UInt32, user: String?, unit: String?, pid: Int32?, executable: String?) {
        self.uid = uid
        self.user = user
        self.unit = unit
        self.pid = pid
        self.executable = executable
    }
}

/// A pending approval request as `approvals list` shows it.
public struct ApprovalInfo: Codable, Sendable, Equatable {
    public var id: String
    public var requester: RequesterInfo
    public var resource: String
    public var session: String
    public var rule: String
    /// The statement, masked by the content detectors (and literals redacted if the policy says so).
    public var statement: String
    /// HMAC-SHA256 of the exact statement and its parameters: what an approval binds to.
    public var digest: String
    /// The rule's approvers (`group:dba`, `user:alice`).
    public var approvers: String
    public var required: Int
    /// Who approved so far (fewer than `required`).
    public var approvedBy: [String]
    public var createdAt: String
    public var deadline: String
    public var ageSeconds: Int
    public var secondsLeft: Int
    /// The longest `--grant` the rule allows, in seconds; nil: none.
    public var maximumGrantSeconds: Int?
    /// Whether the peer asking may decide this request.
    public var mayDecide: Bool

    public init(
        id: String, requester: RequesterInfo, resource: String, session: String, rule: String, statement: String,
        digest: String, approvers: String, required: Int, approvedBy: [String], createdAt: String, deadline: String,
        ageSeconds: Int, secondsLeft: Int, maximumGrantSeconds: Int?, mayDecide: Bool
    ) {
        self.id = id
        self.requester = requester
        self.resource = resource
        self.session = session
        self.rule = rule
        self.statement = statement
        self.digest = digest
        self.approvers = approvers
        self.required = required
        self.approvedBy = approvedBy
        self.createdAt = createdAt
        self.deadline = deadline
        self.ageSeconds = ageSeconds
        self.secondsLeft = secondsLeft
        self.maximumGrantSeconds = maximumGrantSeconds
        self.mayDecide = mayDecide
    }

    enum CodingKeys: String, CodingKey {
        case id, requester, resource, session, rule, statement, digest, approvers, required, deadline
        case approvedBy = "approved_by"
        case createdAt = "created_at"
        case ageSeconds = "age_seconds"
        case secondsLeft = "seconds_left"
        case maximumGrantSeconds = "maximum_grant_seconds"
        case mayDecide = "may_decide"
    }
}

/// An open grant window as `approvals grants` shows it.
public struct GrantInfo: Codable, Sendable, Equatable {
    public var id: String
    public var holder: RequesterInfo
    public var rule: String
    public var resource: String
    public var request: String
    public var approvedBy: [String]
    public var openedAt: String
    public var until: String
    public var secondsLeft: Int
    public var uses: Int

    public init(
        id: String, holder: RequesterInfo, rule: String, resource: String, request: String, approvedBy: [String],
        openedAt: String, until: String, secondsLeft: Int, uses: Int
    ) {
        self.id = id
        self.holder = holder
        self.rule = rule
        self.resource = resource
        self.request = request
        self.approvedBy = approvedBy
        self.openedAt = openedAt
        self.until = until
        self.secondsLeft = secondsLeft
        self.uses = uses
    }

    enum CodingKeys: String, CodingKey {
        case id, holder, rule, resource, request, until, uses
        case approvedBy = "approved_by"
        case openedAt = "opened_at"
        case secondsLeft = "seconds_left"
    }
}

/// One thing that happened to a request or a window, as `approvals watch` streams it.
public struct ApprovalEventInfo: Codable, Sendable, Equatable {
    /// Increasing; pass the last one seen as `after` to continue.
    public var sequence: UInt64
    /// `requested`, `approved`, `denied`, `timed_out`, `withdrawn`, `grant_opened`, `grant_used`,
    /// `grant_revoked`, `grant_expired`.
    public var event: String
    public var at: String
    public var request: ApprovalInfo?
    public var grant: GrantInfo?
    /// The approver, denier or revoker.
    public var by: String?
    public var reason: String?

    public init(
        sequence: UInt64, event: String, at: String, request: ApprovalInfo? = nil, grant: GrantInfo? = nil,
        by: String? = nil, reason: String? = nil
    ) {
        self.sequence = sequence
        self.event = event
        self.at = at
        self.request = request
        self.grant = grant
        self.by = by
        self.reason = reason
    }
}

/// Filters for `audit.list`. Times are RFC 3339 (`2026-11-21T10:00:00Z`).
public struct AuditQueryArgs: Codable, Sendable, Equatable {
    public var since: String?
    public var until: String?
    public var user: String?
    public var resource: String?
    /// One session's entries (its id).
    public var session: String?
    public var kind: String?
    /// Only entries with an index greater than this (for following the log).
    public var afterIndex: UInt64?
    /// At most this many entries, the newest ones when more match (default 1000).
    public var limit: Int?

    public init(
        since: String? = nil, until: String? = nil, user: String? = nil, resource: String? = nil,
        kind: String? = nil, afterIndex: UInt64? = nil, limit: Int? = nil, session: String? = nil
    ) {
        self.session = session
        self.since = since
        self.until = until
        self.user = user
        self.resource = resource
        self.kind = kind
        self.afterIndex = afterIndex
        self.limit = limit
    }

    enum CodingKeys: String, CodingKey {
        case since, until, user, resource, session, kind, limit
        case afterIndex = "after_index"
    }
}

public struct ControlFailure: Codable, Sendable, Equatable, Error {
    /// Stable machine-readable code: `forbidden`, `bad_request`, `policy_invalid`, `internal`, `busy`;
    /// an approvals refusal's own code (`own_request`, `not_an_approver`, ..., docs/approvals.md); and
    /// from the client itself `not_running` (nothing listens on the socket) and `unreachable`.
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }
}

public struct ControlResponse: Codable, Sendable {
    public var ok: Bool
    public var error: ControlFailure?
    public var status: StatusReport?
    public var rules: RulesReport?
    /// `audit.list`: the entries as their canonical JSON text, oldest first.
    public var entries: [String]?
    /// A sentence for people (`reload`: what changed).
    public var message: String?
    /// `approvals.list`.
    public var approvals: [ApprovalInfo]?
    /// `approvals.grants`, and `approvals.approve` when it opened a window.
    public var grants: [GrantInfo]?
    /// `approvals.watch`: events after `after`, oldest first (empty when the wait ran out).
    public var events: [ApprovalEventInfo]?
    /// `approvals.watch`: the newest sequence number (pass it back as `after`).
    public var sequence: UInt64?
    /// `audit.export`: one page.
    public var export: ExportPage?
    /// `sessions.list`: newest last.
    public var sessions: [SessionSummary]?
    /// `audit.blob`: the blob's bytes, base64.
    public var blob: String?
    /// `audit.rotate-key`.
    public var rotation: KeyRotationInfo?
    /// `audit.public-key` with `all`: the key chain.
    public var chain: KeyChainInfo?

    public init(
        ok: Bool, error: ControlFailure? = nil, status: StatusReport? = nil, rules: RulesReport? = nil,
        entries: [String]? = nil, message: String? = nil, approvals: [ApprovalInfo]? = nil,
        grants: [GrantInfo]? = nil, events: [ApprovalEventInfo]? = nil, sequence: UInt64? = nil,
        export: ExportPage? = nil
    ) {
        self.export = export
        self.ok = ok
        self.error = error
        self.status = status
        self.rules = rules
        self.entries = entries
        self.message = message
        self.approvals = approvals
        self.grants = grants
        self.events = events
        self.sequence = sequence
    }

    public static func failure(_ code: String, _ message: String) -> ControlResponse {
        ControlResponse(ok: false, error: ControlFailure(code: code, message: message))
    }
}

/// `sessions.list`: one session as its `session.open`, `session.close` and `session.recording`
/// entries describe it.
public struct SessionSummary: Codable, Sendable, Equatable {
    public var id: String
    public var user: String?
    public var resource: String?
    public var `protocol`: String?
    public var unit: String?
    public var destination: String?
    public var decision: String?
    public var opened: String?
    public var closed: String?
    public var durationMs: Int64?
    public var reason: String?
    public var bytesUp: UInt64?
    public var bytesDown: UInt64?
    /// Chunks of its recording, their bytes, and whether the last one (the session ended) is there.
    public var recordingChunks: Int
    public var recordingBytes: UInt64
    public var recordingComplete: Bool
    /// Bytes past `audit.recording_limit` that were not recorded.
    public var recordingDropped: UInt64?

    public init(id: String) {
        self.id = id
        self.recordingChunks = 0
        self.recordingBytes = 0
        self.recordingComplete = false
    }

    enum CodingKeys: String, CodingKey {
        case id, user, resource, `protocol`, unit, destination, decision, opened, closed, reason
        case durationMs = "duration_ms"
        case bytesUp = "bytes_up"
        case bytesDown = "bytes_down"
        case recordingChunks = "recording_chunks"
        case recordingBytes = "recording_bytes"
        case recordingComplete = "recording_complete"
        case recordingDropped = "recording_dropped"
    }
}

/// `interlock status`.
public struct StatusReport: Codable, Sendable, Equatable {
    public struct CapturedAccount: Codable, Sendable, Equatable {
        public var uid: UInt32
        public var user: String?
        /// Why it is captured: `user:NAME` or `group:NAME` (one entry per reason).
        public var via: [String]

        public init(uid: UInt32, user: String?, via: [String]) {
            self.uid = uid
            self.user = user
            self.via = via
        }
    }

    /// Connection counters since start; the byte counts cover sessions that have ended.
    public struct Counters: Codable, Sendable, Equatable {
        public var accepted: UInt64 = 0
        public var forwarded: UInt64 = 0
        public var refused: UInt64 = 0
        public var active: UInt64 = 0
        public var bytesUp: UInt64 = 0
        public var bytesDown: UInt64 = 0

        public init() {}

        enum CodingKeys: String, CodingKey {
            case accepted, forwarded, refused, active
            case bytesUp = "bytes_up"
            case bytesDown = "bytes_down"
        }
    }

    public var version: String
    public var pid: Int32
    public var uptimeSeconds: Int
    public var listen: [String]
    public var policyPath: String
    public var policyLoadedAt: String
    public var resources: [String]
    public var captured: [CapturedAccount]
    public var ruleset: RulesetStatus
    public var counters: Counters
    public var auditDatabase: String
    public var auditLastIndex: UInt64

    public init(
        version: String, pid: Int32, uptimeSeconds: Int, listen: [String], policyPath: String,
        policyLoadedAt: String, resources: [String], captured: [CapturedAccount], ruleset: RulesetStatus,
        counters: Counters, auditDatabase: String, auditLastIndex: UInt64
    ) {
        self.version = version
        self.pid = pid
        self.uptimeSeconds = uptimeSeconds
        self.listen = listen
        self.policyPath = policyPath
        self.policyLoadedAt = policyLoadedAt
        self.resources = resources
        self.captured = captured
        self.ruleset = ruleset
        self.counters = counters
        self.auditDatabase = auditDatabase
        self.auditLastIndex = auditLastIndex
    }

    enum CodingKeys: String, CodingKey {
        case version, pid, listen, resources, captured, ruleset, counters
        case uptimeSeconds = "uptime_seconds"
        case policyPath = "policy_path"
        case policyLoadedAt = "policy_loaded_at"
        case auditDatabase = "audit_database"
        case auditLastIndex = "audit_last_index"
    }
}

/// The health of the kernel ruleset as the daemon's reconciler last saw it.
public struct RulesetStatus: Codable, Sendable, Equatable {
    /// `intact`, `missing`, `drifted` or `unknown` (not checked yet).
    public var health: String
    public var detail: String?
    public var lastCheck: String?
    public var restores: UInt64

    public init(health: String, detail: String? = nil, lastCheck: String? = nil, restores: UInt64 = 0) {
        self.health = health
        self.detail = detail
        self.lastCheck = lastCheck
        self.restores = restores
    }

    enum CodingKeys: String, CodingKey {
        case health, detail, restores
        case lastCheck = "last_check"
    }
}

/// `interlock rules show`.
public struct RulesetReport: Codable, Sendable, Equatable {
    public var status: RulesetStatus
    /// The ruleset as nft text, as installed in the kernel (when intact) or as it should be.
    public var nft: String

    public init(status: RulesetStatus, nft: String) {
        self.status = status
        self.nft = nft
    }
}

public typealias RulesReport = RulesetReport
