import Masking
import NIOCore
import Policy
import SQL

extension SessionPipeline {
    // MARK: Server messages

    func serverMessage(_ framed: ServerMessage, into actions: inout [Action]) {
        guard !self.isClosed else { return }
        if !self.awaitingColumns.isEmpty || self.awaitingCopyDescription != nil {
            self.held.append(framed)
            return
        }
        self.process(framed, into: &actions)
    }

    /// The gateway described a COPY's query (`nil`: it could not, so every field is masked): replay what was held.
    func copyDescribed(_ query: String, fields: [Field]?, into actions: inout [Action]) {
        guard self.awaitingCopyDescription == query else { return }
        self.awaitingCopyDescription = nil
        if self.copyDescriptions.count >= 64 { self.copyDescriptions = [:] }
        self.copyDescriptions[query] = .some(fields)
        self.replayHeld(into: &actions)
    }

    private func replayHeld(into actions: inout [Action]) {
        while let next = self.held.popFirst(), !self.isClosed {
            self.process(next, into: &actions)
            if !self.awaitingColumns.isEmpty || self.awaitingCopyDescription != nil {
                return
            }
        }
    }

    /// The gateway answered a `resolveColumns`: remember the answers and replay what was held.
    func columnsResolved(
        _ resolutions: [PostgresColumnID: PostgresColumnResolution], into actions: inout [Action]
    ) {
        for (column, resolution) in resolutions {
            self.columnResolutions[column] = resolution
        }
        for column in self.awaitingColumns where self.columnResolutions[column] == nil {
            // Asked and not answered: fail closed rather than wait forever.
            self.columnResolutions[column] = .unresolvable
        }
        self.awaitingColumns = []
        self.replayHeld(into: &actions)
    }

    private func process(_ framed: ServerMessage, into actions: inout [Action]) {
        // Messages that may come at any time.
        switch framed.message {
        case .parameterStatus(let name, let value):
            self.parameters[name] = value
            if name == "standard_conforming_strings" {
                self.standardConformingStrings = value.lowercased() != "off"
            }
            actions.append(.sendToClient(framed.frame))
            return
        case .noticeResponse(let fields):
            self.forwardNotice(fields, frame: framed.frame, into: &actions)
            return
        case .notificationResponse:
            actions.append(.sendToClient(framed.frame))
            return
        default:
            break
        }
        guard let head = self.expectations.first else {
            if case .errorResponse(let fields) = framed.message {
                // A FATAL the server sends on its own (shutdown, idle timeout): pass it on; the server closes.
                var stats = MaskStats()
                self.forwardError(fields, frame: framed.frame, stats: &stats, into: &actions)
                return
            }
            self.serverViolation("\(framed.message.name) when nothing was asked", into: &actions)
            return
        }
        self.expectations[self.expectations.startIndex] = .synthetic(.readyForQuery)  // placeholder while modifying
        switch head {
        case .startup:
            self.expectations[self.expectations.startIndex] = head
            self.startupMessage(framed, into: &actions)
        case .simpleQuery(var progress):
            let keep = self.simpleQueryMessage(framed, progress: &progress, into: &actions)
            self.finish(head: .simpleQuery(progress), keep: keep, into: &actions)
        case .parse(let name):
            switch framed.message {
            case .parseComplete:
                self.serverStatements[name] = .some(nil)
                self.forwardAndPop(framed.frame, into: &actions)
            case .errorResponse(let fields):
                self.extendedError(fields, frame: framed.frame, into: &actions)
            default:
                self.restore(head)
                self.serverViolation("\(framed.message.name) in answer to Parse", into: &actions)
            }
        case .bind(let portal, let statement, let formats):
            switch framed.message {
            case .bindComplete:
                self.serverPortals[portal] = ServerPortal(
                    statementName: statement, resultFormats: formats, description: nil)
                self.forwardAndPop(framed.frame, into: &actions)
            case .errorResponse(let fields):
                self.extendedError(fields, frame: framed.frame, into: &actions)
            default:
                self.restore(head)
                self.serverViolation("\(framed.message.name) in answer to Bind", into: &actions)
            }
        case .describeStatement(let name):
            switch framed.message {
            case .parameterDescription:
                self.restore(head)
                actions.append(.sendToClient(framed.frame))
            case .rowDescription(let fields):
                self.restore(head)
                guard self.resolveColumns(of: fields, holding: framed, into: &actions) else { return }
                self.serverStatements[name] = .some(.rows(fields))
                self.forwardAndPop(framed.frame, into: &actions)
            case .noData:
                self.serverStatements[name] = .some(.noData)
                self.forwardAndPop(framed.frame, into: &actions)
            case .errorResponse(let fields):
                self.extendedError(fields, frame: framed.frame, into: &actions)
            default:
                self.restore(head)
                self.serverViolation("\(framed.message.name) in answer to Describe", into: &actions)
            }
        case .describePortal(let name, let hidden):
            switch framed.message {
            case .rowDescription(let fields):
                self.restore(head)
                guard self.resolveColumns(of: fields, holding: framed, into: &actions) else { return }
                // A portal we never saw bound is a cursor opened with SQL DECLARE: remember its rows too.
                self.serverPortals[name, default: Self.declaredCursor].description = .rows(fields)
                self.pop(forwarding: hidden ? nil : framed.frame, into: &actions)
            case .noData:
                self.serverPortals[name, default: Self.declaredCursor].description = .noData
                self.pop(forwarding: hidden ? nil : framed.frame, into: &actions)
            case .errorResponse(let fields):
                self.extendedError(fields, frame: framed.frame, into: &actions)
            default:
                self.restore(head)
                self.serverViolation("\(framed.message.name) in answer to Describe", into: &actions)
            }
        case .execute(var progress):
            let keep = self.executeMessage(framed, progress: &progress, into: &actions)
            switch keep {
            case .keep, .pop:
                self.finish(head: .execute(progress), keep: keep, into: &actions)
            case .handled:
                break
            }
        case .close(let target):
            switch framed.message {
            case .closeComplete:
                switch target {
                case .statement(let name): self.serverStatements[name] = nil
                case .portal(let name): self.serverPortals[name] = nil
                }
                self.forwardAndPop(framed.frame, into: &actions)
            case .errorResponse(let fields):
                self.extendedError(fields, frame: framed.frame, into: &actions)
            default:
                self.restore(head)
                self.serverViolation("\(framed.message.name) in answer to Close", into: &actions)
            }
        case .sync:
            switch framed.message {
            case .readyForQuery(let status):
                self.transactionStatus = status
                self.forwardAndPop(framed.frame, into: &actions)
            case .errorResponse(let fields):
                // Ending the implicit transaction failed (a deferred constraint): the ReadyForQuery follows.
                self.restore(head)
                var stats = MaskStats()
                self.forwardError(fields, frame: framed.frame, stats: &stats, into: &actions)
            default:
                self.restore(head)
                self.serverViolation("\(framed.message.name) in answer to Sync", into: &actions)
            }
        case .functionCall(let id, let failed):
            switch framed.message {
            case .functionCallResponse:
                self.restore(head)
                actions.append(.sendToClient(framed.frame))
            case .errorResponse(let fields):
                self.expectations[self.expectations.startIndex] = .functionCall(id, failed: true)
                var stats = MaskStats()
                self.forwardError(fields, frame: framed.frame, stats: &stats, into: &actions)
                let sqlState = fields[.sqlState] ?? ""
                actions.append(.statementCompleted(StatementOutcome(id: id, result: .failed(sqlState: sqlState))))
            case .readyForQuery(let status):
                self.transactionStatus = status
                if !failed {
                    actions.append(
                        .statementCompleted(StatementOutcome(id: id, result: .completed(commandTag: "FUNCTION CALL"))))
                }
                self.forwardAndPop(framed.frame, into: &actions)
            default:
                self.restore(head)
                self.serverViolation("\(framed.message.name) in answer to FunctionCall", into: &actions)
            }
        case .synthetic:
            // Synthetic answers are sent as soon as they reach the head; one can never wait there.
            self.restore(head)
            self.drainSynthetic(into: &actions)
            self.process(framed, into: &actions)
        }
    }

    /// The server's view of a portal created by SQL (`DECLARE c CURSOR FOR ...`), not by `Bind`.
    static let declaredCursor = ServerPortal(statementName: "", resultFormats: [], description: nil)

    private func restore(_ head: Expectation) {
        self.expectations[self.expectations.startIndex] = head
    }

    /// What to do with the head expectation after a message.
    enum HeadDisposition {
        /// It still waits for more.
        case keep
        /// It is answered: pop it.
        case pop
        /// The handler already changed the queue.
        case handled
    }

    private func finish(head: Expectation, keep: HeadDisposition, into actions: inout [Action]) {
        switch keep {
        case .keep:
            self.restore(head)
        case .pop:
            self.expectations.removeFirst()
            self.drainSynthetic(into: &actions)
        case .handled:
            break
        }
    }

    private func forwardAndPop(_ frame: ByteBuffer, into actions: inout [Action]) {
        self.pop(forwarding: frame, into: &actions)
    }

    private func pop(forwarding frame: ByteBuffer?, into actions: inout [Action]) {
        self.expectations.removeFirst()
        if let frame {
            actions.append(.sendToClient(frame))
        }
        self.drainSynthetic(into: &actions)
    }

    // MARK: Startup completion

    private func startupMessage(_ framed: ServerMessage, into actions: inout [Action]) {
        switch framed.message {
        case .backendKeyData(let key):
            self.backendKey = key
            actions.append(.sendToClient(framed.frame))
        case .readyForQuery(let status):
            self.transactionStatus = status
            actions.append(.sessionEstablished(self.info))
            self.forwardAndPop(framed.frame, into: &actions)
        case .errorResponse:
            // The server refused the session after authentication (too many connections, no such database).
            self.isClosed = true
            actions.append(.sendToClient(framed.frame))
            actions.append(.close)
        case .negotiateProtocolVersion:
            actions.append(.sendToClient(framed.frame))
        default:
            self.serverViolation("\(framed.message.name) during session startup", into: &actions)
        }
    }

    // MARK: Simple query

    private func simpleQueryMessage(
        _ framed: ServerMessage, progress: inout SimpleQueryProgress, into actions: inout [Action]
    ) -> HeadDisposition {
        switch framed.message {
        case .rowDescription(let fields):
            guard self.resolveColumns(of: fields, holding: framed, into: &actions) else { return .keep }
            progress.result.finishPlan()
            progress.result.plan = self.policy.plan(for: fields, resolutions: self.columnResolutions)
            actions.append(.sendToClient(framed.frame))
            return .keep
        case .dataRow(let row):
            guard self.forwardRow(row, frame: framed.frame, result: &progress.result, into: &actions) else {
                self.restore(.simpleQuery(progress))
                self.serverViolation("DataRow whose width differs from its RowDescription", into: &actions)
                return .handled
            }
            return .keep
        case .commandComplete(let tag):
            self.completeSimple(&progress, result: .completed(commandTag: tag), tag: tag, into: &actions)
            actions.append(.sendToClient(framed.frame))
            return .keep
        case .emptyQueryResponse:
            self.completeSimple(&progress, result: .emptyQuery, tag: nil, into: &actions)
            actions.append(.sendToClient(framed.frame))
            return .keep
        case .errorResponse(let fields):
            self.forwardError(fields, frame: framed.frame, stats: &progress.result.masking.detectors, into: &actions)
            self.completeSimple(&progress, result: .failed(sqlState: fields[.sqlState] ?? ""), tag: nil, into: &actions)
            while progress.index < progress.ids.count {
                self.completeSimple(&progress, result: .notExecuted, tag: nil, into: &actions)
            }
            if self.copyIn == .active {
                self.copyIn = .abandoned
            }
            return .keep
        case .copyInResponse, .copyBothResponse:
            self.enterCopyIn()
            if case .copyBothResponse = framed.message {
                progress.result.copyOutMasking = false
            }
            actions.append(.sendToClient(framed.frame))
            return .keep
        case .copyOutResponse, .copyData, .copyDone:
            let copyOut = progress.index < progress.copyOuts.count ? progress.copyOuts[progress.index] : nil
            guard let failure = self.copyOutMessage(framed, copyOut, result: &progress.result, into: &actions) else {
                return .keep
            }
            self.restore(.simpleQuery(progress))
            self.failCopyOut(failure, into: &actions)
            return .handled
        case .readyForQuery(let status):
            self.transactionStatus = status
            while progress.index < progress.ids.count {
                self.completeSimple(&progress, result: .unaccounted, tag: nil, into: &actions)
            }
            if self.copyIn != .inactive {
                self.copyIn = .abandoned
            }
            actions.append(.sendToClient(framed.frame))
            return .pop
        default:
            self.restore(.simpleQuery(progress))
            self.serverViolation("\(framed.message.name) in answer to Query", into: &actions)
            return .handled
        }
    }

    private func completeSimple(
        _ progress: inout SimpleQueryProgress, result: StatementOutcome.Result, tag: String?,
        into actions: inout [Action]
    ) {
        guard progress.index < progress.ids.count else { return }
        progress.result.finishPlan()
        actions.append(
            .statementCompleted(
                StatementOutcome(
                    id: progress.ids[progress.index], result: result, rowCount: tag.flatMap(Self.rowCount(of:)),
                    rowsSent: progress.result.rowsSent, masking: progress.result.masking)
            )
        )
        progress.index += 1
        progress.result = ResultProgress()
    }

    /// The count at the end of a command tag (`SELECT 3`, `INSERT 0 1`, `COPY 10`), for tags that have one.
    static func rowCount(of tag: String) -> Int? {
        let words = tag.split(separator: " ")
        guard words.count >= 2, let last = words.last, let count = Int(last) else { return nil }
        switch words[0] {
        case "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "FETCH", "MOVE": return count
        default: return nil
        }
    }

    // MARK: Extended query

    private func executeMessage(
        _ framed: ServerMessage, progress: inout ExecuteProgress, into actions: inout [Action]
    ) -> HeadDisposition {
        switch framed.message {
        case .dataRow(let row):
            if !progress.planned {
                progress.planned = true
                if self.policy.masksResults {
                    progress.result.plan = self.policy.plan(
                        for: self.portalFields(progress.portal), resolutions: self.columnResolutions)
                }
            }
            guard self.forwardRow(row, frame: framed.frame, result: &progress.result, into: &actions) else {
                self.restore(.execute(progress))
                self.serverViolation("DataRow whose width differs from its RowDescription", into: &actions)
                return .handled
            }
            return .keep
        case .commandComplete(let tag):
            self.completeExecute(progress, result: .completed(commandTag: tag), tag: tag, into: &actions)
            actions.append(.sendToClient(framed.frame))
            return .pop
        case .emptyQueryResponse:
            self.completeExecute(progress, result: .emptyQuery, tag: nil, into: &actions)
            actions.append(.sendToClient(framed.frame))
            return .pop
        case .portalSuspended:
            self.completeExecute(progress, result: .suspended, tag: nil, into: &actions)
            actions.append(.sendToClient(framed.frame))
            return .pop
        case .errorResponse(let fields):
            var finished = progress
            finished.result.finishPlan()
            self.restore(.execute(finished))
            self.extendedError(fields, frame: framed.frame, into: &actions)
            return .handled
        case .copyInResponse, .copyBothResponse:
            self.enterCopyIn()
            actions.append(.sendToClient(framed.frame))
            return .keep
        case .copyOutResponse, .copyData, .copyDone:
            guard let failure = self.copyOutMessage(framed, progress.copyOut, result: &progress.result, into: &actions)
            else {
                return .keep
            }
            self.restore(.execute(progress))
            self.failCopyOut(failure, into: &actions)
            return .handled
        default:
            self.restore(.execute(progress))
            self.serverViolation("\(framed.message.name) in answer to Execute", into: &actions)
            return .handled
        }
    }

    private func completeExecute(
        _ progress: ExecuteProgress, result: StatementOutcome.Result, tag: String?, into actions: inout [Action]
    ) {
        var finished = progress.result
        finished.finishPlan()
        actions.append(
            .statementCompleted(
                StatementOutcome(
                    id: progress.id, result: result, rowCount: tag.flatMap(Self.rowCount(of:)),
                    rowsSent: finished.rowsSent, masking: finished.masking)
            )
        )
    }

    /// The columns of a portal's rows as the server described them, with the portal's result formats; `nil` when
    /// nobody described the portal or its statement.
    func portalFields(_ name: String) -> [Field]? {
        guard let portal = self.serverPortals[name] else { return nil }
        switch portal.description {
        case .rows(let fields): return fields
        case .noData: return []
        case nil: break
        }
        switch self.serverStatements[portal.statementName] {
        case .some(.some(.rows(let fields))):
            var formatted = fields
            for index in formatted.indices {
                formatted[index].format = PostgresFrontendMessage.Bind.format(portal.resultFormats, at: index)
            }
            return formatted
        case .some(.some(.noData)):
            return []
        case .some(.none), .none:
            return nil
        }
    }

    /// An `ErrorResponse` to an extended-protocol message: the server now skips everything until `Sync`. Mirror it:
    /// what was forwarded after the failed message gets no answer (its statements did not run), synthetic answers
    /// queued in that stretch are dropped as the server would have dropped the messages, and if the client has not
    /// sent its `Sync` yet, its messages are discarded until it does.
    private func extendedError(_ fields: PostgresErrorFields, frame: ByteBuffer, into actions: inout [Action]) {
        var failed = self.expectations.removeFirst()
        var stats = MaskStats()
        self.forwardError(fields, frame: frame, stats: &stats, into: &actions)
        if case .execute(var progress) = failed {
            progress.result.masking.detectors.merge(stats)
            failed = .execute(progress)
        }
        self.abandon(failed, result: .failed(sqlState: fields[.sqlState] ?? ""), into: &actions)
        var foundSync = false
        while let next = self.expectations.first {
            if case .sync = next {
                foundSync = true
                break
            }
            self.expectations.removeFirst()
            self.abandon(next, result: .notExecuted, into: &actions)
        }
        if !foundSync {
            self.skippingUntilSync = true
            self.batchForwarded = true
        }
        if self.copyIn == .active {
            self.copyIn = .abandoned
        }
    }

    // MARK: COPY

    /// `CopyInResponse`: the client may now send copy data. `Sync` messages the client sent after the COPY's
    /// `Execute` reach the server during the copy, and it ignores them: they get no `ReadyForQuery`.
    private func enterCopyIn() {
        self.copyIn = .active
        guard self.expectations.count > 1 else { return }
        var kept = CircularBuffer<Expectation>(initialCapacity: self.expectations.count)
        kept.append(self.expectations.removeFirst())
        while let next = self.expectations.popFirst() {
            if case .sync = next {
                // The batch's Sync was consumed by the copy: the client's next Sync is the real one.
                self.batchForwarded = true
                continue
            }
            kept.append(next)
        }
        self.expectations = kept
    }

    /// Why a `COPY ... TO STDOUT` ends the session.
    enum CopyOutFailure {
        /// Binary output cannot be masked.
        case binary
        /// A row's width differs from the COPY's description.
        case rowWidth
    }

    /// `CopyOutResponse`, `CopyData` and `CopyDone` of a statement's result, the same in a simple query and an
    /// `Execute`. Returns the failure that ends the session (the caller restores its expectation, then calls
    /// ``failCopyOut(_:into:)``), or `nil` when the message was handled.
    private func copyOutMessage(
        _ framed: ServerMessage, _ copyOut: CopyOutput?, result: inout ResultProgress, into actions: inout [Action]
    ) -> CopyOutFailure? {
        switch framed.message {
        case .copyOutResponse(let response):
            switch self.startCopyOut(response, copyOut, framed: framed, result: &result, into: &actions) {
            case .refused: return .binary
            case .held: return nil
            case .started:
                actions.append(.sendToClient(framed.frame))
                return nil
            }
        case .copyData(let data):
            return self.forwardCopyData(data, frame: framed.frame, result: &result, into: &actions) ? nil : .rowWidth
        default:
            result.copyOutMasking = false
            result.copyLayout = nil
            actions.append(.sendToClient(framed.frame))
            return nil
        }
    }

    private func failCopyOut(_ failure: CopyOutFailure, into actions: inout [Action]) {
        switch failure {
        case .binary: self.refuseBinaryCopy(into: &actions)
        case .rowWidth: self.serverViolation("COPY row whose width differs from its description", into: &actions)
        }
    }

    enum CopyStart {
        case started
        /// The COPY's query (or its columns) is being looked up: `framed` is held and processed again afterwards.
        case held
        /// Binary output cannot be masked: end the session with ``refuseBinaryCopy(into:)``.
        case refused
    }

    /// `CopyOutResponse`: decides how the COPY's rows are masked. With column rules the COPY's query is described by
    /// the gateway (``Action/describeCopy(_:)``) and its fields resolved like a `RowDescription`'s.
    private func startCopyOut(
        _ response: PostgresBackendMessage.CopyResponse, _ copyOut: CopyOutput?, framed: ServerMessage,
        result: inout ResultProgress, into actions: inout [Action]
    ) -> CopyStart {
        result.finishPlan()
        result.copyLayout = nil
        guard self.policy.masksResults else { return .started }
        guard response.format == .text else {
            return .refused
        }
        if self.policy.hasColumnRules {
            guard let copyOut, let query = copyOut.query, copyOut.format != .binary else { return .refused }
            guard let described = self.copyDescriptions[query] else {
                self.awaitingCopyDescription = query
                self.held.prepend(framed)
                actions.append(.describeCopy(query))
                return .held
            }
            if let fields = described {
                guard self.resolveColumns(of: fields, holding: framed, into: &actions) else { return .held }
                result.plan = self.policy.plan(for: fields, resolutions: self.columnResolutions)
            } else {
                result.plan = self.policy.plan(for: nil, columnCount: response.columnFormats.count)
            }
            if result.plan?.isPassThrough == true {
                // No field of this COPY is masked or scanned: its data goes out untouched.
                result.plan = nil
                return .started
            }
            result.copyLayout = CopyLayout(format: copyOut.format, headerPending: copyOut.header)
        }
        result.copyOutMasking = result.copyLayout != nil || !self.policy.detectorGroups.isEmpty
        return .started
    }

    private func refuseBinaryCopy(into actions: inout [Action]) {
        let error = PostgresWireError(
            code: .unexpectedData,
            message: "binary COPY TO STDOUT output cannot be masked; the session is closed",
            sqlState: "42501"
        )
        self.close(with: error.errorResponse(), into: &actions)
    }

    /// Returns false when a row's width differs from the COPY's description (the caller ends the session).
    private func forwardCopyData(
        _ data: ByteBuffer, frame: ByteBuffer, result: inout ResultProgress, into actions: inout [Action]
    ) -> Bool {
        guard result.copyOutMasking else {
            actions.append(.sendToClient(frame))
            return true
        }
        if var layout = result.copyLayout, result.plan != nil {
            do {
                let (rewritten, rows) = try self.policy.maskCopyRows(
                    data, plan: &result.plan!, layout: &layout, stats: &result.masking.detectors)
                result.copyLayout = layout
                result.rowsSent += rows
                actions.append(.sendToClient(rewritten ?? frame))
                return true
            } catch {
                return false
            }
        }
        let (rewritten, lines) = self.policy.maskCopyText(data, stats: &result.masking.detectors)
        result.rowsSent += lines
        actions.append(.sendToClient(rewritten ?? frame))
        return true
    }

    // MARK: Rows, errors, notices

    /// Forwards a row, masked if needed. Returns false when its width does not match its description (the caller
    /// ends the session: the server broke the protocol).
    private func forwardRow(
        _ row: DataRow, frame: ByteBuffer, result: inout ResultProgress, into actions: inout [Action]
    ) -> Bool {
        result.rowsSent += 1
        guard self.policy.masksResults else {
            actions.append(.sendToClient(frame))
            return true
        }
        if result.plan == nil {
            // Rows without a description we know (should not happen: we describe when the client did not).
            result.plan = self.policy.plan(for: nil, columnCount: row.count)
        }
        if result.plan!.isPassThrough {
            actions.append(.sendToClient(frame))
            return true
        }
        do {
            let rewritten = try self.policy.maskRow(row, plan: &result.plan!, stats: &result.masking.detectors)
            actions.append(.sendToClient(rewritten ?? frame))
            return true
        } catch {
            return false
        }
    }

    func forwardError(
        _ fields: PostgresErrorFields, frame: ByteBuffer, stats: inout MaskStats, into actions: inout [Action]
    ) {
        guard self.policy.masksResults, let masked = self.policy.maskErrorFields(fields, stats: &stats) else {
            actions.append(.sendToClient(frame))
            return
        }
        var buffer = ByteBuffer()
        PostgresBackendMessage.errorResponse(masked).encode(into: &buffer)
        actions.append(.sendToClient(buffer))
    }

    private func forwardNotice(
        _ fields: PostgresErrorFields, frame: ByteBuffer, into actions: inout [Action]
    ) {
        var stats = MaskStats()
        guard self.policy.masksResults, let masked = self.policy.maskErrorFields(fields, stats: &stats) else {
            actions.append(.sendToClient(frame))
            return
        }
        var buffer = ByteBuffer()
        PostgresBackendMessage.noticeResponse(masked).encode(into: &buffer)
        actions.append(.sendToClient(buffer))
    }

    // MARK: Column resolution

    /// Makes sure every source column of `fields` is resolved. Returns false when the gateway was asked: `framed`
    /// and everything after it are held until ``columnsResolved(_:into:)``.
    private func resolveColumns(
        of fields: [Field], holding framed: ServerMessage, into actions: inout [Action]
    ) -> Bool {
        guard self.policy.hasColumnRules else { return true }
        var missing: [PostgresColumnID] = []
        for field in fields where field.tableOID != 0 && field.columnAttributeNumber > 0 {
            let column = PostgresColumnID(tableOID: field.tableOID, attributeNumber: field.columnAttributeNumber)
            if self.columnResolutions[column] != nil { continue }
            if let known = self.policy.resolver.resolution(of: column) {
                self.columnResolutions[column] = known
            } else if !missing.contains(column) {
                missing.append(column)
            }
        }
        guard !missing.isEmpty else { return true }
        self.awaitingColumns = Set(missing)
        self.held.prepend(framed)
        actions.append(.resolveColumns(missing))
        return false
    }

    /// The server broke the protocol: the client gets FATAL 08P01, the session ends.
    func serverViolation(_ what: String, into actions: inout [Action]) {
        let error = PostgresWireError(
            code: .unexpectedData,
            message: "the database server sent an unexpected \(what)",
            sqlState: SQLState.protocolViolation
        )
        self.close(with: error.errorResponse(), into: &actions)
    }
}
