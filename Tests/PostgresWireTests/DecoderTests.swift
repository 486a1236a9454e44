import NIOCore
import NIOTestUtils
import Testing

@testable import PostgresWire

@Suite("Decoders: framing, phases, limits")
struct DecoderTests {
    // MARK: ByteToMessageDecoderVerifier (drip-fed, coalesced, split inputs)

    /// The verifier feeds the same inputs to one decoder many times; this one starts over after `Terminate` so a
    /// whole connection (startup packet, then typed messages) can be one repeated input.
    struct ConnectionDecoder: NIOSingleStepByteToMessageDecoder {
        typealias InboundOut = PostgresFrontendMessageDecoder.InboundOut
        var decoder = PostgresFrontendMessageDecoder()

        mutating func decode(buffer: inout ByteBuffer) throws -> InboundOut? {
            let output = try self.decoder.decode(buffer: &buffer)
            if output?.message == .terminate {
                self.decoder = PostgresFrontendMessageDecoder()
            }
            return output
        }

        mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> InboundOut? {
            try self.decode(buffer: &buffer)
        }
    }

    @Test func frontendDecoderVerifiedFromStartupThroughTypedMessages() throws {
        let startup = PostgresFrontendMessage.startup(.init(parameters: [.init(name: "user", value: "alice")]))
        var stream = ByteBuffer()
        var expected = [PostgresFramedMessage<PostgresFrontendMessage>]()
        for message in [startup] + everyTypedFrontendMessage.filter({ $0 != .terminate }) + [.terminate] {
            stream.writeImmutableBuffer(encoded(message))
            expected.append(PostgresFramedMessage(message: message, frame: encoded(message)))
        }
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [(stream, expected)],
            decoderFactory: { ConnectionDecoder() }
        )
    }

    @Test func frontendDecoderVerifiedInTypedPhase() throws {
        let pairs = everyTypedFrontendMessage.map { message in
            (encoded(message), [PostgresFramedMessage(message: message, frame: encoded(message))])
        }
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: pairs,
            decoderFactory: { PostgresFrontendMessageDecoder(phase: .typed) }
        )
    }

    @Test func backendDecoderVerified() throws {
        let pairs = everyTypedBackendMessage.map { message in
            (encoded(message), [PostgresFramedMessage(message: message, frame: encoded(message))])
        }
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: pairs,
            decoderFactory: { PostgresBackendMessageDecoder() }
        )
    }

    // MARK: Incomplete frames wait

    @Test func everyTruncatedFrameWaitsWithoutConsumingBytes() throws {
        for message in everyTypedFrontendMessage {
            let wire = encoded(message)
            for cut in 0..<wire.readableBytes {
                var prefix = wire.getSlice(at: wire.readerIndex, length: cut)!
                var decoder = PostgresFrontendMessageDecoder(phase: .typed)
                #expect(try decoder.decode(buffer: &prefix) == nil, "\(message.name) cut at \(cut)")
                #expect(prefix.readableBytes == cut)
            }
        }
        for message in everyTypedBackendMessage {
            let wire = encoded(message)
            for cut in 0..<wire.readableBytes {
                var prefix = wire.getSlice(at: wire.readerIndex, length: cut)!
                var decoder = PostgresBackendMessageDecoder()
                #expect(try decoder.decode(buffer: &prefix) == nil, "\(message.name) cut at \(cut)")
                #expect(prefix.readableBytes == cut)
            }
        }
        let startup = encoded(.startup(.init(parameters: [.init(name: "user", value: "alice")])))
        for cut in 0..<startup.readableBytes {
            var prefix = startup.getSlice(at: startup.readerIndex, length: cut)!
            var decoder = PostgresFrontendMessageDecoder()
            #expect(try decoder.decode(buffer: &prefix) == nil)
            #expect(prefix.readableBytes == cut)
            #expect(decoder.phase == .startup)
        }
    }

    @Test func decodingWorksAtANonZeroReaderIndex() throws {
        var buffer = ByteBuffer(string: "garbage")
        buffer.moveReaderIndex(forwardBy: 7)
        buffer.writeImmutableBuffer(encoded(.readyForQuery(.inTransaction)))
        var decoder = PostgresBackendMessageDecoder()
        let output = try decoder.decode(buffer: &buffer)
        #expect(output?.message == .readyForQuery(.inTransaction))
        #expect(output?.frame == encoded(.readyForQuery(.inTransaction)))
    }

    // MARK: Limits and invalid lengths

    @Test func oversizedLengthIsRefusedFromTheHeaderAlone() throws {
        var decoder = PostgresFrontendMessageDecoder(phase: .typed, limits: .init(maximumMessageSize: 1024))
        var header = bytes("Q", Int32(1025))
        let error = wireError { try decoder.decode(buffer: &header) }
        #expect(error?.code == .messageTooLarge)
        #expect(error?.sqlState == "54000")

        var atLimit = bytes("Q", Int32(1024))
        #expect(try decoder.decode(buffer: &atLimit) == nil)  // allowed: waits for the body
    }

    @Test func defaultLimitIs64MiB() throws {
        var decoder = PostgresBackendMessageDecoder()
        var ok = bytes("D", Int32(64 << 20))
        #expect(try decoder.decode(buffer: &ok) == nil)
        var tooLarge = bytes("D", Int32((64 << 20) + 1))
        #expect(wireError { try decoder.decode(buffer: &tooLarge) }?.code == .messageTooLarge)
    }

    @Test func fixedSizeMessagesAreCappedAtTheSmallLimit() {
        var frontend = PostgresFrontendMessageDecoder(phase: .typed)
        var sync = bytes("S", Int32(10_001))
        #expect(wireError { try frontend.decode(buffer: &sync) }?.code == .messageTooLarge)
        var backend = PostgresBackendMessageDecoder()
        var ready = bytes("Z", Int32(1 << 20))
        #expect(wireError { try backend.decode(buffer: &ready) }?.code == .messageTooLarge)
    }

    @Test func negativeOrTooSmallLengthsAreProtocolViolations() {
        for length: Int32 in [-1, -2_147_483_648, 0, 3] {
            var frontend = PostgresFrontendMessageDecoder(phase: .typed)
            var input = bytes("Q", length)
            let error = wireError { try frontend.decode(buffer: &input) }
            #expect(error?.code == .invalidLength, "length \(length)")
            #expect(error?.sqlState == "08P01")
            var backend = PostgresBackendMessageDecoder()
            var backendInput = bytes("D", length)
            #expect(wireError { try backend.decode(buffer: &backendInput) }?.code == .invalidLength)
        }
    }

    @Test func unknownTypeIsRefusedWithoutWaitingForTheBody() {
        var frontend = PostgresFrontendMessageDecoder(phase: .typed)
        var input = bytes("z", Int32(100))
        #expect(wireError { try frontend.decode(buffer: &input) }?.code == .unknownMessageType)
        var backend = PostgresBackendMessageDecoder()
        var backendInput = bytes("Q", Int32(4))  // a frontend type from the server
        #expect(wireError { try backend.decode(buffer: &backendInput) }?.code == .unknownMessageType)
    }

    @Test func startupPacketLengthIsCheckedLikePostgreSQL() {
        for length: Int32 in [0, 4, 7, -8] {
            var decoder = PostgresFrontendMessageDecoder()
            var input = bytes(length, Int32(0x0003_0000))
            #expect(wireError { try decoder.decode(buffer: &input) }?.code == .invalidLength, "length \(length)")
        }
        var decoder = PostgresFrontendMessageDecoder()
        var tooLong = bytes(Int32(10_001))  // refused from the first 4 bytes
        let error = wireError { try decoder.decode(buffer: &tooLong) }
        #expect(error?.code == .startupPacketTooLarge)
        #expect(error?.sqlState == "08P01")
        // A TLS ClientHello sent without SSLRequest is refused at once, not waited for.
        var clientHello = bytes([0x16, 0x03, 0x01, 0x02, 0x00] as [UInt8])
        #expect(wireError { try decoder.decode(buffer: &clientHello) }?.code == .startupPacketTooLarge)
    }

    @Test func startupPacketOfExactlyTheLimitIsAccepted() throws {
        let filler = String(
            repeating: "x", count: 10_000 - 8 - "user".count - 1 - 1 - 1 - "application_name".count - 1 - 1)
        let startup = PostgresFrontendMessage.startup(
            .init(parameters: [.init(name: "user", value: ""), .init(name: "application_name", value: filler)])
        )
        let wire = encoded(startup)
        #expect(wire.readableBytes == 10_000)
        var decoder = PostgresFrontendMessageDecoder()
        #expect(try decodeAll(&decoder, wire).map(\.message) == [startup])
    }

    // MARK: Malformed bodies

    @Test func malformedBodiesAreProtocolViolations() {
        let frontend: [ByteBuffer] = [
            bytes("Q", Int32(8), "abcd"),  // no NUL terminator
            bytes("B", Int32(16), nul, nul, Int16(0), Int16(1), Int32(-2), Int16(0)),  // value length -2
            bytes("B", Int32(10), nul, nul, Int16(-1), Int16(0)),  // negative format count
            bytes("B", Int32(14), nul, nul, Int16(1), Int16(2), Int16(0), Int16(0)),  // format code 2
            bytes("B", Int32(14), nul, nul, Int16(0), Int16(500), Int16(0), Int16(0)),  // count beyond body
            bytes("D", Int32(7), "X", "a", nul),  // neither S nor P
            bytes("S", Int32(5), "x"),  // trailing byte
            bytes("E", Int32(6), nul, UInt8(0)),  // truncated Int32
            bytes("P", Int32(10), "s", nul, "q", nul, Int16(1)),  // one parameter type missing
        ]
        for (index, input) in frontend.enumerated() {
            var decoder = PostgresFrontendMessageDecoder(phase: .typed)
            var buffer = input
            let error = wireError { try decoder.decode(buffer: &buffer) }
            #expect(error?.code == .malformedMessage, "frontend fixture \(index)")
            #expect(error?.sqlState == "08P01")
        }
        let backend: [ByteBuffer] = [
            bytes("Z", Int32(5), "Q"),  // bad status
            bytes("D", Int32(10), Int16(2), Int32(-1)),  // two columns announced, one present
            bytes("D", Int32(11), Int16(1), Int32(-1), "x"),  // trailing bytes
            bytes("D", Int32(10), Int16(1), Int32(-5)),  // negative length other than -1
            bytes("T", Int32(6), Int16(1000)),  // field count beyond body
            bytes("R", Int32(8), Int32(99)),  // unknown authentication request
            bytes("R", Int32(9), Int32(5), UInt8(1)),  // truncated MD5 salt
            bytes("K", Int32(9), Int32(1), UInt8(1)),  // secret key too short
            bytes("E", Int32(7), "S", "x", nul),  // no terminating NUL field
            bytes("G", Int32(7), UInt8(3), Int16(0)),  // copy format 3
            bytes("v", Int32(12), Int32(0), Int32(-1)),  // negative option count
        ]
        for (index, input) in backend.enumerated() {
            var decoder = PostgresBackendMessageDecoder()
            var buffer = input
            #expect(
                wireError { try decoder.decode(buffer: &buffer) }?.code == .malformedMessage, "backend fixture \(index)"
            )
        }
    }

    // MARK: Startup phase

    @Test func sslRequestThenStartupMessage() throws {
        var decoder = PostgresFrontendMessageDecoder()
        var first = encoded(.sslRequest)
        #expect(try decoder.decode(buffer: &first)?.message == .sslRequest)
        #expect(decoder.phase == .startup)
        var second = encoded(.startup(.init(parameters: [.init(name: "user", value: "u")])))
        #expect(
            try decoder.decode(buffer: &second)?.message
                == .startup(.init(parameters: [.init(name: "user", value: "u")])))
        #expect(decoder.phase == .typed)
        var query = encoded(.query("SELECT 1"))
        #expect(try decoder.decode(buffer: &query)?.message == .query("SELECT 1"))
    }

    @Test func plaintextBytesBufferedBehindSSLRequestAreRefused() {
        var decoder = PostgresFrontendMessageDecoder()
        var input = encoded(.sslRequest)
        input.writeImmutableBuffer(encoded(.startup(.init(parameters: [.init(name: "user", value: "u")]))))
        let error = wireError { try decoder.decode(buffer: &input) }
        #expect(error?.code == .unexpectedData)
        #expect(error?.sqlState == "08P01")
    }

    @Test func cancelRequestClosesTheConnection() throws {
        var decoder = PostgresFrontendMessageDecoder()
        var input = encoded(.cancelRequest(.init(processID: 4242, secretKey: 0xDEAD_BEEF)))
        #expect(
            try decoder.decode(buffer: &input)?.message
                == .cancelRequest(.init(processID: 4242, secretKey: 0xDEAD_BEEF)))
        #expect(decoder.phase == .closed)
        var more = encoded(.query("SELECT 1"))
        #expect(wireError { try decoder.decode(buffer: &more) }?.code == .unexpectedData)
    }

    @Test func otherProtocolVersionsAreRefused() {
        var decoder = PostgresFrontendMessageDecoder()
        var v2 = bytes(Int32(9), Int32(0x0002_0000), nul)
        let error = wireError { try decoder.decode(buffer: &v2) }
        #expect(error?.code == .unsupportedProtocolVersion)
        #expect(error?.sqlState == "0A000")
    }

    @Test func startupMessageMustEndWithItsTerminator() {
        for input in [
            bytes(Int32(15), Int32(0x0003_0000), "user", nul, UInt8(0x61), UInt8(0x61)),  // value without NUL
            bytes(Int32(17), Int32(0x0003_0000), "user", nul, "u", nul, nul, "x"),  // bytes after terminator
            bytes(Int32(15), Int32(0x0003_0000), "user", nul, "u", nul),  // no terminator
        ] {
            var decoder = PostgresFrontendMessageDecoder()
            var buffer = input
            #expect(wireError { try decoder.decode(buffer: &buffer) }?.code == .malformedMessage)
        }
    }

    @Test func sslRequestTrailingBytesOrShortCancelAreMalformed() {
        var decoder = PostgresFrontendMessageDecoder()
        var ssl = bytes(Int32(9), Int32(80_877_103), UInt8(0))
        #expect(wireError { try decoder.decode(buffer: &ssl) }?.code == .malformedMessage)
        var cancel = bytes(Int32(14), Int32(80_877_102), Int32(1), Int16(2))
        #expect(wireError { try decoder.decode(buffer: &cancel) }?.code == .malformedMessage)
    }

    // MARK: Backend answers to SSLRequest / GSSENCRequest

    @Test func backendSSLAnswers() throws {
        var accepted = PostgresBackendMessageDecoder(phase: .sslResponse)
        var s = bytes("S")
        #expect(
            try accepted.decode(buffer: &s) == PostgresFramedMessage(message: .sslResponse(true), frame: bytes("S")))
        #expect(accepted.phase == .typed)

        var refused = PostgresBackendMessageDecoder(phase: .sslResponse)
        var n = bytes("N")
        n.writeImmutableBuffer(encoded(.authentication(.ok)))
        let outputs = try decodeAll(&refused, n)
        #expect(outputs.map(\.message) == [.sslResponse(false), .authentication(.ok)])

        var gss = PostgresBackendMessageDecoder(phase: .gssEncResponse)
        var g = bytes("G")
        #expect(try gss.decode(buffer: &g)?.message == .gssEncResponse(true))
    }

    @Test func plaintextAfterSSLAcceptanceIsRefused() {
        var decoder = PostgresBackendMessageDecoder(phase: .sslResponse)
        var input = bytes("S")
        input.writeImmutableBuffer(encoded(.authentication(.ok)))
        #expect(wireError { try decoder.decode(buffer: &input) }?.code == .unexpectedData)
    }

    @Test func oldServerErrorInsteadOfSSLAnswerIsDecoded() throws {
        var decoder = PostgresBackendMessageDecoder(phase: .sslResponse)
        let error = PostgresBackendMessage.errorResponse(PostgresErrorFields([.init(field: .message, value: "no")]))
        var input = encoded(error)
        #expect(try decoder.decode(buffer: &input)?.message == error)
        var garbage = bytes("X")
        var fresh = PostgresBackendMessageDecoder(phase: .sslResponse)
        #expect(wireError { try fresh.decode(buffer: &garbage) }?.code == .malformedMessage)
    }
}
