import NIOCore

/// Logs in to a PostgreSQL server as a client with a configured user and password: the credential injection of a
/// resource that carries upstream credentials.
///
/// It exists so the password stays in the appliance: the gateway sends its own `StartupMessage` upstream, feeds
/// every message the server sends until authentication ends to ``messageReceived(_:)``, writes what it is told to
/// send, and on ``Action/authenticated`` answers the client itself. A pure state machine: no I/O, no clock, no log.
///
/// It speaks SCRAM-SHA-256 (verifying the server's signature), MD5 and cleartext, as the server asks and as
/// ``allowedMethods`` permits. Its description and mirror never show the password.
public struct UpstreamAuthenticator: Sendable, CustomStringConvertible, CustomReflectable {
    /// How the server may authenticate us. Restricting this is like libpq's `require_auth`.
    public enum Method: Hashable, Sendable, CaseIterable {
        /// The server accepts without asking for a password (`trust`, `peer`...).
        case none
        case cleartextPassword
        case md5
        case scramSHA256
    }

    /// What the gateway does next.
    public enum Action: Sendable, Hashable {
        /// Send this message to the server, then keep feeding messages.
        case send(PostgresFrontendMessage)
        /// Nothing to send; feed the next message.
        case wait
        /// `AuthenticationOk` arrived (after the server proved itself, for SCRAM). What follows (`ParameterStatus`,
        /// `BackendKeyData`, `ReadyForQuery`) belongs to the session.
        case authenticated
        /// The login failed; close the upstream connection and tell the client.
        case failed(Failure)
    }

    /// Why the login failed.
    public enum Failure: Error, Sendable, Hashable {
        /// The server refused with this `ErrorResponse` (wrong password: SQLSTATE 28P01). Pass it to the client as is.
        case rejected(PostgresErrorFields)
        /// We refused or could not go on: unsupported or disallowed method, bad SCRAM data, wrong server signature.
        case error(PostgresWireError)
    }

    private enum State: Sendable {
        case started
        case passwordSent
        case scramFirstSent(SCRAMSHA256Client)
        case scramFinalSent(SCRAMSHA256Client)
        case scramVerified
        case authenticated
        case failed
    }

    private let user: String
    private let password: String
    public let allowedMethods: Set<Method>
    private var state: State
    private var scram: SCRAMSHA256Client?
    /// The SCRAM keys of the last exchange, to hand to the next authenticator for the same password.
    public private(set) var scramKeys: SCRAMSHA256Client.Keys?

    /// - Parameters:
    ///   - user: the user name of the `StartupMessage` (MD5 salts with it).
    ///   - scramKeys: ``scramKeys`` of an earlier login with the same password, to skip PBKDF2 when salt and
    ///     iteration count still match.
    public init(
        user: String,
        password: String,
        allowedMethods: Set<Method> = Set(Method.allCases),
        scramKeys: SCRAMSHA256Client.Keys? = nil
    ) {
        self.init(user: user, password: password, allowedMethods: allowedMethods, scram: nil, scramKeys: scramKeys)
    }

    /// With a prepared SCRAM client (fixed nonce), for tests.
    init(
        user: String,
        password: String,
        allowedMethods: Set<Method> = Set(Method.allCases),
        scram: SCRAMSHA256Client?,
        scramKeys: SCRAMSHA256Client.Keys? = nil
    ) {
        self.user = user
        self.password = password
        self.allowedMethods = allowedMethods
        self.scram = scram
        self.scramKeys = scramKeys
        self.state = .started
    }

    public var description: String { "UpstreamAuthenticator(user: \(self.user), password: redacted)" }
    public var customMirror: Mirror { Mirror(self, children: ["user": self.user]) }

    /// Feeds one message from the server, received after the `StartupMessage`.
    ///
    /// `NoticeResponse` and `NegotiateProtocolVersion` give ``Action/wait``: they are not authentication's business
    /// and the session decides what to do with them. An `ErrorResponse` fails the login with ``Failure/rejected(_:)``.
    public mutating func messageReceived(_ message: PostgresBackendMessage) -> Action {
        switch message {
        case .authentication(let request):
            return self.authenticationReceived(request)
        case .errorResponse(let fields):
            self.state = .failed
            return .failed(.rejected(fields))
        case .noticeResponse, .negotiateProtocolVersion:
            return .wait
        case .parameterStatus, .backendKeyData, .readyForQuery, .rowDescription, .dataRow, .commandComplete,
            .emptyQueryResponse, .parseComplete, .bindComplete, .closeComplete, .noData, .parameterDescription,
            .portalSuspended, .copyInResponse, .copyOutResponse, .copyBothResponse, .copyData, .copyDone,
            .notificationResponse, .functionCallResponse, .sslResponse, .gssEncResponse:
            return self.fail(.unexpectedAuthenticationMessage, "server sent \(message.name) during authentication")
        }
    }

    private mutating func authenticationReceived(_ request: PostgresBackendMessage.Authentication) -> Action {
        switch (self.state, request) {
        case (.started, .ok):
            guard self.allowedMethods.contains(.none) else {
                return self.fail(.unsupportedAuthenticationMethod, "server accepted the login without a password")
            }
            self.state = .authenticated
            return .authenticated
        case (.passwordSent, .ok), (.scramVerified, .ok):
            self.state = .authenticated
            return .authenticated
        case (.scramFirstSent, .ok), (.scramFinalSent, .ok):
            self.state = .failed
            return .failed(
                .error(
                    PostgresWireError(
                        code: .authenticationIncomplete,
                        message: "server reported success before completing SCRAM authentication",
                        sqlState: SQLState.invalidAuthorizationSpecification
                    )
                )
            )

        case (.started, .cleartextPassword):
            guard self.allowedMethods.contains(.cleartextPassword) else {
                return self.fail(.unsupportedAuthenticationMethod, "server asks for a cleartext password, not allowed")
            }
            self.state = .passwordSent
            return .send(.authenticationResponse(.password(self.password)))
        case (.started, .md5Password(let salt)):
            guard self.allowedMethods.contains(.md5) else {
                return self.fail(.unsupportedAuthenticationMethod, "server asks for an MD5 password, not allowed")
            }
            self.state = .passwordSent
            let response = PostgresMD5Password.response(user: self.user, password: self.password, salt: salt)
            return .send(.authenticationResponse(.password(response)))
        case (.started, .sasl(let mechanisms)):
            guard mechanisms.contains(SCRAMSHA256Client.mechanism), self.allowedMethods.contains(.scramSHA256) else {
                return self.fail(
                    .unsupportedAuthenticationMethod,
                    "server offers SASL mechanisms [\(mechanisms.joined(separator: ", "))], none usable"
                )
            }
            var scram = self.scram ?? SCRAMSHA256Client(password: self.password, cachedKeys: self.scramKeys)
            self.scram = nil
            let first = scram.clientFirstMessage()
            self.state = .scramFirstSent(scram)
            return .send(
                .authenticationResponse(.saslInitialResponse(mechanism: SCRAMSHA256Client.mechanism, data: first))
            )
        case (.scramFirstSent(var scram), .saslContinue(let data)):
            do {
                let final = try scram.receiveServerFirstMessage(data)
                self.scramKeys = scram.keys
                self.state = .scramFinalSent(scram)
                return .send(.authenticationResponse(.saslResponse(final)))
            } catch {
                return self.fail(error)
            }
        case (.scramFinalSent(var scram), .saslFinal(let data)):
            do {
                try scram.receiveServerFinalMessage(data)
                self.state = .scramVerified
                return .wait
            } catch {
                return self.fail(error)
            }

        case (.started, .kerberosV5), (.started, .gss), (.started, .sspi), (.started, .gssContinue):
            return self.fail(.unsupportedAuthenticationMethod, "server asks for \(Self.name(request)), not supported")
        case (.started, .saslContinue), (.started, .saslFinal),
            (.passwordSent, _), (.scramFirstSent, _), (.scramFinalSent, _), (.scramVerified, _),
            (.authenticated, _), (.failed, _):
            return self.fail(.unexpectedAuthenticationMessage, "unexpected \(Self.name(request)) from server")
        }
    }

    private mutating func fail(_ code: PostgresWireError.Code, _ message: String) -> Action {
        self.fail(PostgresWireError.auth(code, message))
    }

    private mutating func fail(_ error: any Error) -> Action {
        self.state = .failed
        let wireError =
            error as? PostgresWireError
            ?? PostgresWireError.auth(.invalidSCRAMMessage, "SCRAM computation failed")
        return .failed(.error(wireError))
    }

    private static func name(_ request: PostgresBackendMessage.Authentication) -> String {
        switch request {
        case .ok: return "AuthenticationOk"
        case .kerberosV5: return "AuthenticationKerberosV5"
        case .cleartextPassword: return "AuthenticationCleartextPassword"
        case .md5Password: return "AuthenticationMD5Password"
        case .gss: return "AuthenticationGSS"
        case .gssContinue: return "AuthenticationGSSContinue"
        case .sspi: return "AuthenticationSSPI"
        case .sasl: return "AuthenticationSASL"
        case .saslContinue: return "AuthenticationSASLContinue"
        case .saslFinal: return "AuthenticationSASLFinal"
        }
    }
}
