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
    static func statement(_ e: StatementEvidence, session: String) -> [String: AuditValue] {
        var fields: [String: AuditValue] = [
            "session": .string(session),
            "statement": .uint(e.id.rawValue),
            "text": .string(e.text),
            "text_redacted": .bool(e.textIsRedacted),
            "kinds": .array(e.kinds.map { .string($0) }),
        ]
        switch e.origin {
        case .simpleQuery(let index, let count):
            fields["origin"] = "query"
            if count > 1 {
                fields["query_index"] = .int(Int64(index))
                fields["query_statements"] = .int(Int64(count))
            }
        case .execute(let statement, let portal):
            fields["origin"] = "execute"
            fields["prepared"] = .string(statement)
            fields["portal"] = .string(portal)
        case .parse(let statement):
            fields["origin"] = "parse"
            fields["prepared"] = .string(statement)
        case .functionCall(let oid):
            fields["origin"] = "function_call"
            fields["function_oid"] = .uint(UInt64(oid))
        }
        switch e.decision {
        case .allow:
            fields["decision"] = "allow"
        case .block(let rule, let reason):
            fields["decision"] = "block"
            fields["rule"] = .string(rule)
            fields["reason"] = .string(reason)
        }
        if case .execute = e.origin {
            fields["parameters"] = .array(e.parameters.map { $0.map { .string($0) } ?? .null })
        }
        if !e.parameterMasking.isEmpty {
            fields["parameter_masking"] = detectors(e.parameterMasking)
        }
        return fields
    }

    static func statementEnd(
        _ o: StatementOutcome, session: String, durationMicroseconds: Int64?
    ) -> [String: AuditValue] {
        var fields: [String: AuditValue] = [
            "session": .string(session),
            "statement": .uint(o.id.rawValue),
            "rows_sent": .int(Int64(o.rowsSent)),
        ]
        switch o.result {
        case .completed(let tag):
            fields["result"] = "completed"
            fields["command_tag"] = .string(tag)
        case .emptyQuery: fields["result"] = "empty_query"
        case .suspended: fields["result"] = "suspended"
        case .failed(let state):
            fields["result"] = "failed"
            fields["sqlstate"] = .string(state)
        case .notExecuted: fields["result"] = "not_executed"
        case .unaccounted: fields["result"] = "unaccounted"
        case .connectionClosed: fields["result"] = "connection_closed"
        }
        if let rows = o.rowCount { fields["row_count"] = .int(Int64(rows)) }
        if let us = durationMicroseconds { fields["duration_us"] = .int(us) }
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
            fields["masking"] = .object(masking)
        }
        return fields
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
