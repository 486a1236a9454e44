import Foundation
import GRDB
import Logging

/// Copies the write-ahead log into the database a few times a second, on its own connection and
/// thread.
///
/// SQLite's automatic checkpoint runs inside the commit that crosses 1000 WAL pages, fsync
/// included, so one request in a thousand waited for it (the p99 of the time an entry takes to
/// become durable). A PASSIVE checkpoint from another connection never blocks the writer: it copies
/// what it can and leaves the rest for the next round. The writer connection has
/// `wal_autocheckpoint = 0`.
final class WALCheckpointer: @unchecked Sendable {
    static let interval: TimeInterval = 0.25

    private let path: String
    private let logger: Logger
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var stopping = false
    private var finished = false
    private var thread: Thread?

    init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "interlock-audit-wal"
        condition.lock()
        self.thread = thread
        condition.unlock()
        thread.start()
    }

    func stop() {
        condition.lock()
        defer { condition.unlock() }
        guard thread != nil else { return }
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
    }

    private func run() {
        var configuration = Configuration()
        configuration.label = "interlock.audit.wal"
        configuration.busyMode = .timeout(1)
        let queue = try? DatabaseQueue(path: path, configuration: configuration)
        if queue == nil {
            logger.error("cannot open the WAL checkpoint connection; the WAL grows until the next start")
        }
        condition.lock()
        while !stopping {
            condition.unlock()
            do {
                try queue?.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(PASSIVE)") }
            } catch {
                logger.debug("WAL checkpoint deferred", metadata: ["error": "\(error)"])
            }
            condition.lock()
            if !stopping { _ = condition.wait(until: Date().addingTimeInterval(Self.interval)) }
        }
        condition.unlock()
        try? queue?.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        try? queue?.close()
        condition.lock()
        finished = true
        thread = nil
        condition.broadcast()
        condition.unlock()
    }
}
