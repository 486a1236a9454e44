import Approvals
import Audit
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Policy
import PostgresWire
import Synchronization

/// The I/O half of one PostgreSQL session: it decodes both sides, feeds
/// `PostgresSessionStateMachine`, and runs the actions it returns (write, connect, record, resolve
/// columns, close). Every protocol decision is the machine's; this class only moves bytes, talks to
/// the evidence log and the catalog, and keeps the two channels' backpressure honest.
///
/// Both channels live on one event loop, and so does this object: nothing in it is locked.
/// `PostgresSideHandler` (one per channel) feeds it.
final class PostgresProxy {
    typealias Machine = PostgresSessionStateMachine

    /// Stop reading from the client while this many bytes of its messages wait for their evidence.
    static let heldClientBytesLimit = 4 << 20

    let gateway: Gateway
    let session: ProxySession
    let resource: Resource
    let eventLoop: any EventLoop
    private let subject: AuditSubject
    private let settings: DaemonSettings
    private let limits: PostgresMessageLimits
    private let injected: Bool
    private let catalog: PostgresCatalogView?
    /// Signs the certificate this session shows its client, when the resource offers TLS.
    private let applianceCA: ApplianceCA?
    /// How the upstream leg does TLS (or why it cannot: a policy error caught at load, kept for safety).
    private let upstreamTLS: Result<UpstreamTLS, GatewayTLSError>
    /// The original destination as a socket address (the server, its catalog and cancel connections).
    private let upstreamAddress: Result<SocketAddress, any Error>
    private var clientTLS = false
    /// Where this resource's SCRAM keys are cached (injected credentials only).
    private let scramCacheKey: String?
    private var upstreamTLSNegotiated = false
    private var machine: Machine
    private var actions: [Machine.Action] = []
    private var spareActions: [Machine.Action] = []
    private var clientDecoder: NIOSingleStepByteToMessageProcessor<PostgresFrontendMessageDecoder>
    private var serverDecoder: NIOSingleStepByteToMessageProcessor<PostgresBackendMessageDecoder>

    fileprivate var client: ChannelHandlerContext?
    fileprivate var server: ChannelHandlerContext?
    private enum Upstream {
        case none
        case connecting(queued: [ByteBuffer])
        case connected
        case closed
    }
    private var upstream: Upstream = .none
    private var clientOpen = true
    private var serverOpen = false
    private var clientNeedsFlush = false
    private var serverNeedsFlush = false
    private var pendingClientRead = false
    private var pendingServerRead = false
    private var closing = false
    private var cancelKey: PostgresBackendKey?
    /// Start times of statements being forwarded, for `statement.end`'s duration.
    private var started: [StatementID: NIODeadline] = [:]
    /// Statements whose completion changes the catalog's names (ALTER ... RENAME), to drop the cache.
    private var alteringStatements: Set<StatementID> = []
    private var idle: IdleWatch?
    /// HMAC keys of approval webhooks, by rule (from the policy this session started under).
    private let webhookSecrets: [String: [UInt8]]
    /// The session's recording (`audit.recording: full`), fed every frame the client sends and gets.
    private let recorder: SessionRecorder?

    /// The statement held for approval: the machine's id for it, its statements, and the request once
    /// the approval center made one; `cancelled` when a cancel came before that.
    private struct Held {
        var id: StatementID
        var statements: [StatementID]
        var request: String?
        var cancelled = false
    }
    private var held: Held? {
        didSet { holding.set(held != nil) }
    }
    /// Whether a statement is held, readable from other sessions' threads (a cancel from another
    /// connection must not reach the server when all it should stop is a held statement).
    private let holding = HoldFlag()
    /// Statements released by an approval or a grant window, with the request or grant that released
    /// them, for `approval.executed`.
    private var released: [StatementID: String] = [:]

    init(gateway: Gateway, session: ProxySession, resource: Resource, policy: ActivePolicy, eventLoop: any EventLoop) {
        self.gateway = gateway
        self.session = session
        self.resource = resource
        self.eventLoop = eventLoop
        self.settings = policy.config.daemon
        self.webhookSecrets = policy.webhookSecrets
        self.subject = AuditSubject(
            user: session.identity.user ?? "uid:\(session.identity.uid)", resource: resource.name, session: session.id)
        let size = policy.config.maxMessageSize(for: resource)
        self.limits = PostgresMessageLimits(maximumMessageSize: size)
        var credentials = policy.postgresCredentials[resource.name]
        self.scramCacheKey = policy.scramCacheKeys[resource.name]
        if let key = scramCacheKey, let keys = gateway.scramKeys.lookup(key) {
            credentials?.scramKeys = keys
        }
        self.injected = credentials != nil
        let upstreamAddress = Result { try session.destination.socketAddress }
        self.upstreamAddress = upstreamAddress
        let upstream = try? upstreamAddress.get()
        let upstreamTLS = Result { () throws(GatewayTLSError) in try policy.upstreamTLS.settings(for: resource) }
        self.upstreamTLS = upstreamTLS
        let catalog = credentials.flatMap { c in
            upstream.map {
                gateway.catalog.view(
                    resource: resource.name, upstream: $0, tls: (try? upstreamTLS.get()) ?? .disabled, credentials: c)
            }
        }
        let offersTLS = resource.tls.client == .offer && policy.applianceCA != nil
        self.applianceCA = offersTLS ? policy.applianceCA : nil
        self.catalog = catalog
        let configuration = PostgresSessionConfiguration(
            rules: policy.rules.rules(for: session.identity, resource: resource.name),
            masker: policy.masker,
            credentials: credentials,
            clientTLS: offersTLS ? .offer : .disable,
            statementText: policy.config.audit.statementText == .redacted ? .redactLiterals : .full,
            columnResolver: catalog ?? InMemoryColumnResolver())
        self.machine = Machine(configuration: configuration)
        self.recorder =
            policy.config.recording(for: resource) == .full
            ? SessionRecorder(
                log: gateway.runtime.audit, subject: subject, session: session, protocol: "postgres",
                limit: policy.config.audit.recordingLimit, eventLoop: eventLoop)
            : nil
        self.clientDecoder = NIOSingleStepByteToMessageProcessor(
            PostgresFrontendMessageDecoder(limits: limits), maximumBufferSize: size + 16)
        self.serverDecoder = NIOSingleStepByteToMessageProcessor(
            PostgresBackendMessageDecoder(limits: limits), maximumBufferSize: size + 16)
    }

    // MARK: client side

    fileprivate func clientAdded(_ context: ChannelHandlerContext) {
        client = context
        let timeout = TimeAmount.nanoseconds(settings.idleTimeout.nanosecondsClamped)
        idle = IdleWatch(timeout: timeout, on: context.eventLoop) { [weak self] in
            guard let self else { return nil }
            return self.session.bytesUp &+ self.session.bytesDown
        } waiting: { [weak self] in
            self?.held != nil
        } expired: { [weak self] in
            guard let self else { return }
            self.session.noteReason(.idleTimeout)
            self.session.logger.info("idle timeout")
            self.closeBoth()
        }
    }

    fileprivate func clientRead(_ buffer: ByteBuffer) {
        session.bytesUp &+= UInt64(buffer.readableBytes)
        do {
            try clientDecoder.process(buffer: buffer) { message in
                if let recorder = self.recorder { PostgresRecording.fromClient(message, into: recorder) }
                self.machine.clientMessage(message, into: &self.actions)
                self.run()
            }
        } catch let error as PostgresWireError {
            session.logger.info("client protocol error", metadata: ["error": "\(error.message)"])
            session.noteReason(.error)
            session.detail = "client: \(error.message)"
            machine.clientDecodingFailed(error, into: &actions)
            run()
        } catch {
            machine.clientDecodingFailed(
                PostgresWireError(code: .malformedMessage, message: "\(error)", sqlState: "08P01"),
                into: &actions)
            run()
        }
    }

    fileprivate func clientReadComplete() {
        flush()
    }

    fileprivate func clientInactive() {
        guard clientOpen else { return }
        clientOpen = false
        idle?.cancel()
        session.noteReason(.clientClosed)
        machine.clientClosed(into: &actions)
        run()
        closeServer()
        endIfDone()
    }

    fileprivate func clientWantsRead(_ context: ChannelHandlerContext) {
        if machine.heldClientBytes > Self.heldClientBytesLimit || !(serverWritable) {
            pendingClientRead = true
        } else {
            context.read()
        }
    }

    fileprivate func clientWritabilityChanged() {
        resumeReads()
    }

    // MARK: server side

    fileprivate func serverRead(_ buffer: ByteBuffer) {
        session.bytesDown &+= UInt64(buffer.readableBytes)
        do {
            try serverDecoder.process(buffer: buffer) { message in
                self.machine.serverMessage(message, into: &self.actions)
                self.run()
            }
        } catch let error as PostgresWireError {
            session.logger.info("server protocol error", metadata: ["error": "\(error.message)"])
            session.noteReason(.error)
            session.detail = "server: \(error.message)"
            machine.serverDecodingFailed(error, into: &actions)
            run()
        } catch {
            machine.serverDecodingFailed(
                PostgresWireError(code: .malformedMessage, message: "\(error)", sqlState: "08P01"),
                into: &actions)
            run()
        }
    }

    fileprivate func serverReadComplete() {
        flush()
    }

    fileprivate func serverInactive() {
        guard serverOpen else { return }
        serverOpen = false
        upstream = .closed
        session.noteReason(.upstreamClosed)
        machine.serverClosed(into: &actions)
        run()
        closeClient()
        endIfDone()
    }

    fileprivate func serverWantsRead(_ context: ChannelHandlerContext) {
        if machine.isAwaitingColumns || !(client?.channel.isWritable ?? false) {
            pendingServerRead = true
        } else {
            context.read()
        }
    }

    fileprivate func serverWritabilityChanged() {
        resumeReads()
    }

    private var serverWritable: Bool {
        switch upstream {
        case .connected: server?.channel.isWritable ?? false
        case .none, .connecting, .closed: true
        }
    }

    private func resumeReads() {
        if pendingClientRead, machine.heldClientBytes <= Self.heldClientBytesLimit, serverWritable {
            pendingClientRead = false
            client?.read()
        }
        if pendingServerRead, !machine.isAwaitingColumns, client?.channel.isWritable ?? false {
            pendingServerRead = false
            server?.read()
        }
    }

    // MARK: running the machine's actions

    /// Runs what the machine asked for. Actions of a nested call (a close that makes a channel inactive
    /// at once) run in their own batch; the machine never expects more than their order within one.
    private func run() {
        guard !actions.isEmpty else { return }
        var batch = spareActions
        spareActions = []
        swap(&batch, &actions)
        for action in batch {
            execute(action)
        }
        batch.removeAll(keepingCapacity: true)
        if spareActions.isEmpty { spareActions = batch }
    }

    private func execute(_ action: Machine.Action) {
        switch action {
        case .sendToClient(let bytes):
            guard let client, clientOpen else { return }
            if let recorder { PostgresRecording.toClient(bytes, into: recorder) }
            client.write(NIOAny(bytes), promise: nil)
            clientNeedsFlush = true
        case .sendToServer(let bytes):
            sendToServer(bytes)
        case .startClientTLS:
            startClientTLS()
        case .connectUpstream(let startup):
            connectUpstream(startup: startup)
        case .cancelRequested(let key):
            cancel(key)
        case .sessionEstablished(let info):
            established(info)
        case .recordStatement(let evidence):
            record(evidence)
        case .recordBlockedStatement(let evidence):
            session.logger.info(
                "statement blocked", metadata: ["statement": "\(evidence.id)", "kinds": "\(evidence.kinds)"])
            gateway.runtime.audit.append(PostgresEvidence.statement(evidence, subject: subject)) {
                [logger = session.logger] result in
                if case .failure(let error) = result {
                    logger.critical("could not record a blocked statement", metadata: ["error": "\(error)"])
                }
            }
        case .statementStarted(let id):
            started[id] = .now()
        case .statementCompleted(let outcome):
            completed(outcome)
        case .requestApproval(let hold):
            requestApproval(hold)
        case .resolveColumns(let columns):
            resolve(columns)
        case .describeCopy(let query):
            describeCopy(query)
        case .closeWithError(let fields):
            closeWithError(fields)
        case .close:
            closeBoth()
        }
    }

    private func sendToServer(_ bytes: ByteBuffer) {
        switch upstream {
        case .connected:
            server?.write(NIOAny(bytes), promise: nil)
            serverNeedsFlush = true
        case .connecting(var queued):
            queued.append(bytes)
            upstream = .connecting(queued: queued)
        case .none, .closed:
            return
        }
    }

    private func flush() {
        if clientNeedsFlush {
            clientNeedsFlush = false
            client?.flush()
        }
        if serverNeedsFlush {
            serverNeedsFlush = false
            server?.flush()
        }
        resumeReads()
    }

    // MARK: client TLS

    /// `S` was written: the next bytes are the client's TLS handshake. The TLS handler goes first in the
    /// client pipeline; the decoder behind it sees the decrypted startup packet.
    private func startClientTLS() {
        guard let client, let ca = applianceCA else {
            closeBoth()
            return
        }
        // The `S` must leave in plain text before the TLS handler exists (it would hold the flush back).
        clientNeedsFlush = false
        client.flush()
        do {
            let context = try ca.serverContext(target: resource.target, destination: session.destination.address)
            try client.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context), position: .first)
        } catch {
            session.logger.error("cannot offer TLS to the client", metadata: ["error": "\(error)"])
            session.noteReason(.error)
            session.detail = "client TLS: \(error)"
            closeBoth()
        }
    }

    fileprivate func clientTLSEstablished() {
        clientTLS = true
        machine.clientTLSEstablished(into: &actions)
        run()
    }

    // MARK: evidence

    private func record(_ evidence: StatementEvidence) {
        if evidence.kinds.contains(where: { $0.hasPrefix("ALTER") }) {
            alteringStatements.insert(evidence.id)
        }
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        let id = evidence.id
        gateway.runtime.audit.append(PostgresEvidence.statement(evidence, subject: subject)) {
            [eventLoop] result in
            eventLoop.execute {
                let this = bound.value
                switch result {
                case .success:
                    this.machine.recordCompleted(id, into: &this.actions)
                case .failure(let error):
                    this.session.logger.critical(
                        "evidence store failed; refusing the statement", metadata: ["error": "\(error)"])
                    this.session.noteReason(.auditFailed)
                    this.machine.recordFailed(id, into: &this.actions)
                }
                this.run()
                this.flush()
            }
        }
    }

    private func completed(_ outcome: StatementOutcome) {
        if let by = released.removeValue(forKey: outcome.id) {
            let (result, sqlState) = PostgresEvidence.resultName(outcome.result)
            gateway.approvals.executed(
                releasedBy: by, subject: subject, statement: outcome.id.rawValue, result: result, sqlState: sqlState)
        }
        let duration = started.removeValue(forKey: outcome.id).map { (NIODeadline.now() - $0).nanoseconds / 1000 }
        if alteringStatements.remove(outcome.id) != nil, case .completed = outcome.result {
            catalog?.invalidate()
        }
        gateway.runtime.audit.append(
            PostgresEvidence.statementEnd(outcome, subject: subject, durationMicroseconds: duration), deferred: true
        ) { [logger = session.logger] result in
            if case .failure(let error) = result {
                logger.critical("could not record a statement's end", metadata: ["error": "\(error)"])
            }
        }
    }

    private func established(_ info: PostgresSessionInfo) {
        if let keys = info.scramKeys, let key = scramCacheKey {
            gateway.scramKeys.store(keys, for: key)
        }
        if let key = info.backendKey, let address = try? upstreamAddress.get() {
            cancelKey = key
            gateway.cancels.register(
                key,
                CancelRegistry.Target(
                    session: session.id, uid: session.identity.uid, resource: resource.name, upstream: address,
                    interrupt: { [eventLoop, bound = NIOLoopBound(self, eventLoop: eventLoop)] in
                        eventLoop.execute { bound.value.cancelWhileHeld() }
                    },
                    isHolding: { [holding] in holding.value }))
        }
        catalog?.use(database: info.database ?? info.upstreamUser ?? "")
        session.logger.debug("postgres session established", metadata: ["database": "\(info.database ?? "")"])
        gateway.runtime.audit.append(
            kind: "postgres.login", subject: subject,
            fields: PostgresEvidence.login(
                info, session: session.id, injected: injected, clientTLS: clientTLS,
                upstreamTLS: upstreamTLSNegotiated),
            deferred: true
        ) { [logger = session.logger] result in
            if case .failure(let error) = result {
                logger.critical("could not record the login", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: cancel

    /// A `CancelRequest` names a backend by its key. It is forwarded only when the session that owns
    /// the key belongs to the same account, on the same resource; either way it is recorded first.
    private func cancel(_ key: PostgresBackendKey) {
        let target = gateway.cancels.lookup(key)
        var fields: [String: AuditValue] = [
            "session": .string(session.id),
            "backend_pid": .int(Int64(key.processID)),
        ]
        let decision: String
        let reason: String
        if let target {
            fields["target_session"] = .string(target.session)
            if target.uid != session.identity.uid {
                (decision, reason) = ("deny", "the session belongs to another account")
            } else if target.resource != resource.name {
                (decision, reason) = ("deny", "the session is on another resource")
            } else {
                (decision, reason) = ("allow", "same account and resource")
            }
        } else {
            (decision, reason) = ("deny", "no live session has this backend key")
        }
        // A cancel for a held statement withdraws it; the server is running nothing of it, and a
        // forwarded cancel would stop whatever the client sends next instead.
        let forward = decision == "allow" && target?.isHolding() != true
        fields["decision"] = .string(decision)
        fields["reason"] = .string(reason)
        if decision == "allow" { fields["forwarded"] = .bool(forward) }
        session.logger.info("cancel request", metadata: ["decision": "\(decision)", "reason": "\(reason)"])
        let gateway = self.gateway
        let eventLoop = self.eventLoop
        let logger = session.logger
        let frame = PostgresFrontendMessage.cancelRequest(key)
        gateway.runtime.audit.append(kind: "postgres.cancel", subject: subject, fields: fields) { result in
            guard case .success = result else {
                logger.critical("could not record a cancel request; not forwarded")
                return
            }
            guard decision == "allow", let target else { return }
            target.interrupt()
            guard forward else { return }
            eventLoop.execute {
                gateway.connectUpstream(to: target.upstream, on: eventLoop).whenComplete { result in
                    guard case .success(let channel) = result else {
                        logger.info("could not forward a cancel request: the server is unreachable")
                        return
                    }
                    var buffer = channel.allocator.buffer(capacity: 16)
                    frame.encode(into: &buffer)
                    channel.writeAndFlush(buffer).whenComplete { _ in channel.close(promise: nil) }
                }
            }
        }
    }

    // MARK: approvals

    /// An `approve:` rule holds a statement: ask the approval center (an open grant window lets it
    /// through at once), tell the client it waits, and run or fail it on the verdict.
    private func requestApproval(_ hold: PostgresApprovalHold) {
        held = Held(id: hold.id, statements: hold.statements)
        let statement = HeldStatement(
            text: hold.exactText,
            parameters: hold.parameters.map { p in
                switch p {
                case .null: .null
                case .text(let bytes): .text(bytes)
                case .binary(let bytes): .binary(bytes)
                }
            })
        let request = ApprovalCenter.HoldRequest(
            requester: session.identity, resource: resource.name, session: session.id,
            statementNumber: hold.id.rawValue,
            rule: hold.rule, statement: statement, displayText: Self.approverText(hold),
            displayParameters: hold.displayParameters, webhookSecret: webhookSecrets[hold.rule.rule])
        session.logger.info(
            "statement held for approval", metadata: ["statement": "\(hold.id)", "rule": "\(hold.rule.rule)"])
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        let eventLoop = self.eventLoop
        let id = hold.id
        gateway.approvals.hold(
            request,
            deliver: { verdict in eventLoop.execute { bound.value.verdict(verdict, for: id) } },
            completion: { result in
                eventLoop.execute {
                    let this = bound.value
                    this.holdStarted(result, hold: hold)
                    this.run()
                    this.flush()
                }
            })
    }

    /// The statement as approvers read it, with its bound parameters (extended protocol) after it:
    /// `DELETE FROM t WHERE id = $1  [$1 = '17']`.
    static func approverText(_ hold: PostgresApprovalHold) -> String {
        guard !hold.displayParameters.isEmpty else { return hold.displayText }
        let values = hold.displayParameters.enumerated().map { index, value in
            "$\(index + 1) = " + (value.map { "'\($0.replacingOccurrences(of: "'", with: "''"))'" } ?? "NULL")
        }
        return hold.displayText + "  [" + values.joined(separator: ", ") + "]"
    }

    private func holdStarted(_ result: Result<ApprovalCenter.HoldOutcome, AuditError>, hold: PostgresApprovalHold) {
        guard var current = held, current.id == hold.id else {
            // The session ended first: nothing waits any more.
            if case .success(.held(let request)) = result {
                gateway.approvals.withdraw(request.id, reason: "client_closed")
            }
            return
        }
        switch result {
        case .success(.granted(let grant)):
            held = nil
            for statement in hold.statements { released[statement] = grant.id }
            session.logger.info("statement runs under grant window", metadata: ["grant": "\(grant.id)"])
            machine.approvalGranted(hold.id, into: &actions)
        case .success(.held(let request)):
            current.request = request.id
            held = current
            if current.cancelled || !clientOpen {
                cancelWhileHeld()
                return
            }
            machine.approvalPending(hold.id, notice: Self.waitNotice(request, spec: hold.rule.spec), into: &actions)
        case .failure(let error):
            held = nil
            session.logger.critical(
                "evidence store failed; refusing the held statement", metadata: ["error": "\(error)"])
            session.noteReason(.auditFailed)
            closeWithError(Self.unrecordedError)
        }
    }

    private func verdict(_ verdict: ApprovalCenter.Verdict, for id: StatementID) {
        guard let current = held, current.id == id else { return }
        held = nil
        switch verdict {
        case .approved(let request, let by):
            session.logger.info("held statement approved", metadata: ["request": "\(request)", "by": "\(by)"])
            for statement in current.statements { released[statement] = request }
            machine.approvalGranted(id, into: &actions)
        case .denied(let request, let by, let reason):
            var fields = Self.error(sqlState: "42501")
            fields[.message] = "interlock approval \(request) was denied by \(by): \(reason)"
            fields[.hint] = "The statement was not sent to the server."
            machine.approvalRefused(id, error: fields, outcome: "denied", into: &actions)
        case .timedOut(let request, let timeout):
            var fields = Self.error(sqlState: "57014")
            fields[.message] =
                "interlock approval \(request) timed out: nobody approved the statement within \(Self.describe(timeout))"
            fields[.hint] = "The statement was not sent to the server. Run it again to ask again."
            machine.approvalRefused(id, error: fields, outcome: "timed_out", into: &actions)
        case .unrecorded:
            session.noteReason(.auditFailed)
            closeWithError(Self.unrecordedError)
            return
        }
        run()
        flush()
    }

    /// A cancel for this session arrived (from the same account, on the same resource): a held
    /// statement is withdrawn and fails as cancelled; otherwise the cancel goes to the server.
    fileprivate func cancelWhileHeld() {
        guard var current = held else { return }
        guard let request = current.request else {
            current.cancelled = true
            held = current
            return
        }
        held = nil
        gateway.approvals.withdraw(request, reason: "cancelled")
        var fields = Self.error(sqlState: "57014")
        fields[.message] = "canceling statement due to user request"
        fields[.detail] = "interlock withdrew approval request \(request)"
        machine.approvalRefused(current.id, error: fields, outcome: "cancelled", into: &actions)
        run()
        flush()
    }

    private func withdrawHeld(reason: String) {
        guard let current = held else { return }
        held = nil
        if let request = current.request {
            gateway.approvals.withdraw(request, reason: reason)
        }
    }

    private static func error(sqlState: String) -> PostgresErrorFields {
        var fields = PostgresErrorFields()
        fields[.localizedSeverity] = "ERROR"
        fields[.severity] = "ERROR"
        fields[.sqlState] = sqlState
        return fields
    }

    private static var unrecordedError: PostgresErrorFields {
        var fields = PostgresErrorFields()
        fields[.localizedSeverity] = "FATAL"
        fields[.severity] = "FATAL"
        fields[.sqlState] = "58030"
        fields[.message] = "interlock could not record the approval in its evidence log, so the statement was not run"
        return fields
    }

    /// The `NoticeResponse` a held statement's client gets: what waits, for whom, and the command.
    static func waitNotice(_ request: ApprovalRequest, spec: ApproveSpec) -> PostgresErrorFields {
        var fields = PostgresErrorFields()
        fields[.localizedSeverity] = "NOTICE"
        fields[.severity] = "NOTICE"
        fields[.sqlState] = "00000"
        fields[.message] =
            "interlock is holding this statement for approval: request \(request.id), rule \"\(request.rule)\""
        let needed = request.required == 1 ? "one approver" : "\(request.required) distinct approvers"
        fields[.detail] =
            "Approvers: \(request.approvers) (\(needed)). The statement fails if nobody decides within "
            + "\(describe(spec.timeout)) (by \(AuditLog.formatTime(request.deadline)))."
        fields[.hint] =
            "An approver runs: interlock approvals approve \(request.id)  (or: interlock approvals deny \(request.id) --reason TEXT)"
        return fields
    }

    static func describe(_ d: Duration) -> String {
        let s = d.components.seconds
        if s % 3600 == 0 && s >= 3600 { return "\(s / 3600)h" }
        if s % 60 == 0 && s >= 60 { return "\(s / 60)m" }
        return "\(s)s"
    }

    // MARK: catalog

    private func resolve(_ columns: [PostgresColumnID]) {
        guard let catalog else {
            // No side connection without credentials (the policy check prevents column rules here): fail closed.
            machine.columnsResolved([:], into: &actions)
            run()
            return
        }
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        catalog.resolve(columns, on: eventLoop).whenSuccess { resolutions in
            let this = bound.value
            this.machine.columnsResolved(resolutions, into: &this.actions)
            this.run()
            this.flush()
        }
    }

    private func describeCopy(_ query: String) {
        guard let catalog else {
            machine.copyDescribed(query, fields: nil, into: &actions)
            run()
            return
        }
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        catalog.describe(query, on: eventLoop).whenSuccess { fields in
            let this = bound.value
            this.machine.copyDescribed(query, fields: fields, into: &this.actions)
            this.run()
            this.flush()
        }
    }

    // MARK: upstream

    private func connectUpstream(startup: ByteBuffer) {
        guard case .none = upstream else { return }
        upstream = .connecting(queued: [startup])
        let target: SocketAddress
        do {
            target = try upstreamAddress.get()
        } catch {
            upstreamFailed(error)
            return
        }
        let tls: UpstreamTLS
        do {
            tls = try upstreamTLS.get()
        } catch {
            upstreamFailed(error)
            return
        }
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        PostgresUpstreamConnector.connect(
            to: target, on: eventLoop, socket: gateway.upstreamSocketSettings, tls: tls
        ).whenComplete { result in
            let this = bound.value
            switch result {
            case .failure(let error):
                this.upstreamFailed(error)
            case .success(let connection):
                let channel = connection.channel
                guard this.clientOpen, !this.closing else {
                    channel.close(promise: nil)
                    return
                }
                do {
                    try channel.pipeline.syncOperations.addHandler(PostgresSideHandler(.server, proxy: this))
                } catch {
                    channel.close(promise: nil)
                    this.upstreamFailed(error)
                    return
                }
                this.upstreamTLSNegotiated = connection.negotiatedTLS
                this.serverOpen = true
                guard case .connecting(let queued) = this.upstream else { return }
                this.upstream = .connected
                for bytes in queued {
                    this.server?.write(NIOAny(bytes), promise: nil)
                }
                this.serverNeedsFlush = true
                this.flush()
            }
        }
    }

    private func upstreamFailed(_ error: any Error) {
        upstream = .closed
        session.noteReason(.connectFailed)
        session.detail = "\(error)"
        session.logger.info("upstream connect failed", metadata: ["error": "\(error)"])
        var fields = PostgresErrorFields()
        fields[.localizedSeverity] = "FATAL"
        fields[.severity] = "FATAL"
        fields[.sqlState] = "08001"
        fields[.message] = "interlock could not connect to the database server for resource \(resource.name)"
        fields[.detail] = "\(error)"
        closeWithError(fields)
    }

    // MARK: ending

    private func closeWithError(_ fields: PostgresErrorFields) {
        guard let client, clientOpen, !closing else {
            closeBoth()
            return
        }
        closing = true
        var buffer = client.channel.allocator.buffer(capacity: 128)
        PostgresBackendMessage.errorResponse(fields).encode(into: &buffer)
        if let recorder { PostgresRecording.toClient(buffer, into: recorder) }
        let channel = client.channel
        client.writeAndFlush(NIOAny(buffer)).whenComplete { _ in
            channel.close(promise: nil)
        }
        closeServer()
    }

    private func closeBoth() {
        closing = true
        if clientNeedsFlush {
            clientNeedsFlush = false
            client?.flush()
        }
        closeClient()
        closeServer()
    }

    private func closeClient() {
        if clientOpen { client?.close(promise: nil) }
    }

    private func closeServer() {
        switch upstream {
        case .connected:
            server?.close(promise: nil)
        case .connecting:
            upstream = .closed
        case .none, .closed:
            break
        }
    }

    private func endIfDone() {
        withdrawHeld(reason: "client_closed")
        guard !clientOpen, !serverOpen else { return }
        if let key = cancelKey {
            gateway.cancels.unregister(key, session: session.id)
            cancelKey = nil
        }
        recorder?.finish()
        session.end()
    }

    fileprivate func shutdown() {
        session.noteReason(.shutdown)
        withdrawHeld(reason: "shutdown")
        var fields = PostgresErrorFields()
        fields[.localizedSeverity] = "FATAL"
        fields[.severity] = "FATAL"
        fields[.sqlState] = "57P01"
        fields[.message] = "terminating connection because interlock is shutting down"
        closeWithError(fields)
    }

    fileprivate func caught(_ error: any Error, side: String) {
        session.noteReason(.error)
        session.logger.debug("connection error", metadata: ["side": "\(side)", "error": "\(error)"])
        closeBoth()
    }

    fileprivate func serverAdded(_ context: ChannelHandlerContext) {
        server = context
    }
}

/// The handler of either channel of a PostgreSQL session: it feeds the proxy (the client side is
/// added by `AdmissionHandler`, the server side once the upstream connection exists).
final class PostgresSideHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Side { case client, server }

    let side: Side
    private var proxy: PostgresProxy?

    init(_ side: Side, proxy: PostgresProxy) {
        self.side = side
        self.proxy = proxy
    }

    func handlerAdded(context: ChannelHandlerContext) {
        switch side {
        case .client: proxy?.clientAdded(context)
        case .server: proxy?.serverAdded(context)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch side {
        case .client: proxy?.clientRead(unwrapInboundIn(data))
        case .server: proxy?.serverRead(unwrapInboundIn(data))
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        switch side {
        case .client: proxy?.clientReadComplete()
        case .server: proxy?.serverReadComplete()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        switch side {
        case .client: proxy?.clientInactive()
        case .server: proxy?.serverInactive()
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            // A PostgreSQL peer that stops sending is gone (Terminate or not): end the session.
            context.close(promise: nil)
        } else if side == .client, let e = event as? TLSUserEvent, case .handshakeCompleted = e {
            proxy?.clientTLSEstablished()
        } else if side == .client, event is GatewayShutdownEvent {
            proxy?.shutdown()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        proxy?.caught(error, side: side == .client ? "client" : "server")
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        switch side {
        case .client: proxy?.clientWritabilityChanged()
        case .server: proxy?.serverWritabilityChanged()
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        switch (side, proxy) {
        case (_, nil): context.read()
        case (.client, let proxy?): proxy.clientWantsRead(context)
        case (.server, let proxy?): proxy.serverWantsRead(context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        proxy = nil
    }
}

/// A flag one session sets and others read.
final class HoldFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var value: Bool { flag.load(ordering: .acquiring) }
    func set(_ v: Bool) { flag.store(v, ordering: .releasing) }
}
