import NIOCore

@testable import PostgresWire

/// A buffer from literal pieces: strings as UTF-8, integers big-endian at their width, byte arrays as they are.
func bytes(_ pieces: Any...) -> ByteBuffer {
    var buffer = ByteBuffer()
    for piece in pieces {
        switch piece {
        case let string as String: buffer.writeString(string)
        case let value as UInt8: buffer.writeInteger(value)
        case let value as Int16: buffer.writeInteger(value)
        case let value as Int32: buffer.writeInteger(value)
        case let value as UInt32: buffer.writeInteger(value)
        case let array as [UInt8]: buffer.writeBytes(array)
        default: fatalError("unsupported fixture piece \(piece)")
        }
    }
    return buffer
}

let nul: UInt8 = 0

func encoded(_ message: PostgresFrontendMessage) -> ByteBuffer {
    var buffer = ByteBuffer()
    message.encode(into: &buffer)
    return buffer
}

func encoded(_ message: PostgresBackendMessage) -> ByteBuffer {
    var buffer = ByteBuffer()
    message.encode(into: &buffer)
    return buffer
}

/// Decodes every message in `buffer`; fails if bytes are left over.
func decodeAll<Decoder: NIOSingleStepByteToMessageDecoder>(
    _ decoder: inout Decoder,
    _ input: ByteBuffer
) throws -> [Decoder.InboundOut] {
    var buffer = input
    var outputs = [Decoder.InboundOut]()
    while let output = try decoder.decode(buffer: &buffer) {
        outputs.append(output)
    }
    if buffer.readableBytes > 0 {
        throw LeftOverBytes(count: buffer.readableBytes)
    }
    return outputs
}

struct LeftOverBytes: Error {
    var count: Int
}

func wireError(_ body: () throws -> Any?) -> PostgresWireError? {
    do {
        _ = try body()
        return nil
    } catch let error as PostgresWireError {
        return error
    } catch {
        return nil
    }
}

/// A deterministic generator, so a fuzz failure can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One of every frontend message, with NULLs, empty names and several formats.
let everyTypedFrontendMessage: [PostgresFrontendMessage] = [
    .query("SELECT 1; SELECT 'a;b'"),
    .parse(.init(name: "s1", query: "SELECT $1::int, $2", parameterTypes: [23, 0])),
    .parse(.init(name: "", query: "BEGIN")),
    .bind(
        .init(
            portal: "p1",
            statement: "s1",
            parameterFormats: [.binary, .text],
            parameters: [ByteBuffer(bytes: [0, 0, 0, 42]), nil],
            resultFormats: [.binary]
        )
    ),
    .bind(.init(portal: "", statement: "")),
    .describe(.statement("s1")),
    .describe(.portal("")),
    .execute(portal: "p1", maxRows: 100),
    .close(.statement("s1")),
    .close(.portal("p1")),
    .sync,
    .flush,
    .terminate,
    .copyData(ByteBuffer(string: "1\talice\n2\tbob\n")),
    .copyData(ByteBuffer()),
    .copyDone,
    .copyFail(message: "aborted by user"),
    .functionCall(
        .init(
            functionOID: 1598, argumentFormats: [.binary], arguments: [ByteBuffer(bytes: [1]), nil],
            resultFormat: .binary)
    ),
    .authenticationResponse(.password("md5bb41a296aab6baccb36ff243a562abff")),
    .authenticationResponse(.saslInitialResponse(mechanism: "SCRAM-SHA-256", data: ByteBuffer(string: "n,,n=,r=abc"))),
    .authenticationResponse(.saslInitialResponse(mechanism: "SCRAM-SHA-256", data: nil)),
    .authenticationResponse(.saslResponse(ByteBuffer(string: "c=biws,r=abcdef,p=xyz"))),
]

/// One of every backend message (typed ones).
let everyTypedBackendMessage: [PostgresBackendMessage] = [
    .authentication(.ok),
    .authentication(.kerberosV5),
    .authentication(.cleartextPassword),
    .authentication(.md5Password(salt: 0x0102_0304)),
    .authentication(.gss),
    .authentication(.gssContinue(ByteBuffer(bytes: [1, 2, 3]))),
    .authentication(.sspi),
    .authentication(.sasl(mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])),
    .authentication(.saslContinue(ByteBuffer(string: "r=abc,s=c2FsdA==,i=4096"))),
    .authentication(.saslFinal(ByteBuffer(string: "v=c2ln"))),
    .parameterStatus(name: "client_encoding", value: "UTF8"),
    .backendKeyData(PostgresBackendKey(processID: 4242, secretKey: 0xDEAD_BEEF)),
    .backendKeyData(PostgresBackendKey(processID: 7, secretKey: ByteBuffer(repeating: 0xAB, count: 32))),
    .readyForQuery(.idle),
    .readyForQuery(.inTransaction),
    .readyForQuery(.failedTransaction),
    .rowDescription([
        .init(
            name: "email",
            tableOID: 16384,
            columnAttributeNumber: 2,
            dataTypeOID: 25,
            dataTypeSize: -1,
            typeModifier: -1,
            format: .text
        ),
        .init(
            name: "?column?", tableOID: 0, columnAttributeNumber: 0, dataTypeOID: 23, dataTypeSize: 4, typeModifier: -1,
            format: .binary),
    ]),
    .rowDescription([]),
    .dataRow(DataRow(columns: [ByteBuffer(string: "alice@example.com"), nil, ByteBuffer()])),
    .dataRow(DataRow(columns: [])),
    .commandComplete(tag: "SELECT 3"),
    .emptyQueryResponse,
    .errorResponse(
        PostgresErrorFields([
            .init(field: .localizedSeverity, value: "ERROR"),
            .init(field: .severity, value: "ERROR"),
            .init(field: .sqlState, value: "23505"),
            .init(field: .message, value: "duplicate key value violates unique constraint \"customers_email_key\""),
            .init(field: .detail, value: "Key (email)=(alice@example.com) already exists."),
            .init(field: .hint, value: "h"), .init(field: .position, value: "8"),
            .init(field: .internalPosition, value: "1"), .init(field: .internalQuery, value: "q"),
            .init(field: .context, value: "w"), .init(field: .schemaName, value: "public"),
            .init(field: .tableName, value: "customers"), .init(field: .columnName, value: "email"),
            .init(field: .dataTypeName, value: "text"), .init(field: .constraintName, value: "customers_email_key"),
            .init(field: .file, value: "nbtinsert.c"), .init(field: .line, value: "666"),
            .init(field: .routine, value: "_bt_check_unique"),
            .init(field: .init(code: UInt8(ascii: "Z")), value: "a field from the future"),
        ])
    ),
    .noticeResponse(
        PostgresErrorFields([.init(field: .severity, value: "NOTICE"), .init(field: .message, value: "hi")])),
    .parseComplete,
    .bindComplete,
    .closeComplete,
    .noData,
    .parameterDescription([23, 25]),
    .parameterDescription([]),
    .portalSuspended,
    .copyInResponse(.init(format: .text, columnFormats: [.text, .text])),
    .copyOutResponse(.init(format: .binary, columnFormats: [.binary])),
    .copyBothResponse(.init(format: .binary, columnFormats: [])),
    .copyData(ByteBuffer(string: "1\talice\n")),
    .copyDone,
    .notificationResponse(processID: 99, channel: "jobs", payload: "{\"id\":1}"),
    .functionCallResponse(ByteBuffer(bytes: [0, 0, 0, 1])),
    .functionCallResponse(nil),
    .negotiateProtocolVersion(newestMinorVersion: 0, unrecognizedOptions: ["_pq_.compression"]),
]
