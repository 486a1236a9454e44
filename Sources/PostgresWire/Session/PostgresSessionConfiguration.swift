import Masking
import NIOCore
import Policy

/// Everything one proxied PostgreSQL session needs to know before its first byte: the rules that apply to the
/// session's identity on its resource, how to mask, whose credentials to log in with, and how to write evidence.
///
/// It exists so the gateway builds the session's policy view once, at accept time (identity and resource are known
/// then), and the state machine never looks anything up on the per-message path. It holds the upstream password when
/// credentials are injected; its description and mirror never show it.
public struct PostgresSessionConfiguration: Sendable, CustomStringConvertible, CustomReflectable {
    /// The rules of the session (`CompiledRules.rules(for:resource:)`).
    public var rules: ApplicableRules
    /// Applies mask methods (holds the appliance's HMAC key for `hash`).
    public var masker: Masker
    /// Upstream credentials the gateway injects; `nil` passes the client's own authentication through.
    public var credentials: PostgresInjectedCredentials?
    /// Whether an `SSLRequest` is answered `S` (the gateway then terminates TLS) or `N`.
    public var clientTLS: ClientTLSMode
    /// Whether evidence keeps statement text and parameter values or redacts literals.
    public var statementText: PostgresStatementTextMode
    /// Looks up the source column of a result column (catalog cache shared by the gateway's sessions).
    public var columnResolver: any PostgresColumnResolver
    /// Longest parameter value (in bytes) kept in evidence; longer values are cut and marked.
    public var maximumEvidenceParameterLength: Int

    public init(
        rules: ApplicableRules,
        masker: Masker,
        credentials: PostgresInjectedCredentials? = nil,
        clientTLS: ClientTLSMode = .disable,
        statementText: PostgresStatementTextMode = .full,
        columnResolver: any PostgresColumnResolver = InMemoryColumnResolver(),
        maximumEvidenceParameterLength: Int = 1024
    ) {
        self.rules = rules
        self.masker = masker
        self.credentials = credentials
        self.clientTLS = clientTLS
        self.statementText = statementText
        self.columnResolver = columnResolver
        self.maximumEvidenceParameterLength = maximumEvidenceParameterLength
    }

    public var description: String {
        "PostgresSessionConfiguration(rules: \(self.rules.blocks.count) blocks, \(self.rules.masks.count) masks, "
            + "credentials: \(self.credentials.map { $0.description } ?? "pass-through"), clientTLS: \(self.clientTLS))"
    }

    public var customMirror: Mirror { Mirror(self, children: ["description": self.description]) }
}

/// The role the gateway logs in as upstream when a resource carries credentials: the client may send any user name
/// and no password, and never sees this one.
///
/// Its description and mirror show the user, never the password.
public struct PostgresInjectedCredentials: Sendable, CustomStringConvertible, CustomReflectable {
    /// The upstream role name, sent in our own `StartupMessage`.
    public var user: String
    /// The password; empty when the server needs none (then allow ``UpstreamAuthenticator/Method/none``).
    public var password: String
    /// The methods the server may ask for (like libpq's `require_auth`).
    public var allowedMethods: Set<UpstreamAuthenticator.Method>
    /// SCRAM keys of an earlier login with the same password, to skip PBKDF2 when salt and iterations still match.
    public var scramKeys: SCRAMSHA256Client.Keys?

    public init(
        user: String,
        password: String,
        allowedMethods: Set<UpstreamAuthenticator.Method> = Set(UpstreamAuthenticator.Method.allCases),
        scramKeys: SCRAMSHA256Client.Keys? = nil
    ) {
        self.user = user
        self.password = password
        self.allowedMethods = allowedMethods
        self.scramKeys = scramKeys
    }

    public var description: String { "PostgresInjectedCredentials(user: \(self.user), password: redacted)" }
    public var customMirror: Mirror { Mirror(self, children: ["user": self.user]) }
}

/// How much of a statement the evidence keeps.
public enum PostgresStatementTextMode: Sendable, Hashable {
    /// The statement as the client sent it, and its parameter values (masked by the session's detectors).
    case full
    /// String and numeric constants replaced by `'?'` and `?` (`SQLParser.redactLiterals`), comments removed, and
    /// every parameter value recorded as `?`.
    case redactLiterals
}
