import Masking
import NIOCore
import Policy
import Testing

@testable import PostgresWire

@Suite("Session: masking results")
struct SessionMaskingTests {
    static let customers: UInt32 = 16384
    static let resolver = InMemoryColumnResolver([
        PostgresColumnID(tableOID: customers, attributeNumber: 1): .init(
            schema: "public", table: "customers", column: "id"),
        PostgresColumnID(tableOID: customers, attributeNumber: 2): .init(
            schema: "public", table: "customers", column: "email"),
    ])
    static let rules = TestRules.rules(masks: [
        TestRules.mask(columns: ["customers.email"], detectors: [.creditCard, .email], method: .partial)
    ])

    /// Runs one simple query through an established session and returns what the client received.
    static func query(
        _ harness: inout SessionHarness, _ sql: String, answer: [PostgresBackendMessage]
    ) -> [SessionAction] {
        let actions = harness.client(.query(sql))
        _ = harness.completeRecords(actions)
        var out: [SessionAction] = []
        for message in answer {
            out += harness.server(message)
        }
        return out
    }

    @Test func aColumnRuleMasksTheSourceColumnWhateverItsAlias() {
        var harness = SessionHarness.established(rules: Self.rules, resolver: Self.resolver)
        let untouched = serverFrame(row("7", "alice@example.com"))
        let actions = Self.query(
            &harness, "SELECT id, email AS e FROM customers",
            answer: [
                .rowDescription([
                    field("id", table: Self.customers, attribute: 1, type: 23),
                    field("e", table: Self.customers, attribute: 2),
                ]),
                row("7", "alice@example.com"), row("8", nil), .commandComplete(tag: "SELECT 2"), .readyForQuery(.idle),
            ])
        let rows = actions.toClient.compactMap(\.rowValues)
        #expect(rows == [["7", "a***@example.com"], ["8", nil]])
        // The second row had nothing to mask: its original frame went out.
        #expect(actions.clientBytes.contains(serverFrame(row("8", nil)).frame))
        #expect(!actions.clientBytes.contains(untouched.frame))
        let outcome = actions.outcomes.first
        #expect(outcome?.masking.columns == ["public.customers.email": 1])
        #expect(outcome?.rowsSent == 2)
    }

    @Test func anUnknownColumnIsResolvedByTheGatewayWhileRowsWait() {
        var harness = SessionHarness.established(rules: Self.rules)  // the resolver knows nothing
        let query = harness.client(.query("SELECT email FROM customers"))
        _ = harness.completeRecords(query)
        let asked = harness.server(.rowDescription([field("email", table: Self.customers, attribute: 2)]))
        guard case .resolveColumns(let columns) = asked.first else {
            Issue.record("expected resolveColumns, got \(asked)")
            return
        }
        #expect(columns == [PostgresColumnID(tableOID: Self.customers, attributeNumber: 2)])
        #expect(harness.machine.isAwaitingColumns)
        let held = harness.server(row("bob@example.org"), .commandComplete(tag: "SELECT 1"), .readyForQuery(.idle))
        #expect(held.isEmpty, "rows wait for the answer")
        let released = harness.machine.columnsResolved([
            columns[0]: .source(.init(schema: "public", table: "customers", column: "email"))
        ])
        #expect(released.toClient.compactMap(\.rowValues) == [["b***@example.org"]])
        #expect(released.toClient.count == 4)
        #expect(!harness.machine.isAwaitingColumns)
    }

    @Test func anUnresolvableColumnIsMaskedFailClosed() {
        var harness = SessionHarness.established(rules: Self.rules)
        let query = harness.client(.query("SELECT note FROM t"))
        _ = harness.completeRecords(query)
        _ = harness.server(.rowDescription([field("note", table: 99, attribute: 3)]))
        _ = harness.server(row("harmless text"), .commandComplete(tag: "SELECT 1"), .readyForQuery(.idle))
        let released = harness.machine.columnsResolved([
            PostgresColumnID(tableOID: 99, attributeNumber: 3): .unresolvable
        ])
        #expect(released.toClient.compactMap(\.rowValues) == [["*********text"]])
        #expect(released.outcomes.first?.masking.unresolvedColumnValues == 1)
    }

    @Test func detectorsMaskComputedColumnsAndNonTextTypesBecomeNull() {
        var harness = SessionHarness.established(rules: Self.rules, resolver: Self.resolver)
        let actions = Self.query(
            &harness, "SELECT 'card 4111 1111 1111 1111', lower(email), 4111111111111111::numeric FROM customers",
            answer: [
                .rowDescription([field("?column?"), field("lower"), field("numeric", type: 1700)]),
                row("card 4111 1111 1111 1111", "alice@example.com", "4111111111111111"),
                .commandComplete(tag: "SELECT 1"), .readyForQuery(.idle),
            ])
        #expect(
            actions.toClient.compactMap(\.rowValues) == [["card **** **** **** 1111", "a***@example.com", nil]])
        let detectors = actions.outcomes.first?.masking.detectors
        #expect(detectors?.matches(.creditCard) == 2)
        #expect(detectors?.matches(.email) == 1)
    }

    @Test func binaryTextValuesAreMaskedAndOtherBinaryValuesAreLeftAlone() {
        var harness = SessionHarness.established(rules: Self.rules, resolver: Self.resolver)
        let int4 = ByteBuffer(bytes: [0, 0, 0, 42])
        let actions = Self.query(
            &harness, "SELECT id, email FROM customers",
            answer: [
                .rowDescription([
                    field("id", table: Self.customers, attribute: 1, type: 23, format: .binary),
                    field("email", table: Self.customers, attribute: 2, type: 1043, format: .binary),
                ]),
                .dataRow(DataRow(columns: [int4, ByteBuffer(string: "carol@example.net")])),
                .commandComplete(tag: "SELECT 1"), .readyForQuery(.idle),
            ])
        guard case .dataRow(let masked) = actions.toClient[1] else {
            Issue.record("expected a row")
            return
        }
        #expect(
            Array(masked).map { $0.map { Array($0.readableBytesView) } } == [
                [0, 0, 0, 42], Array("c***@example.net".utf8),
            ])
    }

    @Test func jsonStaysValidJSONUnderAColumnRule() {
        let rules = TestRules.rules(masks: [TestRules.mask(columns: ["customers.*"], method: .redact)])
        var harness = SessionHarness.established(rules: rules, resolver: Self.resolver)
        let actions = Self.query(
            &harness, "SELECT email FROM customers",
            answer: [
                .rowDescription([field("email", table: Self.customers, attribute: 2, type: 114)]),
                row("{\"a\": 1}"), .commandComplete(tag: "SELECT 1"), .readyForQuery(.idle),
            ])
        #expect(actions.toClient.compactMap(\.rowValues) == [["\"[REDACTED]\""]])
    }

    @Test func theExtendedProtocolMasksRowsDescribedByTheClientOrByUs() {
        var harness = SessionHarness.established(rules: Self.rules, resolver: Self.resolver)
        var actions: [SessionAction] = []
        // The client never describes: the machine adds its own Describe and hides the answer.
        actions += harness.client(.parse(.init(name: "", query: "SELECT email FROM customers WHERE id = $1")))
        actions += harness.client(
            .bind(.init(portal: "", statement: "", parameters: [ByteBuffer(string: "dave@example.com")])))
        actions += harness.client(.execute(portal: "", maxRows: 0))
        actions += harness.client(.sync)
        #expect(actions.records.first?.parameters == ["d***@example.com"], "parameters are masked in evidence")
        actions += harness.completeRecords(actions)
        #expect(actions.toServer.contains(.describe(.portal(""))))
        let answer = harness.server(
            .parseComplete, .bindComplete, .rowDescription([field("email", table: Self.customers, attribute: 2)]),
            row("erin@example.com"), .commandComplete(tag: "SELECT 1"), .readyForQuery(.idle))
        #expect(
            answer.toClient == [
                .parseComplete, .bindComplete, row("e***@example.com"), .commandComplete(tag: "SELECT 1"),
                .readyForQuery(.idle),
            ], "our Describe's RowDescription is not forwarded")
        #expect(answer.outcomes.first?.masking.columns == ["public.customers.email": 1])
    }

    @Test func preparedStatementsDescribedOnceUseTheBindsResultFormats() {
        var harness = SessionHarness.established(rules: Self.rules, resolver: Self.resolver)
        var actions: [SessionAction] = []
        actions += harness.client(.parse(.init(name: "q", query: "SELECT id, email FROM customers")))
        actions += harness.client(.describe(.statement("q")))
        actions += harness.client(.sync)
        _ = harness.server(
            .parseComplete, .parameterDescription([]),
            .rowDescription([
                field("id", table: Self.customers, attribute: 1, type: 23),
                field("email", table: Self.customers, attribute: 2),
            ]), .readyForQuery(.idle))
        var run: [SessionAction] = []
        run += harness.client(.bind(.init(portal: "", statement: "q", resultFormats: [.binary])))
        run += harness.client(.execute(portal: "", maxRows: 0))
        run += harness.client(.sync)
        run += harness.completeRecords(run)
        #expect(!run.toServer.contains(.describe(.portal(""))), "the statement was described: no Describe of ours")
        let answer = harness.server(
            .bindComplete,
            .dataRow(DataRow(columns: [ByteBuffer(bytes: [0, 0, 0, 1]), ByteBuffer(string: "f@x.io")])),
            .commandComplete(tag: "SELECT 1"), .readyForQuery(.idle))
        guard case .dataRow(let masked) = answer.toClient[1] else {
            Issue.record("expected a row, got \(answer.toClient)")
            return
        }
        #expect(masked.column(1).map { $0.map { String(buffer: $0) } } == "f***@x.io")
    }

    @Test func uniqueViolationDetailIsMasked() {
        let rules = TestRules.rules(masks: [TestRules.mask(detectors: [.email], method: .partial)])
        var harness = SessionHarness.established(rules: rules)
        var error = PostgresErrorFields()
        error[.severity] = "ERROR"
        error[.sqlState] = "23505"
        error[.message] = "duplicate key value violates unique constraint \"customers_email_key\""
        error[.detail] = "Key (email)=(alice@example.com) already exists."
        let actions = Self.query(
            &harness, "INSERT INTO customers (email) VALUES ('alice@example.com')",
            answer: [.errorResponse(error), .readyForQuery(.idle)])
        guard case .errorResponse(let fields) = actions.toClient.first else {
            Issue.record("expected an ErrorResponse")
            return
        }
        #expect(fields[.detail] == "Key (email)=(a***@example.com) already exists.")
        #expect(fields[.sqlState] == "23505")
        #expect(actions.outcomes.first?.masking.detectors.matches(.email) == 1)
    }

    @Test func detailOfAMaskedColumnIsRedactedEvenWithoutADetectorMatch() {
        let rules = TestRules.rules(masks: [TestRules.mask(columns: ["*.ssn"], method: .redact)])
        var harness = SessionHarness.established(rules: rules)
        var error = PostgresErrorFields()
        error[.severity] = "ERROR"
        error[.sqlState] = "23505"
        error[.detail] = "Key (ssn)=(123456789) already exists."
        error[.schemaName] = "public"
        error[.tableName] = "people"
        let actions = Self.query(&harness, "INSERT INTO people VALUES (1)", answer: [.errorResponse(error)])
        guard case .errorResponse(let fields) = actions.toClient.first else {
            Issue.record("expected an ErrorResponse")
            return
        }
        #expect(fields[.detail] == "Key (ssn)=([REDACTED]) already exists.")
    }

    @Test func noticesAreScannedToo() {
        let rules = TestRules.rules(masks: [TestRules.mask(detectors: [.email], method: .redact)])
        var harness = SessionHarness.established(rules: rules)
        var notice = PostgresErrorFields()
        notice[.severity] = "NOTICE"
        notice[.message] = "mail sent to bob@example.com"
        let actions = harness.server(.noticeResponse(notice))
        guard case .noticeResponse(let fields) = actions.toClient.first else {
            Issue.record("expected a NoticeResponse")
            return
        }
        #expect(fields[.message] == "mail sent to [REDACTED]")
    }

    @Test func copyOutDataIsScannedPerField() {
        let rules = TestRules.rules(masks: [TestRules.mask(detectors: [.email], method: .partial)])
        var harness = SessionHarness.established(rules: rules)
        let actions = Self.query(
            &harness, "COPY audit_log TO STDOUT",
            answer: [
                .copyOutResponse(.init(format: .text, columnFormats: [.text, .text, .text])),
                .copyData(ByteBuffer(string: "1\tgina@example.com\t\\N\n")),
                .copyData(ByteBuffer(string: "2\tno mail here\tx\n")),
                .copyDone, .commandComplete(tag: "COPY 2"), .readyForQuery(.idle),
            ])
        let data = actions.toClient.compactMap { message -> String? in
            if case .copyData(let bytes) = message { return String(buffer: bytes) }
            return nil
        }
        #expect(data == ["1\tg***@example.com\t\\N\n", "2\tno mail here\tx\n"])
        #expect(actions.outcomes.first?.rowsSent == 2)
        #expect(actions.outcomes.first?.rowCount == 2)
        #expect(actions.outcomes.first?.masking.detectors.matches(.email) == 1)
    }

    @Test func copyOutOfAColumnMaskedTableIsDescribedThenMaskedFieldByField() {
        var harness = SessionHarness.established(rules: Self.rules, resolver: Self.resolver)
        let query = harness.client(.query("COPY customers TO STDOUT"))
        #expect(query.records.count == 1 && query.blockedRecords.isEmpty)
        _ = harness.completeRecords(query)
        let asked = harness.server(.copyOutResponse(.init(format: .text, columnFormats: [.text, .text])))
        guard case .describeCopy(let describe) = asked.first else {
            Issue.record("expected describeCopy, got \(asked)")
            return
        }
        #expect(describe == "SELECT * FROM customers")
        #expect(harness.machine.isAwaitingColumns)
        let held = harness.server(
            .copyData(ByteBuffer(string: "7\talice@example.com\n")),
            .copyData(ByteBuffer(string: "8\t\\N\n")),
            .copyData(ByteBuffer(string: "9\tx\\ty@example.org\n")),
            .copyDone, .commandComplete(tag: "COPY 3"), .readyForQuery(.idle))
        #expect(held.isEmpty, "COPY data waits for the description")
        let released = harness.machine.copyDescribed(
            describe,
            fields: [
                field("id", table: Self.customers, attribute: 1, type: 23),
                field("email", table: Self.customers, attribute: 2),
            ])
        let data = released.toClient.compactMap { message -> String? in
            if case .copyData(let bytes) = message { return String(buffer: bytes) }
            return nil
        }
        // Decoded before masking (`x\ty@...` is "x<TAB>y@..."), no escape survives half-masked; NULL stays NULL.
        #expect(data == ["7\ta***@example.com\n", "8\t\\N\n", "9\t***********.org\n"])
        #expect(released.outcomes.first?.masking.columns == ["public.customers.email": 2])
        #expect(released.outcomes.first?.rowsSent == 3)
        #expect(!harness.machine.isAwaitingColumns)
    }

    @Test func csvCopyWithAHeaderKeepsTheHeaderAndQuotesReplacements() {
        var harness = SessionHarness.established(rules: Self.rules, resolver: Self.resolver)
        let query = harness.client(.query("COPY customers (email, id) TO STDOUT WITH (FORMAT csv, HEADER true)"))
        _ = harness.completeRecords(query)
        let asked = harness.server(.copyOutResponse(.init(format: .text, columnFormats: [.text, .text])))
        guard case .describeCopy(let describe) = asked.first else {
            Issue.record("expected describeCopy, got \(asked)")
            return
        }
        #expect(describe == "SELECT email, id FROM customers")
        _ = harness.server(
            .copyData(ByteBuffer(string: "email,id\n")),
            .copyData(ByteBuffer(string: "\"alice@example.com\",7\n")),
            .copyData(ByteBuffer(string: ",8\n")),
            .copyDone, .commandComplete(tag: "COPY 2"), .readyForQuery(.idle))
        let released = harness.machine.copyDescribed(
            describe,
            fields: [
                field("email", table: Self.customers, attribute: 2),
                field("id", table: Self.customers, attribute: 1, type: 23),
            ])
        let data = released.toClient.compactMap { message -> String? in
            if case .copyData(let bytes) = message { return String(buffer: bytes) }
            return nil
        }
        #expect(data == ["email,id\n", "a***@example.com,7\n", ",8\n"])
    }

    @Test func aCopyThatCannotBeDescribedIsMaskedWhole() {
        var harness = SessionHarness.established(rules: Self.rules, resolver: Self.resolver)
        let query = harness.client(.query("COPY (SELECT email, 1 FROM customers) TO STDOUT"))
        _ = harness.completeRecords(query)
        let asked = harness.server(.copyOutResponse(.init(format: .text, columnFormats: [.text, .text])))
        #expect(asked.contains { if case .describeCopy("SELECT email, 1 FROM customers") = $0 { true } else { false } })
        _ = harness.server(
            .copyData(ByteBuffer(string: "alice@example.com\t1\n")), .copyDone, .commandComplete(tag: "COPY 1"),
            .readyForQuery(.idle))
        let released = harness.machine.copyDescribed("SELECT email, 1 FROM customers", fields: nil)
        let data = released.toClient.compactMap { message -> String? in
            if case .copyData(let bytes) = message { return String(buffer: bytes) }
            return nil
        }
        #expect(data.count == 1 && !data[0].contains("alice"))
        #expect(released.outcomes.first?.masking.unresolvedColumnValues == 2)
    }

    @Test func aCopyNoRuleCoversGoesOutAsTheServersOwnFrames() {
        let orders: UInt32 = 20000
        let resolver = InMemoryColumnResolver([
            PostgresColumnID(tableOID: orders, attributeNumber: 1): .init(
                schema: "public", table: "orders", column: "id"),
            PostgresColumnID(tableOID: orders, attributeNumber: 2): .init(
                schema: "public", table: "orders", column: "status"),
        ])
        let rules = TestRules.rules(masks: [TestRules.mask(columns: ["customers.email"], method: .partial)])
        var harness = SessionHarness.established(rules: rules, resolver: resolver)
        _ = harness.completeRecords(harness.client(.query("COPY orders TO STDOUT")))
        _ = harness.server(.copyOutResponse(.init(format: .text, columnFormats: [.text, .text])))
        let data = PostgresBackendMessage.copyData(ByteBuffer(string: "1\tshipped to alice@example.com\n"))
        _ = harness.server(data)
        let released = harness.machine.copyDescribed(
            "SELECT * FROM orders",
            fields: [
                field("id", table: orders, attribute: 1, type: 23), field("status", table: orders, attribute: 2),
            ])
        #expect(released.clientBytes.contains(serverFrame(data).frame), "forwarded as the server sent it")
        #expect(released.outcomes.isEmpty || released.outcomes.first?.masking.isEmpty == true)
    }

    @Test func binaryCopyAndCopyWithLayoutOptionsAreRefusedUnderColumnRules() {
        var harness = SessionHarness.established(rules: Self.rules, resolver: Self.resolver)
        let binary = harness.client(.query("COPY (SELECT 1) TO STDOUT WITH (FORMAT binary)"))
        #expect(binary.serverBytes.isEmpty)
        #expect(binary.blockedRecords.count == 1)
        let delimiter = harness.client(.query("COPY customers TO STDOUT WITH (DELIMITER ';')"))
        #expect(delimiter.serverBytes.isEmpty)
        #expect(delimiter.blockedRecords.count == 1)
        let other = harness.client(.query("COPY orders TO STDOUT"))
        #expect(other.records.count == 1, "a plain COPY is described and run")
    }

    @Test func sessionsWithoutMaskRulesForwardRowsUntouched() {
        var harness = SessionHarness.established()
        let rowMessage = row("alice@example.com")
        let actions = Self.query(
            &harness, "SELECT email FROM customers",
            answer: [
                .rowDescription([field("email", table: Self.customers, attribute: 2)]), rowMessage,
                .commandComplete(tag: "SELECT 1"), .readyForQuery(.idle),
            ])
        #expect(actions.clientBytes.contains(serverFrame(rowMessage).frame))
        #expect(!actions.contains { if case .resolveColumns = $0 { true } else { false } })
    }

    @Test func aRowWiderThanItsDescriptionEndsTheSession() {
        var harness = SessionHarness.established(rules: Self.rules, resolver: Self.resolver)
        let actions = Self.query(
            &harness, "SELECT email FROM customers",
            answer: [.rowDescription([field("email", table: Self.customers, attribute: 2)]), row("a@b.co", "extra")])
        #expect(actions.closeError?[.sqlState] == "08P01")
        #expect(actions.outcomes.map(\.result) == [.connectionClosed])
        #expect(harness.machine.isClosed)
    }

    @Test func aCursorDeclaredInSQLIsMaskedWhenExecutedByName() {
        var harness = SessionHarness.established(rules: Self.rules, resolver: Self.resolver)
        var actions = harness.client(.execute(portal: "c", maxRows: 10))
        actions += harness.client(.sync)
        actions += harness.completeRecords(actions)
        #expect(actions.toServer == [.describe(.portal("c")), .execute(portal: "c", maxRows: 10), .sync])
        let answer = harness.server(
            .rowDescription([field("email", table: Self.customers, attribute: 2)]), row("hank@example.com"),
            .portalSuspended, .readyForQuery(.inTransaction))
        #expect(answer.toClient == [row("h***@example.com"), .portalSuspended, .readyForQuery(.inTransaction)])
    }
}
