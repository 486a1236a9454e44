import Foundation
import GRDB
import Logging

/// The single writer: a dedicated thread that commits every waiting append in one transaction.
///
/// A thread rather than a Swift task because it blocks in SQLite (and in fsync with `.powerLoss`)
/// for as long as a commit takes, which must never starve the cooperative pool or an event loop.
///
/// `@unchecked Sendable`: every mutable property is read and written only while `condition` is
/// locked; the rest are immutable or Sendable.
final class AuditWriter: @unchecked Sendable {
    struct Pending {
        var kind: String
        var template: EntryTemplate
        var micros: Int64
        /// False for entries nobody waits on: they ride along with the next urgent commit, or are
        /// committed after `deferredDelay` at the latest.
        var urgent: Bool
        var completion: @Sendable (Result<AuditRecord, AuditError>) -> Void
    }

    /// How long an entry that nobody waits on may stay queued before it is committed alone.
    static let deferredDelay: TimeInterval = 0.05

    private let pool: DatabasePool
    private let path: String
    private let logger: Logger
    private let clock: @Sendable () -> Date
    private let maximumEntrySize: Int

    private let condition = NSCondition()
    // Guarded by `condition`:
    private var pending: [Pending] = []
    /// Whether `pending` holds an entry someone waits on, and since when the oldest deferred one waits.
    private var pendingUrgent = false
    private var oldestDeferred: Date?
    private var lastMicros: Int64
    private var closing = false
    private var finished = false
    private var paused = false
    private var thread: Thread?
    private var committedTransactions = 0
    private var failedTransactions = 0
    private var maximumBatch = 0
    /// The next index, known after the first commit (only the writer thread touches it; a failed
    /// transaction forgets it so it is read again from the database).
    private var nextIndex: UInt64?

    init(
        pool: DatabasePool,
        path: String,
        logger: Logger,
        clock: @escaping @Sendable () -> Date,
        lastMicros: Int64,
        maximumEntrySize: Int
    ) {
        self.pool = pool
        self.path = path
        self.logger = logger
        self.clock = clock
        self.lastMicros = lastMicros
        self.maximumEntrySize = maximumEntrySize
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "interlock-audit-writer"
        condition.lock()
        self.thread = thread
        condition.unlock()
        thread.start()
    }

    // MARK: callers' side

    func enqueue(
        kind: String,
        template: EntryTemplate,
        urgent: Bool = true,
        completion: @escaping @Sendable (Result<AuditRecord, AuditError>) -> Void
    ) {
        condition.lock()
        guard !closing else {
            condition.unlock()
            completion(.failure(AuditError(.closed, "\(kind) not recorded: the audit log \(path) is closed")))
            return
        }
        // Times are taken under the lock so they never decrease along the queue, hence along indexes,
        // even if the wall clock steps back.
        let micros = max(AuditTime.micros(clock()), lastMicros)
        lastMicros = micros
        pending.append(Pending(kind: kind, template: template, micros: micros, urgent: urgent, completion: completion))
        if urgent {
            if !pendingUrgent {
                pendingUrgent = true
                condition.signal()
            }
        } else if oldestDeferred == nil {
            oldestDeferred = Date()
            condition.signal()
        }
        condition.unlock()
    }

    var isClosed: Bool {
        condition.lock()
        defer { condition.unlock() }
        return closing
    }

    /// Refuses new appends and waits for the writer to drain. False when called on the writer thread
    /// (which cannot wait for itself) or when the log was already closed by someone else.
    func stopAndWait() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let first = !closing
        closing = true
        condition.broadcast()
        if Thread.current === thread {
            return false
        }
        while !finished {
            condition.wait()
        }
        return first
    }

    // MARK: the writer thread

    private func run() {
        var batch: [Pending] = []
        while true {
            condition.lock()
            while !closing {
                if paused || pending.isEmpty {
                    condition.wait()
                } else if pendingUrgent {
                    break
                } else if let since = oldestDeferred {
                    // Only deferred entries: wait for an urgent one to carry them, or for the delay.
                    let due = since.addingTimeInterval(Self.deferredDelay)
                    if Date() >= due { break }
                    _ = condition.wait(until: due)
                } else {
                    break
                }
            }
            if pending.isEmpty {  // closing and drained
                finished = true
                thread = nil
                condition.broadcast()
                condition.unlock()
                return
            }
            swap(&batch, &pending)
            pendingUrgent = false
            oldestDeferred = nil
            condition.unlock()

            commit(batch)
            batch.removeAll(keepingCapacity: true)
        }
    }

    private func commit(_ batch: [Pending]) {
        var committed: [(completion: @Sendable (Result<AuditRecord, AuditError>) -> Void, record: AuditRecord)] = []
        var rejected: [(completion: @Sendable (Result<AuditRecord, AuditError>) -> Void, error: AuditError)] = []
        committed.reserveCapacity(batch.count)
        do {
            try pool.writeWithoutTransaction { db in
                // One transaction per batch, with statements prepared once: at low concurrency every
                // entry is its own batch, and parsing BEGIN/COMMIT each time was a measurable cost.
                try db.cachedStatement(sql: "BEGIN IMMEDIATE").execute()
                do {
                    committed.removeAll(keepingCapacity: true)
                    rejected.removeAll()
                    // The next index is read from the database once, and again after any failed
                    // transaction (which consumes none); the insert trigger refuses anything but
                    // max(idx)+1, so the writer's copy cannot drift unnoticed.
                    var next: UInt64
                    if let known = nextIndex {
                        next = known
                    } else {
                        let last =
                            try Int64.fetchOne(db.cachedStatement(sql: "SELECT coalesce(max(idx), 0) FROM entries"))
                            ?? 0
                        next = UInt64(last) + 1
                    }
                    let insert = try db.cachedStatement(
                        sql:
                            "INSERT INTO entries (idx, time_us, kind, user, resource, session, body) "
                            + "VALUES (?, ?, ?, ?, ?, ?, ?)"
                    )
                    for item in batch {
                        let size = item.template.size(index: next)
                        guard size <= maximumEntrySize else {
                            rejected.append((item.completion, AuditLog.tooLarge(kind: item.kind, size: size)))
                            continue
                        }
                        let body = item.template.render(index: next, micros: item.micros)
                        try insert.execute(arguments: [
                            Int64(next), item.micros, item.kind,
                            item.template.subject.user, item.template.subject.resource, item.template.subject.session,
                            Data(body),
                        ])
                        committed.append(
                            (
                                item.completion,
                                AuditRecord(
                                    index: next,
                                    time: AuditTime.date(micros: item.micros),
                                    kind: item.kind,
                                    body: body
                                )
                            )
                        )
                        next += 1
                    }
                    try db.cachedStatement(sql: "COMMIT").execute()
                    nextIndex = next
                } catch {
                    nextIndex = nil
                    if db.isInsideTransaction { try? db.execute(sql: "ROLLBACK") }
                    throw error
                }
            }
        } catch {
            let auditError = AuditError.from(error, while: "committing \(batch.count) audit entries", path: path)
            condition.lock()
            failedTransactions += 1
            condition.unlock()
            logger.critical(
                """
                ALERT: audit entries cannot be committed; the requests waiting on them are refused \
                until the store accepts writes again
                """,
                metadata: [
                    "audit.batch": "\(batch.count)",
                    "audit.error.code": "\(auditError.code)",
                    "audit.error": "\(auditError.message)",
                ]
            )
            for item in batch {
                item.completion(.failure(auditError))
            }
            return
        }
        condition.lock()
        if !committed.isEmpty {
            committedTransactions += 1
            maximumBatch = max(maximumBatch, committed.count)
        }
        condition.unlock()
        if let first = committed.first, let last = committed.last {
            logger.trace(
                "committed audit batch",
                metadata: [
                    "audit.count": "\(committed.count)", "audit.first": "\(first.record.index)",
                    "audit.last": "\(last.record.index)",
                ]
            )
        }
        for (completion, error) in rejected {
            completion(.failure(error))
        }
        for (completion, record) in committed {
            completion(.success(record))
        }
    }

    // MARK: test hooks

    struct Statistics: Sendable, Equatable {
        var committedTransactions: Int
        var failedTransactions: Int
        var maximumBatch: Int
    }

    var statistics: Statistics {
        condition.lock()
        defer { condition.unlock() }
        return Statistics(
            committedTransactions: committedTransactions,
            failedTransactions: failedTransactions,
            maximumBatch: maximumBatch
        )
    }

    /// Holds queued appends until ``resume()`` (close still drains them).
    func pause() {
        condition.lock()
        paused = true
        condition.unlock()
    }

    func resume() {
        condition.lock()
        paused = false
        condition.broadcast()
        condition.unlock()
    }
}
