import NIOCore
import Testing

@testable import PostgresWire

@Suite("Upstream authentication")
struct AuthenticationTests {
    static let rfcServerFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    static let rfcClientFinal =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    static let rfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

    static func rfcClient() -> SCRAMSHA256Client {
        SCRAMSHA256Client(username: "user", password: "pencil", clientNonce: "rOprNGfwEbeRWgbNEkqO")
    }

    // MARK: SCRAM-SHA-256, RFC 7677 section 3 test vector

    @Test func scramMatchesTheRFC7677TestVector() throws {
        var client = Self.rfcClient()
        #expect(client.clientFirstMessage() == ByteBuffer(string: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
        let clientFinal = try client.receiveServerFirstMessage(ByteBuffer(string: Self.rfcServerFirst))
        #expect(String(buffer: clientFinal) == Self.rfcClientFinal)
        try client.receiveServerFinalMessage(ByteBuffer(string: Self.rfcServerFinal))
        #expect(client.isFinished)
    }

    @Test func scramRejectsAWrongServerSignature() throws {
        var client = Self.rfcClient()
        _ = client.clientFirstMessage()
        _ = try client.receiveServerFirstMessage(ByteBuffer(string: Self.rfcServerFirst))
        let forged = ByteBuffer(string: "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        let error = wireError { try client.receiveServerFinalMessage(forged) }
        #expect(error?.code == .serverSignatureMismatch)
        #expect(!client.isFinished)
    }

    @Test func scramRejectsBadServerFirstMessages() {
        let bad = [
            "r=someoneElsesNonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  // does not extend our nonce
            "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  // nothing added by the server
            "r=rOprNGfwEbeRWgbNEkqOxyz,s=not base64!,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
            "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
            "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999",  // hours of PBKDF2
            "r=rOprNGfwEbeRWgbNEkqOxyz,i=4096",
            "m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "",
        ]
        for message in bad {
            var client = Self.rfcClient()
            _ = client.clientFirstMessage()
            #expect(
                wireError { try client.receiveServerFirstMessage(ByteBuffer(string: message)) }?.code
                    == .invalidSCRAMMessage,
                "\(message)"
            )
        }
    }

    @Test func scramReportsTheServersErrorAttribute() throws {
        var client = Self.rfcClient()
        _ = client.clientFirstMessage()
        _ = try client.receiveServerFirstMessage(ByteBuffer(string: Self.rfcServerFirst))
        let error = wireError { try client.receiveServerFinalMessage(ByteBuffer(string: "e=invalid-proof")) }
        #expect(error?.code == .invalidSCRAMMessage)
        #expect(error?.message.contains("invalid-proof") == true)
    }

    @Test func scramRandomNoncesDifferAndKeysCanBeReused() throws {
        var a = SCRAMSHA256Client(password: "pencil")
        var b = SCRAMSHA256Client(password: "pencil")
        let firstA = String(buffer: a.clientFirstMessage())
        let firstB = String(buffer: b.clientFirstMessage())
        #expect(firstA != firstB)
        #expect(firstA.hasPrefix("n,,n=,r="))
        #expect(firstA.count == "n,,n=,r=".count + 24)  // 18 random bytes in base64

        var first = Self.rfcClient()
        _ = first.clientFirstMessage()
        _ = try first.receiveServerFirstMessage(ByteBuffer(string: Self.rfcServerFirst))
        let keys = try #require(first.keys)
        // Same salt and iterations: the cached keys give the same proof. A wrong password with the cached keys
        // still produces the right proof, which shows PBKDF2 was skipped.
        var second = SCRAMSHA256Client(
            username: "user", password: "wrong", clientNonce: "rOprNGfwEbeRWgbNEkqO", cachedKeys: keys)
        _ = second.clientFirstMessage()
        let clientFinal = try second.receiveServerFirstMessage(ByteBuffer(string: Self.rfcServerFirst))
        #expect(String(buffer: clientFinal) == Self.rfcClientFinal)
        #expect(!String(describing: keys).contains(Base64.encode(keys.clientKey)))
    }

    @Test func saslPrepLeavesASCIIAloneAndMapsSpacesAndSoftHyphens() {
        #expect(SASLprep.prepare("pencil") == Array("pencil".utf8))
        #expect(SASLprep.prepare("a\tb") == Array("a\tb".utf8))  // ASCII passes untouched, as in PostgreSQL
        #expect(SASLprep.prepare("I\u{00AD}X") == Array("IX".utf8))  // RFC 4013 example: soft hyphen removed
        #expect(SASLprep.prepare("a\u{00A0}b") == Array("a b".utf8))  // non-ASCII space mapped
        #expect(SASLprep.prepare("pässword") == Array("pässword".utf8))
        // A prohibited character makes PostgreSQL use the raw bytes; so do we.
        #expect(SASLprep.prepare("x\u{00AD}\u{0007}é") == Array("x\u{00AD}\u{0007}é".utf8))
    }

    @Test func base64RoundTripsAndRejectsGarbage() {
        for length in 0..<10 {
            let input = (0..<length).map { UInt8($0 * 37 & 0xFF) }
            #expect(Base64.decode(Base64.encode(input)) == input)
        }
        #expect(Base64.encode(Array("pencil".utf8)) == "cGVuY2ls")
        #expect(Base64.decode("biws") == Array("n,,".utf8))
        for bad in ["abc", "a===", "ab=c", "ab c", "=abc"] {
            #expect(Base64.decode(bad) == nil, "\(bad)")
        }
    }

    // MARK: MD5

    @Test func md5MatchesAKnownHash() {
        // python3 -c "import hashlib; i=hashlib.md5(b'secret'+b'postgres').hexdigest().encode();
        //             print('md5'+hashlib.md5(i+bytes([1,2,3,4])).hexdigest())"
        // → md5bb41a296aab6baccb36ff243a562abff
        #expect(
            PostgresMD5Password.response(user: "postgres", password: "secret", salt: 0x0102_0304)
                == "md5bb41a296aab6baccb36ff243a562abff"
        )
    }

    // MARK: UpstreamAuthenticator

    @Test func scramLoginEndsAuthenticatedAfterTheServerProvesItself() throws {
        var auth = UpstreamAuthenticator(user: "user", password: "pencil", scram: Self.rfcClient())
        let initial = auth.messageReceived(.authentication(.sasl(mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])))
        #expect(
            initial
                == .send(
                    .authenticationResponse(
                        .saslInitialResponse(
                            mechanism: "SCRAM-SHA-256",
                            data: ByteBuffer(string: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
                        )
                    )
                )
        )
        let response = auth.messageReceived(.authentication(.saslContinue(ByteBuffer(string: Self.rfcServerFirst))))
        #expect(response == .send(.authenticationResponse(.saslResponse(ByteBuffer(string: Self.rfcClientFinal)))))
        #expect(auth.messageReceived(.authentication(.saslFinal(ByteBuffer(string: Self.rfcServerFinal)))) == .wait)
        #expect(auth.messageReceived(.authentication(.ok)) == .authenticated)
        #expect(auth.scramKeys != nil)
    }

    @Test func authenticatorOutputDecodesAsTheServerWouldReadIt() throws {
        var auth = UpstreamAuthenticator(user: "user", password: "pencil", scram: Self.rfcClient())
        guard case .send(let message) = auth.messageReceived(.authentication(.sasl(mechanisms: ["SCRAM-SHA-256"])))
        else {
            Issue.record("expected a message to send")
            return
        }
        var decoder = PostgresFrontendMessageDecoder(phase: .typed)
        let outputs = try decodeAll(&decoder, encoded(message))
        guard case .authenticationResponse(let response) = outputs.first?.message else {
            Issue.record("expected a p message")
            return
        }
        let initial = try response.saslInitialResponse()
        #expect(initial.mechanism == "SCRAM-SHA-256")
        #expect(initial.data == ByteBuffer(string: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
    }

    @Test func scramLoginFailsOnAForgedServerSignature() {
        var auth = UpstreamAuthenticator(user: "user", password: "pencil", scram: Self.rfcClient())
        _ = auth.messageReceived(.authentication(.sasl(mechanisms: ["SCRAM-SHA-256"])))
        _ = auth.messageReceived(.authentication(.saslContinue(ByteBuffer(string: Self.rfcServerFirst))))
        let action = auth.messageReceived(.authentication(.saslFinal(ByteBuffer(string: "v=AAAA"))))
        guard case .failed(.error(let error)) = action else {
            Issue.record("expected a failure, got \(action)")
            return
        }
        #expect(error.code == .serverSignatureMismatch)
    }

    @Test func successBeforeSCRAMCompletesIsRefused() {
        var auth = UpstreamAuthenticator(user: "user", password: "pencil", scram: Self.rfcClient())
        _ = auth.messageReceived(.authentication(.sasl(mechanisms: ["SCRAM-SHA-256"])))
        _ = auth.messageReceived(.authentication(.saslContinue(ByteBuffer(string: Self.rfcServerFirst))))
        guard case .failed(.error(let error)) = auth.messageReceived(.authentication(.ok)) else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.code == .authenticationIncomplete)
    }

    @Test func md5LoginAndWrongPasswordPassesTheServersError() {
        var auth = UpstreamAuthenticator(user: "postgres", password: "secret")
        #expect(
            auth.messageReceived(.authentication(.md5Password(salt: 0x0102_0304)))
                == .send(.authenticationResponse(.password("md5bb41a296aab6baccb36ff243a562abff")))
        )
        let refusal = PostgresErrorFields([
            .init(field: .localizedSeverity, value: "FATAL"), .init(field: .sqlState, value: "28P01"),
            .init(field: .message, value: "password authentication failed for user \"postgres\""),
        ])
        #expect(auth.messageReceived(.errorResponse(refusal)) == .failed(.rejected(refusal)))
    }

    @Test func cleartextLoginSendsThePassword() {
        var auth = UpstreamAuthenticator(user: "app", password: "s3cret")
        #expect(
            auth.messageReceived(.authentication(.cleartextPassword))
                == .send(.authenticationResponse(.password("s3cret"))))
        #expect(auth.messageReceived(.noticeResponse(PostgresErrorFields())) == .wait)
        #expect(auth.messageReceived(.authentication(.ok)) == .authenticated)
    }

    @Test func disallowedOrUnsupportedMethodsFail() {
        var noCleartext = UpstreamAuthenticator(user: "app", password: "p", allowedMethods: [.scramSHA256])
        guard
            case .failed(.error(let cleartextError)) = noCleartext.messageReceived(.authentication(.cleartextPassword))
        else {
            Issue.record("cleartext should be refused")
            return
        }
        #expect(cleartextError.code == .unsupportedAuthenticationMethod)

        var noTrust = UpstreamAuthenticator(user: "app", password: "p", allowedMethods: [.scramSHA256])
        guard case .failed = noTrust.messageReceived(.authentication(.ok)) else {
            Issue.record("a login without password should be refused when not allowed")
            return
        }

        var trust = UpstreamAuthenticator(user: "app", password: "p")
        #expect(trust.messageReceived(.authentication(.ok)) == .authenticated)

        for request: PostgresBackendMessage.Authentication in [
            .gss, .sspi, .kerberosV5, .sasl(mechanisms: ["SCRAM-SHA-256-PLUS"]), .saslContinue(ByteBuffer()),
        ] {
            var auth = UpstreamAuthenticator(user: "app", password: "p")
            guard case .failed(.error) = auth.messageReceived(.authentication(request)) else {
                Issue.record("\(request) should fail")
                continue
            }
        }
    }

    @Test func unexpectedMessagesDuringLoginFail() {
        var auth = UpstreamAuthenticator(user: "app", password: "p")
        _ = auth.messageReceived(.authentication(.cleartextPassword))
        guard case .failed(.error(let error)) = auth.messageReceived(.readyForQuery(.idle)) else {
            Issue.record("ReadyForQuery before AuthenticationOk should fail")
            return
        }
        #expect(error.code == .unexpectedAuthenticationMessage)
        #expect(!error.message.contains("p\""))
    }
}
