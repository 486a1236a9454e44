import Masking
import NIOCore
import Policy
import SQL

/// The operating phase of a session, from the server's `AuthenticationOk` to the end: everything the client sends
/// is judged and recorded, everything the server sends is matched to what it answers and masked.
///
/// Two queues keep the order right under pipelining:
/// - `outbound` (client → server): frames to forward, interleaved with gates, one per evidence entry that must be
///   durable before the frames after it leave. Messages behind a gate wait; everything is classified and recorded as
///   it arrives, so several records can be in flight and the audit writer may commit them together.
/// - `expectations` (server → client): one entry per forwarded message that the server answers, in the order the
///   server will answer, and synthetic answers (a blocked statement's error, the `ReadyForQuery` of a batch that
///   never reached the server) at their place. A synthetic answer is sent when everything before it is answered.
///
/// The client's and the server's views of prepared statements and portals are kept apart: the client's (updated as
/// messages arrive) gives evidence its statement text; the server's (updated as the server confirms) gives an
/// `Execute` the row description its rows are masked with.
///
/// A class, not a struct: the state machine's enum holds it, and taking a struct this size out of the
/// enum to mutate it retained and released everything it holds on every message. It is confined to
/// the one session (one event loop) that owns the machine, hence `@unchecked Sendable`.
final class SessionPipeline: @unchecked Sendable {
    typealias Action = PostgresSessionStateMachine.Action
    typealias ClientMessage = PostgresFramedMessage<PostgresFrontendMessage>
    typealias ServerMessage = PostgresFramedMessage<PostgresBackendMessage>
    typealias Field = PostgresBackendMessage.Field

    /// A prepared statement as the client defined it.
    struct ClientStatement: Sendable {
        var text: String
        var kinds: [String]
        /// A `COPY ... TO STDOUT` to describe before its rows are forwarded (column rules).
        var copyOut: CopyOutput? = nil
        /// The client sent `Describe` for it since its `Parse`: the server will describe its rows.
        var described = false
        /// The `approve:` rule its executions are held under, and the exact text an approval binds to.
        var approval: Applied<ApproveSpec>? = nil
        var exactText = ""
    }

    /// A portal as the client bound it.
    struct ClientPortal: Sendable {
        var statementName: String
        var statement: ClientStatement?
        var parameters: [String?]
        var parameterMasking: MaskStats
        var described = false
        /// The parameters as bound, kept only when the statement is held for approval (an approval binds to them).
        var heldParameters: [PostgresApprovalHold.Parameter]? = nil
    }

    /// What `Describe` said about a statement's or a portal's rows.
    enum Description: Sendable {
        case rows([Field])
        case noData
    }

    /// A portal as the server confirmed it (`BindComplete`).
    struct ServerPortal: Sendable {
        var statementName: String
        var resultFormats: [PostgresFormat]
        var description: Description?
    }

    /// Where the client is in `COPY FROM STDIN` (or `COPY BOTH`).
    enum CopyIn: Sendable, Equatable {
        case inactive
        /// The server sent `CopyInResponse`: `CopyData`, `CopyDone`, `CopyFail` are legal.
        case active
        /// The server ended the copy with an error; the client's remaining copy messages are dropped (the server
        /// would drop them too).
        case abandoned
    }

    enum Outbound: Sendable {
        case frame(ByteBuffer)
        /// Frames after this wait until the evidence entry is durable.
        case gate(StatementID, released: Bool)
        /// `Terminate`: forward, then close.
        case terminate(ByteBuffer)
        /// A statement held for approval: nothing after this leaves until the gateway decides.
        case approval(StatementID)
    }

    /// A statement's results as they stream.
    struct ResultProgress: Sendable {
        var plan: ResultPlan?
        /// Text `COPY TO STDOUT` data is being scanned.
        var copyOutMasking = false
        /// `COPY TO STDOUT` fields are masked by ``plan`` (the COPY's query was described).
        var copyLayout: CopyLayout?
        var rowsSent = 0
        var masking = MaskingCounts()

        mutating func finishPlan() {
            if let plan = self.plan {
                plan.fold(into: &self.masking)
                self.plan = nil
            }
        }
    }

    struct SimpleQueryProgress: Sendable {
        var ids: [StatementID]
        /// Per statement, its `COPY ... TO STDOUT` to describe (column rules), if it is one.
        var copyOuts: [CopyOutput?] = []
        var index = 0
        var result = ResultProgress()
    }

    struct ExecuteProgress: Sendable {
        var id: StatementID
        var portal: String
        var copyOut: CopyOutput? = nil
        var planned = false
        var result = ResultProgress()
    }

    /// A message the client sees that does not come from the server.
    enum Synthetic: Sendable {
        case error(PostgresErrorFields)
        /// With the transaction status current when it is sent.
        case readyForQuery
        /// A statement waits for approval (sent ahead of its answer).
        case notice(PostgresErrorFields)
    }

    /// What the server owes the client, in order.
    enum Expectation: Sendable {
        /// `ParameterStatus`, `BackendKeyData` until the first `ReadyForQuery`.
        case startup
        case simpleQuery(SimpleQueryProgress)
        case parse(String)
        case bind(portal: String, statement: String, resultFormats: [PostgresFormat])
        case describeStatement(String)
        /// `hidden`: our own `Describe`, sent so an `Execute`'s rows can be masked; its answer is not forwarded.
        case describePortal(String, hidden: Bool)
        case execute(ExecuteProgress)
        case close(PostgresDescribeTarget)
        case sync
        case functionCall(StatementID, failed: Bool)
        case synthetic(Synthetic)
    }

    let policy: SessionPolicy

    var parameters: [String: String] = [:]
    var standardConformingStrings = true
    var backendKey: PostgresBackendKey?
    var transactionStatus: PostgresBackendMessage.TransactionStatus = .idle
    var upstreamUser: String?
    /// The keys of our own SCRAM login (injected credentials), for the gateway's next login.
    var scramKeys: SCRAMSHA256Client.Keys?
    var database: String?
    private(set) var nextStatementID: UInt64 = 1
    /// The session ended (an error was sent or `Terminate` forwarded); the machine moves to `closed`.
    var isClosed = false

    // Client side.
    var clientStatements: [String: ClientStatement] = [:]
    var clientPortals: [String: ClientPortal] = [:]
    /// Client messages are discarded until `Sync`: a `Parse` was blocked, or the server reported an error.
    var skippingUntilSync = false
    /// A message of the current extended-protocol batch was forwarded: its `Sync` must reach the server.
    var batchForwarded = false
    var copyIn = CopyIn.inactive
    var terminated = false
    var outbound = CircularBuffer<Outbound>()
    /// Bytes of client frames waiting behind a gate or a hold.
    var heldClientBytes = 0
    /// The statement held for approval, if any; client messages wait in `paused` meanwhile.
    var currentHold: Hold?
    var paused = CircularBuffer<ClientMessage>()

    // Server side.
    var expectations = CircularBuffer<Expectation>()
    var serverStatements: [String: Description?] = [:]
    var serverPortals: [String: ServerPortal] = [:]
    var columnResolutions: [PostgresColumnID: PostgresColumnResolution] = [:]
    /// Server messages held while the gateway resolves columns.
    var held = CircularBuffer<ServerMessage>()
    var awaitingColumns: Set<PostgresColumnID> = []
    /// The query of a `COPY ... TO STDOUT` the gateway is describing; server messages are held meanwhile.
    var awaitingCopyDescription: String?
    /// Described COPY queries of this session (`nil`: the description failed, so every field is masked).
    var copyDescriptions: [String: [Field]?] = [:]

    init(policy: SessionPolicy) {
        self.policy = policy
        self.expectations.append(.startup)
    }

    // MARK: Client messages

    func clientMessage(_ framed: ClientMessage, into actions: inout [Action]) {
        guard !self.terminated, !self.isClosed else {
            return
        }
        if self.currentHold != nil {
            self.pause(framed)
            return
        }
        switch framed.message {
        case .copyData, .copyDone, .copyFail:
            self.copyMessage(framed, into: &actions)
            return
        case .query, .parse, .bind, .describe, .execute, .close, .sync, .flush, .terminate, .functionCall,
            .startup, .sslRequest, .gssEncRequest, .cancelRequest, .authenticationResponse:
            break
        }
        switch self.copyIn {
        case .inactive:
            break
        case .abandoned:
            self.copyIn = .inactive
        case .active:
            switch framed.message {
            case .sync, .flush:
                // The server ignores Sync and Flush during COPY FROM STDIN (libpq sends them without knowing the
                // command was a COPY): forward, expect nothing.
                self.forward(framed.frame, into: &actions)
                return
            case .terminate:
                break
            case .query, .parse, .bind, .describe, .execute, .close, .functionCall, .copyData, .copyDone, .copyFail,
                .startup, .sslRequest, .gssEncRequest, .cancelRequest, .authenticationResponse:
                self.protocolViolation("\(framed.message.name) during COPY FROM STDIN", into: &actions)
                return
            }
        }
        if self.skippingUntilSync {
            switch framed.message {
            case .sync, .terminate:
                break
            case .flush:
                // Our synthetic error waits behind answers the server may not have flushed yet: let it flush them,
                // or a client that waits before sending Sync would wait forever. Flush changes nothing else.
                if self.batchForwarded {
                    self.forward(framed.frame, into: &actions)
                }
                return
            case .query, .parse, .bind, .describe, .execute, .close, .functionCall, .copyData, .copyDone, .copyFail,
                .startup, .sslRequest, .gssEncRequest, .cancelRequest, .authenticationResponse:
                return
            }
        }
        switch framed.message {
        case .query(let sql):
            self.query(sql, frame: framed.frame, into: &actions)
        case .parse(let parse):
            self.parse(parse, frame: framed.frame, into: &actions)
        case .bind(let bind):
            self.bind(bind, frame: framed.frame, into: &actions)
        case .describe(let target):
            switch target {
            case .statement(let name):
                self.clientStatements[name]?.described = true
                self.forwardExtended(framed.frame, expecting: .describeStatement(name), into: &actions)
            case .portal(let name):
                self.clientPortals[name]?.described = true
                self.forwardExtended(framed.frame, expecting: .describePortal(name, hidden: false), into: &actions)
            }
        case .execute(let portal, _):
            self.execute(portal: portal, frame: framed.frame, into: &actions)
        case .close(let target):
            switch target {
            case .statement(let name): self.clientStatements[name] = nil
            case .portal(let name): self.clientPortals[name] = nil
            }
            self.forwardExtended(framed.frame, expecting: .close(target), into: &actions)
        case .sync:
            let reachesServer = !self.skippingUntilSync || self.batchForwarded
            self.skippingUntilSync = false
            self.batchForwarded = false
            if reachesServer {
                self.forward(framed.frame, into: &actions)
                self.expectations.append(.sync)
            } else {
                self.enqueue(.readyForQuery, into: &actions)
            }
        case .flush:
            self.forward(framed.frame, into: &actions)
        case .terminate:
            self.terminated = true
            if self.outbound.isEmpty {
                actions.append(.sendToServer(framed.frame))
                actions.append(.close)
                self.isClosed = true
            } else {
                self.outbound.append(.terminate(framed.frame))
            }
        case .functionCall(let call):
            self.functionCall(call, frame: framed.frame, into: &actions)
        case .copyData, .copyDone, .copyFail:
            preconditionFailure("handled above")
        case .startup, .sslRequest, .gssEncRequest, .cancelRequest:
            self.protocolViolation("\(framed.message.name) after startup", into: &actions)
        case .authenticationResponse:
            self.protocolViolation("password message after authentication", into: &actions)
        }
    }

    private func copyMessage(_ framed: ClientMessage, into actions: inout [Action]) {
        let ends: Bool
        switch framed.message {
        case .copyDone, .copyFail: ends = true
        default: ends = false
        }
        switch self.copyIn {
        case .active:
            self.forward(framed.frame, into: &actions)
            if ends { self.copyIn = .inactive }
        case .abandoned:
            if ends { self.copyIn = .inactive }
        case .inactive:
            self.protocolViolation("\(framed.message.name) outside COPY FROM STDIN", into: &actions)
        }
    }

    private func query(_ sql: String, frame: ByteBuffer, into actions: inout [Action]) {
        let evaluation = self.policy.evaluate(sql, standardConformingStrings: self.standardConformingStrings)
        let statements =
            evaluation.statements.isEmpty ? [SessionPolicy.Statement(text: "", kinds: [])] : evaluation.statements
        var ids: [StatementID] = []
        ids.reserveCapacity(statements.count)
        let decision: StatementEvidence.Decision =
            evaluation.block.map { .block(rule: $0.rule, reason: $0.reason) }
            ?? evaluation.approval.map { .approve(rule: $0.rule) } ?? .allow
        for (index, statement) in statements.enumerated() {
            let evidence = StatementEvidence(
                id: self.makeStatementID(),
                origin: .simpleQuery(index: index, count: statements.count),
                text: statement.text,
                textIsRedacted: self.policy.textMode == .redactLiterals,
                kinds: statement.kinds,
                decision: decision
            )
            ids.append(evidence.id)
            if evaluation.block == nil {
                actions.append(.recordStatement(evidence))
            } else {
                actions.append(.recordBlockedStatement(evidence))
            }
        }
        if let block = evaluation.block {
            self.enqueue(.error(SessionPolicy.errorFields(for: block)), into: &actions)
            self.enqueue(.readyForQuery, into: &actions)
            return
        }
        let expectation = Expectation.simpleQuery(
            SimpleQueryProgress(ids: ids, copyOuts: statements.map(\.copyOut)))
        if let approval = evaluation.approval {
            let hold = PostgresApprovalHold(
                id: ids[0], statements: ids, rule: approval, exactText: sql, parameters: [],
                displayText: self.policy.approverText(statements.map(\.text).joined(separator: "; ")),
                displayParameters: [], kinds: statements.flatMap(\.kinds), origin: "query")
            self.hold(hold, frame: frame, expecting: expectation, into: &actions)
            return
        }
        for id in ids {
            self.gate(id)
        }
        self.forward(frame, into: &actions)
        self.expectations.append(expectation)
    }

    private func parse(
        _ parse: PostgresFrontendMessage.Parse, frame: ByteBuffer, into actions: inout [Action]
    ) {
        let evaluation = self.policy.evaluate(parse.query, standardConformingStrings: self.standardConformingStrings)
        let text = self.policy.evidenceText(parse.query, standardConformingStrings: self.standardConformingStrings)
        let kinds = evaluation.statements.flatMap(\.kinds)
        if let block = evaluation.block {
            let evidence = StatementEvidence(
                id: self.makeStatementID(),
                origin: .parse(statement: parse.name),
                text: text,
                textIsRedacted: self.policy.textMode == .redactLiterals,
                kinds: kinds,
                decision: .block(rule: block.rule, reason: block.reason)
            )
            actions.append(.recordBlockedStatement(evidence))
            if parse.name.isEmpty {
                self.clientStatements[""] = nil
            }
            self.enqueue(.error(SessionPolicy.errorFields(for: block)), into: &actions)
            self.skippingUntilSync = true
            return
        }
        self.clientStatements[parse.name] = ClientStatement(
            text: text, kinds: kinds, copyOut: evaluation.statements.first?.copyOut, approval: evaluation.approval,
            exactText: evaluation.approval == nil ? "" : parse.query)
        self.forwardExtended(frame, expecting: .parse(parse.name), into: &actions)
    }

    private func bind(_ bind: PostgresFrontendMessage.Bind, frame: ByteBuffer, into actions: inout [Action]) {
        let (parameters, stats) = self.policy.evidenceParameters(bind.parameters, format: bind.parameterFormat(at:))
        self.clientPortals[bind.portal] = ClientPortal(
            statementName: bind.statement,
            statement: self.clientStatements[bind.statement],
            parameters: parameters,
            parameterMasking: stats,
            heldParameters: self.clientStatements[bind.statement]?.approval == nil ? nil : Self.heldParameters(bind)
        )
        self.forwardExtended(
            frame,
            expecting: .bind(portal: bind.portal, statement: bind.statement, resultFormats: bind.resultFormats),
            into: &actions
        )
    }

    private func execute(portal name: String, frame: ByteBuffer, into actions: inout [Action]) {
        let portal = self.clientPortals[name]
        let statement = portal?.statement
        let evidence = StatementEvidence(
            id: self.makeStatementID(),
            origin: .execute(statement: portal?.statementName ?? "", portal: name),
            text: statement?.text ?? "",
            textIsRedacted: self.policy.textMode == .redactLiterals,
            kinds: statement?.kinds ?? [],
            decision: statement?.approval.map { .approve(rule: $0.rule) } ?? .allow,
            parameters: portal?.parameters ?? [],
            parameterMasking: portal?.parameterMasking ?? MaskStats()
        )
        actions.append(.recordStatement(evidence))
        let described =
            (portal?.described ?? false)
            || (portal.flatMap { self.clientStatements[$0.statementName]?.described } ?? false)
        if self.policy.masksResults && !described {
            // The client did not ask for the row description; we need it to mask the rows. Describing a portal has
            // no effect on the server, and its answer is not forwarded.
            var describe = ByteBuffer()
            PostgresFrontendMessage.describe(.portal(name)).encode(into: &describe)
            self.forward(describe, into: &actions)
            self.expectations.append(.describePortal(name, hidden: true))
        }
        let expectation = Expectation.execute(
            ExecuteProgress(id: evidence.id, portal: name, copyOut: statement?.copyOut))
        if let statement, let approval = statement.approval {
            self.batchForwarded = true
            let hold = PostgresApprovalHold(
                id: evidence.id, statements: [evidence.id], rule: approval, exactText: statement.exactText,
                parameters: portal?.heldParameters ?? [], displayText: self.policy.approverText(statement.text),
                displayParameters: portal?.parameters ?? [], kinds: statement.kinds, origin: "execute")
            self.hold(hold, frame: frame, expecting: expectation, into: &actions)
            return
        }
        self.gate(evidence.id)
        self.forwardExtended(frame, expecting: expectation, into: &actions)
    }

    private func functionCall(
        _ call: PostgresFrontendMessage.FunctionCall, frame: ByteBuffer, into actions: inout [Action]
    ) {
        let (arguments, stats) = self.policy.evidenceParameters(call.arguments) { index in
            PostgresFrontendMessage.Bind.format(call.argumentFormats, at: index)
        }
        var evidence = StatementEvidence(
            id: self.makeStatementID(),
            origin: .functionCall(functionOID: call.functionOID),
            text: "fastpath function call of OID \(call.functionOID)",
            textIsRedacted: false,
            kinds: [],
            decision: .allow,
            parameters: arguments,
            parameterMasking: stats
        )
        if let block = self.policy.functionBlock {
            let reason =
                "a fastpath function call names its function by OID only, so it cannot be checked against "
                + "this rule's functions"
            evidence.decision = .block(rule: block.rule, reason: reason)
            actions.append(.recordBlockedStatement(evidence))
            self.enqueue(
                .error(SessionPolicy.errorFields(for: .init(rule: block.rule, reason: reason))), into: &actions)
            self.enqueue(.readyForQuery, into: &actions)
            return
        }
        actions.append(.recordStatement(evidence))
        self.gate(evidence.id)
        self.forward(frame, into: &actions)
        self.expectations.append(.functionCall(evidence.id, failed: false))
    }

    // MARK: Outbound queue

    private func makeStatementID() -> StatementID {
        defer { self.nextStatementID += 1 }
        return StatementID(rawValue: self.nextStatementID)
    }

    private func gate(_ id: StatementID) {
        self.outbound.append(.gate(id, released: false))
    }

    /// Sends `frame` to the server now, or queues it behind a gate.
    private func forward(_ frame: ByteBuffer, into actions: inout [Action]) {
        if self.outbound.isEmpty {
            actions.append(.sendToServer(frame))
        } else {
            self.heldClientBytes += frame.readableBytes
            self.outbound.append(.frame(frame))
        }
    }

    private func forwardExtended(
        _ frame: ByteBuffer, expecting expectation: Expectation, into actions: inout [Action]
    ) {
        self.batchForwarded = true
        self.forward(frame, into: &actions)
        self.expectations.append(expectation)
    }

    /// The evidence entry `id` is durable: release what waits for it.
    func recordCompleted(_ id: StatementID, into actions: inout [Action]) {
        guard
            let index = self.outbound.firstIndex(where: { entry in
                if case .gate(id, released: false) = entry { return true }
                return false
            })
        else {
            return
        }
        self.outbound[index] = .gate(id, released: true)
        self.drainOutbound(into: &actions)
    }

    /// Whether `id` is a gate still waiting.
    func isAwaitingRecord(_ id: StatementID) -> Bool {
        self.outbound.contains { entry in
            if case .gate(id, released: false) = entry { return true }
            return false
        }
    }

    func drainOutbound(into actions: inout [Action]) {
        while let head = self.outbound.first {
            switch head {
            case .frame(let frame):
                self.outbound.removeFirst()
                self.heldClientBytes -= frame.readableBytes
                actions.append(.sendToServer(frame))
            case .gate(let id, let released):
                guard released else { return }
                self.outbound.removeFirst()
                actions.append(.statementStarted(id))
            case .terminate(let frame):
                self.outbound.removeFirst()
                actions.append(.sendToServer(frame))
                actions.append(.close)
                self.isClosed = true
                return
            case .approval:
                return
            }
        }
    }

    // MARK: Synthetic answers

    /// Queues a synthetic answer after everything the server still owes, or sends it now if it owes nothing.
    func enqueue(_ synthetic: Synthetic, into actions: inout [Action]) {
        if self.expectations.isEmpty {
            self.send(synthetic, into: &actions)
        } else {
            self.expectations.append(.synthetic(synthetic))
        }
    }

    func send(_ synthetic: Synthetic, into actions: inout [Action]) {
        var buffer = ByteBuffer()
        switch synthetic {
        case .error(let fields):
            PostgresBackendMessage.errorResponse(fields).encode(into: &buffer)
        case .readyForQuery:
            PostgresBackendMessage.readyForQuery(self.transactionStatus).encode(into: &buffer)
        case .notice(let fields):
            PostgresBackendMessage.noticeResponse(fields).encode(into: &buffer)
        }
        actions.append(.sendToClient(buffer))
    }

    /// Sends the synthetic answers now at the head of the queue.
    func drainSynthetic(into actions: inout [Action]) {
        while case .synthetic(let synthetic) = self.expectations.first {
            self.expectations.removeFirst()
            self.send(synthetic, into: &actions)
        }
    }

    // MARK: Ending

    /// The client broke the protocol: FATAL 08P01 to the client, close.
    func protocolViolation(_ what: String, into actions: inout [Action]) {
        let error = PostgresWireError(
            code: .unexpectedData, message: "unexpected \(what)", sqlState: SQLState.protocolViolation)
        self.close(with: error.errorResponse(), into: &actions)
    }

    func close(with fields: PostgresErrorFields, into actions: inout [Action]) {
        guard !self.isClosed else { return }
        self.isClosed = true
        self.completeOutstanding(.connectionClosed, into: &actions)
        actions.append(.closeWithError(fields))
    }

    /// Gives every statement still waiting for the server `result`.
    func completeOutstanding(_ result: StatementOutcome.Result, into actions: inout [Action]) {
        while let expectation = self.expectations.popFirst() {
            self.abandon(expectation, result: result, into: &actions)
        }
    }

    /// The outcomes of an expectation the server will never answer.
    func abandon(_ expectation: Expectation, result: StatementOutcome.Result, into actions: inout [Action]) {
        switch expectation {
        case .simpleQuery(var progress):
            progress.result.finishPlan()
            for id in progress.ids[progress.index...] {
                actions.append(
                    .statementCompleted(
                        StatementOutcome(
                            id: id, result: result, rowsSent: progress.result.rowsSent, masking: progress.result.masking
                        )
                    )
                )
                progress.result = ResultProgress()
            }
        case .execute(var progress):
            progress.result.finishPlan()
            actions.append(
                .statementCompleted(
                    StatementOutcome(
                        id: progress.id, result: result, rowsSent: progress.result.rowsSent,
                        masking: progress.result.masking)
                )
            )
        case .functionCall(let id, _):
            actions.append(.statementCompleted(StatementOutcome(id: id, result: result)))
        case .startup, .parse, .bind, .describeStatement, .describePortal, .close, .sync, .synthetic:
            break
        }
    }

    var info: PostgresSessionInfo {
        var info = PostgresSessionInfo(
            backendKey: self.backendKey, parameters: self.parameters, upstreamUser: self.upstreamUser,
            database: self.database)
        info.scramKeys = self.scramKeys
        return info
    }
}
