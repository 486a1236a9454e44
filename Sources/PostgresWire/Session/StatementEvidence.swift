import Masking
import NIOCore

/// A statement's number within its session, in the order the client sent statements (1, 2, 3...).
///
/// It exists to pair a ``StatementEvidence`` with the ``PostgresSessionStateMachine/recordCompleted(_:)`` that
/// releases it and with its ``StatementOutcome``. The session id that makes it unique in the log is the gateway's.
public struct StatementID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    public static func < (lhs: StatementID, rhs: StatementID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "#\(self.rawValue)" }
}

/// What the evidence log records about one statement before it is forwarded (or instead of forwarding it).
///
/// It exists so the gateway can append a complete, policy-relevant entry without parsing SQL: the text (full or with
/// literals redacted), its kinds, the decision and the rule behind it, and, in the extended protocol, the parameter
/// values (already masked by the session's content detectors; never a value a mask rule hides). The gateway adds the
/// session, identity, resource and time.
public struct StatementEvidence: Sendable, Hashable {
    /// Where in the protocol the statement came from.
    public enum Origin: Sendable, Hashable {
        /// Statement `index` (0-based) of the `count` statements of one simple `Query`.
        case simpleQuery(index: Int, count: Int)
        /// An `Execute` of `portal`, bound to the prepared statement `statement` (empty names are the unnamed ones).
        case execute(statement: String, portal: String)
        /// A `Parse` that was blocked (it never reaches the server, so nothing is ever executed).
        case parse(statement: String)
        /// A fastpath `FunctionCall` of the function with this OID.
        case functionCall(functionOID: UInt32)
    }

    /// Whether the statement may run.
    public enum Decision: Sendable, Hashable {
        /// Forwarded once this entry is durable.
        case allow
        /// Never forwarded; the client got `ErrorResponse` 42501. `rule` is the rule's name, `reason` what the
        /// client was told.
        case block(rule: String, reason: String)
        /// Held for approval under `rule`: forwarded only if approvers agree (their decision is its own evidence
        /// entry, and `statement.end` says whether it ran).
        case approve(rule: String)
    }

    public var id: StatementID
    public var origin: Origin
    /// The statement's text: as sent, or with literals redacted (see ``textIsRedacted``).
    public var text: String
    /// Whether ``text`` has its literals replaced (``PostgresStatementTextMode/redactLiterals``).
    public var textIsRedacted: Bool
    /// The statement's kinds as policies name them (`SELECT`, `DROP TABLE`, `COPY TO STDOUT`...): its own kind
    /// first, then those it runs inside (`WITH d AS (DELETE ...) SELECT` has `SELECT`, `DELETE`). Empty for an empty
    /// query and a function call.
    public var kinds: [String]
    public var decision: Decision
    /// The bound parameter values as text (`nil` for SQL NULL); binary values as `\x` hex (long ones cut). Content
    /// detectors have masked them; with redacted literals every value is `?`.
    public var parameters: [String?]
    /// What the detectors found in ``parameters`` (counts only).
    public var parameterMasking: MaskStats

    public init(
        id: StatementID,
        origin: Origin,
        text: String,
        textIsRedacted: Bool,
        kinds: [String],
        decision: Decision,
        parameters: [String?] = [],
        parameterMasking: MaskStats = MaskStats()
    ) {
        self.id = id
        self.origin = origin
        self.text = text
        self.textIsRedacted = textIsRedacted
        self.kinds = kinds
        self.decision = decision
        self.parameters = parameters
        self.parameterMasking = parameterMasking
    }
}

/// How an allowed statement ended, to complete its evidence entry.
///
/// It exists because the entry is written before the statement runs (it must be durable first); the outcome, the
/// rows and what masking did arrive afterwards. The gateway stamps the end time when it receives this.
public struct StatementOutcome: Sendable, Hashable {
    /// What the server answered.
    public enum Result: Sendable, Hashable {
        /// `CommandComplete` with this tag (`SELECT 3`, `INSERT 0 1`, `COPY 10`).
        case completed(commandTag: String)
        /// The statement text was empty (`EmptyQueryResponse`).
        case emptyQuery
        /// `Execute` stopped at its row limit (`PortalSuspended`); a later `Execute` of the portal is a new entry.
        case suspended
        /// The server answered `ErrorResponse` with this SQLSTATE.
        case failed(sqlState: String)
        /// The server never ran it: an earlier statement of the same `Query`, or an earlier message of the same
        /// extended-protocol batch, failed.
        case notExecuted
        /// The server's reply ended without a result for this statement (its statement split differs from ours).
        case unaccounted
        /// The connection closed before the server answered.
        case connectionClosed
        /// Held for approval and never forwarded: `denied`, `timed_out`, `withdrawn` or `cancelled`.
        case notApproved(String)
    }

    public var id: StatementID
    public var result: Result
    /// The count in the command tag (rows returned, inserted, updated, deleted, copied...), if it has one.
    public var rowCount: Int?
    /// Rows (`DataRow` messages, or lines of `COPY TO STDOUT`) sent to the client.
    public var rowsSent: Int
    /// What masking did to this statement's results (counts only).
    public var masking: MaskingCounts

    public init(
        id: StatementID, result: Result, rowCount: Int? = nil, rowsSent: Int = 0, masking: MaskingCounts = .init()
    ) {
        self.id = id
        self.result = result
        self.rowCount = rowCount
        self.rowsSent = rowsSent
        self.masking = masking
    }
}

/// Which columns and detectors masked values of one statement's results, and how many. Never a value.
public struct MaskingCounts: Sendable, Hashable {
    /// Values masked by a column rule, by source column (`schema.table.column`).
    public var columns: [String: Int]
    /// Values masked because their source column could not be resolved (fail closed).
    public var unresolvedColumnValues: Int
    /// Content detection: values scanned and masked, matches per detector (rows, COPY fields, error fields).
    public var detectors: MaskStats

    public init(columns: [String: Int] = [:], unresolvedColumnValues: Int = 0, detectors: MaskStats = MaskStats()) {
        self.columns = columns
        self.unresolvedColumnValues = unresolvedColumnValues
        self.detectors = detectors
    }

    /// Whether nothing was masked.
    public var isEmpty: Bool {
        self.columns.isEmpty && self.unresolvedColumnValues == 0 && self.detectors.isEmpty
    }

    mutating func merge(_ other: MaskingCounts) {
        for (column, count) in other.columns {
            self.columns[column, default: 0] += count
        }
        self.unresolvedColumnValues += other.unresolvedColumnValues
        self.detectors.merge(other.detectors)
    }
}

/// What the gateway learns once the server has accepted the session (at the first `ReadyForQuery`).
///
/// It exists for cancel routing (a `CancelRequest` names the backend's pid and secret) and for the session's
/// evidence entry (server version, database, client encoding).
public struct PostgresSessionInfo: Sendable, Hashable {
    /// `BackendKeyData`, when the server sent it.
    public var backendKey: PostgresBackendKey?
    /// Every `ParameterStatus` so far (`server_version`, `client_encoding`, `standard_conforming_strings`...).
    public var parameters: [String: String]
    /// The user the server knows the session as (the injected one, or the client's own).
    public var upstreamUser: String?
    /// The database asked for in the startup message.
    public var database: String?
    /// With injected credentials and SCRAM: the salted keys of the login, so the gateway's next login
    /// with the same password skips PBKDF2 (`PostgresInjectedCredentials.scramKeys`). Never logged.
    public var scramKeys: SCRAMSHA256Client.Keys?

    public init(
        backendKey: PostgresBackendKey?, parameters: [String: String], upstreamUser: String?, database: String?
    ) {
        self.backendKey = backendKey
        self.parameters = parameters
        self.upstreamUser = upstreamUser
        self.database = database
    }
}
