import NIOCore

/// Decodes what a PostgreSQL server sends: typed messages, or first the one-byte answer to `SSLRequest` or
/// `GSSENCRequest` when the decoder was created expecting it.
///
/// It exists for the upstream side of the gateway. Each output carries the message and its original bytes.
/// Use it inside `ByteToMessageHandler` or call ``decode(buffer:)`` directly; it holds no I/O and no buffers.
///
/// After a positive answer (`S` or `G`) the next bytes must be the TLS or GSSAPI handshake, handled below this
/// decoder; bytes already buffered with the answer are refused (CVE-2021-23222). An `E` in place of the answer (a
/// server too old for the request) is decoded as a typed `ErrorResponse`.
public struct PostgresBackendMessageDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = PostgresFramedMessage<PostgresBackendMessage>

    /// What the decoder expects next.
    public enum Phase: Sendable, Hashable {
        /// The single byte `S` or `N` answering an `SSLRequest`.
        case sslResponse
        /// The single byte `G` or `N` answering a `GSSENCRequest`.
        case gssEncResponse
        /// Typed messages.
        case typed
    }

    public private(set) var phase: Phase
    public var limits: PostgresMessageLimits

    public init(phase: Phase = .typed, limits: PostgresMessageLimits = .default) {
        self.phase = phase
        self.limits = limits
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> InboundOut? {
        switch self.phase {
        case .sslResponse, .gssEncResponse:
            let start = buffer.readerIndex
            guard let byte = buffer.getInteger(at: start, as: UInt8.self) else {
                return nil
            }
            let accepted: UInt8 = self.phase == .sslResponse ? UInt8(ascii: "S") : UInt8(ascii: "G")
            let what = self.phase == .sslResponse ? "SSLRequest" : "GSSENCRequest"
            switch byte {
            case accepted, UInt8(ascii: "N"):
                let frame = buffer.readSlice(length: 1)!
                self.phase = .typed
                if byte == accepted && buffer.readableBytes > 0 {
                    throw PostgresWireError(
                        code: .unexpectedData,
                        message: "received unencrypted data after the answer to \(what)",
                        sqlState: SQLState.protocolViolation
                    )
                }
                let message: PostgresBackendMessage =
                    what == "SSLRequest" ? .sslResponse(byte == accepted) : .gssEncResponse(byte == accepted)
                return InboundOut(message: message, frame: frame)
            case PostgresBackendMessage.ID.errorResponse:
                guard let output = try self.decodeTyped(&buffer) else {
                    return nil
                }
                self.phase = .typed
                return output
            default:
                throw PostgresWireError(
                    code: .malformedMessage,
                    message: "invalid answer \(PostgresWireError.describe(byte)) to \(what)",
                    sqlState: SQLState.protocolViolation
                )
            }
        case .typed:
            return try self.decodeTyped(&buffer)
        }
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> InboundOut? {
        try self.decode(buffer: &buffer)
    }

    private func decodeTyped(_ buffer: inout ByteBuffer) throws -> InboundOut? {
        let limits = self.limits
        guard
            let (id, frame, body) = try readTypedFrame(
                from: &buffer,
                direction: "backend",
                maximumLength: { id in PostgresBackendMessage.isSmall(id: id).map { limits.maximum(small: $0) } }
            )
        else {
            return nil
        }
        var reader = body
        let message = try PostgresBackendMessage.decodeTyped(id: id, body: &reader)
        return InboundOut(message: message, frame: frame)
    }
}
