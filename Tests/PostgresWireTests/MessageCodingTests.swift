import NIOCore
import Testing

@testable import PostgresWire

@Suite("Message encoding and decoding")
struct MessageCodingTests {
    // MARK: Hand-written fixtures (PostgreSQL docs, "Message Formats")

    @Test func startupMessageFixtureDecodesAndEncodes() throws {
        let fixture = bytes(
            Int32(34), Int32(0x0003_0000), "user", nul, "alice", nul, "database", nul, "shop", nul, nul
        )
        var decoder = PostgresFrontendMessageDecoder()
        let outputs = try decodeAll(&decoder, fixture)
        let startup = PostgresFrontendMessage.Startup(parameters: [
            .init(name: "user", value: "alice"), .init(name: "database", value: "shop"),
        ])
        #expect(outputs == [PostgresFramedMessage(message: .startup(startup), frame: fixture)])
        #expect(startup.user == "alice")
        #expect(startup.database == "shop")
        #expect(decoder.phase == .typed)
        #expect(encoded(.startup(startup)) == fixture)
    }

    @Test func startupPhasePacketFixtures() throws {
        let ssl = bytes([0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F] as [UInt8])
        let gss = bytes(Int32(8), Int32(80_877_104))
        let cancel = bytes(Int32(16), Int32(80_877_102), Int32(4242), UInt32(0xDEAD_BEEF))
        #expect(encoded(.sslRequest) == ssl)
        #expect(encoded(.gssEncRequest) == gss)
        #expect(encoded(.cancelRequest(PostgresBackendKey(processID: 4242, secretKey: 0xDEAD_BEEF))) == cancel)
    }

    @Test func typedFrontendFixtures() throws {
        let fixtures: [(ByteBuffer, PostgresFrontendMessage)] = [
            (bytes("Q", Int32(13), "SELECT 1", nul), .query("SELECT 1")),
            (
                bytes(
                    "B", Int32(30), "p1", nul, "s1", nul, Int16(1), Int16(1), Int16(2), Int32(4),
                    [0, 0, 0, 42] as [UInt8],
                    Int32(-1), Int16(0)
                ),
                .bind(
                    .init(
                        portal: "p1",
                        statement: "s1",
                        parameterFormats: [.binary],
                        parameters: [ByteBuffer(bytes: [0, 0, 0, 42]), nil]
                    )
                )
            ),
            (bytes("E", Int32(9), nul, Int32(0)), .execute(portal: "", maxRows: 0)),
            (bytes("D", Int32(8), "S", "s1", nul), .describe(.statement("s1"))),
            (bytes("S", Int32(4)), .sync),
            (bytes("X", Int32(4)), .terminate),
            (bytes("p", Int32(11), "secret", nul), .authenticationResponse(.password("secret"))),
        ]
        for (fixture, message) in fixtures {
            var decoder = PostgresFrontendMessageDecoder(phase: .typed)
            #expect(try decodeAll(&decoder, fixture) == [PostgresFramedMessage(message: message, frame: fixture)])
            #expect(encoded(message) == fixture, "\(message.name)")
        }
    }

    @Test func backendFixtures() throws {
        let fixtures: [(ByteBuffer, PostgresBackendMessage)] = [
            (
                bytes("R", Int32(12), Int32(5), [1, 2, 3, 4] as [UInt8]),
                .authentication(.md5Password(salt: 0x0102_0304))
            ),
            (
                bytes("R", Int32(23), Int32(10), "SCRAM-SHA-256", nul, nul),
                .authentication(.sasl(mechanisms: ["SCRAM-SHA-256"]))
            ),
            (bytes("R", Int32(8), Int32(0)), .authentication(.ok)),
            (bytes("Z", Int32(5), "I"), .readyForQuery(.idle)),
            (
                bytes(
                    "T", Int32(27), Int16(1), "id", nul, UInt32(16384), Int16(1), UInt32(23), Int16(4), Int32(-1),
                    Int16(0)),
                .rowDescription([
                    .init(
                        name: "id",
                        tableOID: 16384,
                        columnAttributeNumber: 1,
                        dataTypeOID: 23,
                        dataTypeSize: 4,
                        typeModifier: -1,
                        format: .text
                    )
                ])
            ),
            (
                bytes("D", Int32(15), Int16(2), Int32(1), "1", Int32(-1)),
                .dataRow(DataRow(columns: [ByteBuffer(string: "1"), nil]))
            ),
            (bytes("C", Int32(13), "SELECT 1", nul), .commandComplete(tag: "SELECT 1")),
            (
                bytes(
                    "E", Int32(66), "S", "FATAL", nul, "C", "28P01", nul, "M",
                    "password authentication failed for user \"app\"", nul, nul),
                .errorResponse(
                    PostgresErrorFields([
                        .init(field: .localizedSeverity, value: "FATAL"), .init(field: .sqlState, value: "28P01"),
                        .init(field: .message, value: "password authentication failed for user \"app\""),
                    ])
                )
            ),
            (
                bytes("K", Int32(12), Int32(4242), UInt32(0xDEAD_BEEF)),
                .backendKeyData(.init(processID: 4242, secretKey: 0xDEAD_BEEF))
            ),
        ]
        for (fixture, message) in fixtures {
            var decoder = PostgresBackendMessageDecoder()
            #expect(try decodeAll(&decoder, fixture) == [PostgresFramedMessage(message: message, frame: fixture)])
            #expect(encoded(message) == fixture, "\(message.name)")
        }
    }

    // MARK: Round trips of every message type

    @Test func everyFrontendMessageRoundTripsWithItsOriginalFrame() throws {
        for message in everyTypedFrontendMessage {
            let wire = encoded(message)
            var decoder = PostgresFrontendMessageDecoder(phase: .typed)
            let outputs = try decodeAll(&decoder, wire)
            #expect(outputs.map(\.message) == [message], "\(message.name)")
            #expect(outputs.first?.frame == wire, "\(message.name)")
        }
        let startupPhase: [PostgresFrontendMessage] = [
            .sslRequest, .gssEncRequest,
            .cancelRequest(.init(processID: 1, secretKey: 2)),
            .cancelRequest(.init(processID: 1, secretKey: ByteBuffer(repeating: 7, count: 256))),
            .startup(.init(parameters: [.init(name: "user", value: "u"), .init(name: "_pq_.opt", value: "")])),
            .startup(.init(protocolVersion: .init(major: 3, minor: 2), parameters: [])),
        ]
        for message in startupPhase {
            let wire = encoded(message)
            var decoder = PostgresFrontendMessageDecoder()
            let outputs = try decodeAll(&decoder, wire)
            #expect(outputs == [PostgresFramedMessage(message: message, frame: wire)], "\(message.name)")
        }
    }

    @Test func everyBackendMessageRoundTripsWithItsOriginalFrame() throws {
        for message in everyTypedBackendMessage {
            let wire = encoded(message)
            var decoder = PostgresBackendMessageDecoder()
            let outputs = try decodeAll(&decoder, wire)
            #expect(outputs.map(\.message) == [message], "\(message.name)")
            #expect(outputs.first?.frame == wire, "\(message.name)")
        }
    }

    @Test func sslAndGSSResponsesAreSingleBytes() throws {
        #expect(encoded(.sslResponse(true)) == bytes("S"))
        #expect(encoded(.sslResponse(false)) == bytes("N"))
        #expect(encoded(.gssEncResponse(true)) == bytes("G"))
        #expect(encoded(.gssEncResponse(false)) == bytes("N"))
    }

    // MARK: Helpers on messages

    @Test func authenticationResponseHelpersReadTheirLayouts() throws {
        let password = PostgresFrontendMessage.AuthenticationResponse.password("pw")
        #expect(try password.password() == "pw")
        let initial = PostgresFrontendMessage.AuthenticationResponse.saslInitialResponse(
            mechanism: "SCRAM-SHA-256",
            data: ByteBuffer(string: "n,,n=,r=x")
        )
        let parsed = try initial.saslInitialResponse()
        #expect(parsed.mechanism == "SCRAM-SHA-256")
        #expect(parsed.data == ByteBuffer(string: "n,,n=,r=x"))
        #expect(wireError { try initial.password() }?.code == .malformedMessage)
    }

    @Test func passwordBytesNeverAppearInDescriptions() {
        let message = PostgresFrontendMessage.authenticationResponse(.password("hunter2"))
        #expect(!String(describing: message).contains("hunter2"))
        #expect(!String(reflecting: message).contains("hunter2"))
        var dumped = ""
        dump(message, to: &dumped)
        #expect(!dumped.contains("hunter2"))
        #expect(!dumped.contains("104, 117"))  // "hu" as bytes
        let authenticator = UpstreamAuthenticator(user: "app", password: "hunter2")
        dumped = ""
        dump(authenticator, to: &dumped)
        #expect(!dumped.contains("hunter2"))
        #expect(!String(describing: authenticator).contains("hunter2"))
    }

    @Test func dataRowIteratesColumnsAsSlicesWithNulls() throws {
        let row = DataRow(columns: [ByteBuffer(string: "a"), nil, ByteBuffer(), ByteBuffer(string: "dd")])
        #expect(row.count == 4)
        #expect(Array(row) == [ByteBuffer(string: "a"), nil, ByteBuffer(), ByteBuffer(string: "dd")])
        #expect(row.column(3) == .some(ByteBuffer(string: "dd")))
        #expect(row.column(1) == .some(nil))
        #expect(row.column(4) == .none)
        // A decoded row's columns are slices of the received frame.
        var decoder = PostgresBackendMessageDecoder()
        let outputs = try decodeAll(&decoder, encoded(.dataRow(row)))
        guard case .dataRow(let decoded) = outputs.first?.message else {
            Issue.record("not a DataRow")
            return
        }
        #expect(Array(decoded) == Array(row))
    }

    @Test func bindFormatsFollowTheOneOrEachRule() {
        let none = PostgresFrontendMessage.Bind(portal: "", statement: "")
        #expect(none.parameterFormat(at: 3) == .text)
        let one = PostgresFrontendMessage.Bind(
            portal: "", statement: "", parameterFormats: [.binary], resultFormats: [.binary])
        #expect(one.parameterFormat(at: 3) == .binary)
        #expect(one.resultFormat(at: 9) == .binary)
        let each = PostgresFrontendMessage.Bind(portal: "", statement: "", parameterFormats: [.text, .binary])
        #expect(each.parameterFormat(at: 1) == .binary)
    }

    @Test func errorFieldsSubscriptReplacesInPlaceAndRemoves() {
        var fields = PostgresErrorFields([
            .init(field: .severity, value: "ERROR"), .init(field: .detail, value: "Key (email)=(a@b.c)"),
            .init(field: .message, value: "m"),
        ])
        fields[.detail] = "Key (email)=(***)"
        #expect(fields.entries.map(\.field) == [.severity, .detail, .message])
        #expect(fields[.detail] == "Key (email)=(***)")
        fields[.detail] = nil
        #expect(fields[.detail] == nil)
        fields[.hint] = "h"
        #expect(fields.entries.last == .init(field: .hint, value: "h"))
    }

    @Test func encodersDropEverythingFromAnEmbeddedNul() throws {
        // A NUL in a string would end the field early and smuggle the rest in as the next field.
        let wire = encoded(.parse(.init(name: "a\u{0}b", query: "SELECT 1")))
        var decoder = PostgresFrontendMessageDecoder(phase: .typed)
        let outputs = try decodeAll(&decoder, wire)
        #expect(outputs.map(\.message) == [.parse(.init(name: "a", query: "SELECT 1"))])
    }

    @Test func wireErrorRendersAsFatalErrorResponseWithItsSQLState() throws {
        let error = PostgresWireError.tooLarge("frontend 'Q'", length: 100_000_000, maximum: 64 << 20)
        let wire = encoded(.errorResponse(error.errorResponse()))
        var decoder = PostgresBackendMessageDecoder()
        let outputs = try decodeAll(&decoder, wire)
        guard case .errorResponse(let fields) = outputs.first?.message else {
            Issue.record("not an ErrorResponse")
            return
        }
        #expect(fields[.localizedSeverity] == "FATAL")
        #expect(fields[.severity] == "FATAL")
        #expect(fields[.sqlState] == "54000")
        #expect(fields[.message]?.contains("exceeds the limit") == true)
        #expect(error.code.rawValue == "message_too_large")
    }
}
