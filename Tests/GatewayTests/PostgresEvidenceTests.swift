import Audit
import Foundation
import Logging
import Masking
import PostgresWire
import Testing

@testable import Gateway

/// The per-statement entries are written member by member in canonical order (`AuditEntryBuilder`
/// traps on a member out of order, which would take the daemon down): every shape of statement and
/// outcome must come out as canonical JSON with the members the evidence schema documents.
@Suite struct PostgresEvidenceTests {
    static let subject = AuditSubject(user: "svc-ci", resource: "orders-db", session: "0123456789abcdef")

    static func withLog(_ body: (AuditLog) async throws -> Void) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("evidence-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try AuditLog.open(
            path: dir + "/audit.db", durability: .crash,
            logger: Logger(label: "t", factory: { _ in SwiftLogNoOpLogHandler() }))
        defer { log.close() }
        try await body(log)
    }

    static func append(_ log: AuditLog, _ entry: AuditEntryBuilder) async throws -> [String: AuditValue] {
        let record = try await withCheckedThrowingContinuation { continuation in
            log.append(entry) { continuation.resume(with: $0) }
        }
        #expect(CanonicalJSON.isCanonical(record.body))
        guard case .object(let members) = try CanonicalJSON.decode(record.body) else {
            Issue.record("not an object")
            return [:]
        }
        return members
    }

    @Test func everyStatementShapeIsCanonical() async throws {
        var masking = MaskStats()
        let masker = Masker(hashKey: Array(repeating: 7, count: 32))
        _ = Array("mail bob@example.com".utf8).withUnsafeBytes {
            masker.scan($0, detectors: DetectorSet([.email]), method: .redact, stats: &masking)
        }
        #expect(masking.matches(.email) == 1)
        let shapes: [StatementEvidence] = [
            StatementEvidence(
                id: StatementID(rawValue: 1), origin: .simpleQuery(index: 0, count: 1), text: "SELECT 1",
                textIsRedacted: false, kinds: ["SELECT"], decision: .allow),
            StatementEvidence(
                id: StatementID(rawValue: 2), origin: .simpleQuery(index: 1, count: 2), text: "DROP TABLE t",
                textIsRedacted: false, kinds: ["DROP TABLE"], decision: .block(rule: "no-ddl", reason: "no")),
            StatementEvidence(
                id: StatementID(rawValue: 3), origin: .execute(statement: "s1", portal: "p"),
                text: "SELECT $1", textIsRedacted: true, kinds: ["SELECT"], decision: .allow,
                parameters: ["[REDACTED]", nil], parameterMasking: masking),
            StatementEvidence(
                id: StatementID(rawValue: 4), origin: .parse(statement: "s2"), text: "TRUNCATE t",
                textIsRedacted: false, kinds: ["TRUNCATE"], decision: .block(rule: "r", reason: "why")),
            StatementEvidence(
                id: StatementID(rawValue: 5), origin: .functionCall(functionOID: 1234), text: "fastpath",
                textIsRedacted: false, kinds: [], decision: .block(rule: "f", reason: "oid only")),
        ]
        try await Self.withLog { log in
            for shape in shapes {
                let members = try await Self.append(log, PostgresEvidence.statement(shape, subject: Self.subject))
                #expect(members["kind"] == "statement")
                #expect(members["statement"] == .uint(shape.id.rawValue))
                #expect(members["session"] == "0123456789abcdef" && members["user"] == "svc-ci")
                #expect(members["text"] == .string(shape.text))
            }
        }
    }

    @Test func everyOutcomeShapeIsCanonical() async throws {
        var counts = MaskingCounts(columns: ["public.customers.email": 2], unresolvedColumnValues: 1)
        let masker = Masker(hashKey: Array(repeating: 7, count: 32))
        _ = Array("4111 1111 1111 1111".utf8).withUnsafeBytes {
            masker.scan($0, detectors: DetectorSet([.creditCard]), method: .redact, stats: &counts.detectors)
        }
        #expect(counts.detectors.matches(.creditCard) == 1)
        let results: [StatementOutcome.Result] = [
            .completed(commandTag: "SELECT 2"), .emptyQuery, .suspended, .failed(sqlState: "42P01"), .notExecuted,
            .unaccounted, .connectionClosed,
        ]
        try await Self.withLog { log in
            for (n, result) in results.enumerated() {
                let outcome = StatementOutcome(
                    id: StatementID(rawValue: UInt64(n + 1)), result: result, rowCount: n % 2 == 0 ? 2 : nil,
                    rowsSent: 2, masking: n == 0 ? counts : MaskingCounts())
                let members = try await Self.append(
                    log, PostgresEvidence.statementEnd(outcome, subject: Self.subject, durationMicroseconds: 17))
                #expect(members["kind"] == "statement.end")
                #expect(members["rows_sent"] == 2)
                if n == 0 {
                    #expect(members["command_tag"] == "SELECT 2")
                    guard case .object(let masking)? = members["masking"] else {
                        Issue.record("no masking")
                        continue
                    }
                    #expect(masking["unresolved_column_values"] == 1)
                }
            }
        }
    }
}
