import Foundation

/// Who and what an entry is about: the indexed columns that `interlock audit list --user/--resource`
/// filters on. The same strings are written into the entry's body as the top-level `user`,
/// `resource` and `session` members, so the body alone is the evidence.
public struct AuditSubject: Sendable, Equatable {
    /// The captured account's user name (not the uid: names are what operators search by).
    public var user: String?
    /// The registered resource name from the policy (`orders-db`).
    public var resource: String?
    /// The gateway's session id, shared by `session.open`, `session.close` and later per-request entries.
    public var session: String?

    public init(user: String? = nil, resource: String? = nil, session: String? = nil) {
        self.user = user
        self.resource = resource
        self.session = session
    }

    /// An entry about the daemon itself (`daemon.started`, `policy.loaded`, `ruleset.*`).
    public static let none = AuditSubject()
}

/// One committed entry as stored: its position in the log, its time, its kind and its canonical bytes.
public struct AuditRecord: Sendable, Equatable {
    /// 1-based, gap-free position in the log (the Merkle leaf index is `index - 1`).
    public var index: UInt64
    /// The time the append was queued, to the microsecond; never earlier than the previous entry's.
    public var time: Date
    /// `session.open`, `policy.loaded`, ...: see ``AuditKind``.
    public var kind: String
    /// The canonical JSON entry: exactly the bytes that are hashed.
    public var body: [UInt8]

    public init(index: UInt64, time: Date, kind: String, body: [UInt8]) {
        self.index = index
        self.time = time
        self.kind = kind
        self.body = body
    }

    /// The body as text: one line of JSON, printable as is by `--json`.
    public var text: String { String(decoding: body, as: UTF8.self) }

    /// The body parsed back into a value.
    public func value() throws(AuditError) -> AuditValue {
        do {
            return try CanonicalJSON.decode(body)
        } catch {
            throw AuditError(.corrupt, "entry \(index) does not parse as JSON: \(error.message)")
        }
    }
}

/// How much of the log survives a failure, per `audit.durability` in the policy file.
public enum AuditDurability: String, Sendable, Codable, CaseIterable {
    /// WAL with `synchronous=NORMAL`: a committed entry survives a crash or kill of the daemon; the
    /// last transactions before a power loss or kernel panic may be lost (never half-written).
    case crash
    /// WAL with `synchronous=FULL`: every commit is fsynced, so an entry survives power loss too.
    case powerLoss = "power-loss"
}

/// A selection of entries for `interlock audit list` and exports.
///
/// Every filter that is set must match. The result holds the *newest* `limit` matching entries, in
/// ascending index order (so a listing ends with the most recent fact).
public struct AuditQuery: Sendable, Equatable {
    /// Entries at or after this time.
    public var since: Date?
    /// Entries strictly before this time.
    public var until: Date?
    /// Exact user name in the subject.
    public var user: String?
    /// Exact resource name in the subject.
    public var resource: String?
    /// Exact session id in the subject.
    public var session: String?
    /// Exact kind (`session.open`), or every kind under a prefix when it ends with "." (`session.`).
    public var kind: String?
    /// Only entries whose index is greater than this (to poll for new entries).
    public var afterIndex: UInt64?
    /// At most this many entries (the newest ones; the oldest ones with ``oldestFirst``). Zero or
    /// less returns nothing.
    public var limit: Int
    /// Only entries with an index at most this (an export proven against a checkpoint of this size).
    public var maxIndex: UInt64?
    /// Take the oldest `limit` matches instead of the newest (paging forward through an export).
    public var oldestFirst = false

    public init(
        since: Date? = nil,
        until: Date? = nil,
        user: String? = nil,
        resource: String? = nil,
        kind: String? = nil,
        afterIndex: UInt64? = nil,
        limit: Int = 1000
    ) {
        self.since = since
        self.until = until
        self.user = user
        self.resource = resource
        self.kind = kind
        self.afterIndex = afterIndex
        self.limit = limit
    }
}
