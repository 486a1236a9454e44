import Masking
import NIOCore
import Policy
import Testing

@testable import PostgresWire

@Suite("Session: startup and authentication")
struct SessionStartupTests {
    static let startup = PostgresFrontendMessage.startup(
        .init(parameters: [
            .init(name: "user", value: "svc"), .init(name: "database", value: "orders"),
            .init(name: "application_name", value: "psql"),
        ])
    )

    @Test func sslAndGSSRequestsAreDeclinedWhenClientTLSIsDisabled() {
        var harness = SessionHarness()
        #expect(harness.client(.sslRequest).clientBytes == [ByteBuffer(string: "N")])
        #expect(harness.client(.gssEncRequest).clientBytes == [ByteBuffer(string: "N")])
        let actions = harness.client(Self.startup)
        guard case .connectUpstream = actions.first else {
            Issue.record("expected connectUpstream, got \(actions)")
            return
        }
    }

    @Test func sslRequestIsAcceptedWhenClientTLSIsOffered() {
        var harness = SessionHarness(configuration: .testing(clientTLS: .offer))
        let actions = harness.client(.sslRequest)
        #expect(actions.clientBytes == [ByteBuffer(string: "S")])
        #expect(actions.contains { if case .startClientTLS = $0 { return true } else { return false } })
        // Nothing but the handshake may come before the machine hears it is done.
        #expect(harness.client(Self.startup).closeError != nil)

        var second = SessionHarness(configuration: .testing(clientTLS: .offer))
        _ = second.client(.sslRequest)
        _ = second.machine.clientTLSEstablished()
        // A second SSLRequest inside TLS is declined; the startup then proceeds.
        #expect(second.client(.sslRequest).clientBytes == [ByteBuffer(string: "N")])
        guard case .connectUpstream = second.client(Self.startup).first else {
            Issue.record("expected connectUpstream")
            return
        }
    }

    @Test func cancelRequestIsHandedToTheGateway() {
        var harness = SessionHarness()
        let key = PostgresBackendKey(processID: 4242, secretKey: 0xDEAD_BEEF)
        let actions = harness.client(.cancelRequest(key))
        guard case .cancelRequested(let requested) = actions.first else {
            Issue.record("expected cancelRequested, got \(actions)")
            return
        }
        #expect(requested == key)
        #expect(actions.closes)
        #expect(harness.machine.isClosed)
    }

    @Test func passThroughRelaysTheWholeExchangeUntilReadyForQuery() {
        var harness = SessionHarness()
        let startupFrame = clientFrame(Self.startup).frame
        let actions = harness.client(Self.startup)
        guard case .connectUpstream(let sent) = actions.first else {
            Issue.record("expected connectUpstream")
            return
        }
        #expect(sent == startupFrame, "the client's own startup packet, byte for byte")

        let md5 = harness.server(.authentication(.md5Password(salt: 0x0102_0304)))
        #expect(md5.toClient == [.authentication(.md5Password(salt: 0x0102_0304))])
        let password = PostgresFrontendMessage.authenticationResponse(.password("md5abc"))
        #expect(harness.client(password).serverBytes == [encoded(password)])

        let ok = harness.server(
            .authentication(.ok),
            .parameterStatus(name: "standard_conforming_strings", value: "off"),
            .parameterStatus(name: "server_version", value: "15.6"),
            .backendKeyData(PostgresBackendKey(processID: 99, secretKey: 5))
        )
        #expect(ok.toClient.count == 4)
        #expect(harness.machine.serverParameters["standard_conforming_strings"] == "off")
        let ready = harness.server(.readyForQuery(.idle))
        #expect(ready.toClient == [.readyForQuery(.idle)])
        guard case .sessionEstablished(let info) = ready.first else {
            Issue.record("expected sessionEstablished first, got \(ready)")
            return
        }
        #expect(info.backendKey == PostgresBackendKey(processID: 99, secretKey: 5))
        #expect(info.upstreamUser == "svc")
        #expect(info.database == "orders")
        #expect(harness.machine.backendKey?.processID == 99)
    }

    @Test func passThroughHidesChannelBindingTheProxyCannotCarry() {
        var harness = SessionHarness()
        _ = harness.client(Self.startup)
        let actions = harness.server(.authentication(.sasl(mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])))
        #expect(actions.toClient == [.authentication(.sasl(mechanisms: ["SCRAM-SHA-256"]))])
    }

    @Test func passThroughAuthenticationFailureIsForwardedAndEndsTheSession() {
        var harness = SessionHarness()
        _ = harness.client(Self.startup)
        var fields = PostgresErrorFields()
        fields[.severity] = "FATAL"
        fields[.sqlState] = "28P01"
        fields[.message] = "password authentication failed for user \"svc\""
        let actions = harness.server(.errorResponse(fields))
        #expect(actions.toClient == [.errorResponse(fields)])
        #expect(actions.closes)
        #expect(harness.machine.isClosed)
    }

    // MARK: Credential injection

    static func injectedHarness() -> SessionHarness {
        // The RFC 7677 vector: user "user", password "pencil", client nonce fixed.
        let scram = SCRAMSHA256Client(username: "user", password: "pencil", clientNonce: "rOprNGfwEbeRWgbNEkqO")
        let authenticator = UpstreamAuthenticator(user: "user", password: "pencil", scram: scram)
        let configuration = PostgresSessionConfiguration.testing(
            credentials: PostgresInjectedCredentials(user: "user", password: "pencil"))
        return SessionHarness(
            machine: PostgresSessionStateMachine(configuration: configuration, authenticator: authenticator))
    }

    @Test func injectionLogsInWithSCRAMAndTheClientSeesOnlyAuthenticationOk() {
        var harness = Self.injectedHarness()
        let start = harness.client(
            .startup(
                .init(parameters: [.init(name: "user", value: "svc"), .init(name: "application_name", value: "psql")])))
        guard case .connectUpstream(let startupBytes) = start.first else {
            Issue.record("expected connectUpstream")
            return
        }
        guard case .startup(let upstream) = decodeFrontend(startupBytes, startup: true).first else {
            Issue.record("expected a StartupMessage")
            return
        }
        #expect(upstream.user == "user", "the configured user, not the client's")
        #expect(upstream.database == "svc", "the database the client would have got by default")
        #expect(upstream["application_name"] == "psql")
        #expect(start.toClient.isEmpty)

        let first = harness.server(.authentication(.sasl(mechanisms: ["SCRAM-SHA-256"])))
        #expect(first.toClient.isEmpty)
        guard case .authenticationResponse(let initial) = first.toServer.first else {
            Issue.record("expected SASLInitialResponse")
            return
        }
        let (mechanism, data) = try! initial.saslInitialResponse()
        #expect(mechanism == "SCRAM-SHA-256")
        #expect(data.map { String(buffer: $0) } == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO")

        let final = harness.server(
            .authentication(.saslContinue(ByteBuffer(string: AuthenticationTests.rfcServerFirst))))
        guard case .authenticationResponse(let response) = final.toServer.first else {
            Issue.record("expected SASLResponse")
            return
        }
        #expect(String(buffer: response.bytes) == AuthenticationTests.rfcClientFinal)
        #expect(final.toClient.isEmpty)

        let verified = harness.server(
            .authentication(.saslFinal(ByteBuffer(string: AuthenticationTests.rfcServerFinal))))
        #expect(verified.isEmpty)
        let ok = harness.server(.authentication(.ok))
        #expect(ok.toClient == [.authentication(.ok)])
        let rest = harness.server(
            .parameterStatus(name: "client_encoding", value: "UTF8"),
            .backendKeyData(PostgresBackendKey(processID: 7, secretKey: 8)),
            .readyForQuery(.idle)
        )
        #expect(rest.toClient.count == 3)
        #expect(harness.machine.backendKey?.processID == 7)
    }

    @Test func injectionNeverForwardsTheClientsPassword() {
        var harness = Self.injectedHarness()
        _ = harness.client(Self.startup)
        let actions = harness.client(.authenticationResponse(.password("the client's guess")))
        #expect(actions.serverBytes.isEmpty)
        #expect(actions.closeError?[.sqlState] == "08P01")
    }

    @Test func injectionFailureGivesTheClientTheServersError() {
        let configuration = PostgresSessionConfiguration.testing(
            credentials: PostgresInjectedCredentials(user: "app", password: "wrong"))
        var harness = SessionHarness(configuration: configuration)
        _ = harness.client(Self.startup)
        let md5 = harness.server(.authentication(.md5Password(salt: 1)))
        guard case .authenticationResponse(let response) = md5.toServer.first else {
            Issue.record("expected a PasswordMessage")
            return
        }
        #expect(try! response.password() == PostgresMD5Password.response(user: "app", password: "wrong", salt: 1))
        var fields = PostgresErrorFields()
        fields[.severity] = "FATAL"
        fields[.sqlState] = "28P01"
        fields[.message] = "password authentication failed for user \"app\""
        let failed = harness.server(.errorResponse(fields))
        #expect(failed.closeError == fields)
        #expect(harness.machine.isClosed)
    }

    @Test func injectionRefusesAForgedServerSignatureWithOurOwnError() {
        var harness = Self.injectedHarness()
        _ = harness.client(Self.startup)
        _ = harness.server(.authentication(.sasl(mechanisms: ["SCRAM-SHA-256"])))
        _ = harness.server(.authentication(.saslContinue(ByteBuffer(string: AuthenticationTests.rfcServerFirst))))
        let forged = harness.server(
            .authentication(.saslFinal(ByteBuffer(string: "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))))
        let error = forged.closeError
        #expect(error?[.severity] == "FATAL")
        #expect(error?[.message]?.contains("could not log in") == true)
        #expect(error?[.message]?.contains("pencil") == false)
        #expect(forged.toClient.isEmpty)
    }

    @Test func replicationIsRefusedWhenResultsAreMasked() {
        var harness = SessionHarness(rules: TestRules.rules(masks: [TestRules.mask(detectors: [.email])]))
        let actions = harness.client(
            .startup(
                .init(parameters: [.init(name: "user", value: "svc"), .init(name: "replication", value: "database")])))
        #expect(actions.closeError?[.sqlState] == "42501")
        #expect(harness.machine.isClosed)
    }

    @Test func malformedMessageEndsTheSessionWithTheDecodersError() {
        var harness = SessionHarness.established()
        var decoder = PostgresFrontendMessageDecoder(phase: .typed, limits: .init(maximumMessageSize: 1024))
        var oversized = bytes(UInt8(ascii: "Q"), Int32(1_000_000))
        guard let error = wireError({ try decoder.decode(buffer: &oversized) }) else {
            Issue.record("the decoder accepted an oversized message")
            return
        }
        let actions = harness.machine.clientDecodingFailed(error)
        #expect(actions.closeError?[.sqlState] == "54000")
        #expect(actions.closeError?[.severity] == "FATAL")
        #expect(harness.machine.isClosed)
        #expect(harness.client(.query("SELECT 1")).isEmpty, "a closed session takes nothing more")

        var other = SessionHarness.established()
        var fresh = PostgresFrontendMessageDecoder(phase: .typed)
        var garbage = bytes(UInt8(ascii: "P"), Int32(5), UInt8(0))  // a name, then no query string
        guard let malformed = wireError({ try fresh.decode(buffer: &garbage) }) else {
            Issue.record("the decoder accepted a malformed Parse")
            return
        }
        #expect(other.machine.clientDecodingFailed(malformed).closeError?[.sqlState] == "08P01")
    }
}

extension SessionHarness {
    init(machine: PostgresSessionStateMachine) {
        self.machine = machine
    }
}
