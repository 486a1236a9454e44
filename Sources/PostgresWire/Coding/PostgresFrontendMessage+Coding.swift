import NIOCore

extension PostgresFrontendMessage {
    /// The startup-phase request codes, chosen by PostgreSQL so they can never be a protocol version.
    enum RequestCode {
        static let cancel: Int32 = 80_877_102
        static let ssl: Int32 = 80_877_103
        static let gssEnc: Int32 = 80_877_104
    }

    /// Type bytes of typed frontend messages.
    enum ID {
        static let query = UInt8(ascii: "Q")
        static let parse = UInt8(ascii: "P")
        static let bind = UInt8(ascii: "B")
        static let describe = UInt8(ascii: "D")
        static let execute = UInt8(ascii: "E")
        static let close = UInt8(ascii: "C")
        static let sync = UInt8(ascii: "S")
        static let flush = UInt8(ascii: "H")
        static let terminate = UInt8(ascii: "X")
        static let copyData = UInt8(ascii: "d")
        static let copyDone = UInt8(ascii: "c")
        static let copyFail = UInt8(ascii: "f")
        static let functionCall = UInt8(ascii: "F")
        static let authenticationResponse = UInt8(ascii: "p")
    }

    /// Whether `id` is a typed frontend message, and if so whether it is one PostgreSQL itself bounds to its small
    /// limit (10000 bytes, `PQ_SMALL_MESSAGE_LIMIT`) rather than the large one. `nil` for an unknown type.
    static func isSmall(id: UInt8) -> Bool? {
        switch id {
        case ID.query, ID.parse, ID.bind, ID.functionCall, ID.copyData, ID.authenticationResponse:
            return false
        case ID.describe, ID.execute, ID.close, ID.sync, ID.flush, ID.terminate, ID.copyDone, ID.copyFail:
            return true
        default:
            return nil
        }
    }

    /// Decodes the body of a startup-phase packet (after the length) that starts with `code`.
    static func decodeStartupPacket(code: Int32, body: inout ByteBuffer) throws -> PostgresFrontendMessage {
        switch code {
        case RequestCode.ssl:
            try body.pgExpectEnd("SSLRequest")
            return .sslRequest
        case RequestCode.gssEnc:
            try body.pgExpectEnd("GSSENCRequest")
            return .gssEncRequest
        case RequestCode.cancel:
            let processID = try body.pgReadInteger("CancelRequest", as: Int32.self)
            let keyLength = body.readableBytes
            guard keyLength >= 4, keyLength <= PostgresBackendKey.maximumSecretKeyLength else {
                throw PostgresWireError.malformed("CancelRequest", "secret key of \(keyLength) bytes")
            }
            let key = try body.pgReadSlice("CancelRequest", length: keyLength)
            return .cancelRequest(PostgresBackendKey(processID: processID, secretKey: key))
        default:
            let version = ProtocolVersion(
                major: UInt16(truncatingIfNeeded: code >> 16), minor: UInt16(truncatingIfNeeded: code))
            guard version.major == 3 else {
                throw PostgresWireError(
                    code: .unsupportedProtocolVersion,
                    message: "unsupported frontend protocol \(version): server supports 3.0",
                    sqlState: SQLState.featureNotSupported
                )
            }
            var parameters = [Startup.Parameter]()
            while true {
                let name = try body.pgReadCString("StartupMessage")
                if name.isEmpty {
                    break
                }
                let value = try body.pgReadCString("StartupMessage")
                parameters.append(Startup.Parameter(name: name, value: value))
            }
            try body.pgExpectEnd("StartupMessage")
            return .startup(Startup(protocolVersion: version, parameters: parameters))
        }
    }

    /// Decodes the body (after type byte and length) of a typed message.
    static func decodeTyped(id: UInt8, body: inout ByteBuffer) throws -> PostgresFrontendMessage {
        let message: PostgresFrontendMessage
        switch id {
        case ID.query:
            message = .query(try body.pgReadCString("Query"))
        case ID.parse:
            let name = try body.pgReadCString("Parse")
            let query = try body.pgReadCString("Parse")
            let count = try body.pgReadCount("Parse")
            guard count * 4 <= body.readableBytes else {
                throw PostgresWireError.malformed("Parse", "parameter type count \(count) exceeds the message")
            }
            var types = [UInt32]()
            types.reserveCapacity(count)
            for _ in 0..<count {
                types.append(try body.pgReadInteger("Parse", as: UInt32.self))
            }
            message = .parse(Parse(name: name, query: query, parameterTypes: types))
        case ID.bind:
            let portal = try body.pgReadCString("Bind")
            let statement = try body.pgReadCString("Bind")
            let parameterFormats = try body.pgReadFormats("Bind")
            let parameters = try Self.readValues("Bind", from: &body)
            let resultFormats = try body.pgReadFormats("Bind")
            message = .bind(
                Bind(
                    portal: portal,
                    statement: statement,
                    parameterFormats: parameterFormats,
                    parameters: parameters,
                    resultFormats: resultFormats
                )
            )
        case ID.describe:
            message = .describe(try Self.readTarget("Describe", from: &body))
        case ID.execute:
            let portal = try body.pgReadCString("Execute")
            let maxRows = try body.pgReadInteger("Execute", as: Int32.self)
            message = .execute(portal: portal, maxRows: maxRows)
        case ID.close:
            message = .close(try Self.readTarget("Close", from: &body))
        case ID.sync:
            message = .sync
        case ID.flush:
            message = .flush
        case ID.terminate:
            message = .terminate
        case ID.copyData:
            message = .copyData(body.readSlice(length: body.readableBytes)!)
        case ID.copyDone:
            message = .copyDone
        case ID.copyFail:
            message = .copyFail(message: try body.pgReadCString("CopyFail"))
        case ID.functionCall:
            let oid = try body.pgReadInteger("FunctionCall", as: UInt32.self)
            let formats = try body.pgReadFormats("FunctionCall")
            let arguments = try Self.readValues("FunctionCall", from: &body)
            let resultFormat = try body.pgReadFormat("FunctionCall")
            message = .functionCall(
                FunctionCall(
                    functionOID: oid, argumentFormats: formats, arguments: arguments, resultFormat: resultFormat)
            )
        case ID.authenticationResponse:
            message = .authenticationResponse(
                AuthenticationResponse(bytes: body.readSlice(length: body.readableBytes)!))
        default:
            throw PostgresWireError.unknownType(id, direction: "frontend")
        }
        try body.pgExpectEnd(message.name)
        return message
    }

    private static func readTarget(_ what: String, from body: inout ByteBuffer) throws -> PostgresDescribeTarget {
        let kind = try body.pgReadInteger(what, as: UInt8.self)
        let name = try body.pgReadCString(what)
        switch kind {
        case UInt8(ascii: "S"): return .statement(name)
        case UInt8(ascii: "P"): return .portal(name)
        default:
            throw PostgresWireError.malformed(what, "target \(PostgresWireError.describe(kind)) is neither S nor P")
        }
    }

    private static func readValues(_ what: String, from body: inout ByteBuffer) throws -> [ByteBuffer?] {
        let count = try body.pgReadCount(what)
        // Each value takes at least its 4-byte length: refuse counts the body cannot hold before allocating.
        guard count * 4 <= body.readableBytes else {
            throw PostgresWireError.malformed(what, "value count \(count) exceeds the message")
        }
        var values = [ByteBuffer?]()
        values.reserveCapacity(count)
        for _ in 0..<count {
            values.append(try body.pgReadNullableValue(what))
        }
        return values
    }

    /// The message's name in the PostgreSQL documentation, for errors and logs.
    public var name: String {
        switch self {
        case .startup: return "StartupMessage"
        case .sslRequest: return "SSLRequest"
        case .gssEncRequest: return "GSSENCRequest"
        case .cancelRequest: return "CancelRequest"
        case .query: return "Query"
        case .parse: return "Parse"
        case .bind: return "Bind"
        case .describe: return "Describe"
        case .execute: return "Execute"
        case .close: return "Close"
        case .sync: return "Sync"
        case .flush: return "Flush"
        case .terminate: return "Terminate"
        case .copyData: return "CopyData"
        case .copyDone: return "CopyDone"
        case .copyFail: return "CopyFail"
        case .functionCall: return "FunctionCall"
        case .authenticationResponse: return "AuthenticationResponse"
        }
    }

    /// Appends the message, with its type byte and correct length, to `buffer`.
    ///
    /// Strings cannot carry NUL on the wire; anything from a NUL on is dropped (see the module's encoding notes).
    /// A message body over 2 GiB is a programming error (decoded input is capped far below that).
    public func encode(into buffer: inout ByteBuffer) {
        switch self {
        case .startup(let startup):
            buffer.pgWriteLengthPrefixed { buffer in
                buffer.writeInteger(startup.protocolVersion.major)
                buffer.writeInteger(startup.protocolVersion.minor)
                for parameter in startup.parameters where !parameter.name.isEmpty {
                    buffer.pgWriteCString(parameter.name)
                    buffer.pgWriteCString(parameter.value)
                }
                buffer.writeInteger(UInt8(0))
            }
        case .sslRequest:
            buffer.writeMultipleIntegers(Int32(8), RequestCode.ssl, endianness: .big)
        case .gssEncRequest:
            buffer.writeMultipleIntegers(Int32(8), RequestCode.gssEnc, endianness: .big)
        case .cancelRequest(let key):
            buffer.pgWriteLengthPrefixed { buffer in
                buffer.writeMultipleIntegers(RequestCode.cancel, key.processID, endianness: .big)
                buffer.writeImmutableBuffer(key.secretKey)
            }
        case .query(let query):
            buffer.pgWriteMessage(id: ID.query) { $0.pgWriteCString(query) }
        case .parse(let parse):
            buffer.pgWriteMessage(id: ID.parse) { buffer in
                buffer.pgWriteCString(parse.name)
                buffer.pgWriteCString(parse.query)
                buffer.writeInteger(Int16(parse.parameterTypes.count))
                for type in parse.parameterTypes {
                    buffer.writeInteger(type)
                }
            }
        case .bind(let bind):
            buffer.pgWriteMessage(id: ID.bind) { buffer in
                buffer.pgWriteCString(bind.portal)
                buffer.pgWriteCString(bind.statement)
                buffer.pgWriteFormats(bind.parameterFormats)
                buffer.writeInteger(Int16(bind.parameters.count))
                for value in bind.parameters {
                    buffer.pgWriteNullableValue(value)
                }
                buffer.pgWriteFormats(bind.resultFormats)
            }
        case .describe(let target):
            buffer.pgWriteMessage(id: ID.describe) { $0.pgWriteTarget(target) }
        case .execute(let portal, let maxRows):
            buffer.pgWriteMessage(id: ID.execute) { buffer in
                buffer.pgWriteCString(portal)
                buffer.writeInteger(maxRows)
            }
        case .close(let target):
            buffer.pgWriteMessage(id: ID.close) { $0.pgWriteTarget(target) }
        case .sync:
            buffer.writeMultipleIntegers(ID.sync, Int32(4), endianness: .big)
        case .flush:
            buffer.writeMultipleIntegers(ID.flush, Int32(4), endianness: .big)
        case .terminate:
            buffer.writeMultipleIntegers(ID.terminate, Int32(4), endianness: .big)
        case .copyData(let data):
            buffer.pgWriteMessage(id: ID.copyData) { $0.writeImmutableBuffer(data) }
        case .copyDone:
            buffer.writeMultipleIntegers(ID.copyDone, Int32(4), endianness: .big)
        case .copyFail(let message):
            buffer.pgWriteMessage(id: ID.copyFail) { $0.pgWriteCString(message) }
        case .functionCall(let call):
            buffer.pgWriteMessage(id: ID.functionCall) { buffer in
                buffer.writeInteger(call.functionOID)
                buffer.pgWriteFormats(call.argumentFormats)
                buffer.writeInteger(Int16(call.arguments.count))
                for argument in call.arguments {
                    buffer.pgWriteNullableValue(argument)
                }
                buffer.writeInteger(call.resultFormat.rawValue)
            }
        case .authenticationResponse(let response):
            buffer.pgWriteMessage(id: ID.authenticationResponse) { $0.writeImmutableBuffer(response.bytes) }
        }
    }
}

extension ByteBuffer {
    mutating func pgWriteTarget(_ target: PostgresDescribeTarget) {
        switch target {
        case .statement(let name):
            self.writeInteger(UInt8(ascii: "S"))
            self.pgWriteCString(name)
        case .portal(let name):
            self.writeInteger(UInt8(ascii: "P"))
            self.pgWriteCString(name)
        }
    }
}
