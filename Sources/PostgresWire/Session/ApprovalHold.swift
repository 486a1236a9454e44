import NIOCore
import Policy

/// A statement an `approve:` rule holds before it reaches the server (``PostgresSessionStateMachine/Action/requestApproval(_:)``).
///
/// The machine has already recorded the statement (decision `approve`) and queued its frames behind a
/// marker; nothing of it, and nothing the client sends after it, reaches the server until the gateway
/// answers with ``PostgresSessionStateMachine/approvalGranted(_:into:)`` or
/// ``PostgresSessionStateMachine/approvalRefused(_:error:outcome:into:)``. Meanwhile the client's later
/// messages are kept, undecoded by policy, and judged in order once the hold ends.
public struct PostgresApprovalHold: Sendable {
    /// One bound parameter as the server would receive it.
    public enum Parameter: Sendable, Hashable {
        case null
        case text([UInt8])
        case binary([UInt8])
    }

    /// Names the hold in the machine's answers: the first held statement's id.
    public var id: StatementID
    /// Every statement released or refused together (the statements of one simple query string).
    public var statements: [StatementID]
    /// The `approve:` rule that holds it.
    public var rule: Applied<ApproveSpec>
    /// The exact text the server would run (what an approval is bound to, with ``parameters``).
    public var exactText: String
    public var parameters: [Parameter]
    /// What approvers read: the evidence text (literals redacted if the policy says so) with the content
    /// detectors' masks applied, and the parameters as evidence shows them.
    public var displayText: String
    public var displayParameters: [String?]
    public var kinds: [String]
    /// `execute` (extended protocol) or `query` (simple query).
    public var origin: String
}

extension SessionPipeline {
    /// The hold in progress: the client's messages are kept in ``paused`` until it ends.
    struct Hold: Sendable {
        var id: StatementID
        var statements: [StatementID]
        /// A simple query (answered with an error and `ReadyForQuery` when refused) or an `Execute`
        /// (an error, then the batch is skipped until `Sync`).
        var simpleQuery: Bool
    }

    /// Holds the statements `ids` under `approval`: records were already asked for. Queues a marker, the gates and
    /// `frame` (nothing passes the marker until the decision), the expectation of the answer, and asks the gateway.
    func hold(
        _ hold: PostgresApprovalHold, frame: ByteBuffer, expecting expectation: Expectation,
        into actions: inout [Action]
    ) {
        self.outbound.append(.approval(hold.id))
        for id in hold.statements {
            self.outbound.append(.gate(id, released: false))
        }
        self.heldClientBytes += frame.readableBytes
        self.outbound.append(.frame(frame))
        self.expectations.append(expectation)
        if case .simpleQuery = expectation {
            self.currentHold = Hold(id: hold.id, statements: hold.statements, simpleQuery: true)
        } else {
            self.currentHold = Hold(id: hold.id, statements: hold.statements, simpleQuery: false)
        }
        actions.append(.requestApproval(hold))
    }

    /// A message that arrived while a statement is held: kept, in order, until the hold ends.
    func pause(_ framed: ClientMessage) {
        self.heldClientBytes += framed.frame.readableBytes
        self.paused.append(framed)
    }

    /// Tells the client its statement waits: a `NoticeResponse` ahead of the held statement's answer (now, if the
    /// server owes nothing before it).
    func approvalPending(_ id: StatementID, notice: PostgresErrorFields, into actions: inout [Action]) {
        guard self.currentHold?.id == id, let index = self.heldExpectationIndex(id) else { return }
        if index == self.expectations.startIndex {
            self.send(.notice(notice), into: &actions)
        } else {
            self.expectations.insert(.synthetic(.notice(notice)), at: index)
        }
    }

    /// Approvers agreed: the held frames leave (behind their evidence gates), then the paused messages are judged.
    func approvalGranted(_ id: StatementID, into actions: inout [Action]) {
        guard self.currentHold?.id == id,
            let marker = self.outbound.firstIndex(where: { if case .approval(id) = $0 { true } else { false } })
        else { return }
        self.outbound.remove(at: marker)
        self.currentHold = nil
        self.drainOutbound(into: &actions)
        self.resumePaused(into: &actions)
    }

    /// Denied, timed out, withdrawn or cancelled: the held frames are dropped, the client gets `error` where the
    /// server's answer would have been (and `ReadyForQuery` for a simple query; an `Execute`'s batch is skipped
    /// until `Sync`, as the server does after an error), and the paused messages are judged.
    func approvalRefused(
        _ id: StatementID, error: PostgresErrorFields, outcome: String, into actions: inout [Action]
    ) {
        guard let hold = self.currentHold, hold.id == id,
            let marker = self.outbound.firstIndex(where: { if case .approval(id) = $0 { true } else { false } })
        else { return }
        // Everything from the marker on is the held statement's (nothing was judged after it).
        let keep = self.outbound.distance(from: self.outbound.startIndex, to: marker)
        while self.outbound.count > keep {
            if case .frame(let frame) = self.outbound.removeLast() {
                self.heldClientBytes -= frame.readableBytes
            }
        }
        self.currentHold = nil
        if let index = self.heldExpectationIndex(id) {
            if hold.simpleQuery {
                // The held expectation is the last one (nothing after a hold is judged yet).
                self.expectations[index] = .synthetic(.error(error))
                self.expectations.append(.synthetic(.readyForQuery))
            } else {
                self.expectations[index] = .synthetic(.error(error))
                self.skippingUntilSync = true
            }
        }
        for statement in hold.statements {
            actions.append(.statementCompleted(StatementOutcome(id: statement, result: .notApproved(outcome))))
        }
        if case .synthetic = self.expectations.first {
            self.drainSynthetic(into: &actions)
        }
        self.resumePaused(into: &actions)
    }

    /// The held statement's expectation: the last `simpleQuery` or `execute` with its id (nothing after a hold is
    /// judged, so only synthetic answers can follow it).
    private func heldExpectationIndex(_ id: StatementID) -> CircularBuffer<Expectation>.Index? {
        self.expectations.lastIndex { expectation in
            switch expectation {
            case .simpleQuery(let progress): progress.ids.first == id
            case .execute(let progress): progress.id == id
            default: false
            }
        }
    }

    private func resumePaused(into actions: inout [Action]) {
        guard !self.paused.isEmpty else { return }
        let messages = self.paused
        self.paused.removeAll()
        for message in messages {
            self.heldClientBytes -= message.frame.readableBytes
        }
        for message in messages {
            if self.currentHold != nil {
                // A replayed message was held in turn: the rest waits again, in order.
                self.pause(message)
            } else {
                self.clientMessage(message, into: &actions)
            }
        }
    }

    /// The raw parameters of a `Bind`, as an approval binds them.
    static func heldParameters(_ bind: PostgresFrontendMessage.Bind) -> [PostgresApprovalHold.Parameter] {
        bind.parameters.enumerated().map { index, value in
            guard let value else { return .null }
            let bytes = Array(value.readableBytesView)
            switch bind.parameterFormat(at: index) {
            case .text: return .text(bytes)
            case .binary: return .binary(bytes)
            }
        }
    }
}
