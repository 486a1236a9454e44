import Masking
import NIOCore
import Policy

/// One proxied PostgreSQL session, client and server side, as a pure state machine: the gateway feeds it every
/// decoded message from either side and executes the actions it returns.
///
/// It exists so the protocol logic of the gateway (startup, credential injection, policy per statement, evidence
/// before forwarding, masking of results, error recovery) can be tested with byte fixtures, without sockets, and so
/// the NIO handler stays a thin `decode → call → run(actions)` loop. It holds no channel, no clock and no logger.
///
/// Phases (``State``): waiting for the client's startup packet (answering `SSLRequest`/`GSSENCRequest`), waiting for
/// the client's TLS handshake, authenticating (the client's own exchange relayed, or our own with injected
/// credentials), then the operating phase (`SessionPipeline`), and closed.
///
/// ## The gateway's side
///
/// - Decode the client with `PostgresFrontendMessageDecoder` and the server with `PostgresBackendMessageDecoder`
///   (limits from the resource's `max_message_size`); feed each output to ``clientMessage(_:into:)`` or
///   ``serverMessage(_:into:)``; a decoder error goes to ``clientDecodingFailed(_:into:)`` or
///   ``serverDecodingFailed(_:into:)``; EOF to ``clientClosed(into:)`` or ``serverClosed(into:)``.
/// - Run the actions in order: see ``Action``. Writes may be coalesced and flushed at the end of a read batch.
/// - Evidence: every ``Action/recordStatement(_:)`` must be answered with ``recordCompleted(_:into:)`` once the
///   entry is durable (or ``recordFailed(_:into:)``); several may be outstanding, and the audit writer may commit
///   them together. Stamp the start on ``Action/statementStarted(_:)`` and the end on
///   ``Action/statementCompleted(_:)``.
/// - Backpressure: stop reading from the client while ``heldClientBytes`` is large, and from the server while
///   ``isAwaitingColumns``.
///
/// ## Decisions
///
/// - Column masks need a result column's source: `RowDescription` is resolved when it arrives (the injected
///   ``PostgresColumnResolver`` first, then ``Action/resolveColumns(_:)`` with server messages held until
///   ``columnsResolved(_:into:)``). An `Execute` whose rows nobody described gets a `Describe` of ours in front of it,
///   whose answer is not forwarded. A column that cannot be resolved is masked (fail closed).
/// - Value policy by type and format: see `ResultPlan`. Text-like values (also in binary) are rewritten; other
///   values a rule or detector hits become SQL NULL; binary non-text values are not scanned.
/// - `COPY ... TO STDOUT`: text and CSV fields are scanned by the detectors; a COPY that may read a column a rule
///   masks, and binary COPY, are refused when the session masks results (use `SELECT`).
/// - A statement matching an `approve:` rule is held (``Action/requestApproval(_:)``); the session waits for the
///   gateway's decision and stays consistent whatever it is. A fastpath `FunctionCall` is refused
///   when a block rule lists functions (it names its function by OID only). Replication connections are refused
///   when results are masked.
/// - A statement with a backslash is judged under both values of `standard_conforming_strings`.
/// - A failed evidence write ends the session with FATAL 58030: the statement is never forwarded unrecorded.
/// - Messages the server would skip (after an error, until `Sync`) are dropped, not forwarded and not recorded.
///
/// Hot path: call the `into:` variants with one action array per connection (`removeAll(keepingCapacity: true)`
/// between calls); untouched messages are forwarded as their original `frame`, and only rewritten rows, errors and
/// COPY data are re-encoded.
public struct PostgresSessionStateMachine: Sendable {
    public typealias ClientMessage = PostgresFramedMessage<PostgresFrontendMessage>
    public typealias ServerMessage = PostgresFramedMessage<PostgresBackendMessage>

    /// What the gateway does, in the order given. Only ``sendToClient(_:)`` and ``sendToServer(_:)`` move protocol
    /// bytes; the machine never expects the gateway to build a message itself.
    public enum Action: Sendable {
        /// Write these bytes to the client (a message's original frame, or one the machine encoded).
        case sendToClient(ByteBuffer)
        /// Write these bytes to the upstream server.
        case sendToServer(ByteBuffer)
        /// `S` was sent for `SSLRequest`: add the TLS server handler (the appliance's certificate) to the client
        /// channel, then call ``clientTLSEstablished()``. Only with ``PostgresSessionConfiguration/clientTLS`` `.offer`.
        case startClientTLS
        /// Open the upstream connection (upstream TLS per the resource), then write `startupMessage` on it.
        case connectUpstream(startupMessage: ByteBuffer)
        /// The connection is a `CancelRequest` for the backend with this key. Decide (same identity as the session
        /// that owns the key?), record it, forward it on a new upstream connection if allowed, and close this one.
        /// A ``close`` follows.
        case cancelRequested(PostgresBackendKey)
        /// The server accepted the session (first `ReadyForQuery`): register the backend key for cancel routing.
        indirect case sessionEstablished(PostgresSessionInfo)
        /// Append this entry to the evidence log, durably, then call ``recordCompleted(_:)`` with its id (or
        /// ``recordFailed(_:)``). The statement and every client message after it wait until then; other entries
        /// may be recorded meanwhile (they are released in order).
        indirect case recordStatement(StatementEvidence)
        /// Append this entry of a blocked statement; nothing waits for it (the statement is never forwarded).
        indirect case recordBlockedStatement(StatementEvidence)
        /// The statement's frames are being forwarded now: stamp its start time.
        case statementStarted(StatementID)
        /// The statement ended: stamp its end time and complete its entry.
        indirect case statementCompleted(StatementOutcome)
        /// Look up these columns in the catalog (`pg_attribute` joined to `pg_class` and `pg_namespace` on the
        /// side connection), then call ``columnsResolved(_:)``. Server messages wait meanwhile.
        case resolveColumns([PostgresColumnID])
        /// Describe this query (`Parse` and `Describe` on the side connection): it has the columns of a
        /// `COPY ... TO STDOUT` whose fields column rules may cover. Call ``copyDescribed(_:fields:)``; server
        /// messages wait meanwhile.
        case describeCopy(String)
        /// An `approve:` rule holds this statement: it is recorded (decision `approve`) and queued, and nothing the
        /// client sends after it is judged or forwarded until the gateway answers. Ask the approvers (or use an open
        /// grant window), then call ``approvalPending(_:notice:into:)`` if it must wait, and eventually
        /// ``approvalGranted(_:into:)`` or ``approvalRefused(_:error:outcome:into:)``.
        indirect case requestApproval(PostgresApprovalHold)
        /// Write this `ErrorResponse` to the client, then close both connections.
        indirect case closeWithError(PostgresErrorFields)
        /// Close both connections (after the client's `Terminate`, a cancel, or the server's refusal).
        case close
    }

    /// How the login is done while ``State/authenticating(_:_:)``.
    enum Authentication: Sendable {
        /// The client's own authentication is relayed both ways until `AuthenticationOk`.
        case passThrough
        /// We log in with the injected credentials; the client waits for our `AuthenticationOk`.
        case injected(UpstreamAuthenticator)
    }

    enum State: Sendable {
        /// Before the client's `StartupMessage`; `tls` once the client's TLS handshake finished.
        case awaitingStartup(tls: Bool)
        /// `S` was sent: the next thing on the connection is the TLS handshake.
        case awaitingClientTLS
        case authenticating(Authentication, SessionPipeline)
        case active(SessionPipeline)
        case closed
        /// Never observed: a placeholder while a state's payload is mutated in place.
        case modifying
    }

    private let policy: SessionPolicy
    private let credentials: PostgresInjectedCredentials?
    private let clientTLS: ClientTLSMode
    private var state: State {
        didSet {
            // Only a tag check: binding the payload would copy the whole pipeline.
            if case .active = self.state {
            } else {
                self.activeHeldClientBytes = 0
                self.activeAwaitingColumns = false
            }
        }
    }
    /// The active pipeline's backpressure observers, kept beside it: the gateway asks on every read, and
    /// reading them through `state` would copy the pipeline (and retain all it holds) each time.
    private var activeHeldClientBytes = 0
    private var activeAwaitingColumns = false

    /// Puts `pipeline` back as the active state (or closes) and refreshes the observers.
    private mutating func store(_ pipeline: SessionPipeline) {
        if pipeline.isClosed {
            self.state = .closed
            return
        }
        self.activeHeldClientBytes = pipeline.heldClientBytes
        self.activeAwaitingColumns = !pipeline.awaitingColumns.isEmpty || pipeline.awaitingCopyDescription != nil
        self.state = .active(pipeline)
    }

    public init(configuration: PostgresSessionConfiguration) {
        self.policy = SessionPolicy(configuration)
        self.credentials = configuration.credentials
        self.clientTLS = configuration.clientTLS
        self.state = .awaitingStartup(tls: false)
    }

    /// With a prepared authenticator (a fixed SCRAM nonce), for tests.
    init(configuration: PostgresSessionConfiguration, authenticator: UpstreamAuthenticator) {
        self.init(configuration: configuration)
        self.testAuthenticator = authenticator
    }

    private var testAuthenticator: UpstreamAuthenticator?

    // MARK: Observers

    /// Whether the session is over: feed nothing more.
    public var isClosed: Bool {
        if case .closed = self.state { return true }
        return false
    }

    /// Bytes of client messages held until their evidence is durable. Stop reading from the client while this is
    /// large (backpressure); it shrinks when ``recordCompleted(_:)`` releases them.
    public var heldClientBytes: Int { self.activeHeldClientBytes }

    /// Whether server messages are held until ``columnsResolved(_:)``: stop reading from the server meanwhile.
    public var isAwaitingColumns: Bool { self.activeAwaitingColumns }

    /// The session's `ParameterStatus` values so far.
    public var serverParameters: [String: String] {
        switch self.state {
        case .active(let pipeline), .authenticating(_, let pipeline): return pipeline.parameters
        case .awaitingStartup, .awaitingClientTLS, .closed, .modifying: return [:]
        }
    }

    /// The backend's key (from `BackendKeyData`), for cancel routing.
    public var backendKey: PostgresBackendKey? {
        if case .active(let pipeline) = self.state { return pipeline.backendKey }
        return nil
    }

    // MARK: Inputs

    /// A message from the client.
    public mutating func clientMessage(_ message: ClientMessage, into actions: inout [Action]) {
        switch self.state {
        case .awaitingStartup(let tls):
            self.startupPacket(message, tls: tls, into: &actions)
        case .awaitingClientTLS:
            self.fail(
                PostgresWireError(
                    code: .unexpectedData, message: "received \(message.message.name) before the TLS handshake",
                    sqlState: SQLState.protocolViolation),
                into: &actions)
        case .authenticating(let authentication, let pipeline):
            self.state = .modifying
            self.clientMessageWhileAuthenticating(message, authentication, pipeline, into: &actions)
        case .active(let pipeline):
            self.state = .modifying
            pipeline.clientMessage(message, into: &actions)
            self.store(pipeline)
        case .closed:
            return
        case .modifying:
            preconditionFailure("PostgresSessionStateMachine re-entered")
        }
    }

    /// A message from the server.
    public mutating func serverMessage(_ message: ServerMessage, into actions: inout [Action]) {
        switch self.state {
        case .awaitingStartup, .awaitingClientTLS:
            self.serverViolation("\(message.message.name) before the session started", into: &actions)
        case .authenticating(let authentication, let pipeline):
            self.state = .modifying
            self.serverMessageWhileAuthenticating(message, authentication, pipeline, into: &actions)
        case .active(let pipeline):
            self.state = .modifying
            pipeline.serverMessage(message, into: &actions)
            self.store(pipeline)
        case .closed:
            return
        case .modifying:
            preconditionFailure("PostgresSessionStateMachine re-entered")
        }
    }

    /// The evidence entry `id` (from ``Action/recordStatement(_:)``) is durable: forward what waited for it.
    public mutating func recordCompleted(_ id: StatementID, into actions: inout [Action]) {
        guard case .active(let pipeline) = self.state else { return }
        self.state = .modifying
        pipeline.recordCompleted(id, into: &actions)
        self.store(pipeline)
    }

    /// The evidence log could not record `id`. The statement must not run unrecorded: the session ends with a
    /// FATAL error (SQLSTATE 58030, io_error) and nothing that waited for the record is forwarded.
    public mutating func recordFailed(_ id: StatementID, into actions: inout [Action]) {
        guard case .active(let pipeline) = self.state, pipeline.isAwaitingRecord(id) else { return }
        self.state = .modifying
        var fields = PostgresErrorFields()
        fields[.localizedSeverity] = "FATAL"
        fields[.severity] = "FATAL"
        fields[.sqlState] = "58030"
        fields[.message] = "interlock could not record the statement in its evidence log, so it was not run"
        pipeline.close(with: fields, into: &actions)
        self.state = .closed
    }

    /// The gateway's answer to ``Action/resolveColumns(_:)``. A column left out, or `.unresolvable`, is masked as
    /// if a column rule covered it (fail closed).
    public mutating func columnsResolved(
        _ resolutions: [PostgresColumnID: PostgresColumnResolution], into actions: inout [Action]
    ) {
        guard case .active(let pipeline) = self.state else { return }
        self.state = .modifying
        pipeline.columnsResolved(resolutions, into: &actions)
        self.store(pipeline)
    }

    /// The gateway's answer to ``Action/describeCopy(_:)``: the query's `RowDescription` fields, or `nil` when it
    /// could not be described (then every field of the COPY is masked as unresolved, fail closed).
    public mutating func copyDescribed(
        _ query: String, fields: [PostgresBackendMessage.Field]?, into actions: inout [Action]
    ) {
        guard case .active(let pipeline) = self.state else { return }
        self.state = .modifying
        pipeline.copyDescribed(query, fields: fields, into: &actions)
        self.store(pipeline)
    }

    /// The held statement `id` waits for approvers: the client gets `notice` (a `NoticeResponse`) now, or right
    /// after the answers the server still owes it.
    public mutating func approvalPending(_ id: StatementID, notice: PostgresErrorFields, into actions: inout [Action]) {
        guard case .active(let pipeline) = self.state else { return }
        self.state = .modifying
        pipeline.approvalPending(id, notice: notice, into: &actions)
        self.store(pipeline)
    }

    /// The held statement `id` may run: it is forwarded once its evidence is durable, and the client's later
    /// messages are judged in order.
    public mutating func approvalGranted(_ id: StatementID, into actions: inout [Action]) {
        guard case .active(let pipeline) = self.state else { return }
        self.state = .modifying
        pipeline.approvalGranted(id, into: &actions)
        self.store(pipeline)
    }

    /// The held statement `id` will not run (`outcome`: `denied`, `timed_out`, `withdrawn`, `cancelled`, for
    /// `statement.end`): the client gets `error` in its place and the session goes on, consistent in a
    /// transaction and in the extended protocol.
    public mutating func approvalRefused(
        _ id: StatementID, error: PostgresErrorFields, outcome: String, into actions: inout [Action]
    ) {
        guard case .active(let pipeline) = self.state else { return }
        self.state = .modifying
        pipeline.approvalRefused(id, error: error, outcome: outcome, into: &actions)
        self.store(pipeline)
    }

    /// The client's TLS handshake finished (after ``Action/startClientTLS``): the startup packet comes next.
    public mutating func clientTLSEstablished(into actions: inout [Action]) {
        guard case .awaitingClientTLS = self.state else { return }
        self.state = .awaitingStartup(tls: true)
    }

    /// The client's bytes did not decode (malformed or oversized message): the session ends with the error.
    public mutating func clientDecodingFailed(_ error: PostgresWireError, into actions: inout [Action]) {
        self.fail(error, into: &actions)
    }

    /// The server's bytes did not decode: the client gets FATAL 08P01 and the session ends.
    public mutating func serverDecodingFailed(_ error: PostgresWireError, into actions: inout [Action]) {
        self.serverViolation("message: \(error.message)", into: &actions)
    }

    /// The client closed its connection: close the upstream; statements in flight end as `connectionClosed`.
    public mutating func clientClosed(into actions: inout [Action]) {
        self.connectionLost(into: &actions)
    }

    /// The server closed its connection: close the client's; statements in flight end as `connectionClosed`.
    public mutating func serverClosed(into actions: inout [Action]) {
        self.connectionLost(into: &actions)
    }

    // MARK: Array-returning conveniences

    /// ``clientMessage(_:into:)`` returning a new array.
    public mutating func clientMessage(_ message: ClientMessage) -> [Action] {
        var actions: [Action] = []
        self.clientMessage(message, into: &actions)
        return actions
    }

    /// ``serverMessage(_:into:)`` returning a new array.
    public mutating func serverMessage(_ message: ServerMessage) -> [Action] {
        var actions: [Action] = []
        self.serverMessage(message, into: &actions)
        return actions
    }

    /// ``recordCompleted(_:into:)`` returning a new array.
    public mutating func recordCompleted(_ id: StatementID) -> [Action] {
        var actions: [Action] = []
        self.recordCompleted(id, into: &actions)
        return actions
    }

    /// ``recordFailed(_:into:)`` returning a new array.
    public mutating func recordFailed(_ id: StatementID) -> [Action] {
        var actions: [Action] = []
        self.recordFailed(id, into: &actions)
        return actions
    }

    /// ``columnsResolved(_:into:)`` returning a new array.
    public mutating func columnsResolved(_ resolutions: [PostgresColumnID: PostgresColumnResolution]) -> [Action] {
        var actions: [Action] = []
        self.columnsResolved(resolutions, into: &actions)
        return actions
    }

    /// ``copyDescribed(_:fields:into:)`` returning a new array.
    public mutating func copyDescribed(_ query: String, fields: [PostgresBackendMessage.Field]?) -> [Action] {
        var actions: [Action] = []
        self.copyDescribed(query, fields: fields, into: &actions)
        return actions
    }

    /// ``clientTLSEstablished(into:)`` returning a new array.
    public mutating func clientTLSEstablished() -> [Action] {
        var actions: [Action] = []
        self.clientTLSEstablished(into: &actions)
        return actions
    }

    /// ``clientDecodingFailed(_:into:)`` returning a new array.
    public mutating func clientDecodingFailed(_ error: PostgresWireError) -> [Action] {
        var actions: [Action] = []
        self.clientDecodingFailed(error, into: &actions)
        return actions
    }

    /// ``serverDecodingFailed(_:into:)`` returning a new array.
    public mutating func serverDecodingFailed(_ error: PostgresWireError) -> [Action] {
        var actions: [Action] = []
        self.serverDecodingFailed(error, into: &actions)
        return actions
    }

    /// ``clientClosed(into:)`` returning a new array.
    public mutating func clientClosed() -> [Action] {
        var actions: [Action] = []
        self.clientClosed(into: &actions)
        return actions
    }

    /// ``serverClosed(into:)`` returning a new array.
    public mutating func serverClosed() -> [Action] {
        var actions: [Action] = []
        self.serverClosed(into: &actions)
        return actions
    }

    // MARK: Startup

    private mutating func startupPacket(_ framed: ClientMessage, tls: Bool, into actions: inout [Action]) {
        switch framed.message {
        case .sslRequest:
            switch (self.clientTLS, tls) {
            case (.offer, false):
                actions.append(.sendToClient(Self.singleByte(UInt8(ascii: "S"))))
                actions.append(.startClientTLS)
                self.state = .awaitingClientTLS
            case (.disable, _), (.offer, true):
                actions.append(.sendToClient(Self.singleByte(UInt8(ascii: "N"))))
            }
        case .gssEncRequest:
            actions.append(.sendToClient(Self.singleByte(UInt8(ascii: "N"))))
        case .cancelRequest(let key):
            actions.append(.cancelRequested(key))
            actions.append(.close)
            self.state = .closed
        case .startup(let startup):
            self.startup(startup, frame: framed.frame, into: &actions)
        case .query, .parse, .bind, .describe, .execute, .close, .sync, .flush, .terminate, .copyData, .copyDone,
            .copyFail, .functionCall, .authenticationResponse:
            self.fail(
                PostgresWireError(
                    code: .unexpectedData, message: "expected a startup packet, received \(framed.message.name)",
                    sqlState: SQLState.protocolViolation),
                into: &actions)
        }
    }

    private mutating func startup(
        _ startup: PostgresFrontendMessage.Startup, frame: ByteBuffer, into actions: inout [Action]
    ) {
        if self.policy.masksResults, let replication = startup["replication"],
            !["false", "off", "no", "0"].contains(replication.lowercased())
        {
            // Replication streams carry row data in formats we do not mask: refuse rather than leak.
            var fields = PostgresErrorFields()
            fields[.localizedSeverity] = "FATAL"
            fields[.severity] = "FATAL"
            fields[.sqlState] = "42501"
            fields[.message] = "replication connections are not allowed on a resource whose results are masked"
            actions.append(.closeWithError(fields))
            self.state = .closed
            return
        }
        let pipeline = SessionPipeline(policy: self.policy)
        pipeline.database = startup.database ?? startup.user
        guard let credentials = self.credentials else {
            pipeline.upstreamUser = startup.user
            actions.append(.connectUpstream(startupMessage: frame))
            self.state = .authenticating(.passThrough, pipeline)
            return
        }
        // Our own StartupMessage: the configured user, everything else as the client asked. Without a database the
        // server would use the user name, which is ours now: keep the client's default instead.
        var upstream = startup
        if upstream.database == nil, let user = startup.user {
            upstream["database"] = user
        }
        upstream["user"] = credentials.user
        pipeline.upstreamUser = credentials.user
        var buffer = ByteBuffer()
        PostgresFrontendMessage.startup(upstream).encode(into: &buffer)
        actions.append(.connectUpstream(startupMessage: buffer))
        let authenticator =
            self.testAuthenticator
            ?? UpstreamAuthenticator(
                user: credentials.user, password: credentials.password, allowedMethods: credentials.allowedMethods,
                scramKeys: credentials.scramKeys)
        self.state = .authenticating(.injected(authenticator), pipeline)
    }

    private mutating func clientMessageWhileAuthenticating(
        _ framed: ClientMessage, _ authentication: Authentication, _ pipeline: SessionPipeline,
        into actions: inout [Action]
    ) {
        switch (framed.message, authentication) {
        case (.authenticationResponse, .passThrough):
            actions.append(.sendToServer(framed.frame))
            self.state = .authenticating(authentication, pipeline)
        case (.terminate, _):
            actions.append(.close)
            self.state = .closed
        case (.authenticationResponse, .injected):
            // We never asked the client for a password; whatever it sends is not forwarded.
            self.fail(
                PostgresWireError(
                    code: .unexpectedData, message: "unexpected password message: this session needs no password",
                    sqlState: SQLState.protocolViolation),
                into: &actions)
        case (.startup, _), (.sslRequest, _), (.gssEncRequest, _), (.cancelRequest, _), (.query, _), (.parse, _),
            (.bind, _), (.describe, _), (.execute, _), (.close, _), (.sync, _), (.flush, _), (.copyData, _),
            (.copyDone, _), (.copyFail, _), (.functionCall, _):
            self.fail(
                PostgresWireError(
                    code: .unexpectedData, message: "unexpected \(framed.message.name) during authentication",
                    sqlState: SQLState.protocolViolation),
                into: &actions)
        }
    }

    private mutating func serverMessageWhileAuthenticating(
        _ framed: ServerMessage, _ authentication: Authentication, _ pipeline: SessionPipeline,
        into actions: inout [Action]
    ) {
        switch authentication {
        case .passThrough:
            switch framed.message {
            case .authentication(.ok):
                actions.append(.sendToClient(framed.frame))
                self.store(pipeline)
            case .authentication(.sasl(let mechanisms)):
                // Channel binding would bind the client to our TLS and the server to its own: it cannot pass through.
                let usable = mechanisms.filter { $0 != "SCRAM-SHA-256-PLUS" }
                if usable.count == mechanisms.count {
                    actions.append(.sendToClient(framed.frame))
                } else {
                    var buffer = ByteBuffer()
                    PostgresBackendMessage.authentication(.sasl(mechanisms: usable)).encode(into: &buffer)
                    actions.append(.sendToClient(buffer))
                }
                self.state = .authenticating(authentication, pipeline)
            case .authentication, .noticeResponse, .negotiateProtocolVersion:
                actions.append(.sendToClient(framed.frame))
                self.state = .authenticating(authentication, pipeline)
            case .errorResponse:
                actions.append(.sendToClient(framed.frame))
                actions.append(.close)
                self.state = .closed
            default:
                self.serverViolation("\(framed.message.name) during authentication", into: &actions)
            }
        case .injected(var authenticator):
            switch authenticator.messageReceived(framed.message) {
            case .send(let message):
                var buffer = ByteBuffer()
                message.encode(into: &buffer)
                actions.append(.sendToServer(buffer))
                self.state = .authenticating(.injected(authenticator), pipeline)
            case .wait:
                switch framed.message {
                case .noticeResponse, .negotiateProtocolVersion:
                    actions.append(.sendToClient(framed.frame))
                default:
                    break
                }
                self.state = .authenticating(.injected(authenticator), pipeline)
            case .authenticated:
                var buffer = ByteBuffer()
                PostgresBackendMessage.authentication(.ok).encode(into: &buffer)
                actions.append(.sendToClient(buffer))
                pipeline.scramKeys = authenticator.scramKeys
                self.store(pipeline)
            case .failed(.rejected(let fields)):
                actions.append(.closeWithError(fields))
                self.state = .closed
            case .failed(.error(let error)):
                var fields = error.errorResponse()
                fields[.message] = "interlock could not log in to the database server: \(error.message)"
                actions.append(.closeWithError(fields))
                self.state = .closed
            }
        }
    }

    // MARK: Ending

    private mutating func fail(_ error: PostgresWireError, into actions: inout [Action]) {
        switch self.state {
        case .active(let pipeline), .authenticating(_, let pipeline):
            self.state = .modifying
            pipeline.close(with: error.errorResponse(), into: &actions)
        case .awaitingStartup, .awaitingClientTLS, .modifying:
            actions.append(.closeWithError(error.errorResponse()))
        case .closed:
            return
        }
        self.state = .closed
    }

    private mutating func serverViolation(_ what: String, into actions: inout [Action]) {
        self.fail(
            PostgresWireError(
                code: .unexpectedData, message: "the database server sent an unexpected \(what)",
                sqlState: SQLState.protocolViolation),
            into: &actions)
    }

    private mutating func connectionLost(into actions: inout [Action]) {
        switch self.state {
        case .active(let pipeline), .authenticating(_, let pipeline):
            self.state = .modifying
            pipeline.completeOutstanding(.connectionClosed, into: &actions)
        case .awaitingStartup, .awaitingClientTLS, .modifying:
            break
        case .closed:
            return
        }
        actions.append(.close)
        self.state = .closed
    }

    private static func singleByte(_ byte: UInt8) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(byte)
        return buffer
    }
}
