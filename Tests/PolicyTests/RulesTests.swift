import Foundation
import Testing

@testable import Policy

/// The head every rule test file shares: two postgres resources and a tcp one.
private let head = """
    resources:
      - { name: orders-db, protocol: postgres, address: "198.18.0.10:5432" }
      - { name: billing-db, protocol: postgres, address: "198.18.0.12:5432" }
      - { name: artifacts, protocol: tcp, address: "198.18.0.11:8080" }

    """

@Suite struct ResourceSettingsTests {
    @Test func credentialsTLSAndMessageSizeParse() throws {
        let yaml = """
            postgres: { max_message_size: 32MiB }
            resources:
              - name: orders-db
                protocol: postgres
                address: "198.18.0.10:5432"
                credentials: { user: orders_app, password_file: /etc/interlock/secrets/orders }
                tls: { client: offer, upstream: verify-full, ca_file: /etc/interlock/orders-ca.pem }
                max_message_size: 1MiB
              - name: billing-db
                protocol: postgres
                address: "198.18.0.12:5432"
                credentials: { user: billing, systemd_credential: billing-db }
              - name: plain-db
                protocol: postgres
                address: "198.18.0.13:5432"
            """
        let c = try ConfigLoader.parse(yaml, path: "p.yaml")
        let orders = c.resources[0]
        #expect(orders.credentials?.user == "orders_app")
        #expect(orders.credentials?.password?.source == .file("/etc/interlock/secrets/orders"))
        #expect(orders.credentials?.password?.key == "resources[0].credentials.password_file")
        #expect(orders.credentials?.password?.location?.line == 6)
        #expect(orders.tls.client == .offer)
        #expect(orders.tls.upstream == .verifyFull)
        #expect(orders.tls.caFile?.value == "/etc/interlock/orders-ca.pem")
        #expect(c.maxMessageSize(for: orders) == 1 << 20)
        #expect(c.resources[1].credentials?.password?.source == .systemdCredential("billing-db"))
        #expect(c.maxMessageSize(for: c.resources[1]) == 32 << 20)
        let plain = c.resources[2]
        #expect(plain.credentials == nil)
        #expect(plain.tls == TLSSettings(client: .disable, upstream: .prefer, caFile: nil))
        #expect(c.postgres.maxMessageSize == 32 << 20)
        #expect(try ConfigLoader.parse("", path: "p").postgres.maxMessageSize == 64 << 20)
    }

    @Test func userWithoutPasswordIsAllowed() throws {
        let c = try ConfigLoader.parse(
            "resources:\n  - { name: a, protocol: postgres, address: \"1.2.3.4:5432\", credentials: { user: app } }\n",
            path: "p")
        #expect(
            c.resources[0].credentials
                == UpstreamCredentials(user: "app", password: nil, location: c.resources[0].credentials?.location))
    }

    @Test func sizes() {
        #expect(parseSize("65536") == 65536)
        #expect(parseSize("512KiB") == 512 << 10)
        #expect(parseSize("64mib") == 64 << 20)
        #expect(parseSize("1GiB") == 1 << 30)
        #expect(parseSize("64MB") == nil)
        #expect(parseSize("-1") == nil)
    }
}

@Suite struct RuleLoadingTests {
    @Test func issueExampleParses() throws {
        let yaml =
            head + """
                rules:
                  - name: no-ddl-from-bots
                    identities: [group:bots, user:svc-ci, uid:1001, unit:ci-runner@2.service, unit:backup.timer]
                    resources: [orders-db]
                    block:
                      statements: [DROP, truncate, "alter  table", GRANT, REVOKE, "CREATE FUNCTION", "security label"]
                      functions: [pg_read_file, pg_catalog.lo_export, dblink_exec]
                      unbounded_writes: true
                      patterns: ["copy * to program *"]
                      message: "schema changes go through the migration pipeline"
                  - name: customer-pii
                    resources: [orders-db, billing-db]
                    mask:
                      columns: [customers.email, public.customers.phone, "*.ssn", '"Billing"."Card No"', "customers.*"]
                      detectors: [credit_card, email, us_ssn, phone, iban, secret]
                      with: partial
                  - name: prod-writes-need-approval
                    identities: [user:svc-ci]
                    approve:
                      statements: [DELETE, UPDATE]
                      unbounded_writes: true
                      approvers: [group:dba, user:alice]
                      required: 2
                      timeout: 10m
                      grant: 30m
                      webhook: { url: "https://chat.example/hooks/x", secret_file: /etc/interlock/webhook.key }
                  - name: redact-everywhere
                    mask: { detectors: [secret] }
                """
        let c = try ConfigLoader.parse(yaml, path: "p.yaml")
        #expect(
            c.rules.map(\.name) == [
                "no-ddl-from-bots", "customer-pii", "prod-writes-need-approval", "redact-everywhere",
            ])
        let r0 = c.rules[0]
        #expect(r0.location?.line == 6)
        #expect(
            r0.identities.patterns == [
                .group("bots"), .user("svc-ci"), .uid(1001), .unit("ci-runner@2.service"), .unit("backup.timer"),
            ])
        #expect(r0.resources?.map(\.value) == ["orders-db"])
        let block = try #require(r0.block)
        #expect(
            block.match.statements.map(\.description) == [
                "DROP", "TRUNCATE", "ALTER TABLE", "GRANT", "REVOKE", "CREATE FUNCTION", "SECURITY LABEL",
            ])
        #expect(block.match.functions.map(\.description) == ["pg_read_file", "pg_catalog.lo_export", "dblink_exec"])
        #expect(block.match.unboundedWrites)
        #expect(block.message == "schema changes go through the migration pipeline")
        #expect(r0.mask == nil && r0.approve == nil)

        let mask = try #require(c.rules[1].mask)
        #expect(mask.method == .partial)
        #expect(mask.detectors == DetectorName.allCases)
        #expect(mask.columns.count == 5)
        #expect(mask.columns[3].schema == nil && mask.columns[3].table == .exact("Billing"))
        #expect(mask.columns[3].column == .exact("Card No"))
        #expect(c.rules[1].identities == .everyone)

        let approve = try #require(c.rules[2].approve)
        #expect(c.rules[2].resources == nil)
        #expect(approve.required == 2)
        #expect(approve.timeout == .seconds(600))
        #expect(approve.grant == .seconds(1800))
        #expect(approve.approvers.patterns == [.group("dba"), .user("alice")])
        #expect(approve.webhook?.url == "https://chat.example/hooks/x")
        #expect(approve.webhook?.secret.source == .file("/etc/interlock/webhook.key"))

        #expect(c.rules[3].mask == MaskSpec(detectors: [.secret], method: .redact))
    }

    @Test func approveDefaults() throws {
        let c = try ConfigLoader.parse(
            "rules:\n  - name: a\n    approve: { statements: [DELETE], approvers: [group:dba] }\n", path: "p")
        let a = try #require(c.rules[0].approve)
        #expect(a.required == 1)
        #expect(a.timeout == .seconds(600))
        #expect(a.grant == nil && a.webhook == nil)
    }

    /// Every refusal names the file, the line and the key, in the `FILE:LINE:COL: KEY: MESSAGE` form.
    @Test(arguments: [
        // rules in general
        (
            "rules:\n  - name: a\n    block: { statements: [DROP] }\n  - name: a\n    block: { statements: [DROP] }\n",
            8, "rules[1].name", "rule 'a' is defined twice (first at line 6)"
        ),
        ("rules:\n  - name: a\n    blok: { statements: [DROP] }\n", 7, "rules[0].blok", "unknown key"),
        ("rules:\n  - name: a\n    block: { statement: [DROP] }\n", 7, "rules[0].block.statement", "unknown key"),
        ("rules:\n  - block: { statements: [DROP] }\n", 6, "rules[0].name", "missing"),
        ("rules:\n  - name: a\n    identities: [group:bots]\n", 6, "rules[0]", "at least one action"),
        ("rules: { name: a }\n", 5, "rules", "expected a list of rules"),
        // resources
        (
            "rules:\n  - name: a\n    resources: [orders-db, ordres-db]\n    block: { statements: [DROP] }\n",
            7, "rules[0].resources[1]", "no resource named 'ordres-db'"
        ),
        (
            "rules:\n  - name: a\n    resources: [artifacts]\n    block: { statements: [DROP] }\n",
            7, "rules[0].resources[0]", "protocol tcp"
        ),
        (
            "rules:\n  - name: a\n    resources: []\n    block: { statements: [DROP] }\n",
            7, "rules[0].resources", "leave the key out"
        ),
        // identities
        (
            "rules:\n  - name: a\n    identities: [group:bots, usr:x]\n    block: { statements: [DROP] }\n",
            7, "rules[0].identities[1]", "unknown identity kind 'usr' (did you mean user:?)"
        ),
        (
            "rules:\n  - name: a\n    identities: [uid:-1]\n    block: { statements: [DROP] }\n",
            7, "rules[0].identities[0]", "uid:N"
        ),
        (
            "rules:\n  - name: a\n    identities: [unit:ci-runner]\n    block: { statements: [DROP] }\n",
            7, "rules[0].identities[0]", "unit:NAME.TYPE"
        ),
        (
            "rules:\n  - name: a\n    identities: [\"user:bad name\"]\n    block: { statements: [DROP] }\n",
            7, "rules[0].identities[0]", "user names are"
        ),
        (
            "rules:\n  - name: a\n    identities: [bots]\n    block: { statements: [DROP] }\n",
            7, "rules[0].identities[0]", "expected user:NAME"
        ),
        (
            "rules:\n  - name: a\n    identities: []\n    block: { statements: [DROP] }\n",
            7, "rules[0].identities", "leave the key out to mean everyone"
        ),
        // block
        (
            "rules:\n  - name: a\n    block:\n      statements: [DROP, DORP]\n", 8, "rules[0].block.statements[1]",
            "unknown statement 'DORP' (did you mean DROP?"
        ),
        (
            "rules:\n  - name: a\n    block:\n      statements: [\"DROP TABEL\"]\n", 8, "rules[0].block.statements[0]",
            "unknown object 'TABEL' for DROP (did you mean DROP TABLE?)"
        ),
        (
            "rules:\n  - name: a\n    block:\n      statements: [\"SELECT TABLE\"]\n", 8,
            "rules[0].block.statements[0]", "SELECT takes no further words"
        ),
        (
            "rules:\n  - name: a\n    block:\n      functions: [\"pg_read_file()\"]\n", 8,
            "rules[0].block.functions[0]", "not an SQL identifier"
        ),
        (
            "rules:\n  - name: a\n    block:\n      unbounded_writes: yes\n", 8, "rules[0].block.unbounded_writes",
            "true | false"
        ),
        ("rules:\n  - name: a\n    block:\n      message: no\n", 8, "rules[0].block", "matches no statement"),
        // mask
        (
            "rules:\n  - name: a\n    mask:\n      detectors: [email, ssn]\n", 8, "rules[0].mask.detectors[1]",
            "expected credit_card | email | us_ssn | phone | iban | secret, got 'ssn'"
        ),
        (
            "rules:\n  - name: a\n    mask:\n      detectors: [email]\n      with: scramble\n", 9, "rules[0].mask.with",
            "expected redact | partial | hash | null, got 'scramble'"
        ),
        (
            "rules:\n  - name: a\n    mask:\n      columns: [email]\n", 8, "rules[0].mask.columns[0]",
            "expected table.column or schema.table.column"
        ),
        (
            "rules:\n  - name: a\n    mask:\n      columns: [a.b.c.d]\n", 8, "rules[0].mask.columns[0]",
            "expected table.column"
        ),
        (
            "rules:\n  - name: a\n    mask:\n      columns: [\"customers.e-mail\"]\n", 8, "rules[0].mask.columns[0]",
            "not an SQL identifier"
        ),
        (
            "rules:\n  - name: a\n    mask:\n      columns: ['\"Customers.email']\n", 8, "rules[0].mask.columns[0]",
            "unterminated"
        ),
        ("rules:\n  - name: a\n    mask: { with: hash }\n", 7, "rules[0].mask", "masks nothing"),
        // approve
        (
            "rules:\n  - name: a\n    approve:\n      statements: [DELETE]\n", 8, "rules[0].approve.approvers",
            "missing: who may approve"
        ),
        (
            "rules:\n  - name: a\n    approve:\n      statements: [DELETE]\n      approvers: [group:dba]\n      required: 6\n",
            10, "rules[0].approve.required", "integer from 1 to 5"
        ),
        (
            "rules:\n  - name: a\n    approve:\n      statements: [DELETE]\n      approvers: [group:dba]\n      required: 0\n",
            10, "rules[0].approve.required", "integer from 1 to 5"
        ),
        (
            "rules:\n  - name: a\n    approve:\n      statements: [DELETE]\n      approvers: [user:alice]\n      required: 2\n",
            10, "rules[0].approve.required", "only 1 user(s) may approve"
        ),
        (
            "rules:\n  - name: a\n    approve:\n      statements: [DELETE]\n      approvers: [uid:0]\n", 9,
            "rules[0].approve.approvers[0]", "approvers are people"
        ),
        (
            "rules:\n  - name: a\n    approve:\n      statements: [DELETE]\n      approvers: [group:dba]\n      timeout: 2d\n",
            10, "rules[0].approve.timeout", "at most 24h"
        ),
        (
            "rules:\n  - name: a\n    approve:\n      statements: [DELETE]\n      approvers: [group:dba]\n      grant: soon\n",
            10, "rules[0].approve.grant", "duration"
        ),
        (
            "rules:\n  - name: a\n    approve:\n      approvers: [group:dba]\n", 8, "rules[0].approve",
            "matches no statement"
        ),
        (
            "rules:\n  - name: a\n    approve:\n      statements: [DELETE]\n      approvers: [group:dba]\n"
                + "      webhook: { url: \"ftp://x\", secret_file: /k }\n", 10, "rules[0].approve.webhook.url",
            "https://"
        ),
        (
            "rules:\n  - name: a\n    approve:\n      statements: [DELETE]\n      approvers: [group:dba]\n"
                + "      webhook: { url: \"https://x/y\" }\n", 10, "rules[0].approve.webhook.secret_file", "missing"
        ),
        (
            "rules:\n  - name: a\n    approve:\n      statements: [DELETE]\n      approvers: [group:dba]\n"
                + "      webhook: { url: \"https://x/y\", secret_file: key }\n", 10,
            "rules[0].approve.webhook.secret_file", "absolute path"
        ),
    ])
    func badRulesNameLineAndKey(yaml: String, line: Int, key: String, message: String) {
        expectRefusal(head + yaml, line: line, key: key, message: message)
    }

    @Test(arguments: [
        (
            "resources:\n  - name: a\n    protocol: postgres\n    address: \"1.2.3.4:5432\"\n"
                + "    credentials: { user: app, password_file: secrets/a }\n", 5,
            "resources[0].credentials.password_file",
            "absolute path"
        ),
        (
            "resources:\n  - name: a\n    protocol: postgres\n    address: \"1.2.3.4:5432\"\n"
                + "    credentials: { password_file: /s/a }\n", 5, "resources[0].credentials.user", "missing"
        ),
        (
            "resources:\n  - name: a\n    protocol: postgres\n    address: \"1.2.3.4:5432\"\n"
                + "    credentials: { user: app, password_file: /s/a, systemd_credential: a }\n", 5,
            "resources[0].credentials.systemd_credential", "not both"
        ),
        (
            "resources:\n  - name: a\n    protocol: postgres\n    address: \"1.2.3.4:5432\"\n"
                + "    credentials: { user: app, systemd_credential: ../a }\n", 5,
            "resources[0].credentials.systemd_credential", "credential name"
        ),
        (
            "resources:\n  - name: a\n    protocol: postgres\n    address: \"1.2.3.4:5432\"\n"
                + "    credentials: { user: app, password: hunter2 }\n", 5, "resources[0].credentials.password",
            "unknown key"
        ),
        (
            "resources:\n  - name: a\n    protocol: postgres\n    address: \"1.2.3.4:5432\"\n"
                + "    tls: { upstream: verify-full }\n", 5, "resources[0].tls.ca_file", "verify-full needs ca_file"
        ),
        (
            "resources:\n  - name: a\n    protocol: postgres\n    address: \"1.2.3.4:5432\"\n"
                + "    tls: { upstream: require, ca_file: /etc/ca.pem }\n", 5, "resources[0].tls.ca_file",
            "only used with upstream: verify-full"
        ),
        (
            "resources:\n  - name: a\n    protocol: postgres\n    address: \"1.2.3.4:5432\"\n"
                + "    tls: { upstream: verify-ca }\n", 5, "resources[0].tls.upstream",
            "disable | prefer | require | verify-full"
        ),
        (
            "resources:\n  - name: a\n    protocol: postgres\n    address: \"1.2.3.4:5432\"\n"
                + "    tls: { client: require }\n", 5, "resources[0].tls.client", "disable | offer"
        ),
        (
            "resources:\n  - name: a\n    address: \"1.2.3.4:80\"\n    credentials: { user: app }\n", 4,
            "resources[0].credentials", "only for protocol: postgres"
        ),
        (
            "resources:\n  - name: a\n    protocol: postgres\n    address: \"1.2.3.4:5432\"\n    max_message_size: 2GiB\n",
            5, "resources[0].max_message_size", "from 8KiB to 1GiB"
        ),
        ("postgres:\n  max_message_size: 64MB\n", 2, "postgres.max_message_size", "64MiB"),
        ("postgres:\n  max_size: 1MiB\n", 2, "postgres.max_size", "unknown key"),
    ])
    func badResourceSettingsNameLineAndKey(yaml: String, line: Int, key: String, message: String) {
        expectRefusal(yaml, line: line, key: key, message: message)
    }

    private func expectRefusal(
        _ yaml: String, line: Int, key: String, message: String,
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) {
        let path = "/etc/interlock/interlock.yaml"
        do {
            let c = try ConfigLoader.parse(yaml, path: path)
            Issue.record("accepted: \(c.rules.count) rule(s)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.key == key, sourceLocation: sourceLocation)
            #expect(error.location?.line == line, "\(error)", sourceLocation: sourceLocation)
            #expect(error.message.contains(message), "\(error)", sourceLocation: sourceLocation)
            #expect(error.description.hasPrefix("\(path):\(line):"), sourceLocation: sourceLocation)
        }
    }
}

@Suite struct StatementNameTests {
    @Test(arguments: [
        ("drop", "DROP"),
        ("  Create\tFunction ", "CREATE FUNCTION"),
        ("create or replace function", "CREATE FUNCTION"),
        ("refresh materialized view", "REFRESH MATERIALIZED VIEW"),
        ("alter materialized view", "ALTER MATERIALIZED VIEW"),
        ("start_transaction", "START TRANSACTION"),
        ("copy to program", "COPY TO PROGRAM"),
        ("COPY PROGRAM", "COPY PROGRAM"),
        ("explain analyse", "EXPLAIN ANALYZE"),
        ("DROP OWNED", "DROP OWNED"),
        ("alter system", "ALTER SYSTEM"),
        ("unparseable", "UNPARSEABLE"),
    ])
    func namesAreNormalised(text: String, expected: String) {
        #expect(StatementName(parsing: text)?.description == expected)
    }

    @Test(arguments: ["DORP", "", "  ", "SELECT TABLE", "DROP TABEL", "COPY TO STDIN", "SET ROLE", "CREATE OTHER"])
    func unknownNamesAreRefused(text: String) {
        #expect(StatementName(parsing: text) == nil)
    }

    @Test func wordsArePrefixesOfTheKindsNames() {
        let drop = StatementName(parsing: "DROP")!
        let dropTable = StatementName(parsing: "DROP TABLE")!
        let dropRole = StatementName(parsing: "DROP ROLE")!
        #expect(drop.matches(commandName: "DROP TABLE"))
        #expect(drop.matches(commandName: "DROP FUNCTION"))
        #expect(drop.matches(commandName: "DROP"))
        #expect(!drop.matches(commandName: "DROPX"))
        #expect(dropTable.matches(commandName: "DROP TABLE"))
        #expect(!dropTable.matches(commandName: "DROP VIEW"))
        #expect(!dropTable.matches(commandName: "DROP"))
        #expect(!drop.matches(commandName: "CREATE TABLE"))
        // `drop user x` answers to DROP USER and DROP ROLE (the classifier gives both names).
        let dropUser = StatementFacts(commandNames: ["DROP USER", "DROP ROLE"])
        #expect(StatementMatcher(statements: [dropRole]).matches(dropUser))
        #expect(!StatementMatcher(statements: [dropTable]).matches(dropUser))
        let copyOut = StatementFacts(commandNames: ["COPY TO PROGRAM", "COPY PROGRAM"])
        #expect(StatementMatcher(statements: [StatementName(parsing: "COPY PROGRAM")!]).matches(copyOut))
        #expect(StatementMatcher(statements: [StatementName(parsing: "COPY TO")!]).matches(copyOut))
        #expect(!StatementMatcher(statements: [StatementName(parsing: "COPY FROM")!]).matches(copyOut))
    }

    @Test func everyCanonicalNameAndEveryLeadingPartParses() {
        for name in StatementName.canonicalNames {
            let words = name.split(separator: " ")
            for n in 1...words.count {
                let part = words[..<n].joined(separator: " ")
                #expect(StatementName(parsing: part.lowercased())?.description == part)
            }
        }
    }
}

@Suite struct IdentityMatchingTests {
    static let ci = Identity(
        uid: 1001, user: "svc-ci", gid: 1001, groups: ["bots", "svc-ci"], unit: "ci-runner.service")
    static let nobodyKnown = Identity(uid: 4242)
    static let alice = Identity(uid: 1100, user: "alice", groups: ["dba"], unit: "session-3.scope")

    @Test(arguments: [
        ("user:svc-ci", ci, true),
        ("user:svc-ci", alice, false),
        ("user:svc-ci", nobodyKnown, false),
        ("group:bots", ci, true),
        ("group:bot", ci, false),
        ("group:dba", alice, true),
        ("group:svc-ci", ci, true),
        ("uid:1001", ci, true),
        ("uid:4242", nobodyKnown, true),
        ("uid:1001", alice, false),
        ("unit:ci-runner.service", ci, true),
        ("unit:ci-runner.socket", ci, false),
        ("unit:session-3.scope", alice, true),
        ("unit:ci-runner.service", nobodyKnown, false),
    ])
    func patterns(text: String, identity: Identity, expected: Bool) throws {
        let p = try #require(IdentityPattern(parsing: text))
        #expect(p.description == text)
        #expect(p.matches(identity) == expected)
    }

    @Test func matcherIsAnyOfAndAbsentIsEveryone() {
        let m = IdentityMatcher([.group("dba"), .uid(4242)])
        #expect(m.matches(Self.alice))
        #expect(m.matches(Self.nobodyKnown))
        #expect(!m.matches(Self.ci))
        #expect(IdentityMatcher.everyone.matches(Self.ci))
        #expect(IdentityMatcher.everyone.matches(Self.nobodyKnown))
    }

    @Test(arguments: [
        "usr:x", "user:", "user:-x", "user:1001", "user:a b", "group:", "uid:", "uid:x", "uid:4294967295", "uid:+1",
        "unit:", "unit:.service", "unit:foo.servic", "unit:foo", "unit:a/b.service", "svc-ci", ":x",
    ])
    func badSyntaxIsRefused(text: String) {
        #expect(IdentityPattern(parsing: text) == nil)
    }

    @Test func goodSyntaxIsAccepted() {
        for text in [
            "user:svc-ci", "user:build$", "user:first.last", "group:_ops", "uid:0", "uid:4294967294",
            "unit:getty@tty1.service", "unit:user-1000.slice", "unit:backup.timer", "unit:foo\\x2dbar.mount",
        ] {
            #expect(IdentityPattern(parsing: text) != nil, "\(text)")
        }
    }
}

@Suite struct ColumnPatternTests {
    @Test(arguments: [
        // pattern, schema, table, column, matches
        ("customers.email", "public", "customers", "email", true),
        ("customers.email", "sales", "customers", "email", true),
        ("customers.email", "public", "customers", "phone", false),
        ("customers.email", "public", "orders", "email", false),
        ("Customers.EMAIL", "public", "customers", "email", true),
        ("customers.email", "public", "Customers", "Email", true),  // unquoted: case-insensitive
        ("public.customers.phone", "public", "customers", "phone", true),
        ("public.customers.phone", "sales", "customers", "phone", false),
        ("*.ssn", "public", "employees", "ssn", true),
        ("*.ssn", "hr", "people", "SSN", true),
        ("*.ssn", "hr", "people", "ssn_hash", false),
        ("public.*.ssn", "public", "people", "ssn", true),
        ("public.*.ssn", "hr", "people", "ssn", false),
        ("customers.*", "public", "customers", "anything", true),
        ("customers.*", "public", "orders", "anything", false),
        ("*.*.card", "x", "y", "card", true),
        ("\"Customers\".email", "public", "Customers", "email", true),
        ("\"Customers\".email", "public", "customers", "email", false),  // quoted: exact
        ("customers.\"E-Mail\"", "public", "customers", "E-Mail", true),
        ("customers.\"E-Mail\"", "public", "customers", "e-mail", false),
        ("\"odd.schema\".t.c", "odd.schema", "t", "c", true),
        ("t.\"say \"\"hi\"\"\"", "public", "t", "say \"hi\"", true),
        ("t.\"*\"", "public", "t", "*", true),
        ("t.\"*\"", "public", "t", "other", false),
        ("kunden.straße", "public", "KUNDEN", "straße", true),
    ])
    func matching(pattern: String, schema: String, table: String, column: String, expected: Bool) throws {
        let p = try #require(ColumnPattern(parsing: pattern))
        #expect(p.matches(schema: schema, table: table, column: column) == expected)
        #expect(p.description == pattern)
    }

    @Test(arguments: ["email", "a.b.c.d", "a..b", ".a", "a.", "a.b-c", "1a.b", "\"\".b", "\"a\"x.b", "\"a.b"])
    func badPatternsAreRefused(text: String) {
        #expect(ColumnPattern(parsing: text) == nil)
    }
}

@Suite struct StatementMatchingTests {
    static let matcher = StatementMatcher(
        statements: [StatementName(parsing: "DROP")!, StatementName(parsing: "CREATE FUNCTION")!],
        functions: [FunctionPattern(parsing: "pg_read_file")!, FunctionPattern(parsing: "pg_catalog.lo_export")!],
        unboundedWrites: true,
        patterns: [TextPattern("copy * to program *")!])

    @Test(arguments: [
        (StatementFacts(commandNames: ["DROP TABLE"]), true),
        (StatementFacts(commandNames: ["CREATE FUNCTION"]), true),
        (StatementFacts(commandNames: ["CREATE TABLE"]), false),
        (StatementFacts(commandNames: ["SELECT"], functions: [CalledFunction(name: "PG_READ_FILE")]), true),
        (
            StatementFacts(
                commandNames: ["SELECT"], functions: [CalledFunction(schema: "pg_catalog", name: "pg_read_file")]), true
        ),
        (StatementFacts(commandNames: ["SELECT"], functions: [CalledFunction(name: "lo_export")]), true),
        (
            StatementFacts(
                commandNames: ["SELECT"], functions: [CalledFunction(schema: "myschema", name: "lo_export")]),
            false
        ),
        (StatementFacts(commandNames: ["SELECT"], functions: [CalledFunction(name: "lower")]), false),
        (StatementFacts(commandNames: ["DELETE"], isUnboundedWrite: true), true),
        (StatementFacts(commandNames: ["DELETE"], isUnboundedWrite: false), false),
        (StatementFacts(commandNames: ["COPY"], text: "COPY t\n  TO   PROGRAM 'rm -rf /';"), true),
        (StatementFacts(commandNames: ["COPY"], text: "COPY t TO STDOUT"), false),
    ])
    func facts(_ facts: StatementFacts, expected: Bool) {
        #expect(Self.matcher.matches(facts) == expected)
    }

    @Test func globsAreAnchoredAndCaseInsensitive() {
        let contains = TextPattern("*pg_sleep*")!
        #expect(contains.matches("select PG_SLEEP(10)"))
        #expect(!TextPattern("pg_sleep")!.matches("select pg_sleep(10)"))
        #expect(TextPattern("select ?")!.matches("SELECT 1;"))
        #expect(!TextPattern("select ?")!.matches("SELECT 10"))
        #expect(TextPattern("a*b*c")!.matches("axxbyyc"))
        #expect(!TextPattern("a*b*c")!.matches("axxbyy"))
        #expect(TextPattern("**")!.matches(""))
        #expect(TextPattern("   ") == nil)
        // A pathological input stays fast (single backtrack point).
        let long = String(repeating: "a", count: 20_000)
        #expect(!TextPattern("*a*a*a*a*a*b")!.matches(long))
    }
}

@Suite struct ApplicableRulesTests {
    static let config: PolicyConfig = {
        let yaml =
            head + """
                rules:
                  - name: bots-no-ddl
                    identities: [group:bots]
                    resources: [orders-db]
                    block: { statements: [DROP], message: "use migrations" }
                  - name: everyone-no-truncate
                    block: { statements: [TRUNCATE, DROP] }
                  - name: pii-partial
                    resources: [orders-db]
                    mask: { columns: [customers.email], detectors: [email, credit_card], with: partial }
                  - name: pii-hash
                    mask: { columns: ["*.email", "*.ssn"], detectors: [email, us_ssn], with: hash }
                  - name: ci-deletes
                    identities: [user:svc-ci, unit:deploy.service]
                    approve: { statements: [DELETE, DROP], approvers: [group:dba] }
                """
        return try! ConfigLoader.parse(yaml, path: "p.yaml")
    }()
    static let compiled = CompiledRules(config.rules)
    static let ci = Identity(uid: 1001, user: "svc-ci", groups: ["bots"], unit: "ci-runner.service")
    static let alice = Identity(uid: 1100, user: "alice", groups: ["dba"])

    @Test func fileOrderAndFiltering() {
        let r = Self.compiled.rules(for: Self.ci, resource: "orders-db")
        #expect(r.blocks.map(\.rule) == ["bots-no-ddl", "everyone-no-truncate"])
        #expect(r.masks.map(\.rule) == ["pii-partial", "pii-hash"])
        #expect(r.approvals.map(\.rule) == ["ci-deletes"])
        #expect(r.blocks[0].spec.message == "use migrations")

        let other = Self.compiled.rules(for: Self.ci, resource: "billing-db")
        #expect(other.blocks.map(\.rule) == ["everyone-no-truncate"])
        #expect(other.masks.map(\.rule) == ["pii-hash"])

        let a = Self.compiled.rules(for: Self.alice, resource: "orders-db")
        #expect(a.blocks.map(\.rule) == ["everyone-no-truncate"])
        #expect(a.approvals.isEmpty)

        let unregistered = Self.compiled.rules(for: Self.alice, resource: nil)
        #expect(unregistered.blocks.map(\.rule) == ["everyone-no-truncate"])
        #expect(unregistered.masks.map(\.rule) == ["pii-hash"])

        let byUnit = Self.compiled.rules(for: Identity(uid: 0, user: "root", unit: "deploy.service"), resource: "x")
        #expect(byUnit.approvals.map(\.rule) == ["ci-deletes"])

        #expect(CompiledRules([]).rules(for: Self.ci, resource: "orders-db").isEmpty)
        #expect(!r.isEmpty && r.inspectsStatements && r.masksResults)
    }

    @Test func blockWinsAndFirstRuleIsReported() {
        let r = Self.compiled.rules(for: Self.ci, resource: "orders-db")
        let drop = StatementFacts(commandNames: ["DROP TABLE"])
        #expect(r.block(for: drop)?.rule == "bots-no-ddl")
        #expect(r.approval(for: drop)?.rule == "ci-deletes")  // the caller asks only when no block
        let delete = StatementFacts(commandNames: ["DELETE"])
        #expect(r.block(for: delete) == nil)
        #expect(r.approval(for: delete)?.rule == "ci-deletes")
        #expect(r.block(for: StatementFacts(commandNames: ["SELECT"])) == nil)
    }

    @Test func columnMaskIsFirstMatchingRuleAndDetectorsAreDeduplicated() {
        let r = Self.compiled.rules(for: Self.ci, resource: "orders-db")
        #expect(r.columnMask(schema: "public", table: "customers", column: "email")?.rule == "pii-partial")
        #expect(r.columnMask(schema: "public", table: "customers", column: "email")?.spec.method == .partial)
        #expect(r.columnMask(schema: "public", table: "staff", column: "email")?.rule == "pii-hash")
        #expect(r.columnMask(schema: "public", table: "staff", column: "ssn")?.spec.method == .hash)
        #expect(r.columnMask(schema: "public", table: "staff", column: "name") == nil)
        #expect(
            r.detectorMethods.map { "\($0.rule):\($0.spec.detector.rawValue):\($0.spec.method.rawValue)" } == [
                "pii-partial:email:partial", "pii-partial:credit_card:partial", "pii-hash:us_ssn:hash",
            ])
    }
}

@Suite struct SecretTests {
    private func tempFile(_ contents: String, mode: mode_t) throws -> String {
        let path = NSTemporaryDirectory() + "interlock-secret-\(UUID().uuidString)"
        #expect(FileManager.default.createFile(atPath: path, contents: Data(contents.utf8)))
        #expect(chmod(path, mode) == 0)
        return path
    }

    @Test func ownerOnlyFileIsReadAndTrailingNewlineDropped() throws {
        let path = try tempFile("s3cret\n", mode: 0o600)
        defer { unlink(path) }
        let secret = try SecretReference(.file(path), key: "k").read()
        #expect(secret.string == "s3cret")
        #expect("\(secret)" == "<secret>")
        #expect(String(reflecting: secret) == "<secret>")
        var dumped = ""
        dump(secret, to: &dumped)
        #expect(!dumped.contains("s3cret"))
    }

    @Test func groupReadableIsAllowed() throws {
        let path = try tempFile("pw\r\n", mode: 0o640)
        defer { unlink(path) }
        #expect(try SecretReference(.file(path), key: "k").read().bytes == Array("pw".utf8))
    }

    @Test(arguments: [0o644 as mode_t, 0o604, 0o602, 0o601])
    func worldAccessibleFileIsRefusedNamingTheFile(mode: mode_t) throws {
        let path = try tempFile("s3cret", mode: mode)
        defer { unlink(path) }
        let at = Policy.SourceLocation(file: "/etc/interlock/interlock.yaml", line: 9, column: 20)
        let ref = SecretReference(.file(path), key: "resources[0].credentials.password_file", location: at)
        do {
            _ = try ref.read()
            Issue.record("read a mode \(String(mode, radix: 8)) file")
        } catch {
            #expect(error.message.contains(path))
            #expect(error.message.contains("mode \(String(mode, radix: 8))"))
            #expect(error.message.contains("chmod o-rwx"))
            #expect(!error.message.contains("s3cret"))
            #expect(
                error.description.hasPrefix(
                    "/etc/interlock/interlock.yaml:9:20: resources[0].credentials.password_file:"))
        }
    }

    @Test func systemdCredentialIsReadFromTheCredentialsDirectory() throws {
        let dir = NSTemporaryDirectory() + "interlock-creds-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(FileManager.default.createFile(atPath: dir + "/orders-db", contents: Data("pw".utf8)))
        #expect(chmod(dir + "/orders-db", 0o400) == 0)
        let ref = SecretReference(.systemdCredential("orders-db"), key: "k")
        #expect(try ref.read(credentialsDirectory: dir).string == "pw")
        #expect(throws: ConfigError.self) { try ref.read(credentialsDirectory: nil) }
        do {
            _ = try ref.read(credentialsDirectory: nil)
        } catch {
            #expect(error.message.contains("CREDENTIALS_DIRECTORY is not set"))
        }
    }

    @Test func missingEmptyAndNonRegularFilesAreRefused() throws {
        #expect(throws: ConfigError.self) { try SecretReference(.file("/nonexistent/pw"), key: "k").read() }
        let empty = try tempFile("\n", mode: 0o600)
        defer { unlink(empty) }
        do {
            _ = try SecretReference(.file(empty), key: "k").read()
            Issue.record("read an empty secret")
        } catch {
            #expect(error.message.contains("is empty"))
        }
        let dir = NSTemporaryDirectory() + "interlock-dir-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { rmdir(dir) }
        #expect(chmod(dir, 0o700) == 0)
        do {
            _ = try SecretReference(.file(dir), key: "k").read()
            Issue.record("read a directory")
        } catch {
            #expect(error.message.contains("not a regular file"))
        }
    }
}

@Suite struct ShippedExampleRulesTests {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("examples/interlock.yaml").path

    @Test func exampleRulesParse() throws {
        let c = try ConfigLoader.load(path: Self.path)
        #expect(c.rules.map(\.name) == ["no-ddl-from-bots", "customer-pii"])
        #expect(c.postgres == PostgresSettings())
        #expect(c.resources[0].tls == TLSSettings())
    }

    /// The commented-out examples (a resource with credentials and TLS, an approve rule) must be
    /// valid once an operator removes the `# `.
    @Test func commentedExamplesParseWhenUncommented() throws {
        let text = try ConfigLoader.readFile(Self.path)
        var inExample = false
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            if line.hasPrefix("  # - name:") {
                inExample = true
            } else if !line.hasPrefix("  #   ") {
                inExample = false
            }
            return inExample ? "  " + line.dropFirst(4) : String(line)
        }
        let c = try ConfigLoader.parse(lines.joined(separator: "\n"), path: Self.path)
        #expect(c.resources.map(\.name) == ["orders-db", "billing-db", "artifacts"])
        #expect(c.resources[1].credentials?.password?.source == .file("/etc/interlock/secrets/billing-db"))
        #expect(c.resources[1].maxMessageSize == 16 << 20)
        #expect(c.rules.map(\.name) == ["no-ddl-from-bots", "customer-pii", "prod-writes-need-approval"])
        #expect(c.rules[2].approve?.grant == .seconds(1800))
        #expect(c.rules[2].approve?.webhook != nil)
    }
}
