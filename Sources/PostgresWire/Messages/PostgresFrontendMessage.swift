import NIOCore

/// Text or binary, the two encodings of a value on the wire (`Int16` format codes 0 and 1).
public enum PostgresFormat: Int16, Sendable, Hashable {
    case text = 0
    case binary = 1
}

/// A message a PostgreSQL client sends to a server (protocol 3.0, PostgreSQL docs "Message Formats").
///
/// It exists so the gateway can see what a client asks for (statements to classify, binds to record) and so it can
/// speak as a client upstream. Decode with ``PostgresFrontendMessageDecoder``, which also hands back each message's
/// original bytes for byte-exact forwarding; write with ``encode(into:)``.
public enum PostgresFrontendMessage: Sendable, Hashable {
    // MARK: Startup phase: untyped packets (Int32 length, Int32 code, body)

    /// `StartupMessage`: protocol version and the connection parameters (`user`, `database`, `options`...).
    case startup(Startup)
    /// `SSLRequest` (code 80877103): the client asks to switch to TLS; the answer is one byte, `S` or `N`.
    case sslRequest
    /// `GSSENCRequest` (code 80877104): the client asks for GSSAPI encryption; the answer is one byte, `G` or `N`.
    case gssEncRequest
    /// `CancelRequest` (code 80877102), sent on a new connection to cancel the query of another session.
    case cancelRequest(PostgresBackendKey)

    // MARK: Typed phase

    /// `Q`: a simple query; may hold several statements separated by `;`.
    case query(String)
    /// `P`: prepare a statement.
    case parse(Parse)
    /// `B`: bind parameters to a prepared statement, creating a portal.
    case bind(Bind)
    /// `D`: describe a prepared statement or a portal.
    case describe(PostgresDescribeTarget)
    /// `E`: run a portal; `maxRows` 0 means no limit.
    case execute(portal: String, maxRows: Int32)
    /// `C`: close a prepared statement or a portal.
    case close(PostgresDescribeTarget)
    /// `S`: end of an extended-query batch; the server answers `ReadyForQuery`.
    case sync
    /// `H`: ask the server to send what it has buffered.
    case flush
    /// `X`: the client is leaving.
    case terminate
    /// `d`: COPY data (in `COPY FROM STDIN`).
    case copyData(ByteBuffer)
    /// `c`: end of COPY data.
    case copyDone
    /// `f`: the client aborts COPY FROM STDIN with this message.
    case copyFail(message: String)
    /// `F`: the legacy fastpath function call.
    case functionCall(FunctionCall)
    /// `p`: a `PasswordMessage`, `SASLInitialResponse`, `SASLResponse` or `GSSResponse`.
    ///
    /// The four share one type byte and only the authentication exchange says which it is, so the body is kept raw;
    /// read it with ``AuthenticationResponse/password()``, ``AuthenticationResponse/saslInitialResponse()``.
    case authenticationResponse(AuthenticationResponse)

    /// The startup packet's protocol version, e.g. 3.0 (`0x0003_0000`).
    public struct ProtocolVersion: Hashable, Sendable, CustomStringConvertible {
        public var major: UInt16
        public var minor: UInt16

        public init(major: UInt16, minor: UInt16) {
            self.major = major
            self.minor = minor
        }

        /// Protocol 3.0, the version every PostgreSQL since 7.4 speaks.
        public static let v3_0 = ProtocolVersion(major: 3, minor: 0)

        public var description: String { "\(self.major).\(self.minor)" }
    }

    /// A `StartupMessage`.
    public struct Startup: Hashable, Sendable {
        /// One `name=value` pair. Names starting with `_pq_.` are protocol options.
        public struct Parameter: Hashable, Sendable {
            public var name: String
            public var value: String

            public init(name: String, value: String) {
                self.name = name
                self.value = value
            }
        }

        public var protocolVersion: ProtocolVersion
        /// The parameters in wire order.
        public var parameters: [Parameter]

        public init(protocolVersion: ProtocolVersion = .v3_0, parameters: [Parameter]) {
            self.protocolVersion = protocolVersion
            self.parameters = parameters
        }

        /// The value of the first parameter called `name`; setting replaces it in place, appends it, or removes it.
        public subscript(name: String) -> String? {
            get { self.parameters.first(where: { $0.name == name })?.value }
            set {
                if let newValue, let index = self.parameters.firstIndex(where: { $0.name == name }) {
                    self.parameters[index].value = newValue
                } else if let newValue {
                    self.parameters.append(Parameter(name: name, value: newValue))
                } else {
                    self.parameters.removeAll(where: { $0.name == name })
                }
            }
        }

        /// The `user` parameter (required by the server).
        public var user: String? { self["user"] }
        /// The `database` parameter (defaults to the user name on the server).
        public var database: String? { self["database"] }
    }

    /// A `Parse` message.
    public struct Parse: Hashable, Sendable {
        /// The prepared statement's name; empty is the unnamed statement.
        public var name: String
        public var query: String
        /// Parameter type OIDs the client fixes; 0 leaves a type to the server.
        public var parameterTypes: [UInt32]

        public init(name: String, query: String, parameterTypes: [UInt32] = []) {
            self.name = name
            self.query = query
            self.parameterTypes = parameterTypes
        }
    }

    /// A `Bind` message.
    public struct Bind: Hashable, Sendable {
        /// The portal to create; empty is the unnamed portal.
        public var portal: String
        public var statement: String
        /// Empty (all text), one (applies to all), or one per parameter.
        public var parameterFormats: [PostgresFormat]
        /// The parameter values; `nil` is SQL NULL.
        public var parameters: [ByteBuffer?]
        /// Empty (all text), one (applies to all), or one per result column.
        public var resultFormats: [PostgresFormat]

        public init(
            portal: String,
            statement: String,
            parameterFormats: [PostgresFormat] = [],
            parameters: [ByteBuffer?] = [],
            resultFormats: [PostgresFormat] = []
        ) {
            self.portal = portal
            self.statement = statement
            self.parameterFormats = parameterFormats
            self.parameters = parameters
            self.resultFormats = resultFormats
        }

        /// The format of parameter `index` by the one/all/each rule.
        public func parameterFormat(at index: Int) -> PostgresFormat {
            Self.format(self.parameterFormats, at: index)
        }

        /// The format of result column `index` by the one/all/each rule.
        public func resultFormat(at index: Int) -> PostgresFormat {
            Self.format(self.resultFormats, at: index)
        }

        static func format(_ formats: [PostgresFormat], at index: Int) -> PostgresFormat {
            switch formats.count {
            case 0: return .text
            case 1: return formats[0]
            default: return index < formats.count ? formats[index] : .text
            }
        }
    }

    /// A `FunctionCall` message.
    public struct FunctionCall: Hashable, Sendable {
        public var functionOID: UInt32
        public var argumentFormats: [PostgresFormat]
        /// The arguments; `nil` is SQL NULL.
        public var arguments: [ByteBuffer?]
        public var resultFormat: PostgresFormat

        public init(
            functionOID: UInt32,
            argumentFormats: [PostgresFormat] = [],
            arguments: [ByteBuffer?] = [],
            resultFormat: PostgresFormat = .text
        ) {
            self.functionOID = functionOID
            self.argumentFormats = argumentFormats
            self.arguments = arguments
            self.resultFormat = resultFormat
        }
    }

    /// The body of a `p` message, kept raw because its layout depends on the authentication exchange.
    ///
    /// Its `description` and mirror never show the bytes: they are a password, a hash or a SCRAM proof.
    public struct AuthenticationResponse: Hashable, Sendable, CustomStringConvertible, CustomReflectable {
        /// The body after the length field.
        public var bytes: ByteBuffer

        public init(bytes: ByteBuffer) {
            self.bytes = bytes
        }

        /// A `PasswordMessage` with a cleartext password or an `md5...` hash.
        public static func password(_ password: String) -> Self {
            var buffer = ByteBuffer()
            buffer.pgWriteCString(password)
            return Self(bytes: buffer)
        }

        /// A `SASLInitialResponse`: the chosen mechanism and the client-first-message (`nil` sends length -1).
        public static func saslInitialResponse(mechanism: String, data: ByteBuffer?) -> Self {
            var buffer = ByteBuffer()
            buffer.pgWriteCString(mechanism)
            buffer.pgWriteNullableValue(data)
            return Self(bytes: buffer)
        }

        /// A `SASLResponse` (or `GSSResponse`): the bytes are the whole body.
        public static func saslResponse(_ data: ByteBuffer) -> Self {
            Self(bytes: data)
        }

        /// Reads the body as a `PasswordMessage`.
        public func password() throws -> String {
            var body = self.bytes
            let password = try body.pgReadCString("PasswordMessage")
            try body.pgExpectEnd("PasswordMessage")
            return password
        }

        /// Reads the body as a `SASLInitialResponse`.
        public func saslInitialResponse() throws -> (mechanism: String, data: ByteBuffer?) {
            var body = self.bytes
            let mechanism = try body.pgReadCString("SASLInitialResponse")
            let data = try body.pgReadNullableValue("SASLInitialResponse")
            try body.pgExpectEnd("SASLInitialResponse")
            return (mechanism, data)
        }

        public var description: String { "AuthenticationResponse(\(self.bytes.readableBytes) bytes, redacted)" }

        public var customMirror: Mirror {
            Mirror(self, children: ["bytes": "\(self.bytes.readableBytes) bytes, redacted"])
        }
    }
}

/// What `Describe` and `Close` act on: a prepared statement (`S`) or a portal (`P`), by name.
public enum PostgresDescribeTarget: Hashable, Sendable {
    case statement(String)
    case portal(String)
}

/// A backend's process id and secret key: sent in `BackendKeyData`, presented back in `CancelRequest`.
///
/// The key is 4 bytes in protocol 3.0; protocol 3.2 (PostgreSQL 18) allows up to 256, so it is kept as bytes.
public struct PostgresBackendKey: Hashable, Sendable {
    public var processID: Int32
    public var secretKey: ByteBuffer

    public init(processID: Int32, secretKey: ByteBuffer) {
        self.processID = processID
        self.secretKey = secretKey
    }

    /// A protocol 3.0 key: a 32-bit secret.
    public init(processID: Int32, secretKey: UInt32) {
        var buffer = ByteBuffer()
        buffer.writeInteger(secretKey)
        self.init(processID: processID, secretKey: buffer)
    }

    /// The longest secret key protocol 3.2 allows.
    static let maximumSecretKeyLength = 256
}
