import NIOCore

extension PostgresBackendMessage {
    /// Type bytes of typed backend messages.
    enum ID {
        static let authentication = UInt8(ascii: "R")
        static let parameterStatus = UInt8(ascii: "S")
        static let backendKeyData = UInt8(ascii: "K")
        static let readyForQuery = UInt8(ascii: "Z")
        static let rowDescription = UInt8(ascii: "T")
        static let dataRow = UInt8(ascii: "D")
        static let commandComplete = UInt8(ascii: "C")
        static let emptyQueryResponse = UInt8(ascii: "I")
        static let errorResponse = UInt8(ascii: "E")
        static let noticeResponse = UInt8(ascii: "N")
        static let parseComplete = UInt8(ascii: "1")
        static let bindComplete = UInt8(ascii: "2")
        static let closeComplete = UInt8(ascii: "3")
        static let noData = UInt8(ascii: "n")
        static let parameterDescription = UInt8(ascii: "t")
        static let portalSuspended = UInt8(ascii: "s")
        static let copyInResponse = UInt8(ascii: "G")
        static let copyOutResponse = UInt8(ascii: "H")
        static let copyBothResponse = UInt8(ascii: "W")
        static let copyData = UInt8(ascii: "d")
        static let copyDone = UInt8(ascii: "c")
        static let notificationResponse = UInt8(ascii: "A")
        static let functionCallResponse = UInt8(ascii: "V")
        static let negotiateProtocolVersion = UInt8(ascii: "v")
    }

    /// Whether `id` is a typed backend message whose size is small by nature (fixed layouts, keys, statuses), so a
    /// large declared length is refused before any byte is buffered. `nil` for an unknown type.
    static func isSmall(id: UInt8) -> Bool? {
        switch id {
        case ID.backendKeyData, ID.readyForQuery, ID.emptyQueryResponse, ID.parseComplete, ID.bindComplete,
            ID.closeComplete, ID.noData, ID.portalSuspended, ID.copyDone:
            return true
        case ID.authentication, ID.parameterStatus, ID.rowDescription, ID.dataRow, ID.commandComplete,
            ID.errorResponse, ID.noticeResponse, ID.parameterDescription, ID.copyInResponse, ID.copyOutResponse,
            ID.copyBothResponse, ID.copyData, ID.notificationResponse, ID.functionCallResponse,
            ID.negotiateProtocolVersion:
            return false
        default:
            return nil
        }
    }

    /// Decodes the body (after type byte and length) of a typed message.
    static func decodeTyped(id: UInt8, body: inout ByteBuffer) throws -> PostgresBackendMessage {
        let message: PostgresBackendMessage
        switch id {
        case ID.authentication:
            message = .authentication(try Self.decodeAuthentication(&body))
        case ID.parameterStatus:
            let name = try body.pgReadCString("ParameterStatus")
            let value = try body.pgReadCString("ParameterStatus")
            message = .parameterStatus(name: name, value: value)
        case ID.backendKeyData:
            let processID = try body.pgReadInteger("BackendKeyData", as: Int32.self)
            let keyLength = body.readableBytes
            guard keyLength >= 4, keyLength <= PostgresBackendKey.maximumSecretKeyLength else {
                throw PostgresWireError.malformed("BackendKeyData", "secret key of \(keyLength) bytes")
            }
            let key = try body.pgReadSlice("BackendKeyData", length: keyLength)
            message = .backendKeyData(PostgresBackendKey(processID: processID, secretKey: key))
        case ID.readyForQuery:
            let raw = try body.pgReadInteger("ReadyForQuery", as: UInt8.self)
            guard let status = TransactionStatus(rawValue: raw) else {
                throw PostgresWireError.malformed(
                    "ReadyForQuery",
                    "transaction status \(PostgresWireError.describe(raw)) is not I, T or E"
                )
            }
            message = .readyForQuery(status)
        case ID.rowDescription:
            let count = try body.pgReadCount("RowDescription")
            // Each field takes at least 19 bytes (an empty name and 18 bytes of numbers).
            guard count * 19 <= body.readableBytes else {
                throw PostgresWireError.malformed("RowDescription", "field count \(count) exceeds the message")
            }
            var fields = [Field]()
            fields.reserveCapacity(count)
            for _ in 0..<count {
                let name = try body.pgReadCString("RowDescription")
                guard
                    let (tableOID, attribute, typeOID, typeSize, modifier) = body.readMultipleIntegers(
                        endianness: .big,
                        as: (UInt32, Int16, UInt32, Int16, Int32).self
                    )
                else {
                    throw PostgresWireError.malformed("RowDescription", "truncated field")
                }
                let format = try body.pgReadFormat("RowDescription")
                fields.append(
                    Field(
                        name: name,
                        tableOID: tableOID,
                        columnAttributeNumber: attribute,
                        dataTypeOID: typeOID,
                        dataTypeSize: typeSize,
                        typeModifier: modifier,
                        format: format
                    )
                )
            }
            message = .rowDescription(fields)
        case ID.dataRow:
            let count = try body.pgReadCount("DataRow")
            message = .dataRow(try DataRow(columnCount: count, validating: body.readSlice(length: body.readableBytes)!))
        case ID.commandComplete:
            message = .commandComplete(tag: try body.pgReadCString("CommandComplete"))
        case ID.emptyQueryResponse:
            message = .emptyQueryResponse
        case ID.errorResponse:
            message = .errorResponse(try Self.decodeFields("ErrorResponse", &body))
        case ID.noticeResponse:
            message = .noticeResponse(try Self.decodeFields("NoticeResponse", &body))
        case ID.parseComplete:
            message = .parseComplete
        case ID.bindComplete:
            message = .bindComplete
        case ID.closeComplete:
            message = .closeComplete
        case ID.noData:
            message = .noData
        case ID.parameterDescription:
            let count = try body.pgReadCount("ParameterDescription")
            guard count * 4 <= body.readableBytes else {
                throw PostgresWireError.malformed("ParameterDescription", "count \(count) exceeds the message")
            }
            var types = [UInt32]()
            types.reserveCapacity(count)
            for _ in 0..<count {
                types.append(try body.pgReadInteger("ParameterDescription", as: UInt32.self))
            }
            message = .parameterDescription(types)
        case ID.portalSuspended:
            message = .portalSuspended
        case ID.copyInResponse:
            message = .copyInResponse(try Self.decodeCopyResponse("CopyInResponse", &body))
        case ID.copyOutResponse:
            message = .copyOutResponse(try Self.decodeCopyResponse("CopyOutResponse", &body))
        case ID.copyBothResponse:
            message = .copyBothResponse(try Self.decodeCopyResponse("CopyBothResponse", &body))
        case ID.copyData:
            message = .copyData(body.readSlice(length: body.readableBytes)!)
        case ID.copyDone:
            message = .copyDone
        case ID.notificationResponse:
            let processID = try body.pgReadInteger("NotificationResponse", as: Int32.self)
            let channel = try body.pgReadCString("NotificationResponse")
            let payload = try body.pgReadCString("NotificationResponse")
            message = .notificationResponse(processID: processID, channel: channel, payload: payload)
        case ID.functionCallResponse:
            message = .functionCallResponse(try body.pgReadNullableValue("FunctionCallResponse"))
        case ID.negotiateProtocolVersion:
            let minor = try body.pgReadInteger("NegotiateProtocolVersion", as: Int32.self)
            let count = try body.pgReadInteger("NegotiateProtocolVersion", as: Int32.self)
            guard count >= 0, Int(count) <= body.readableBytes else {
                throw PostgresWireError.malformed("NegotiateProtocolVersion", "option count \(count)")
            }
            var options = [String]()
            for _ in 0..<count {
                options.append(try body.pgReadCString("NegotiateProtocolVersion"))
            }
            message = .negotiateProtocolVersion(newestMinorVersion: minor, unrecognizedOptions: options)
        default:
            throw PostgresWireError.unknownType(id, direction: "backend")
        }
        try body.pgExpectEnd(message.name)
        return message
    }

    private static func decodeAuthentication(_ body: inout ByteBuffer) throws -> Authentication {
        let code = try body.pgReadInteger("Authentication", as: Int32.self)
        switch code {
        case 0: return .ok
        case 2: return .kerberosV5
        case 3: return .cleartextPassword
        case 5: return .md5Password(salt: try body.pgReadInteger("AuthenticationMD5Password", as: UInt32.self))
        case 7: return .gss
        case 8: return .gssContinue(body.readSlice(length: body.readableBytes)!)
        case 9: return .sspi
        case 10:
            var mechanisms = [String]()
            while true {
                let mechanism = try body.pgReadCString("AuthenticationSASL")
                if mechanism.isEmpty {
                    break
                }
                mechanisms.append(mechanism)
            }
            return .sasl(mechanisms: mechanisms)
        case 11: return .saslContinue(body.readSlice(length: body.readableBytes)!)
        case 12: return .saslFinal(body.readSlice(length: body.readableBytes)!)
        default:
            throw PostgresWireError.malformed("Authentication", "unknown authentication request \(code)")
        }
    }

    private static func decodeFields(_ what: String, _ body: inout ByteBuffer) throws -> PostgresErrorFields {
        var fields = PostgresErrorFields()
        while true {
            let code = try body.pgReadInteger(what, as: UInt8.self)
            if code == 0 {
                break
            }
            let value = try body.pgReadCString(what)
            fields.entries.append(PostgresErrorFields.Entry(field: PostgresErrorFields.Field(code: code), value: value))
        }
        return fields
    }

    private static func decodeCopyResponse(_ what: String, _ body: inout ByteBuffer) throws -> CopyResponse {
        let format = try body.pgReadInteger(what, as: Int8.self)
        guard let overall = PostgresFormat(rawValue: Int16(format)) else {
            throw PostgresWireError.malformed(what, "unknown copy format \(format)")
        }
        return CopyResponse(format: overall, columnFormats: try body.pgReadFormats(what))
    }

    /// The message's name in the PostgreSQL documentation, for errors and logs.
    public var name: String {
        switch self {
        case .authentication: return "Authentication"
        case .parameterStatus: return "ParameterStatus"
        case .backendKeyData: return "BackendKeyData"
        case .readyForQuery: return "ReadyForQuery"
        case .rowDescription: return "RowDescription"
        case .dataRow: return "DataRow"
        case .commandComplete: return "CommandComplete"
        case .emptyQueryResponse: return "EmptyQueryResponse"
        case .errorResponse: return "ErrorResponse"
        case .noticeResponse: return "NoticeResponse"
        case .parseComplete: return "ParseComplete"
        case .bindComplete: return "BindComplete"
        case .closeComplete: return "CloseComplete"
        case .noData: return "NoData"
        case .parameterDescription: return "ParameterDescription"
        case .portalSuspended: return "PortalSuspended"
        case .copyInResponse: return "CopyInResponse"
        case .copyOutResponse: return "CopyOutResponse"
        case .copyBothResponse: return "CopyBothResponse"
        case .copyData: return "CopyData"
        case .copyDone: return "CopyDone"
        case .notificationResponse: return "NotificationResponse"
        case .functionCallResponse: return "FunctionCallResponse"
        case .negotiateProtocolVersion: return "NegotiateProtocolVersion"
        case .sslResponse: return "SSLResponse"
        case .gssEncResponse: return "GSSENCResponse"
        }
    }

    /// Appends the message, with its type byte and correct length, to `buffer`.
    ///
    /// Strings cannot carry NUL on the wire; anything from a NUL on is dropped. A message body over 2 GiB is a
    /// programming error (decoded input is capped far below that).
    public func encode(into buffer: inout ByteBuffer) {
        switch self {
        case .authentication(let authentication):
            buffer.pgWriteMessage(id: ID.authentication) { buffer in
                switch authentication {
                case .ok: buffer.writeInteger(Int32(0))
                case .kerberosV5: buffer.writeInteger(Int32(2))
                case .cleartextPassword: buffer.writeInteger(Int32(3))
                case .md5Password(let salt): buffer.writeMultipleIntegers(Int32(5), salt, endianness: .big)
                case .gss: buffer.writeInteger(Int32(7))
                case .gssContinue(let data):
                    buffer.writeInteger(Int32(8))
                    buffer.writeImmutableBuffer(data)
                case .sspi: buffer.writeInteger(Int32(9))
                case .sasl(let mechanisms):
                    buffer.writeInteger(Int32(10))
                    for mechanism in mechanisms where !mechanism.isEmpty {
                        buffer.pgWriteCString(mechanism)
                    }
                    buffer.writeInteger(UInt8(0))
                case .saslContinue(let data):
                    buffer.writeInteger(Int32(11))
                    buffer.writeImmutableBuffer(data)
                case .saslFinal(let data):
                    buffer.writeInteger(Int32(12))
                    buffer.writeImmutableBuffer(data)
                }
            }
        case .parameterStatus(let name, let value):
            buffer.pgWriteMessage(id: ID.parameterStatus) { buffer in
                buffer.pgWriteCString(name)
                buffer.pgWriteCString(value)
            }
        case .backendKeyData(let key):
            buffer.pgWriteMessage(id: ID.backendKeyData) { buffer in
                buffer.writeInteger(key.processID)
                buffer.writeImmutableBuffer(key.secretKey)
            }
        case .readyForQuery(let status):
            buffer.writeMultipleIntegers(ID.readyForQuery, Int32(5), status.rawValue, endianness: .big)
        case .rowDescription(let fields):
            buffer.pgWriteMessage(id: ID.rowDescription) { buffer in
                buffer.writeInteger(Int16(fields.count))
                for field in fields {
                    buffer.pgWriteCString(field.name)
                    buffer.writeMultipleIntegers(
                        field.tableOID,
                        field.columnAttributeNumber,
                        field.dataTypeOID,
                        field.dataTypeSize,
                        field.typeModifier,
                        field.format.rawValue,
                        endianness: .big
                    )
                }
            }
        case .dataRow(let row):
            buffer.pgWriteMessage(id: ID.dataRow) { buffer in
                buffer.writeInteger(Int16(row.columnCount))
                buffer.writeImmutableBuffer(row.bytes)
            }
        case .commandComplete(let tag):
            buffer.pgWriteMessage(id: ID.commandComplete) { $0.pgWriteCString(tag) }
        case .emptyQueryResponse:
            buffer.writeMultipleIntegers(ID.emptyQueryResponse, Int32(4), endianness: .big)
        case .errorResponse(let fields):
            buffer.pgWriteMessage(id: ID.errorResponse) { $0.pgWriteFields(fields) }
        case .noticeResponse(let fields):
            buffer.pgWriteMessage(id: ID.noticeResponse) { $0.pgWriteFields(fields) }
        case .parseComplete:
            buffer.writeMultipleIntegers(ID.parseComplete, Int32(4), endianness: .big)
        case .bindComplete:
            buffer.writeMultipleIntegers(ID.bindComplete, Int32(4), endianness: .big)
        case .closeComplete:
            buffer.writeMultipleIntegers(ID.closeComplete, Int32(4), endianness: .big)
        case .noData:
            buffer.writeMultipleIntegers(ID.noData, Int32(4), endianness: .big)
        case .parameterDescription(let types):
            buffer.pgWriteMessage(id: ID.parameterDescription) { buffer in
                buffer.writeInteger(Int16(types.count))
                for type in types {
                    buffer.writeInteger(type)
                }
            }
        case .portalSuspended:
            buffer.writeMultipleIntegers(ID.portalSuspended, Int32(4), endianness: .big)
        case .copyInResponse(let response):
            buffer.pgWriteMessage(id: ID.copyInResponse) { $0.pgWriteCopyResponse(response) }
        case .copyOutResponse(let response):
            buffer.pgWriteMessage(id: ID.copyOutResponse) { $0.pgWriteCopyResponse(response) }
        case .copyBothResponse(let response):
            buffer.pgWriteMessage(id: ID.copyBothResponse) { $0.pgWriteCopyResponse(response) }
        case .copyData(let data):
            buffer.pgWriteMessage(id: ID.copyData) { $0.writeImmutableBuffer(data) }
        case .copyDone:
            buffer.writeMultipleIntegers(ID.copyDone, Int32(4), endianness: .big)
        case .notificationResponse(let processID, let channel, let payload):
            buffer.pgWriteMessage(id: ID.notificationResponse) { buffer in
                buffer.writeInteger(processID)
                buffer.pgWriteCString(channel)
                buffer.pgWriteCString(payload)
            }
        case .functionCallResponse(let value):
            buffer.pgWriteMessage(id: ID.functionCallResponse) { $0.pgWriteNullableValue(value) }
        case .negotiateProtocolVersion(let minor, let options):
            buffer.pgWriteMessage(id: ID.negotiateProtocolVersion) { buffer in
                buffer.writeMultipleIntegers(minor, Int32(options.count), endianness: .big)
                for option in options {
                    buffer.pgWriteCString(option)
                }
            }
        case .sslResponse(let supported):
            buffer.writeInteger(supported ? UInt8(ascii: "S") : UInt8(ascii: "N"))
        case .gssEncResponse(let supported):
            buffer.writeInteger(supported ? UInt8(ascii: "G") : UInt8(ascii: "N"))
        }
    }
}

extension ByteBuffer {
    mutating func pgWriteFields(_ fields: PostgresErrorFields) {
        for entry in fields.entries where entry.field.code != 0 {
            self.writeInteger(entry.field.code)
            self.pgWriteCString(entry.value)
        }
        self.writeInteger(UInt8(0))
    }

    mutating func pgWriteCopyResponse(_ response: PostgresBackendMessage.CopyResponse) {
        self.writeInteger(Int8(response.format.rawValue))
        self.pgWriteFormats(response.columnFormats)
    }
}
