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
        /// A payload the entry references by hash, committed in the entry's transaction.
        var blob: AuditBlob? = nil
        var completion: @Sendable (Result<AuditRecord, AuditError>) -> Void
        /// Set on a `log.key_rotated` entry: it is committed alone, with a checkpoint of its size
        /// signed by the old key, and the writer switches keys before it signs anything else.
        var rotation: Rotation? = nil
    }

    /// The key switch that goes with a rotation entry.
    struct Rotation: Sendable {
        var newSigner: NoteSigner
        /// Puts the new key in place of the key file (runs on the writer thread, after the commit).
        var install: @Sendable () throws(AuditError) -> Void
    }

    /// How long an entry that nobody waits on may stay queued before it is committed alone.
    static let deferredDelay: TimeInterval = 0.05
    /// A checkpoint is signed at most this long after an entry is committed.
    static let checkpointInterval: TimeInterval = 1
    /// With no entry for this long, a `log.heartbeat` entry (and its checkpoint) shows the log is
    /// alive and nothing happened.
    static let heartbeatInterval: TimeInterval = 60

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
    /// Signs checkpoints; nil: the log keeps its tree but signs nothing (tests of other parts).
    /// Replaced only by a rotation; the writer thread reads it, other threads read ``currentSigner``.
    private var signing: AuditSigning?
    /// Guarded by `condition`: the signer in force, for the manifest of an export.
    private var publishedSigner: NoteSigner?
    /// Writer thread only: the newest rotation entry's index; a checkpoint signed by the new key must
    /// be larger (the old key signed exactly this size).
    private var rotationFloor: UInt64 = 0
    /// The checkpoints' first line.
    private let origin: String
    /// ``heartbeatInterval`` unless a test shortens it.
    let heartbeatInterval: TimeInterval
    // Writer thread only:
    /// The tree's right edge after the last commit (nil after a failed transaction: reloaded).
    private var tree: MerkleCompactRange?
    private var lastCheckpoint: StoredCheckpoint?
    /// When the last entry was committed (for the heartbeat).
    private var lastCommit = Date()
    /// A rotation just switched keys: the next heartbeat is due at once (with `reason:
    /// key_rotated`), so the new key signs a checkpoint within a second even on an idle log, and
    /// an auditor holding only the new key can verify right away.
    private var keyJustRotated = false
    private var signedCheckpoints = 0
    /// Guarded by `condition`: sign at once, whatever the interval (tests, `requestCheckpoint`).
    private var forceCheckpoint = false

    init(
        pool: DatabasePool,
        path: String,
        logger: Logger,
        clock: @escaping @Sendable () -> Date,
        lastMicros: Int64,
        maximumEntrySize: Int,
        signing: AuditSigning? = nil,
        origin: String = "",
        lastCheckpoint: StoredCheckpoint? = nil,
        heartbeatInterval: TimeInterval = AuditWriter.heartbeatInterval
    ) {
        self.heartbeatInterval = heartbeatInterval
        self.origin = origin
        self.pool = pool
        self.path = path
        self.logger = logger
        self.clock = clock
        self.lastMicros = lastMicros
        self.maximumEntrySize = maximumEntrySize
        self.signing = signing
        self.publishedSigner = signing?.signer
        self.lastCheckpoint = lastCheckpoint
    }

    /// The key that signs checkpoints now.
    var currentSigner: NoteSigner? {
        condition.lock()
        defer { condition.unlock() }
        return publishedSigner
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
        blob: AuditBlob? = nil,
        rotation: Rotation? = nil,
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
        pending.append(
            Pending(
                kind: kind, template: template, micros: micros, urgent: urgent, blob: blob, completion: completion,
                rotation: rotation))
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
            var treeWork = false
            var forced = false
            while !closing {
                if paused {
                    condition.wait()
                } else if pending.isEmpty {
                    // Nothing to append: wait for an entry, or for the next checkpoint or heartbeat.
                    if forceCheckpoint {
                        forceCheckpoint = false
                        (treeWork, forced) = (true, true)
                        break
                    }
                    guard let due = treeWorkDue() else {
                        condition.wait()
                        continue
                    }
                    if Date() >= due {
                        treeWork = true
                        break
                    }
                    _ = condition.wait(until: due)
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
            if pending.isEmpty && !treeWork {  // closing and drained
                condition.unlock()
                // The last checkpoint covers everything, `daemon.stopped` included.
                signPendingCheckpoint()
                condition.lock()
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

            if batch.isEmpty {
                if !forced, let checkpointed = lastCheckpoint, checkpointed.size == committedSize,
                    let beat = heartbeat()
                {
                    commit([beat])
                } else {
                    signPendingCheckpoint()
                }
            } else if !batch.contains(where: { $0.rotation != nil }) {
                commit(batch)
            } else {
                // A rotation entry goes alone, between what was queued before and after it.
                var start = 0
                for (i, item) in batch.enumerated() where item.rotation != nil {
                    if start < i { commit(Array(batch[start..<i])) }
                    commit([item])
                    start = i + 1
                }
                if start < batch.count { commit(Array(batch[start...])) }
            }
            batch.removeAll(keepingCapacity: true)
        }
    }

    // MARK: the tree and checkpoints (writer thread)

    /// Entries committed so far (the tree's size), when known.
    private var committedSize: UInt64? { nextIndex.map { $0 - 1 } }

    /// When the writer must wake up with nothing queued: one second after the last checkpoint when
    /// entries are not covered yet, or a minute after the last entry (heartbeat). Nil without a
    /// signing key.
    private func treeWorkDue() -> Date? {
        guard signing != nil else { return nil }
        guard let size = committedSize else { return Date() }  // not loaded yet: load and look
        if let last = lastCheckpoint, last.size == size {
            return lastCommit.addingTimeInterval(heartbeatInterval)
        }
        return (lastCheckpoint?.time ?? .distantPast).addingTimeInterval(Self.checkpointInterval)
    }

    /// The entry written when nothing else was for a minute (or right after a key rotation).
    private func heartbeat() -> Pending? {
        var fields: [String: AuditValue] = ["interval_s": .int(Int64(heartbeatInterval.rounded()))]
        if keyJustRotated {
            fields["reason"] = .string("key_rotated")
            keyJustRotated = false
        }
        guard
            let template = try? EntryTemplate.make(kind: AuditKind.heartbeat, subject: AuditSubject(), fields: fields)
        else { return nil }
        condition.lock()
        let stamped = max(AuditTime.micros(clock()), lastMicros)
        lastMicros = stamped
        condition.unlock()
        return Pending(
            kind: AuditKind.heartbeat, template: template, micros: stamped, urgent: true, completion: { _ in })
    }

    /// A transaction that only signs a checkpoint over what is committed (when something is not
    /// covered yet), also loading the tree the first time.
    private func signPendingCheckpoint() {
        guard signing != nil else { return }
        do {
            try pool.writeWithoutTransaction { db in
                try db.inTransaction(.immediate) {
                    let size = try loadTree(db)
                    if lastCheckpoint?.size != size {
                        try signCheckpoint(db)
                    }
                    return .commit
                }
            }
            if let signed = pendingCheckpoint {
                lastCheckpoint = signed
                pendingCheckpoint = nil
                signedCheckpoints += 1
            }
        } catch {
            tree = nil
            nextIndex = nil
            pendingCheckpoint = nil
            logger.critical(
                "ALERT: cannot sign a checkpoint of the audit log", metadata: ["audit.error": "\(error)"])
        }
    }

    /// Makes sure `tree` and `nextIndex` describe the committed log; returns its size.
    @discardableResult
    private func loadTree(_ db: Database) throws -> UInt64 {
        let next: UInt64
        if let known = nextIndex {
            next = known
        } else {
            let last = try Int64.fetchOne(db.cachedStatement(sql: "SELECT coalesce(max(idx), 0) FROM entries")) ?? 0
            next = UInt64(last) + 1
            nextIndex = next
        }
        if tree?.size != next - 1 {
            tree = try StoredTree(db: db).compactRange(size: next - 1)
        }
        return next - 1
    }

    /// Signs a checkpoint of the tree as it is in this transaction, after checking that the tree
    /// still has the root the previous checkpoint signed (the daemon never signs a view that is
    /// inconsistent with one it signed before). Sets `pendingCheckpoint`; it becomes
    /// `lastCheckpoint` when the transaction commits.
    private func signCheckpoint(_ db: Database) throws {
        guard let signing, let tree else { return }
        guard tree.size > rotationFloor || rotationFloor == 0 else {
            throw AuditError(
                .corrupt,
                "refusing to sign size \(tree.size) with the key that replaced the old one at entry \(rotationFloor)")
        }
        if let last = lastCheckpoint {
            guard tree.size > last.size else { return }
            let rootThen = try Merkle.root(size: last.size, source: StoredTree(db: db))
            guard rootThen == last.root else {
                throw AuditError(
                    .corrupt,
                    "the tree at size \(last.size) has root \(rootThen.hex), not the \(last.root.hex) its checkpoint "
                        + "signed: the log was changed; no checkpoint is signed until this is investigated")
            }
        }
        let now = clock()
        let text = Checkpoint(origin: origin, size: tree.size, rootHash: tree.root.bytes).text
        let note = try signing.signer.sign(text)
        try db.cachedStatement(sql: "INSERT INTO checkpoints (size, time_us, root, note) VALUES (?, ?, ?, ?)")
            .execute(arguments: [Int64(tree.size), AuditTime.micros(now), Data(tree.root.bytes), note])
        pendingCheckpoint = StoredCheckpoint(size: tree.size, root: tree.root, time: now, note: note)
    }

    private var pendingCheckpoint: StoredCheckpoint?

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
                    var next = try loadTree(db) + 1
                    pendingCheckpoint = nil
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
                        if let blob = item.blob {
                            try db.cachedStatement(
                                sql: "INSERT OR IGNORE INTO blobs (hash, time_us, size, data) VALUES (?, ?, ?, ?)"
                            ).execute(arguments: [
                                Data(blob.hash.bytes), item.micros, blob.data.count, blob.data,
                            ])
                        }
                        try insert.execute(arguments: [
                            Int64(next), item.micros, item.kind,
                            item.template.subject.user, item.template.subject.resource, item.template.subject.session,
                            Data(body),
                        ])
                        // The leaf and every perfect subtree it completes, in the same transaction.
                        if let completed = tree?.append(Merkle.leafHash(body)) {
                            try StoredTree.insert(db, completed)
                        }
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
                    if let rotation = batch.first?.rotation, let entry = committed.first?.record {
                        // The old key's last checkpoint is this entry's size, in this transaction, and
                        // the log's current key moves with it: both or neither.
                        try signCheckpoint(db)
                        guard pendingCheckpoint?.size == entry.index else {
                            throw AuditError(.rotationFailed, "no checkpoint over the rotation entry was signed")
                        }
                        try db.execute(
                            sql: "UPDATE meta SET value = ? WHERE key = 'verifier_key'",
                            arguments: [rotation.newSigner.verifierKey])
                    } else if signing != nil,
                        Date().timeIntervalSince(lastCheckpoint?.time ?? .distantPast) >= Self.checkpointInterval
                    {
                        // Once a second at most while entries arrive; a failure to sign never refuses
                        // the entries (the next transaction, or the timer, tries again).
                        do {
                            try db.execute(sql: "SAVEPOINT checkpoint")
                            try signCheckpoint(db)
                            try db.execute(sql: "RELEASE checkpoint")
                        } catch {
                            pendingCheckpoint = nil
                            try? db.execute(sql: "ROLLBACK TO checkpoint")
                            try? db.execute(sql: "RELEASE checkpoint")
                            logger.critical(
                                "ALERT: cannot sign a checkpoint of the audit log",
                                metadata: ["audit.error": "\(error)"])
                        }
                    }
                    try db.cachedStatement(sql: "COMMIT").execute()
                    nextIndex = next
                    lastCommit = Date()
                    // Entries after a rotation get the new key's checkpoint; no heartbeat is owed.
                    keyJustRotated = false
                    if let signed = pendingCheckpoint {
                        lastCheckpoint = signed
                        pendingCheckpoint = nil
                        signedCheckpoints += 1
                    }
                    if let rotation = batch.first?.rotation, let entry = committed.first?.record {
                        switchKey(rotation, at: entry.index)
                    }
                } catch {
                    nextIndex = nil
                    tree = nil
                    pendingCheckpoint = nil
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

    /// After a rotation entry and the old key's checkpoint over it committed: the new key signs
    /// from now on, and replaces the key file before it signs anything. A failure to replace the
    /// file is an alert, not a reason to sign on with the old key (the log already names the new
    /// one); the new key is still waiting beside the key file and the next open installs it.
    private func switchKey(_ rotation: Rotation, at index: UInt64) {
        signing?.signer = rotation.newSigner
        rotationFloor = index
        keyJustRotated = true
        lastCommit = .distantPast
        condition.lock()
        publishedSigner = rotation.newSigner
        condition.unlock()
        do {
            try rotation.install()
        } catch {
            logger.critical(
                "ALERT: the key rotation is committed but the key file could not be replaced",
                metadata: ["audit.error": "\(error)"])
        }
    }

    /// Wakes the writer to sign a checkpoint over what is committed, if anything is not covered.
    func requestCheckpoint() {
        condition.lock()
        forceCheckpoint = true
        condition.broadcast()
        condition.unlock()
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
