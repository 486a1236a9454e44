import Foundation
import GRDB
import Logging

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

    let pool: DatabasePool
    let writer: AuditWriter
    let logger: Logger

    private init(path: String, durability: AuditDurability, pool: DatabasePool, writer: AuditWriter, logger: Logger) {
        self.path = path
        self.durability = durability
        self.pool = pool
        self.writer = writer
        self.logger = logger
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
    public static func open(
        path: String,
        durability: AuditDurability = .crash,
        logger: Logger
    ) throws(AuditError) -> AuditLog {
        try open(path: path, durability: durability, logger: logger, clock: { Date() })
    }

    /// `clock` is the source of entry times; tests inject their own.
    static func open(
        path: String,
        durability: AuditDurability,
        logger: Logger,
        clock: @escaping @Sendable () -> Date
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
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            // DatabasePool sets synchronous=NORMAL when it enables WAL, after prepareDatabase runs, so
            // the durability pragma goes here, on the one writer connection.
            let synchronous = durability == .powerLoss ? "FULL" : "NORMAL"
            lastMicros = try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
                // After a checkpoint, truncate the WAL back to 64 MiB instead of keeping its peak size.
                try db.execute(sql: "PRAGMA journal_size_limit = 67108864")
                try db.inTransaction(.immediate) {
                    try AuditSchema.prepare(db, path: path)
                    return .commit
                }
                return try Int64.fetchOne(db, sql: "SELECT max(time_us) FROM entries") ?? Int64.min
            }
        } catch {
            throw AuditError.from(error, while: "opening the audit log", path: path)
        }
        let writer = AuditWriter(
            pool: pool,
            path: path,
            logger: logger,
            clock: clock,
            lastMicros: lastMicros,
            maximumEntrySize: maximumEntrySize
        )
        writer.start()
        logger.debug("audit log open", metadata: ["audit.durability": "\(durability.rawValue)"])
        return AuditLog(path: path, durability: durability, pool: pool, writer: writer, logger: logger)
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
        kind: String, template: EntryTemplate, deferred: Bool,
        completion: @escaping @Sendable (Result<AuditRecord, AuditError>) -> Void
    ) {
        if template.sizeWithoutIndex + 1 > Self.maximumEntrySize {
            completion(.failure(Self.tooLarge(kind: kind, size: template.sizeWithoutIndex + 1)))
            return
        }
        writer.enqueue(kind: kind, template: template, urgent: !deferred, completion: completion)
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
            if let since = q.since {
                lower = max(lower, try Self.firstIndex(db, atOrAfter: AuditTime.micros(since)))
            }
            if let until = q.until {
                upper = try Self.firstIndex(db, atOrAfter: AuditTime.micros(until))
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
            let filtered = q.user != nil || q.resource != nil || q.kind != nil
            func fetch(_ extra: String?) throws -> [AuditRecord] {
                let clause = (conditions + (extra.map { [$0] } ?? [])).joined(separator: " AND ")
                return try Row.fetchAll(
                    db, sql: "SELECT idx, time_us, kind, body FROM entries WHERE \(clause) ORDER BY idx DESC LIMIT ?",
                    arguments: StatementArguments(arguments + [q.limit])
                ).map(Self.record(from:))
            }
            guard filtered else { return try fetch(nil) }
            // Rare kinds through the partial indexes; statement entries by a scan from the newest end.
            var found: [AuditRecord] = []
            if otherKinds { found += try fetch(AuditSchema.indexedRows) }
            if statementKinds { found += try fetch("NOT (\(AuditSchema.indexedRows))") }
            found.sort { $0.index > $1.index }
            return Array(found.prefix(q.limit))
        }
        return newestFirst.reversed()
    }

    /// The smallest index whose time is at or after `micros` (one past the last index when none is):
    /// a binary search over the primary key.
    static func firstIndex(_ db: Database, atOrAfter micros: Int64) throws -> Int64 {
        let last = try Int64.fetchOne(db, sql: "SELECT coalesce(max(idx), 0) FROM entries") ?? 0
        var low: Int64 = 1
        var high = last + 1
        let probe = try db.cachedStatement(sql: "SELECT time_us FROM entries WHERE idx = ?")
        while low < high {
            let mid = low + (high - low) / 2
            let time = try Int64.fetchOne(probe, arguments: [mid]) ?? Int64.max
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

    private func read<T>(_ doing: String, _ body: (Database) throws -> T) throws(AuditError) -> T {
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

    // MARK: closing

    /// Stops accepting appends, waits until every queued append is committed (or failed) and its
    /// completion ran, then closes the database. Idempotent. Called from a completion (the writer
    /// thread), it returns without waiting and the writer finishes the drain on its own.
    public func close() {
        guard writer.stopAndWait() else { return }
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
