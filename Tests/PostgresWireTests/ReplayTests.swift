import NIOCore
import Testing

@testable import PostgresWire

/// A recorded session read back as its client saw it.
@Suite struct ReplayTests {
    static func bytes(_ m: PostgresFrontendMessage) -> [UInt8] {
        var b = ByteBuffer()
        m.encode(into: &b)
        return Array(b.readableBytesView)
    }

    static func bytes(_ m: PostgresBackendMessage) -> [UInt8] {
        var b = ByteBuffer()
        m.encode(into: &b)
        return Array(b.readableBytesView)
    }

    static func field(_ name: String) -> PostgresBackendMessage.Field {
        .init(
            name: name, tableOID: 0, columnAttributeNumber: 0, dataTypeOID: 25, dataTypeSize: -1, typeModifier: -1,
            format: .text)
    }

    static func row(_ values: [String?]) -> PostgresBackendMessage {
        .dataRow(DataRow(columns: values.map { $0.map { ByteBuffer(string: $0) } }))
    }

    static func texts(_ lines: [PostgresReplay.Line]) -> [String] { lines.map(\.text) }

    @Test func aSimpleSessionReadsLikeTheClientSawIt() {
        var replay = PostgresReplay(maximumRows: 2)
        var out: [PostgresReplay.Line] = []
        let c = UInt8(ascii: "c")
        let s = UInt8(ascii: "s")
        out += replay.frame(
            kind: c, offset: 0,
            bytes: Self.bytes(
                .startup(
                    .init(parameters: [.init(name: "user", value: "app"), .init(name: "database", value: "orders")]))))
        out += replay.frame(kind: c, offset: 10, bytes: [UInt8(ascii: "p"), 0, 0, 0, 4])
        out += replay.frame(kind: s, offset: 20, bytes: Self.bytes(.authentication(.ok)))
        out += replay.frame(kind: s, offset: 21, bytes: Self.bytes(.parameterStatus(name: "TimeZone", value: "UTC")))
        out += replay.frame(kind: s, offset: 22, bytes: Self.bytes(.readyForQuery(.idle)))
        out += replay.frame(kind: c, offset: 100, bytes: Self.bytes(.query("SELECT id, email\nFROM t;")))
        out += replay.frame(
            kind: s, offset: 2_600_000, bytes: Self.bytes(.rowDescription([Self.field("id"), Self.field("email")])))
        for (i, email) in ["a***@x.com", "b***@y.org", "c***@z.net"].enumerated() {
            out += replay.frame(kind: s, offset: 2_600_001, bytes: Self.bytes(Self.row(["\(i + 1)", email])))
        }
        out += replay.frame(kind: s, offset: 2_600_002, bytes: Self.bytes(.commandComplete(tag: "SELECT 3")))
        var error = PostgresErrorFields()
        error[.severity] = "ERROR"
        error[.sqlState] = "42501"
        error[.message] = "blocked by interlock"
        error[.hint] = "ask"
        out += replay.frame(kind: c, offset: 3_000_000, bytes: Self.bytes(.query("DROP TABLE t")))
        out += replay.frame(kind: s, offset: 3_000_100, bytes: Self.bytes(.errorResponse(error)))
        out += replay.frame(kind: UInt8(ascii: "n"), offset: 3_000_200, bytes: Array("recording limit reached".utf8))
        out += replay.frame(kind: c, offset: 4_000_000, bytes: Self.bytes(.terminate))
        #expect(
            Self.texts(out) == [
                "connect user=app database=orders",
                "authentication response (not recorded)",
                "authenticated",
                "SELECT id, email",
                "FROM t;",
                "waited 2.6 s",
                "id | email",
                "---+-----------",
                "1  | a***@x.com",
                "2  | b***@y.org",
                "… 1 more row(s)",
                "(3 rows)",
                "SELECT 3",
                "DROP TABLE t",
                "ERROR 42501: blocked by interlock",
                "  HINT: ask",
                "recording limit reached",
                "disconnect",
            ])
        #expect(out.first { $0.text == "waited 2.6 s" }?.direction == .note)
        #expect(out.first { $0.text == "DROP TABLE t" }?.direction == .client)
        #expect(out.first { $0.text == "SELECT 3" }?.direction == .server)
    }

    @Test func theExtendedProtocolShowsStatementsAndParametersAndHidesChatter() {
        var replay = PostgresReplay()
        let c = UInt8(ascii: "c")
        var lines: [PostgresReplay.Line] = []
        lines += replay.frame(
            kind: c, offset: 0,
            bytes: Self.bytes(.parse(.init(name: "", query: "DELETE FROM t WHERE id = $1", parameterTypes: []))))
        lines += replay.frame(
            kind: c, offset: 1,
            bytes: Self.bytes(
                .bind(
                    .init(
                        portal: "", statement: "", parameterFormats: [.text],
                        parameters: [ByteBuffer(string: "it's"), nil], resultFormats: []))))
        lines += replay.frame(kind: c, offset: 2, bytes: Self.bytes(.execute(portal: "", maxRows: 0)))
        lines += replay.frame(kind: c, offset: 3, bytes: Self.bytes(.sync))
        lines += replay.frame(kind: UInt8(ascii: "s"), offset: 4, bytes: Self.bytes(.parseComplete))
        lines += replay.frame(kind: UInt8(ascii: "s"), offset: 5, bytes: Self.bytes(.commandComplete(tag: "DELETE 1")))
        #expect(
            Self.texts(lines) == [
                "prepare: DELETE FROM t WHERE id = $1", "bind $1 = 'it''s', $2 = NULL", "DELETE 1",
            ])
        var verbose = PostgresReplay(verbose: true)
        let chatter = verbose.frame(kind: c, offset: 3, bytes: Self.bytes(.sync))
        #expect(Self.texts(chatter) == ["Sync"])
    }

    @Test func damagedFramesAreNamedAndTheReplayGoesOn() {
        var replay = PostgresReplay()
        let bad = replay.frame(kind: UInt8(ascii: "s"), offset: 0, bytes: [UInt8(ascii: "Z"), 0, 0, 0, 9, 1])
        #expect(Self.texts(bad) == ["undecodable message (type 'Z', 6 bytes)"])
        let tls = replay.frame(kind: UInt8(ascii: "s"), offset: 1, bytes: [UInt8(ascii: "S")])
        #expect(Self.texts(tls) == ["TLS accepted"])
        let next = replay.frame(
            kind: UInt8(ascii: "s"), offset: 2, bytes: Self.bytes(.commandComplete(tag: "SELECT 1")))
        #expect(Self.texts(next) == ["SELECT 1"])
    }
}
