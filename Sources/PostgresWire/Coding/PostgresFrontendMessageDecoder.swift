import NIOCore

/// Decodes what a PostgreSQL client sends: first untyped startup-phase packets, then typed messages.
///
/// It exists for the client-facing side of the gateway. Each output carries the message and its original bytes.
/// Use it inside `ByteToMessageHandler` or call ``decode(buffer:)`` directly; it holds no I/O and no buffers.
///
/// Phases: `startup` accepts `SSLRequest` and `GSSENCRequest` (and stays in `startup`), `CancelRequest` (then
/// `closed`: any further byte is an error) and `StartupMessage` (then `typed`). As PostgreSQL does, bytes that
/// arrive in the same read as an `SSLRequest` or `GSSENCRequest`, before its answer, are refused: they would be
/// plaintext the client meant to encrypt (CVE-2021-23214).
public struct PostgresFrontendMessageDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = PostgresFramedMessage<PostgresFrontendMessage>

    /// Where in the connection the decoder is.
    public enum Phase: Sendable, Hashable {
        /// Untyped packets: startup, SSL/GSSENC negotiation, cancel.
        case startup
        /// Typed messages, after the `StartupMessage`.
        case typed
        /// After a `CancelRequest`: the connection carries nothing more.
        case closed
    }

    public private(set) var phase: Phase
    public var limits: PostgresMessageLimits

    public init(phase: Phase = .startup, limits: PostgresMessageLimits = .default) {
        self.phase = phase
        self.limits = limits
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> InboundOut? {
        switch self.phase {
        case .startup:
            return try self.decodeStartupPacket(&buffer)
        case .typed:
            let limits = self.limits
            guard
                let (id, frame, body) = try readTypedFrame(
                    from: &buffer,
                    direction: "frontend",
                    maximumLength: { id in PostgresFrontendMessage.isSmall(id: id).map { limits.maximum(small: $0) } }
                )
            else {
                return nil
            }
            var reader = body
            let message = try PostgresFrontendMessage.decodeTyped(id: id, body: &reader)
            return InboundOut(message: message, frame: frame)
        case .closed:
            guard buffer.readableBytes == 0 else {
                throw PostgresWireError(
                    code: .unexpectedData,
                    message: "unexpected data after CancelRequest",
                    sqlState: SQLState.protocolViolation
                )
            }
            return nil
        }
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> InboundOut? {
        try self.decode(buffer: &buffer)
    }

    private mutating func decodeStartupPacket(_ buffer: inout ByteBuffer) throws -> InboundOut? {
        let start = buffer.readerIndex
        guard let (length, code) = buffer.readMultipleIntegers(endianness: .big, as: (Int32, Int32).self) else {
            // Judge the length as soon as it is here: a TLS ClientHello or an HTTP request fails at once.
            if let length = buffer.getInteger(at: start, endianness: .big, as: Int32.self) {
                try self.checkStartupLength(length)
            }
            return nil
        }
        buffer.moveReaderIndex(to: start)
        try self.checkStartupLength(length)
        guard let frame = buffer.readSlice(length: Int(length)) else {
            return nil
        }
        var body = frame
        body.moveReaderIndex(forwardBy: 8)
        let message = try PostgresFrontendMessage.decodeStartupPacket(code: code, body: &body)
        switch message {
        case .startup:
            self.phase = .typed
        case .cancelRequest:
            self.phase = .closed
        case .sslRequest, .gssEncRequest:
            guard buffer.readableBytes == 0 else {
                throw PostgresWireError(
                    code: .unexpectedData,
                    message: "received unencrypted data after \(message.name)",
                    sqlState: SQLState.protocolViolation
                )
            }
        default:
            preconditionFailure("a startup packet decodes to a startup-phase message")
        }
        return InboundOut(message: message, frame: frame)
    }

    private func checkStartupLength(_ length: Int32) throws {
        guard length >= 8 else {
            throw PostgresWireError.invalidLength("startup packet", length: Int(length))
        }
        guard Int(length) <= self.limits.maximumStartupPacketSize else {
            throw PostgresWireError(
                code: .startupPacketTooLarge,
                message:
                    "invalid length of startup packet: \(length) bytes exceeds \(self.limits.maximumStartupPacketSize)",
                sqlState: SQLState.protocolViolation
            )
        }
    }
}
