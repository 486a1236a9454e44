import Foundation
import Testing

@testable import Policy

@Suite struct ConfigLoaderTests {
    @Test func fullFileParsesWithEveryField() throws {
        let yaml = """
            daemon:
              user: interlock
              listen_port: 15002
              control_socket: /run/interlock/control.sock
              upstream_mark: 0x1f0c0002
              connect_timeout: 3s
              idle_timeout: 10m
              ruleset_check_interval: 500ms
            audit: { database: /var/lib/interlock/audit.db, durability: power-loss }
            capture: { users: [svc-ci], groups: [bots], unregistered: record, dns: deny }
            resources:
              - { name: orders-db, protocol: postgres, address: "198.18.0.10:5432" }
              - { name: artifacts, protocol: tcp, address: "198.18.0.0/24:8080-8090" }
              - { name: v6, address: "[2001:db8:18::10]:5432" }
              - { name: named, protocol: postgres, address: "db.internal.example:*" }
            """
        let c = try ConfigLoader.parse(yaml, path: "p.yaml")
        #expect(c.daemon.listenPort == 15002)
        #expect(c.daemon.upstreamMark == 0x1F0C_0002)
        #expect(c.daemon.connectTimeout == .seconds(3))
        #expect(c.daemon.idleTimeout == .seconds(600))
        #expect(c.daemon.rulesetCheckInterval == .milliseconds(500))
        #expect(c.audit.durability == .powerLoss)
        #expect(c.capture.users.map(\.value) == ["svc-ci"])
        #expect(c.capture.users[0].location?.line == 10)
        #expect(c.capture.groups.map(\.value) == ["bots"])
        #expect(c.capture.unregistered == .record)
        #expect(c.capture.allowDNS == false)
        #expect(c.resources.map(\.name) == ["orders-db", "artifacts", "v6", "named"])
        #expect(c.resources[0].target == .address(IPAddress("198.18.0.10")!, PortRange(5432, 5432)))
        #expect(c.resources[1].target == .network(IPAddress("198.18.0.0")!, prefixLength: 24, PortRange(8080, 8090)))
        #expect(c.resources[2].protocol == .tcp)
        #expect(c.resources[3].target == .host("db.internal.example", .any))
    }

    @Test func recordingsAreOnByDefaultOffUnderRedactedTextAndTheirLimitsParse() throws {
        let defaults = try ConfigLoader.parse("", path: "p.yaml").audit
        #expect(
            defaults.recording == .full && defaults.recordingLimit == 64 << 20 && defaults.retentionRecordings == nil)
        let set = try ConfigLoader.parse(
            "audit: { recording: full, recording_limit: 8MiB, retention: { recordings: 90d } }", path: "p.yaml"
        ).audit
        #expect(
            set.recording == .full && set.recordingLimit == 8 << 20 && set.retentionRecordings == .seconds(90 * 86_400))
        #expect(try ConfigLoader.parse("audit: { statement_text: redacted }", path: "p.yaml").audit.recording == .off)
        // A resource may turn recording off (bulk exports) or on, over audit.recording.
        let perResource = try ConfigLoader.parse(
            """
            audit: { recording: off }
            resources:
              - { name: etl, protocol: postgres, address: "198.18.0.10:5432", recording: full }
              - { name: other, protocol: postgres, address: "198.18.0.11:5432" }
            """, path: "p.yaml")
        #expect(perResource.recording(for: perResource.resources[0]) == .full)
        #expect(perResource.recording(for: perResource.resources[1]) == .off)
        for (yaml, words) in [
            ("audit:\n  statement_text: redacted\n  recording: full\n", "recording: off"),
            ("audit:\n  recording: some\n", "full | off"),
            ("audit:\n  recording_limit: 10KiB\n", "audit.recording_limit"),
            ("audit:\n  retention: { recordings: 10m }\n", "at least 1h"),
            (
                "audit: { statement_text: redacted }\nresources:\n  - { name: a, protocol: postgres, address: \"198.18.0.10:5432\", recording: full }\n",
                "resources[0].recording"
            ),
            (
                "resources:\n  - { name: a, address: \"198.18.0.10:80\", recording: off }\n",
                "only for protocol: postgres"
            ),
        ] {
            #expect(throws: ConfigError.self) { try ConfigLoader.parse(yaml, path: "p.yaml") }
            do {
                _ = try ConfigLoader.parse(yaml, path: "p.yaml")
            } catch {
                #expect("\(error)".contains(words), "\(error)")
            }
        }
    }

    @Test func emptyFileIsTheDefaults() throws {
        let c = try ConfigLoader.parse("", path: "p.yaml")
        #expect(c.daemon == DaemonSettings())
        #expect(c.resources.isEmpty)
        #expect(c.capture.unregistered == .deny)
    }

    @Test(arguments: [
        ("daemon:\n  listen_prot: 15001\n", 2, "daemon.listen_prot", "unknown key"),
        ("capture:\n  users: svc-ci\n", 2, "capture.users", "expected a list"),
        ("capture:\n  unregistered: allow\n", 2, "capture.unregistered", "deny | record"),
        ("daemon:\n  listen_port: 70000\n", 2, "daemon.listen_port", "integer from 1 to 65535"),
        ("daemon:\n  idle_timeout: soon\n", 2, "daemon.idle_timeout", "duration"),
        ("resources:\n  - name: a\n    address: 198.18.0.300:5432\n", 3, "resources[0].address", "expected HOST:PORT"),
        ("resources:\n  - name: a\n    address: 198.18.0.1\n", 3, "resources[0].address", "expected HOST:PORT"),
        ("resources:\n  - name: a\n    address: 2001:db8::1:5432\n", 3, "resources[0].address", "expected HOST:PORT"),
        (
            "resources:\n  - { name: a, address: \"1.2.3.4:1\" }\n  - { name: a, address: \"1.2.3.4:2\" }\n", 3,
            "resources[1].name", "defined twice"
        ),
        ("resources:\n  - { name: a }\n", 2, "resources[0].address", "missing"),
        (
            "resources:\n  - { name: a, protocol: ftp, address: \"1.2.3.4:1\" }\n", 2, "resources[0].protocol",
            "postgres | tcp"
        ),
        ("audit:\n  database: relative.db\n", 2, "audit.database", "absolute path"),
    ])
    func badFilesNameLineAndKey(yaml: String, line: Int, key: String, message: String) {
        #expect {
            _ = try ConfigLoader.parse(yaml, path: "/etc/interlock/interlock.yaml")
        } throws: { error in
            guard let e = error as? ConfigError else { return false }
            return e.location?.line == line && e.key == key && e.message.contains(message)
                && e.description.hasPrefix("/etc/interlock/interlock.yaml:\(line):")
        }
    }

    @Test func brokenYAMLNamesTheLine() {
        #expect {
            _ = try ConfigLoader.parse("capture:\n  users: [svc-ci\n  groups: []\n", path: "x.yaml")
        } throws: { error in
            guard let e = error as? ConfigError, let loc = e.location else { return false }
            return loc.file == "x.yaml" && loc.line >= 2 && e.message.hasPrefix("invalid YAML")
        }
    }

    @Test func missingFileSaysSo() {
        #expect {
            _ = try ConfigLoader.load(path: "/nonexistent/interlock.yaml")
        } throws: { error in
            (error as? ConfigError)?.message.contains("No such file") == true
        }
    }

    @Test func durations() {
        #expect(parseDuration("500ms") == .milliseconds(500))
        #expect(parseDuration("5s") == .seconds(5))
        #expect(parseDuration("10m") == .seconds(600))
        #expect(parseDuration("2h") == .seconds(7200))
        #expect(parseDuration("1d") == .seconds(86400))
        #expect(parseDuration("30") == .seconds(30))
        #expect(parseDuration("-1s") == nil)
        #expect(parseDuration("fast") == nil)
    }
}

@Suite struct ResourceTableTests {
    let table = ResourceTable(
        resources: [
            Resource(name: "net", protocol: .tcp, target: .network(IPAddress("198.18.0.0")!, prefixLength: 24, .any)),
            Resource(
                name: "db", protocol: .postgres, target: .address(IPAddress("198.18.0.10")!, PortRange(5432, 5432))),
            Resource(
                name: "db-wide", protocol: .tcp, target: .address(IPAddress("198.18.0.10")!, PortRange(5000, 6000))),
            Resource(
                name: "v6", protocol: .postgres,
                target: .network(IPAddress("2001:db8:18::")!, prefixLength: 64, PortRange(5432, 5432))),
            Resource(name: "named", protocol: .tcp, target: .host("db.example", PortRange(80, 80))),
        ],
        resolved: ["db.example": [IPAddress("198.18.0.20")!]])

    @Test func mostSpecificWins() {
        #expect(table.match(Endpoint("198.18.0.10:5432")!)?.name == "db")
        #expect(table.match(Endpoint("198.18.0.10:5433")!)?.name == "db-wide")
        #expect(table.match(Endpoint("198.18.0.10:22")!)?.name == "net")
        #expect(table.match(Endpoint("198.18.0.20:80")!)?.name == "named")
        #expect(table.match(Endpoint("[2001:db8:18::10]:5432")!)?.name == "v6")
        #expect(table.match(Endpoint("[2001:db8:19::10]:5432")!) == nil)
        #expect(table.match(Endpoint("198.18.1.10:5432")!) == nil)
    }

    @Test func unresolvedHostMatchesNothing() {
        let t = ResourceTable(resources: [Resource(name: "n", protocol: .tcp, target: .host("nowhere.invalid", .any))])
        #expect(t.unresolved == ["nowhere.invalid"])
        #expect(t.hostNames == ["nowhere.invalid"])
    }

    @Test func addressesRoundTrip() {
        #expect(IPAddress("198.18.0.10")?.description == "198.18.0.10")
        #expect(IPAddress("2001:db8:18::10")?.description == "2001:db8:18::10")
        #expect(IPAddress("::ffff:198.18.0.10") == IPAddress("198.18.0.10"))
        #expect(Endpoint("[::1]:15001")?.description == "[::1]:15001")
        #expect(IPAddress("127.0.0.1")!.isLoopback && IPAddress("::1")!.isLoopback)
        #expect(!IPAddress("198.18.0.1")!.isLoopback)
    }
}

@Suite struct ShippedExampleTests {
    /// The example operators copy to /etc/interlock must stay valid as the loader evolves.
    @Test func examplePolicyFileParses() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let path = repo.appendingPathComponent("examples/interlock.yaml").path
        let c = try ConfigLoader.load(path: path)
        #expect(c.daemon == DaemonSettings())
        #expect(c.capture.users.map(\.value) == ["svc-ci"])
        #expect(c.resources.map(\.name) == ["orders-db", "artifacts"])
    }
}
