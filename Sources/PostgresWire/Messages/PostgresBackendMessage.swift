import NIOCore

/// A message a PostgreSQL server sends to a client (protocol 3.0, PostgreSQL docs "Message Formats").
///
/// It exists so the gateway can follow the server's side of a session (results to mask, errors to rewrite, the end
/// of a query for the evidence), authenticate upstream as a client, and speak as a server to the client (synthetic
/// `AuthenticationOk`, `ErrorResponse`...). Decode with ``PostgresBackendMessageDecoder``, which also hands back each
/// message's original bytes for byte-exact forwarding; write with ``encode(into:)``.
public enum PostgresBackendMessage: Sendable, Hashable {
    /// `R`: a step of authentication.
    case authentication(Authentication)
    /// `S`: a run-time parameter's current value (`server_version`, `client_encoding`, `TimeZone`...).
    case parameterStatus(name: String, value: String)
    /// `K`: the key a client needs to cancel this session's queries.
    case backendKeyData(PostgresBackendKey)
    /// `Z`: the server is idle and waits for a query.
    case readyForQuery(TransactionStatus)
    /// `T`: the columns of the rows that follow.
    case rowDescription([Field])
    /// `D`: one row.
    case dataRow(DataRow)
    /// `C`: a statement finished; the tag is e.g. `SELECT 3`, `INSERT 0 1`, `UPDATE 2`.
    case commandComplete(tag: String)
    /// `I`: the query string was empty.
    case emptyQueryResponse
    /// `E`: an error; the statement (and, in the extended protocol, everything until `Sync`) is abandoned.
    case errorResponse(PostgresErrorFields)
    /// `N`: a notice (warning, info...).
    case noticeResponse(PostgresErrorFields)
    /// `1`
    case parseComplete
    /// `2`
    case bindComplete
    /// `3`
    case closeComplete
    /// `n`: the described statement or portal returns no rows.
    case noData
    /// `t`: the parameter type OIDs of a described statement.
    case parameterDescription([UInt32])
    /// `s`: `Execute` stopped at its row limit; the portal can be executed again.
    case portalSuspended
    /// `G`: the server is ready for `COPY FROM STDIN` data.
    case copyInResponse(CopyResponse)
    /// `H`: `COPY TO STDOUT` data follows.
    case copyOutResponse(CopyResponse)
    /// `W`: both directions carry COPY data (replication).
    case copyBothResponse(CopyResponse)
    /// `d`: COPY data.
    case copyData(ByteBuffer)
    /// `c`: end of COPY data.
    case copyDone
    /// `A`: a `NOTIFY` on a channel this session listens to.
    case notificationResponse(processID: Int32, channel: String, payload: String)
    /// `V`: the result of a `FunctionCall`; `nil` is SQL NULL.
    case functionCallResponse(ByteBuffer?)
    /// `v`: the server speaks an older minor version and did not recognize these `_pq_.` options.
    case negotiateProtocolVersion(newestMinorVersion: Int32, unrecognizedOptions: [String])
    /// The one-byte answer to `SSLRequest`: `S` (true, TLS follows) or `N` (false). Not a typed message.
    case sslResponse(Bool)
    /// The one-byte answer to `GSSENCRequest`: `G` (true) or `N` (false). Not a typed message.
    case gssEncResponse(Bool)

    /// The steps of `R` messages, by their `Int32` code.
    public enum Authentication: Sendable, Hashable {
        /// 0: authenticated.
        case ok
        /// 2
        case kerberosV5
        /// 3: send the password in clear.
        case cleartextPassword
        /// 5: send `md5` + md5(md5(password + user) + salt) as hex.
        case md5Password(salt: UInt32)
        /// 7
        case gss
        /// 8
        case gssContinue(ByteBuffer)
        /// 9
        case sspi
        /// 10: start SASL with one of these mechanisms (`SCRAM-SHA-256`, `SCRAM-SHA-256-PLUS`).
        case sasl(mechanisms: [String])
        /// 11: a SASL challenge (SCRAM server-first-message).
        case saslContinue(ByteBuffer)
        /// 12: SASL outcome data (SCRAM server-final-message).
        case saslFinal(ByteBuffer)
    }

    /// The `ReadyForQuery` status byte.
    public enum TransactionStatus: UInt8, Sendable, Hashable {
        /// `I`: not in a transaction block.
        case idle = 0x49
        /// `T`: in a transaction block.
        case inTransaction = 0x54
        /// `E`: in a failed transaction block; statements are refused until it ends.
        case failedTransaction = 0x45
    }

    /// One column of a `RowDescription`.
    public struct Field: Sendable, Hashable {
        public var name: String
        /// The OID of the source table, or 0 for a computed column.
        public var tableOID: UInt32
        /// The source column's attribute number, or 0 for a computed column.
        public var columnAttributeNumber: Int16
        public var dataTypeOID: UInt32
        /// `pg_type.typlen`; negative for variable width.
        public var dataTypeSize: Int16
        /// `pg_attribute.atttypmod`.
        public var typeModifier: Int32
        public var format: PostgresFormat

        public init(
            name: String,
            tableOID: UInt32,
            columnAttributeNumber: Int16,
            dataTypeOID: UInt32,
            dataTypeSize: Int16,
            typeModifier: Int32,
            format: PostgresFormat
        ) {
            self.name = name
            self.tableOID = tableOID
            self.columnAttributeNumber = columnAttributeNumber
            self.dataTypeOID = dataTypeOID
            self.dataTypeSize = dataTypeSize
            self.typeModifier = typeModifier
            self.format = format
        }
    }

    /// The body of `CopyInResponse`, `CopyOutResponse` and `CopyBothResponse`.
    public struct CopyResponse: Sendable, Hashable {
        /// Text (rows are lines) or binary (the `PGCOPY` format).
        public var format: PostgresFormat
        /// One per column; all text when `format` is text.
        public var columnFormats: [PostgresFormat]

        public init(format: PostgresFormat, columnFormats: [PostgresFormat]) {
            self.format = format
            self.columnFormats = columnFormats
        }
    }
}
