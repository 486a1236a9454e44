import Foundation
import GRDB
import Logging
import Synchronization

/// The append-only evidence log: one canonical JSON entry per fact, with a gap-free index, in SQLite.
///
/// The gateway appends from its event loops and forwards a request only once the completion says the
/// entry is committed. Appends never block: they are queued, and one dedicated writer thread commits
/// everything waiting in a single transaction (group commit), so many concurrent sessions share one
/// fsync. Reads (`query`, `lastIndex`) use WAL reader connections and never wait for the writer.
///
/// Nothing in the store is ever updated or deleted; triggers refuse it even to someone holding the
/// database file with `sqlite3`. Tampering that bypasses SQLite is caught by the Merkle tree that is
/// built over the entries' bytes.
public final class AuditLog: Sendable {
    /// Largest canonical entry, in bytes. Larger payloads belong in blobs referenced by hash.
    public static let maximumEntrySize = 64 * 1024

    /// The database file.
    public let path: String
    public let durability: AuditDurability

    /// This log's identity, made when it was created (`meta.appliance_id`).
    public let applianceID: String
    /// The checkpoints' first line: `interlock/<appliance id>`.
    public let origin: String
    /// The verifier key that signs checkpoints now (`meta.verifier_key` when the log was opened
    /// without a key), nil until a signing key is used. A rotation changes it.
    public var verifierKey: String? { writer.currentSigner?.verifierKey ?? openedVerifierKey }
    private let openedVerifierKey: String?
    /// The signing key's file, for a rotation (``AuditSigning/keyFile``).
    let keyFile: String?
    /// Set while a key rotation runs: one at a time.
    let rotating = Atomic<Bool>(false)
    private let checkpointer: WALCheckpointer

    let pool: DatabasePool
    let writer: AuditWriter
    let logger: Logger

    private init(
        path: String, durability: AuditDurability, pool: DatabasePool, writer: AuditWriter, logger: Logger,
        applianceID: String, verifierKey: String?, signing: AuditSigning?, checkpointer: WALCheckpointer
    ) {
        self.checkpointer = checkpointer
        self.keyFile = signing?.keyFile
        self.path = path
        self.durability = durability
        self.pool = pool
        self.writer = writer
        self.logger = logger
        self.applianceID = applianceID
        self.origin = "interlock/\(applianceID)"
        self.openedVerifierKey = verifierKey
    }

    deinit {
        close()
    }

    // MARK: opening

    /// Opens (or creates) the log at `path` and starts its writer thread.
    ///
    /// A new file is created with mode 0600 and, when missing, its directory with mode 0750, owned by
    /// the calling user (the daemon's). An existing file must be an Interlock audit log of this schema
    /// version; appends continue at `lastIndex + 1`.
    ///
    /// With `signing`, the log signs checkpoints with that key. A new log's first entry is then the
    /// genesis (`log.genesis`: the verifier key, the appliance id, the origin, the software
    /// version), and a log signed by another key is refused: its key is part of its history. The
    /// key of a log that rotated is its last rotation's new key; with ``AuditSigning/keyFile`` set,
    /// a rotation a crash interrupted is finished (its entry committed) or discarded (it did not)
    /// here, whoever opens the log (see ``KeyFiles/reconcile(signer:keyPath:logKey:retiredKey:databasePath:)``).
    public static func open(
        path: String,
        durability: AuditDurability = .crash,
        signing: AuditSigning? = nil,
        logger: Logger
    ) throws(AuditError) -> AuditLog {
        try open(path: path, durability: durability, signing: signing, logger: logger, clock: { Date() })
    }

    /// `clock` is the source of entry times; tests inject their own.
    static func open(
        path: String,
        durability: AuditDurability,
        signing: AuditSigning? = nil,
        logger: Logger,
        clock: @escaping @Sendable () -> Date,
        heartbeatInterval: TimeInterval = AuditWriter.heartbeatInterval
    ) throws(AuditError) -> AuditLog {
        var logger = logger
        logger[metadataKey: "audit.path"] = "\(path)"
        try prepareFile(path: path, logger: logger)

        var configuration = Configuration()
        configuration.label = "interlock.audit"
        configuration.maximumReaderCount = 4
        // Another process holding the write lock (a second daemon) fails the batch after this long
        // instead of blocking the writer forever.
        configuration.busyMode = .timeout(5)

        let pool: DatabasePool
        let lastMicros: Int64
        var applianceID = ""
        var verifierKey: String?
        var lastCheckpoint: StoredCheckpoint?
        var isEmpty = false
        var signing = signing
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            // DatabasePool sets synchronous=NORMAL when it enables WAL, after prepareDatabase runs, so
            // the durability pragma goes here, on the one writer connection.
            let synchronous = durability == .powerLoss ? "FULL" : "NORMAL"
            lastMicros = try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
                // After a checkpoint, truncate the WAL back to 64 MiB instead of keeping its peak size.
                try db.execute(sql: "PRAGMA journal_size_limit = 67108864")
                // WAL checkpoints (copying the log into the database, with its fsync) run on a
                // thread of their own (WALCheckpointer), not inside a commit someone waits on.
                try db.execute(sql: "PRAGMA wal_autocheckpoint = 0")
                var id = ""
                var key: String?
                try db.inTransaction(.immediate) {
                    try AuditSchema.prepare(db, path: path)
                    try db.execute(
                        sql: "INSERT OR IGNORE INTO meta (key, value) VALUES ('appliance_id', ?)",
                        arguments: [Self.newApplianceID()])
                    id = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'appliance_id'") ?? ""
                    key = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'verifier_key'")
                    if let given = signing {
                        let mine = given.signer.verifierKey
                        if let logKey = key {
                            let chain = try AuditKeyChain.from(AuditKeyChain.chainEntries(db))
                            let current = chain?.rotations.last?.newKey ?? logKey
                            signing?.signer = try KeyFiles.reconcile(
                                signer: given.signer, keyPath: given.keyFile, logKey: current,
                                retiredKey: chain?.rotations.last?.oldKey, databasePath: path)
                            if current != logKey {
                                try db.execute(
                                    sql: "UPDATE meta SET value = ? WHERE key = 'verifier_key'", arguments: [current])
                                key = current
                            }
                        } else {
                            try db.execute(
                                sql: "INSERT INTO meta (key, value) VALUES ('verifier_key', ?)", arguments: [mine])
                            key = mine
                            if let keyFile = given.keyFile { unlink(KeyFiles.pendingPath(for: keyFile)) }
                        }
                    }
                    return .commit
                }
                applianceID = id
                verifierKey = key
                lastCheckpoint = try StoredTree.latestCheckpoint(db)
                isEmpty = try Int64.fetchOne(db, sql: "SELECT count(*) FROM entries") == 0
                return try Int64.fetchOne(db, sql: "SELECT max(time_us) FROM entries") ?? Int64.min
            }
        } catch let error as AuditError {
            throw error
        } catch {
            throw AuditError.from(error, while: "opening the audit log", path: path)
        }
        let writer = AuditWriter(
            pool: pool,
            path: path,
            logger: logger,
            clock: clock,
            lastMicros: lastMicros,
            maximumEntrySize: maximumEntrySize,
            signing: signing,
            origin: "interlock/\(applianceID)",
            lastCheckpoint: lastCheckpoint,
            heartbeatInterval: heartbeatInterval
        )
        writer.start()
        let checkpointer = WALCheckpointer(path: path, logger: logger)
        checkpointer.start()
        logger.debug("audit log open", metadata: ["audit.durability": "\(durability.rawValue)"])
        let log = AuditLog(
            path: path, durability: durability, pool: pool, writer: writer, logger: logger, applianceID: applianceID,
            verifierKey: verifierKey, signing: signing, checkpointer: checkpointer)
        if isEmpty, let signing {
            try log.appendGenesis(signing)
        }
        return log
    }

    /// The first entry of a signed log, written before anything else can be.
    private func appendGenesis(_ signing: AuditSigning) throws(AuditError) {
        var fields = signing.genesis
        fields["public_key"] = .string(signing.signer.verifierKey)
        fields["appliance_id"] = .string(applianceID)
        fields["origin"] = .string(origin)
        _ = try appendAndWait(kind: AuditKind.genesis, subject: AuditSubject(), fields: fields)
    }

    /// Appends one entry and blocks until it is durable: for the log's own entries written from
    /// plain threads (the genesis at open, a prune). Never call it on an event loop.
    func appendAndWait(
        kind: String, subject: AuditSubject, fields: [String: AuditValue]
    ) throws(AuditError) -> AuditRecord {
        try waitFor { done in append(kind: kind, subject: subject, fields: fields, completion: done) }
    }

    /// Starts an append with `start` and blocks until its completion ran.
    func waitFor(
        _ start: (@escaping @Sendable (Result<AuditRecord, AuditError>) -> Void) -> Void
    ) throws(AuditError) -> AuditRecord {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<AuditRecord, AuditError>?>(nil)
        start { r in
            result.withLock { $0 = r }
            done.signal()
        }
        done.wait()
        switch result.withLock({ $0 }) {
        case .success(let record)?: return record
        case .failure(let error)?: throw error
        case nil: throw AuditError(.storage, "the entry was not written")
        }
    }

    /// 16 random bytes in hex: names this log (and this appliance) in checkpoints and exports.
    static func newApplianceID() -> String {
        var rng = SystemRandomNumberGenerator()
        return (0..<16).map { _ in
            let b = UInt8.random(in: 0...255, using: &rng)
            return (b < 16 ? "0" : "") + String(b, radix: 16)
        }.joined()
    }

    private static func prepareFile(path: String, logger: Logger) throws(AuditError) {
        let directory = (path as NSString).deletingLastPathComponent
        let fileManager = FileManager.default
        if !directory.isEmpty && !fileManager.fileExists(atPath: directory) {
            do {
                try fileManager.createDirectory(
                    atPath: directory,
                    withIntermediateDirectories: true,
                    attributes: [.posixPermissions: 0o750]
                )
            } catch {
                throw AuditError(.storage, "cannot create the audit directory \(directory): \(error)")
            }
        }
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd >= 0 {
            // The umask may have removed bits; set exactly 0600. SQLite gives -wal and -shm the same mode.
            let status = fchmod(fd, 0o600)
            let chmodErrno = errno
            Glibc.close(fd)
            guard status == 0 else {
                throw AuditError(.storage, "cannot set mode 0600 on \(path): \(String(cString: strerror(chmodErrno)))")
            }
            logger.notice("created a new audit log")
            return
        }
        let openErrno = errno
        guard openErrno == EEXIST else {
            throw AuditError(
                .storage,
                "cannot create the audit log \(path): \(String(cString: strerror(openErrno))); "
                    + "check that its directory exists and belongs to the daemon's user"
            )
        }
        var info = stat()
        if stat(path, &info) == 0 && info.st_mode & 0o077 != 0 {
            logger.warning(
                "the audit log is readable or writable by other users; run chmod 600 on it",
                metadata: ["audit.mode": "\(String(info.st_mode & 0o777, radix: 8))"]
            )
        }
    }

    // MARK: appending

    /// Enqueues one entry and returns at once.
    ///
    /// `completion` runs on the writer thread after the transaction holding the entry committed
    /// (durable per ``durability``); keep it short and hop to your own event loop. It gets an error
    /// instead when the store cannot commit (disk full, I/O error): then nothing of that batch is
    /// visible, no index is consumed, an alert is logged at `.critical`, and later appends are served
    /// again (and succeed once the cause is gone).
    ///
    /// `deferred: true` is for entries nobody waits on (a `session.close`): the writer does not wake
    /// up for them alone but commits them with the next entry someone waits on, or after 50 ms, so
    /// a connection costs one transaction instead of two when connections arrive one at a time.
    /// Queue order, hence index order, is kept either way.
    ///
    /// `subject` fills the indexed columns and is written into the body as top-level `user`,
    /// `resource` and `session`; `fields` may carry those members too (equal to the subject, or
    /// instead of it).
    ///
    /// Errors found before queueing (`.invalidEntry`: a reserved field `index`, `kind`, `time` or `v`,
    /// a bad kind, a top-level `user`/`resource`/`session` that differs from the subject;
    /// `.entryTooLarge`; `.closed`) are delivered synchronously, on the calling thread, before this
    /// returns.
    public func append(
        kind: String,
        subject: AuditSubject,
        fields: [String: AuditValue],
        deferred: Bool = false,
        completion: @escaping @Sendable (Result<AuditRecord, AuditError>) -> Void
    ) {
        let template: EntryTemplate
        do {
            template = try EntryTemplate.make(kind: kind, subject: subject, fields: fields)
        } catch {
            completion(.failure(error))
            return
        }
        enqueue(kind: kind, template: template, deferred: deferred, completion: completion)
    }

    func enqueue(
        kind: String, template: EntryTemplate, deferred: Bool, blob: AuditBlob? = nil,
        completion: @escaping @Sendable (Result<AuditRecord, AuditError>) -> Void
    ) {
        if template.sizeWithoutIndex + 1 > Self.maximumEntrySize {
            completion(.failure(Self.tooLarge(kind: kind, size: template.sizeWithoutIndex + 1)))
            return
        }
        writer.enqueue(kind: kind, template: template, urgent: !deferred, blob: blob, completion: completion)
    }

    /// Appends one entry and returns it once it is committed. See the completion-based variant.
    public func append(
        kind: String,
        subject: AuditSubject,
        fields: [String: AuditValue]
    ) async throws(AuditError) -> AuditRecord {
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<AuditRecord, AuditError>, Never>) in
            append(kind: kind, subject: subject, fields: fields) { result in
                continuation.resume(returning: result)
            }
        }
        return try result.get()
    }

    static func tooLarge(kind: String, size: Int) -> AuditError {
        AuditError(
            .entryTooLarge,
            "\(kind) entry would be \(size) bytes, over the \(maximumEntrySize)-byte limit; "
                + "store large payloads as blobs and reference them by hash. Nothing was written"
        )
    }

    // MARK: reading

    /// The newest `q.limit` entries matching every filter of `q`, in ascending index order.
    ///
    /// Runs on a reader connection (a WAL snapshot): it never waits for the writer and sees only
    /// committed entries.
    public func query(_ q: AuditQuery) throws(AuditError) -> [AuditRecord] {
        guard q.limit > 0 else { return [] }
        if let after = q.afterIndex, after >= UInt64(Int64.max) { return [] }
        let newestFirst = try read("querying the audit log") { db -> [AuditRecord] in
            // Time bounds become index bounds (time never decreases with the index).
            var lower = Int64(q.afterIndex ?? 0) + 1
            var upper = Int64.max
            if q.user == nil && q.resource == nil && q.session == nil && q.kind == nil {
                // Below the retention cut only the key chain's entries are left: an unfiltered
                // selection starts at the cut, so it stays gap-free.
                lower = max(lower, try Self.prunedBelow(db))
            }
            if let since = q.since {
                lower = max(lower, try Self.firstIndex(db, atOrAfter: AuditTime.micros(since)))
            }
            if let until = q.until {
                upper = try Self.firstIndex(db, atOrAfter: AuditTime.micros(until))
            }
            if let most = q.maxIndex {
                upper = min(upper, Int64(clamping: most) + 1)
            }
            guard lower < upper else { return [] }
            var conditions = ["idx >= ?", "idx < ?"]
            var arguments: [(any DatabaseValueConvertible)?] = [lower, upper]
            if let user = q.user {
                conditions.append("user = ?")
                arguments.append(user)
            }
            if let resource = q.resource {
                conditions.append("resource = ?")
                arguments.append(resource)
            }
            if let session = q.session {
                conditions.append("session = ?")
                arguments.append(session)
            }
            var statementKinds = true
            var otherKinds = true
            if let kind = q.kind {
                if kind.hasSuffix(".") {
                    conditions.append("kind >= ? AND kind < ?")
                    arguments.append(kind)
                    arguments.append(String(kind.dropLast()) + "/")
                    statementKinds = AuditSchema.unindexedKinds.contains { $0.hasPrefix(kind) }
                    otherKinds = kind != "statement."
                } else {
                    conditions.append("kind = ?")
                    arguments.append(kind)
                    statementKinds = AuditSchema.unindexedKinds.contains(kind)
                    otherKinds = !statementKinds
                }
            }
            let filtered = q.user != nil || q.resource != nil || q.session != nil || q.kind != nil
            func fetch(_ extra: String?) throws -> [AuditRecord] {
                let clause = (conditions + (extra.map { [$0] } ?? [])).joined(separator: " AND ")
                return try Row.fetchAll(
                    db,
                    sql: "SELECT idx, time_us, kind, body FROM entries WHERE \(clause) ORDER BY idx "
                        + (q.oldestFirst ? "ASC" : "DESC") + " LIMIT ?",
                    arguments: StatementArguments(arguments + [q.limit])
                ).map(Self.record(from:))
            }
            guard filtered else { return try fetch(nil) }
            // Rare kinds through the partial indexes; statement entries by a scan from the newest end.
            var found: [AuditRecord] = []
            if otherKinds { found += try fetch(AuditSchema.indexedRows) }
            if statementKinds { found += try fetch("NOT (\(AuditSchema.indexedRows))") }
            found.sort { q.oldestFirst ? $0.index < $1.index : $0.index > $1.index }
            return Array(found.prefix(q.limit))
        }
        return q.oldestFirst ? newestFirst : newestFirst.reversed()
    }

    /// The first index retention kept whole (`meta.pruned_below`, 1 before any prune).
    static func prunedBelow(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(
            db, sql: "SELECT coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'pruned_below'), 1)") ?? 1
    }

    /// The smallest index whose time is at or after `micros` (one past the last index when none is):
    /// a binary search over the primary key.
    static func firstIndex(_ db: Database, atOrAfter micros: Int64) throws -> Int64 {
        let last = try Int64.fetchOne(db, sql: "SELECT coalesce(max(idx), 0) FROM entries") ?? 0
        // Retention may have removed the oldest entries (all but the key chain's): search from the
        // first one left, and take a removed one as older than any time.
        var low = try Int64.fetchOne(db, sql: "SELECT coalesce(min(idx), 1) FROM entries") ?? 1
        var high = last + 1
        let probe = try db.cachedStatement(sql: "SELECT time_us FROM entries WHERE idx = ?")
        while low < high {
            let mid = low + (high - low) / 2
            let time = try Int64.fetchOne(probe, arguments: [mid]) ?? Int64.min
            if time >= micros { high = mid } else { low = mid + 1 }
        }
        return low
    }

    /// Up to `count` entries starting at `index`, in ascending order: for walking the whole log (the
    /// Merkle tree, exports, verification).
    public func entries(from index: UInt64, count: Int) throws(AuditError) -> [AuditRecord] {
        guard count > 0, index < UInt64(Int64.max) else { return [] }
        return try read("reading audit entries") { db in
            try Row.fetchAll(
                db,
                sql: "SELECT idx, time_us, kind, body FROM entries WHERE idx >= ? ORDER BY idx LIMIT ?",
                arguments: [Int64(index), count]
            ).map(Self.record(from:))
        }
    }

    /// The index of the newest committed entry, 0 when the log is empty.
    public var lastIndex: UInt64 {
        get throws(AuditError) {
            try read("reading the last audit index") { db in
                UInt64(try Int64.fetchOne(db, sql: "SELECT coalesce(max(idx), 0) FROM entries") ?? 0)
            }
        }
    }

    func read<T>(_ doing: String, _ body: (Database) throws -> T) throws(AuditError) -> T {
        guard !writer.isClosed else {
            throw AuditError(.closed, "\(doing): the audit log \(path) is closed")
        }
        do {
            return try pool.read(body)
        } catch {
            throw AuditError.from(error, while: doing, path: path)
        }
    }

    static func record(from row: Row) -> AuditRecord {
        let body: Data = row["body"]
        return AuditRecord(
            index: UInt64(row["idx"] as Int64),
            time: AuditTime.date(micros: row["time_us"]),
            kind: row["kind"],
            body: [UInt8](body)
        )
    }

    // MARK: the tree

    /// The newest signed checkpoint, nil before the first.
    public func latestCheckpoint() throws(AuditError) -> StoredCheckpoint? {
        try read("reading the latest checkpoint") { db in try StoredTree.latestCheckpoint(db) }
    }

    /// Checkpoints with sizes in `sizes`, oldest first.
    public func checkpoints(sizes: ClosedRange<UInt64>, limit: Int = 1000) throws(AuditError) -> [StoredCheckpoint] {
        try read("reading checkpoints") { db in
            try Row.fetchAll(
                db,
                sql:
                    "SELECT size, time_us, root, note FROM checkpoints WHERE size BETWEEN ? AND ? ORDER BY size LIMIT ?",
                arguments: [Int64(clamping: sizes.lowerBound), Int64(clamping: sizes.upperBound), limit]
            ).compactMap(StoredTree.checkpoint)
        }
    }

    /// The oldest checkpoint whose tree includes entry `index` (size ≥ index).
    public func firstCheckpoint(covering index: UInt64) throws(AuditError) -> StoredCheckpoint? {
        try read("reading checkpoints") { db in
            try Row.fetchOne(
                db, sql: "SELECT size, time_us, root, note FROM checkpoints WHERE size >= ? ORDER BY size LIMIT 1",
                arguments: [Int64(clamping: index)]
            ).flatMap(StoredTree.checkpoint)
        }
    }

    /// The leaf hash of entry `index` (1-based, as entries count).
    public func leafHash(index: UInt64) throws(AuditError) -> MerkleHash {
        try read("reading a leaf hash") { db in try StoredTree(db: db).node(level: 0, index: index - 1) }
    }

    /// The root of the tree of the first `size` entries.
    public func root(size: UInt64) throws(AuditError) -> MerkleHash {
        try read("computing a tree root") { db in try Merkle.root(size: size, source: StoredTree(db: db)) }
    }

    /// The inclusion proof of entry `index` (1-based) in the tree of `size` entries.
    public func inclusionProof(index: UInt64, size: UInt64) throws(AuditError) -> [MerkleHash] {
        try read("computing an inclusion proof") { db in
            try Merkle.inclusionProof(index: index - 1, size: size, source: StoredTree(db: db))
        }
    }

    /// Inclusion proofs of several entries in one read (an export's page).
    public func inclusionProofs(indexes: [UInt64], size: UInt64) throws(AuditError) -> [[MerkleHash]] {
        try read("computing inclusion proofs") { db in
            let tree = StoredTree(db: db)
            return try indexes.map { try Merkle.inclusionProof(index: $0 - 1, size: size, source: tree) }
        }
    }

    /// The consistency proof between the trees of `oldSize` and `newSize` entries.
    public func consistencyProof(from oldSize: UInt64, to newSize: UInt64) throws(AuditError) -> [MerkleHash] {
        try read("computing a consistency proof") { db in
            try Merkle.consistencyProof(from: oldSize, to: newSize, source: StoredTree(db: db))
        }
    }

    /// Signs a checkpoint now if entries are not covered yet (an export wants its newest entries
    /// proven; a stop does it on its own). Returns at once.
    public func checkpointNow() {
        writer.requestCheckpoint()
    }

    /// Asks for a checkpoint and waits (polling, up to `timeout`) until the newest covers entry
    /// `index`. Returns the newest checkpoint then, which may still be short of `index` when the
    /// time ran out (nil before the first). Blocking: call it off the event loops.
    public func checkpoint(
        covering index: UInt64, within timeout: TimeInterval
    ) throws(AuditError)
        -> StoredCheckpoint?
    {
        checkpointNow()
        let deadline = Date().addingTimeInterval(timeout)
        var newest = try latestCheckpoint()
        while (newest?.size ?? 0) < index && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
            newest = try latestCheckpoint()
        }
        return newest
    }

    /// Signs `text` as a note with the checkpoint key (an export's manifest).
    public func signNote(_ text: String) throws -> String {
        try signNoteWithKey(text).note
    }

    /// Signs `text` with the key in force now, and says which key that was (an export checks it is
    /// still the key its checkpoint's chain ends with).
    public func signNoteWithKey(_ text: String) throws -> (note: String, verifierKey: String) {
        guard let signer = writer.currentSigner else { throw AuditError(.closed, "this log has no signing key") }
        return (try signer.sign(text), signer.verifierKey)
    }

    // MARK: closing

    /// Stops accepting appends, waits until every queued append is committed (or failed) and its
    /// completion ran, then closes the database. Idempotent. Called from a completion (the writer
    /// thread), it returns without waiting and the writer finishes the drain on its own.
    public func close() {
        guard writer.stopAndWait() else { return }
        checkpointer.stop()
        do {
            try pool.close()
        } catch {
            logger.error("closing the audit database failed: \(error)")
        }
    }

    // MARK: time

    /// Parses a `--since`/`--until` argument: RFC 3339 (`2026-11-21T19:40:00Z`, with any fraction and
    /// `Z` or an offset), a date (`2026-11-21`, midnight UTC), `now`, or an age: `90s`, `15m`, `2h`,
    /// `7d`, `2w` (that long ago). Nil when the text is none of these.
    public static func parseTime(_ s: String) -> Date? {
        AuditTime.parse(s, now: Date())
    }

    /// The RFC 3339 UTC form used inside entries, `2026-11-21T19:40:00.123456Z`.
    public static func formatTime(_ date: Date) -> String {
        AuditTime.format(micros: AuditTime.micros(date))
    }
}
