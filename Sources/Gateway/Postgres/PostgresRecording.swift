import Audit
import NIOCore
import PostgresWire

/// What of a PostgreSQL session goes into its recording, and what is replaced first.
///
/// Client frames are recorded as decoded (one message each). Authentication responses (passwords,
/// SCRAM proofs) are recorded as an empty `p` message: the replay shows that the client
/// authenticated, never with what. Frames to the client are split into messages; `BackendKeyData`
/// keeps its process id and loses its secret (it would let a reader cancel the session's queries).
enum PostgresRecording {
    static func fromClient(_ framed: PostgresFramedMessage<PostgresFrontendMessage>, into recorder: SessionRecorder) {
        switch framed.message {
        case .authenticationResponse:
            recorder.record(.fromClient, emptyAuthenticationResponse)
        case .cancelRequest:
            return
        case .startup, .sslRequest, .gssEncRequest, .query, .parse, .bind, .describe, .execute, .close, .sync,
            .flush, .terminate, .copyData, .copyDone, .copyFail, .functionCall:
            recorder.record(.fromClient, framed.frame)
        }
    }

    static let emptyAuthenticationResponse: [UInt8] = [UInt8(ascii: "p"), 0, 0, 0, 4]

    /// Records `buffer` (bytes written to the client) message by message.
    static func toClient(_ buffer: ByteBuffer, into recorder: SessionRecorder) {
        var rest = buffer
        while rest.readableBytes > 0 {
            // A typed message: type byte, Int32 length (counting itself), body.
            guard rest.readableBytes >= 5,
                let length = rest.getInteger(at: rest.readerIndex + 1, as: Int32.self),
                length >= 4, Int(length) + 1 <= rest.readableBytes,
                let message = rest.readSlice(length: Int(length) + 1)
            else {
                // The one-byte answer to SSLRequest/GSSENCRequest, or a partial write: as it is.
                recorder.record(.toClient, rest)
                return
            }
            if message.getInteger(at: message.readerIndex, as: UInt8.self) == UInt8(ascii: "K"), length >= 8 {
                var redacted = Array(message.readableBytesView.prefix(9))
                redacted += [UInt8](repeating: 0, count: Int(length) - 8)
                recorder.record(.toClient, redacted)
            } else {
                recorder.record(.toClient, message)
            }
        }
    }
}
