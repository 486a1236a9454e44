import NIOCore

/// The one error type of `PostgresWire`.
///
/// It exists so that every failure on the wire, whether a client sent garbage, a server sent a message that does
/// not parse, or upstream authentication went wrong, carries a stable ``Code`` for logs and tests, a sentence a
/// person can act on, and the SQLSTATE to put in the `ErrorResponse` that ends the session
/// (see ``errorResponse(severity:)``). The message never contains message payloads or secrets.
public struct PostgresWireError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable, machine-readable identifier of what went wrong. Its `rawValue` never changes between releases.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String

        init(_ rawValue: String) {
            self.rawValue = rawValue
        }

        public var description: String { self.rawValue }

        /// A message's length field is below its own size (4) or otherwise impossible.
        public static let invalidLength = Code("invalid_length")
        /// A message's declared length is above the configured maximum for its type.
        public static let messageTooLarge = Code("message_too_large")
        /// A startup-phase packet is longer than ``PostgresMessageLimits/maximumStartupPacketSize``.
        public static let startupPacketTooLarge = Code("startup_packet_too_large")
        /// The message type byte is not one this direction of the protocol knows.
        public static let unknownMessageType = Code("unknown_message_type")
        /// The message body does not match its type's layout (missing terminator, bad count, trailing bytes...).
        public static let malformedMessage = Code("malformed_message")
        /// A startup packet asks for a protocol version this gateway does not speak.
        public static let unsupportedProtocolVersion = Code("unsupported_protocol_version")
        /// Bytes arrived where the protocol allows none (for example after a `CancelRequest`).
        public static let unexpectedData = Code("unexpected_data")
        /// The server answered the upstream login with a message that does not belong in the exchange.
        public static let unexpectedAuthenticationMessage = Code("unexpected_authentication_message")
        /// The server asked for an authentication method we do not implement or are not allowed to use.
        public static let unsupportedAuthenticationMethod = Code("unsupported_authentication_method")
        /// A SCRAM message from the server does not parse or violates RFC 5802 (nonce, salt, iterations...).
        public static let invalidSCRAMMessage = Code("invalid_scram_message")
        /// The server's SCRAM signature is wrong: it does not know the password, so it is not the real server.
        public static let serverSignatureMismatch = Code("server_signature_mismatch")
        /// The server reported success before proving it knows the password (SCRAM mutual authentication skipped).
        public static let authenticationIncomplete = Code("authentication_incomplete")
    }

    /// What went wrong, stable.
    public var code: Code
    /// What went wrong, for a person: names the message type and the rule it broke, never payload bytes.
    public var message: String
    /// The SQLSTATE to report to a PostgreSQL client, e.g. `08P01` (protocol_violation).
    public var sqlState: String

    public init(code: Code, message: String, sqlState: String) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
    }

    public var description: String { "PostgresWireError(\(self.code)): \(self.message)" }

    /// The `ErrorResponse` to send to a PostgreSQL client before closing the session because of this error.
    ///
    /// `severity` is `FATAL` by default because a wire error ends the session. Write it with
    /// ``PostgresBackendMessage/encode(into:)`` as `.errorResponse(error.errorResponse())`.
    public func errorResponse(severity: String = "FATAL") -> PostgresErrorFields {
        var fields = PostgresErrorFields()
        fields[.localizedSeverity] = severity
        fields[.severity] = severity
        fields[.sqlState] = self.sqlState
        fields[.message] = self.message
        return fields
    }
}

/// SQLSTATE codes used by this module (PostgreSQL Appendix A).
enum SQLState {
    static let protocolViolation = "08P01"
    static let programLimitExceeded = "54000"
    static let featureNotSupported = "0A000"
    static let connectionException = "08000"
    static let sqlserverRejectedEstablishment = "08004"
    static let invalidAuthorizationSpecification = "28000"
}

extension PostgresWireError {
    static func malformed(_ what: String, _ detail: String) -> Self {
        Self(
            code: .malformedMessage, message: "malformed \(what) message: \(detail)",
            sqlState: SQLState.protocolViolation)
    }

    static func invalidLength(_ what: String, length: Int) -> Self {
        Self(
            code: .invalidLength,
            message: "invalid length \(length) in \(what) message header",
            sqlState: SQLState.protocolViolation
        )
    }

    static func tooLarge(_ what: String, length: Int, maximum: Int) -> Self {
        Self(
            code: .messageTooLarge,
            message: "\(what) message of \(length) bytes exceeds the limit of \(maximum) bytes",
            sqlState: SQLState.programLimitExceeded
        )
    }

    static func unknownType(_ byte: UInt8, direction: String) -> Self {
        Self(
            code: .unknownMessageType,
            message: "unknown \(direction) message type \(PostgresWireError.describe(byte))",
            sqlState: SQLState.protocolViolation
        )
    }

    static func describe(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F {
            return "'\(Character(Unicode.Scalar(byte)))'"
        }
        return "0x" + String(byte, radix: 16)
    }

    static func auth(_ code: Code, _ message: String) -> Self {
        Self(code: code, message: message, sqlState: SQLState.sqlserverRejectedEstablishment)
    }
}
