import NIOCore

/// How large a message the decoders accept before refusing it with ``PostgresWireError/Code/messageTooLarge``.
///
/// A proxy must buffer a whole message before it can decide about it, so a declared length is a promise of memory:
/// it is checked against these limits from the 5-byte header, before any body byte is buffered. PostgreSQL's own
/// hard limit is 1 GiB per message; 64 MiB by default keeps 40 sessions of worst-case messages within a few GiB
/// while fitting any ordinary row, `COPY` chunk (psql sends 8 KiB, the server 64 KiB) or large `bytea` parameter.
/// Raise it for workloads that move larger single values.
public struct PostgresMessageLimits: Sendable, Hashable {
    /// The largest declared length (which counts the 4 length bytes, not the type byte) of a typed message whose
    /// size depends on data: Query, Parse, Bind, CopyData, FunctionCall, `p`; DataRow, RowDescription, ErrorResponse...
    /// Clamped to `Int32.max`.
    public var maximumMessageSize: Int
    /// The largest startup-phase packet, length included. PostgreSQL refuses more than 10000 bytes
    /// (`MAX_STARTUP_PACKET_LENGTH`).
    public var maximumStartupPacketSize: Int

    /// The limit for messages whose size does not depend on data (Sync, Describe, Execute, Close, ReadyForQuery...),
    /// 10000 bytes like PostgreSQL's `PQ_SMALL_MESSAGE_LIMIT`, or ``maximumMessageSize`` if that is lower.
    public static let smallMessageSize = 10_000

    /// 64 MiB messages, 10000-byte startup packets.
    public static let `default` = PostgresMessageLimits(maximumMessageSize: 64 << 20, maximumStartupPacketSize: 10_000)

    public init(maximumMessageSize: Int, maximumStartupPacketSize: Int = 10_000) {
        self.maximumMessageSize = maximumMessageSize
        self.maximumStartupPacketSize = maximumStartupPacketSize
    }

    func maximum(small: Bool) -> Int {
        let large = min(self.maximumMessageSize, Int(Int32.max))
        return small ? min(Self.smallMessageSize, large) : large
    }
}

/// A decoded message together with the exact bytes it came from.
///
/// It exists so a proxy can forward a message it did not change as the original bytes, without re-encoding:
/// `frame` is the whole message (type byte, length, body; for startup packets, length and body), a slice that
/// shares storage with the receive buffer.
public struct PostgresFramedMessage<Message: Sendable>: Sendable {
    public var message: Message
    /// The message's original bytes, ready to write as they are.
    public var frame: ByteBuffer

    public init(message: Message, frame: ByteBuffer) {
        self.message = message
        self.frame = frame
    }
}

extension PostgresFramedMessage: Equatable where Message: Equatable {}
extension PostgresFramedMessage: Hashable where Message: Hashable {}

/// Reads one typed frame: type byte, `Int32` length, body. Returns `nil` (reader index untouched) until the whole
/// frame is buffered. Type and length are judged from the header alone, so an unknown type or an oversized or
/// impossible length throws before the body is waited for.
func readTypedFrame(
    from buffer: inout ByteBuffer,
    direction: String,
    maximumLength: (UInt8) -> Int?
) throws -> (id: UInt8, frame: ByteBuffer, body: ByteBuffer)? {
    let start = buffer.readerIndex
    guard let (id, length) = buffer.readMultipleIntegers(endianness: .big, as: (UInt8, Int32).self) else {
        return nil
    }
    buffer.moveReaderIndex(to: start)
    guard let maximum = maximumLength(id) else {
        throw PostgresWireError.unknownType(id, direction: direction)
    }
    // The name is built on the error paths only: this runs for every message.
    guard length >= 4 else {
        throw PostgresWireError.invalidLength("\(direction) \(PostgresWireError.describe(id))", length: Int(length))
    }
    guard Int(length) <= maximum else {
        throw PostgresWireError.tooLarge(
            "\(direction) \(PostgresWireError.describe(id))",
            length: Int(length),
            maximum: maximum
        )
    }
    guard let frame = buffer.readSlice(length: 1 + Int(length)) else {
        return nil
    }
    var body = frame
    body.moveReaderIndex(forwardBy: 5)
    return (id, frame, body)
}
