import Audit
import Masking
import PostgresWire

/// How PostgreSQL sessions are spelled in the evidence log (docs/evidence.md is the schema):
/// `statement` before a statement is forwarded (or instead of forwarding it), `statement.end` when
/// its result is known, `postgres.login` when the server accepted the session, `postgres.cancel`
/// for a `CancelRequest`.
///
/// The per-statement entries are on the hot path, so they are built from plain values with no
/// formatting beyond what the canonical JSON needs.
enum PostgresEvidence {
    /// The `statement` entry. Members are added in canonical order (see `AuditEntryBuilder`): this is
    /// written for every statement, so no dictionary is built and sorted.
    static func statement(_ e: StatementEvidence, subject: AuditSubject) -> AuditEntryBuilder {
        var entry = AuditEntryBuilder(kind: "statement", subject: subject)
        switch e.decision {
        case .allow: entry.string("decision", "allow")
        case .block: entry.string("decision", "block")
        case .approve: entry.string("decision", "approve")
        }
        if case .functionCall(let oid) = e.origin { entry.uint("function_oid", UInt64(oid)) }
        entry.strings("kinds", e.kinds)
        switch e.origin {
        case .simpleQuery: entry.string("origin", "query")
        case .execute: entry.string("origin", "execute")
        case .parse: entry.string("origin", "parse")
        case .functionCall: entry.string("origin", "function_call")
        }
        if !e.parameterMasking.isEmpty { entry.value("parameter_masking", detectors(e.parameterMasking)) }
        if case .execute(let statement, let portal) = e.origin {
            entry.value("parameters", .array(e.parameters.map { $0.map { .string($0) } ?? .null }))
            entry.string("portal", portal)
            entry.string("prepared", statement)
        }
        if case .parse(let statement) = e.origin { entry.string("prepared", statement) }
        if case .simpleQuery(let index, let count) = e.origin, count > 1 {
            entry.int("query_index", Int64(index))
            entry.int("query_statements", Int64(count))
        }
        switch e.decision {
        case .allow: break
        case .block(let rule, let reason):
            entry.string("reason", reason)
            entry.string("rule", rule)
        case .approve(let rule):
            entry.string("rule", rule)
        }
        entry.uint("statement", e.id.rawValue)
        entry.string("text", e.text)
        entry.bool("text_redacted", e.textIsRedacted)
        return entry
    }

    /// The `statement.end` entry, members in canonical order.
    static func statementEnd(
        _ o: StatementOutcome, subject: AuditSubject, durationMicroseconds: Int64?
    )
        -> AuditEntryBuilder
    {
        var entry = AuditEntryBuilder(kind: "statement.end", subject: subject, capacity: 256)
        if case .notApproved(let why) = o.result { entry.string("approval", why) }
        let (result, sqlState) = resultName(o.result)
        if case .completed(let tag) = o.result { entry.string("command_tag", tag) }
        if let us = durationMicroseconds { entry.int("duration_us", us) }
        if !o.masking.isEmpty {
            var masking: [String: AuditValue] = [:]
            if !o.masking.columns.isEmpty {
                masking["columns"] = .object(o.masking.columns.mapValues { .int(Int64($0)) })
            }
            if o.masking.unresolvedColumnValues > 0 {
                masking["unresolved_column_values"] = .int(Int64(o.masking.unresolvedColumnValues))
            }
            if !o.masking.detectors.isEmpty {
                masking["detectors"] = detectors(o.masking.detectors)
            }
            entry.value("masking", .object(masking))
        }
        entry.string("result", result)
        if let rows = o.rowCount { entry.int("row_count", Int64(rows)) }
        entry.int("rows_sent", Int64(o.rowsSent))
        if let sqlState { entry.string("sqlstate", sqlState) }
        entry.uint("statement", o.id.rawValue)
        return entry
    }

    /// `statement.end`'s `result` and `sqlstate` for an outcome.
    static func resultName(_ result: StatementOutcome.Result) -> (String, String?) {
        switch result {
        case .completed: ("completed", nil)
        case .emptyQuery: ("empty_query", nil)
        case .suspended: ("suspended", nil)
        case .failed(let state): ("failed", state)
        case .notExecuted: ("not_executed", nil)
        case .unaccounted: ("unaccounted", nil)
        case .connectionClosed: ("connection_closed", nil)
        case .notApproved: ("not_approved", nil)
        }
    }

    /// Which detectors fired and how many values they rewrote; counts only, never a value.
    static func detectors(_ stats: MaskStats) -> AuditValue {
        var matches: [String: AuditValue] = [:]
        for kind in stats.detectorsFired {
            matches[kind.rawValue] = .int(Int64(stats.matches(kind)))
        }
        return .object([
            "values_masked": .int(Int64(stats.valuesMaskedByDetectors)),
            "matches": .object(matches),
        ])
    }

    static func login(
        _ info: PostgresSessionInfo, session: String, injected: Bool, clientTLS: Bool, upstreamTLS: Bool
    ) -> [String: AuditValue] {
        var fields: [String: AuditValue] = [
            "session": .string(session),
            "database": info.database.map { .string($0) } ?? .null,
            "upstream_user": info.upstreamUser.map { .string($0) } ?? .null,
            "credentials": injected ? "injected" : "client",
            "client_tls": .bool(clientTLS),
            "upstream_tls": .bool(upstreamTLS),
        ]
        if let version = info.parameters["server_version"] { fields["server_version"] = .string(version) }
        if let key = info.backendKey { fields["backend_pid"] = .int(Int64(key.processID)) }
        return fields
    }
}
