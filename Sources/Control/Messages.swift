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

    /// The least access a peer needs for this command.
    public var requiredAccess: AccessLevel {
        switch self {
        case .status, .rulesShow, .auditList: .read
        case .reload, .uninstall: .admin
        }
    }
}

public struct ControlRequest: Codable, Sendable, Equatable {
    public var command: ControlCommand
    public var audit: AuditQueryArgs?

    public init(command: ControlCommand, audit: AuditQueryArgs? = nil) {
        self.command = command
        self.audit = audit
    }
}

/// Filters for `audit.list`. Times are RFC 3339 (`2026-11-21T10:00:00Z`).
public struct AuditQueryArgs: Codable, Sendable, Equatable {
    public var since: String?
    public var until: String?
    public var user: String?
    public var resource: String?
    public var kind: String?
    /// Only entries with an index greater than this (for following the log).
    public var afterIndex: UInt64?
    /// At most this many entries, the newest ones when more match (default 1000).
    public var limit: Int?

    public init(
        since: String? = nil, until: String? = nil, user: String? = nil, resource: String? = nil,
        kind: String? = nil, afterIndex: UInt64? = nil, limit: Int? = nil
    ) {
        self.since = since
        self.until = until
        self.user = user
        self.resource = resource
        self.kind = kind
        self.afterIndex = afterIndex
        self.limit = limit
    }

    enum CodingKeys: String, CodingKey {
        case since, until, user, resource, kind, limit
        case afterIndex = "after_index"
    }
}

public struct ControlFailure: Codable, Sendable, Equatable, Error {
    /// Stable machine-readable code: `forbidden`, `bad_request`, `policy_invalid`, `internal`; and from
    /// the client itself `not_running` (nothing listens on the socket) and `unreachable`.
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

    public init(
        ok: Bool, error: ControlFailure? = nil, status: StatusReport? = nil, rules: RulesReport? = nil,
        entries: [String]? = nil, message: String? = nil
    ) {
        self.ok = ok
        self.error = error
        self.status = status
        self.rules = rules
        self.entries = entries
        self.message = message
    }

    public static func failure(_ code: String, _ message: String) -> ControlResponse {
        ControlResponse(ok: false, error: ControlFailure(code: code, message: message))
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
