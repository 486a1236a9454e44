import Testing

@testable import Audit

@Suite struct AuditReportTests {
    /// A statement text no report may ever contain.
    static let secretText = "SELECT ssn FROM customers WHERE name = 'Zebulon-Secret-4242'"
    static let secretParameter = "param-value-8181"

    /// Builds entries in index order, with the members every entry has.
    struct Log {
        var entries: [[UInt8]] = []

        mutating func add(
            _ kind: String, user: String? = nil, resource: String? = nil, session: String? = nil,
            _ members: [String: AuditValue] = [:]
        ) {
            var m = members
            let index = entries.count + 1
            m["index"] = AuditValue(index)
            m["kind"] = .string(kind)
            m["time"] = .string("2026-11-21T10:00:\(index < 10 ? "0" : "")\(index).000000Z")
            m["v"] = 1
            if let user { m["user"] = .string(user) }
            if let resource { m["resource"] = .string(resource) }
            if let session { m["session"] = .string(session) }
            entries.append(CanonicalJSON.encode(.object(m)))
        }
    }

    static func identity(_ uid: Int, _ user: String) -> AuditValue { ["uid": AuditValue(uid), "user": .string(user)] }

    /// Two users on two resources: sessions allowed and refused, statements run, blocked and held,
    /// masked results, one approval granted by dana and one denied by erin, a grant used, a
    /// heartbeat and a policy load.
    static func scenario() -> [[UInt8]] {
        var log = Log()
        log.add("daemon.started", ["version": "1.0", "pid": 10, "uid": 990, "config": "/etc/interlock/interlock.yaml"])
        log.add(
            "policy.loaded",
            [
                "path": "/etc/interlock/interlock.yaml", "trigger": "start", "outcome": "ok",
                "sha256": .string(String(repeating: "ab", count: 32)), "resources": ["orders-db", "billing-db"],
            ])
        // svc-ci on orders-db: two sessions, one refused.
        log.add("session.open", user: "svc-ci", resource: "orders-db", session: "s1", ["decision": "allow"])
        log.add("session.open", user: "svc-ci", resource: "orders-db", session: "s2", ["decision": "allow"])
        log.add("session.open", user: "svc-ci", resource: "orders-db", session: "s3", ["decision": "deny"])
        log.add(
            "statement", user: "svc-ci", resource: "orders-db", session: "s1",
            [
                "statement": 1, "origin": "execute", "text": .string(secretText), "decision": "allow",
                "parameters": [.string(secretParameter)], "kinds": ["SELECT"],
            ])
        log.add(
            "statement.end", user: "svc-ci", resource: "orders-db", session: "s1",
            [
                "statement": 1, "result": "completed", "command_tag": "SELECT 7", "rows_sent": 7,
                "masking": [
                    "columns": ["public.customers.email": 5, "public.customers.ssn": 2],
                    "unresolved_column_values": 3,
                    "detectors": ["values_masked": 4, "matches": ["credit_card": 4]],
                ],
            ])
        log.add(
            "statement", user: "svc-ci", resource: "orders-db", session: "s1",
            ["statement": 2, "text": "DROP TABLE orders", "decision": "block", "rule": "no-ddl", "reason": "no"])
        log.add(
            "statement", user: "svc-ci", resource: "orders-db", session: "s2",
            ["statement": 1, "text": "DROP TABLE x", "decision": "block", "rule": "no-ddl", "reason": "no"])
        log.add(
            "statement", user: "svc-ci", resource: "orders-db", session: "s1",
            ["statement": 3, "text": "DELETE FROM orders", "decision": "approve", "rule": "deletes-need-approval"])
        log.add(
            "approval.requested", user: "svc-ci", resource: "orders-db", session: "s1",
            [
                "request": "apr-1", "statement": 3, "rule": "deletes-need-approval", "text": "DELETE FROM orders",
                "requester": identity(1001, "svc-ci"),
            ])
        log.add(
            "approval.approved", user: "svc-ci", resource: "orders-db", session: "s1",
            ["request": "apr-1", "approver": identity(2001, "dana"), "complete": true, "required": 1])
        log.add(
            "statement.end", user: "svc-ci", resource: "orders-db", session: "s1",
            ["statement": 3, "result": "completed", "rows_sent": 0])
        log.add(
            "grant.opened", user: "svc-ci", resource: "orders-db",
            ["grant": "grt-1", "request": "apr-1", "rule": "deletes-need-approval", "uses": 0])
        log.add(
            "grant.used", user: "svc-ci", resource: "orders-db",
            ["grant": "grt-1", "request": "apr-1", "rule": "deletes-need-approval", "uses": 1])
        log.add("log.heartbeat", ["interval_s": 60])
        // svc-etl on billing-db: one session, a statement run, one held and denied.
        log.add("session.open", user: "svc-etl", resource: "billing-db", session: "t1", ["decision": "allow"])
        log.add(
            "statement", user: "svc-etl", resource: "billing-db", session: "t1",
            ["statement": 1, "text": "SELECT 1", "decision": "allow"])
        log.add(
            "statement.end", user: "svc-etl", resource: "billing-db", session: "t1",
            ["statement": 1, "result": "failed", "sqlstate": "42P01"])
        log.add(
            "statement", user: "svc-etl", resource: "billing-db", session: "t1",
            ["statement": 2, "text": "UPDATE invoices SET paid = true", "decision": "approve", "rule": "writes"])
        log.add(
            "approval.requested", user: "svc-etl", resource: "billing-db", session: "t1",
            ["request": "apr-2", "statement": 2, "rule": "writes", "requester": identity(1002, "svc-etl")])
        log.add(
            "approval.denied", user: "svc-etl", resource: "billing-db", session: "t1",
            ["request": "apr-2", "approver": identity(2002, "erin"), "reason": "not during close"])
        log.add(
            "statement.end", user: "svc-etl", resource: "billing-db", session: "t1",
            ["statement": 2, "result": "not_approved", "approval": "denied"])
        log.add(
            "postgres.cancel", user: "svc-etl", resource: "billing-db", session: "t2",
            ["backend_pid": 77, "decision": "deny", "reason": "the session belongs to another account"])
        return log.entries
    }

    static func report(
        _ entries: [[UInt8]], verification: VerificationReport? = VerificationReport()
    )
        -> AuditReport
    {
        AuditReport(
            entries: entries, period: (since: "2026-11-21T00:00:00.000000Z", until: "2026-11-22T00:00:00.000000Z"),
            checkpoint: (origin: "interlock/0123", size: 4242, root: String(repeating: "cd", count: 32)),
            verification: verification)
    }

    /// Whether the Markdown has a table row that starts with these cells (as printed).
    static func markdownRow(_ markdown: String, _ cells: [String]) -> Bool {
        markdown.split(separator: "\n").contains { $0.hasPrefix("| " + cells.joined(separator: " | ") + " |") }
    }

    /// Whether the HTML has a table row that starts with these cells (the first two text, the rest numbers).
    static func htmlRow(_ html: String, _ cells: [String]) -> Bool {
        html.contains(
            "<tr>" + cells.enumerated().map { n, c in (n < 2 ? "<td>" : "<td class=\"n\">") + c + "</td>" }.joined())
    }

    @Test func aggregatesSessionsStatementsAndResultsPerUserAndResource() {
        let report = Self.report(Self.scenario())
        let markdown = report.markdown()
        let html = report.html()
        // opened, refused, run, blocked, held, completed, failed, not approved, other, cancels allowed, denied
        let ci = ["svc-ci", "orders-db", "2", "1", "1", "2", "1", "2", "0", "0", "0", "0", "0"]
        let etl = ["svc-etl", "billing-db", "1", "0", "1", "0", "1", "0", "1", "1", "0", "0", "1"]
        #expect(Self.markdownRow(markdown, ci), "\(markdown)")
        #expect(Self.markdownRow(markdown, etl))
        #expect(Self.htmlRow(html, ci), "\(html)")
        #expect(Self.htmlRow(html, etl))
        // Sorted by user: svc-ci's row comes before svc-etl's.
        let ciAt = markdown.range(of: "| svc-ci | orders-db | 2")
        let etlAt = markdown.range(of: "| svc-etl | billing-db | 1")
        if let ciAt, let etlAt {
            #expect(ciAt.lowerBound < etlAt.lowerBound)
        } else {
            Issue.record("a user's row is missing")
        }
    }

    @Test func rulesMaskingApprovalsAndGrants() {
        let report = Self.report(Self.scenario())
        let markdown = report.markdown()
        let html = report.html()
        // Rules: no-ddl blocked twice, deletes-need-approval held once.
        #expect(markdown.contains("| svc-ci | orders-db | no-ddl | blocked | 2 |"))
        #expect(markdown.contains("| svc-ci | orders-db | deletes-need-approval | held for approval | 1 |"))
        #expect(html.contains("<td>no-ddl</td><td>blocked</td><td class=\"n\">2</td>"))
        // Masking per column, detectors (`_` escaped for Markdown), unresolved column values.
        #expect(markdown.contains("| svc-ci | orders-db | public.customers.email | 5 |"))
        #expect(markdown.contains("| svc-ci | orders-db | public.customers.ssn | 2 |"))
        #expect(markdown.contains("| svc-ci | orders-db | 4 | credit\\_card ×4 | 3 |"))
        #expect(html.contains("<td>public.customers.email</td><td class=\"n\">5</td>"))
        #expect(html.contains("<td class=\"n\">4</td><td>credit_card ×4</td><td class=\"n\">3</td>"))
        // Approvals: requested, approved, denied, timed out, withdrawn, approvers.
        #expect(markdown.contains("| svc-ci | orders-db | 1 | 1 | 0 | 0 | 0 | dana ×1 |"))
        #expect(markdown.contains("| svc-etl | billing-db | 1 | 0 | 1 | 0 | 0 |   |"))
        #expect(markdown.contains("| erin | not during close |"))
        #expect(html.contains("<td>dana ×1</td>"))
        #expect(html.contains("<td>erin</td><td>not during close</td>"))
        // Grants: opened, used, revoked, expired.
        #expect(markdown.contains("| svc-ci | orders-db | 1 | 1 | 0 | 0 |\n"))
        #expect(
            html.contains(
                "<tr><td>svc-ci</td><td>orders-db</td>"
                    + ["1", "1", "0", "0"].map { "<td class=\"n\">\($0)</td>" }.joined() + "</tr>"))
    }

    @Test func logSectionNamesCheckpointHeartbeatsAndPolicyLoads() {
        let entries = Self.scenario()
        let report = Self.report(entries)
        let root = String(repeating: "cd", count: 32)
        let sha = String(repeating: "ab", count: 32)
        for text in [report.markdown(), report.html()] {
            #expect(text.contains("checkpoint: origin interlock/0123, size 4242, root \(root)"))
            #expect(text.contains("entries in the period: \(entries.count)"))
            #expect(text.contains("first entry: 1 at 2026-11-21T10:00:01.000000Z"))
            #expect(text.contains("last entry: \(entries.count) at 2026-11-21T10:00:\(entries.count).000000Z"))
            #expect(text.contains("heartbeats: 1"))
            #expect(text.contains("daemon starts: 1, stops: 0"))
            #expect(text.contains("policy loads: 1"))
            #expect(text.contains(sha))
            #expect(text.contains("PASS"))
        }
    }

    @Test func noStatementTextOrParameterLeaks() {
        let report = Self.report(Self.scenario())
        for text in [report.markdown(), report.html()] {
            #expect(!text.contains("Zebulon"))
            #expect(!text.contains("SELECT ssn"))
            #expect(!text.contains(Self.secretParameter))
            #expect(!text.contains("DROP TABLE"))
            #expect(!text.contains("UPDATE invoices"))
            #expect(!text.contains("DELETE FROM"))
        }
    }

    @Test func userNamesAreEscapedInHTMLAndMarkdown() {
        var log = Log()
        log.add("session.open", user: "<b>x</b>", resource: "db|1", session: "s", ["decision": "allow"])
        let report = Self.report(log.entries)
        let html = report.html()
        #expect(!html.contains("<b>x</b>"))
        #expect(html.contains("<td>&lt;b&gt;x&lt;/b&gt;</td><td>db|1</td>"))
        let markdown = report.markdown()
        #expect(!markdown.contains("<b>"))
        #expect(markdown.contains("| \\<b\\>x\\</b\\> | db\\|1 | 1 |"))
        // No scripts or external resources in the page.
        #expect(!html.lowercased().contains("<script"))
        #expect(!html.contains("http://") && !html.contains("https://"))
    }

    @Test func sameEntriesGiveTheSameBytes() {
        let entries = Self.scenario()
        #expect(Self.report(entries).markdown() == Self.report(entries).markdown())
        #expect(Self.report(entries).html() == Self.report(entries).html())
    }

    @Test func verdictSaysFailWithTheFirstFailuresOrNotVerified() {
        var failed = VerificationReport()
        failed.fail(entry: 7, "its body does not hash to its listed leaf hash: the entry was changed")
        var report = Self.report(Self.scenario(), verification: failed)
        report.keyNote = "Verified against the key the appliance named (k); pass --key to verify against your own copy."
        let markdown = report.markdown()
        #expect(markdown.contains("**FAIL: 1 problem(s)**"))
        #expect(markdown.contains("- entry 7: its body does not hash to its listed leaf hash: the entry was changed"))
        #expect(markdown.contains("pass --key to verify against your own copy"))
        #expect(report.html().contains("class=\"verdict fail\""))
        #expect(!markdown.contains("PASS"))

        let unverified = Self.report(Self.scenario(), verification: nil)
        #expect(unverified.markdown().contains("NOT VERIFIED"))
    }

    @Test func unreadableEntriesAreCountedNotFatal() {
        var entries = Self.scenario()
        entries.append(Array("not json".utf8))
        let report = Self.report(entries)
        #expect(report.markdown().contains("entries that could not be read: 1"))
    }
}
