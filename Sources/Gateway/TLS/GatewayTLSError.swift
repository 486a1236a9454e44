/// Why TLS could not be set up, on either leg, in words an operator can act on.
///
/// `code` is stable (logs and evidence may carry it); `message` names the file, address or mode
/// involved and, where there is one, the command that fixes it.
public struct GatewayTLSError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// A CA certificate, CA key or `ca_file` cannot be opened or read.
        case fileUnreadable = "tls.file_unreadable"
        /// A file was read but is not what it should be (not PEM, not a CA, not a P-256 / RSA key...).
        case fileInvalid = "tls.file_invalid"
        /// The CA key can be read by other users than the daemon's.
        case keyExposed = "tls.key_exposed"
        /// The CA key is not the key of the CA certificate.
        case keyMismatch = "tls.key_mismatch"
        /// The CA certificate is not valid now.
        case caExpired = "tls.ca_expired"
        /// Building a certificate or a TLS context failed.
        case issueFailed = "tls.issue_failed"
        /// The upstream server declined TLS where the resource requires it.
        case upstreamRefused = "tls.upstream_refused"
        /// The upstream server broke the SSLRequest exchange (unexpected answer, early bytes, close,
        /// no answer in time).
        case upstreamProtocol = "tls.upstream_protocol"
        /// The TLS handshake with the upstream server failed (its certificate did not verify, say).
        case upstreamHandshake = "tls.upstream_handshake"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
