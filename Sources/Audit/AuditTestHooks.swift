import GRDB

// Internal hooks for AuditTests (`@testable import Audit`); not part of the API.
extension AuditLog {
    /// Commit statistics of the writer thread (to prove batching).
    var writerStatistics: AuditWriter.Statistics { writer.statistics }

    /// Holds every queued append until ``resumeWriter()``, so a test can build a batch of known size.
    func pauseWriter() { writer.pause() }

    func resumeWriter() { writer.resume() }

    /// Sets `PRAGMA max_page_count` on the writer connection (nil restores SQLite's maximum), to make
    /// the disk look full. Returns the value SQLite applied (never below the current size).
    @discardableResult
    func setMaximumPageCount(_ pages: Int?) throws -> Int {
        try pool.writeWithoutTransaction { db in
            try Int.fetchOne(db, sql: "PRAGMA max_page_count = \(pages ?? 4_294_967_294)") ?? 0
        }
    }
}
