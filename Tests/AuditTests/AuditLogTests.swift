import Foundation
import GRDB
import Testing

@testable import Audit

@Suite struct AuditLogTests {
    @Test func entriesAreCanonicalAndSelfContained() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let clock = ManualClock(Date(timeIntervalSince1970: 1_795_290_000.123456))
        let log = try openLog(dir.file(), clock: clock.source)
        defer { log.close() }

        let record = try await log.append(
            kind: AuditKind.sessionOpen,
            subject: AuditSubject(user: "svc-ci", resource: "orders-db", session: "s-1"),
            fields: [
                "identity": ["uid": 1001, "user": "svc-ci", "groups": ["bots"]],
                "destination": ["address": "198.18.0.10", "port": 5432],
                "decision": "allow",
            ]
        )
        #expect(record.index == 1)
        #expect(record.kind == "session.open")
        #expect(
            record.text
                == #"{"decision":"allow","destination":{"address":"198.18.0.10","port":5432},"identity":{"groups":["bots"],"uid":1001,"user":"svc-ci"},"index":1,"kind":"session.open","resource":"orders-db","session":"s-1","time":"2026-11-21T19:40:00.123456Z","user":"svc-ci","v":1}"#
        )
        #expect(CanonicalJSON.isCanonical(record.body))
        #expect(AuditTime.micros(record.time) == 1_795_290_000_123_456)
        let stored = try log.query(AuditQuery())
        #expect(stored == [record])
        #expect(try stored[0].value()["index"] == 1)
    }

    @Test func newFilesArePrivateAndUseTheRequestedDurability() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = (dir.path as NSString).appendingPathComponent("state/audit.db")
        for durability in AuditDurability.allCases {
            let log = try openLog(path, durability: durability)
            let synchronous = try log.pool.writeWithoutTransaction { db in
                try Int.fetchOne(db, sql: "PRAGMA synchronous")
            }
            #expect(synchronous == (durability == .powerLoss ? 2 : 1))
            let journal = try log.pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
            #expect(journal == "wal")
            log.close()
        }
        let fileMode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(fileMode == 0o600)
        let directoryMode =
            try FileManager.default.attributesOfItem(
                atPath: (path as NSString).deletingLastPathComponent
            )[.posixPermissions] as? Int
        #expect(directoryMode == 0o750)
    }

    @Test func concurrentAppendsGetGapFreeIndexes() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try openLog(dir.file())
        defer { log.close() }
        let completions = Completions()
        let threads = 8
        let perThread = 500
        onThreads(threads) { thread in
            for n in 0..<perThread {
                log.append(
                    kind: "test.append",
                    subject: AuditSubject(user: "user-\(thread)"),
                    fields: ["thread": AuditValue(thread), "n": AuditValue(n)],
                    completion: completions.handler
                )
            }
        }
        let results = completions.wait(for: threads * perThread)
        #expect(results.count == threads * perThread)
        let records = results.compactMap(\.record)
        #expect(records.count == threads * perThread)
        #expect(records.map(\.index).sorted() == Array(1...UInt64(threads * perThread)))
        for record in records {
            #expect(try record.value()["index"]?.uint64Value == record.index)
        }
        // Each thread's appends keep their order.
        for thread in 0..<threads {
            let mine = records.filter { (try? $0.value()["thread"]) == AuditValue(thread) }.sorted {
                $0.index < $1.index
            }
            #expect(mine.map { try? $0.value()["n"] } == (0..<perThread).map { AuditValue($0) })
        }
        let stored = try log.entries(from: 1, count: 10_000)
        #expect(stored == records.sorted { $0.index < $1.index })
        #expect(try log.lastIndex == UInt64(threads * perThread))
        let stats = log.writerStatistics
        #expect(stats.committedTransactions < threads * perThread)
        print(
            "gap-free test: \(threads * perThread) appends in \(stats.committedTransactions) transactions, largest batch \(stats.maximumBatch)"
        )
    }

    @Test func completionRunsOnlyOnceTheEntryIsCommittedAndReadable() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try openLog(dir.file())
        defer { log.close() }
        let seen = Completions()
        for n in 0..<20 {
            log.append(kind: "test.visible", subject: .none, fields: ["n": AuditValue(n)]) { result in
                // A reader connection (another WAL snapshot) must already see the entry.
                guard let record = result.record,
                    let stored = try? log.entries(from: record.index, count: 1).first, stored == record
                else {
                    seen.handler(.failure(AuditError(.storage, "entry not visible from its completion")))
                    return
                }
                seen.handler(result)
            }
        }
        let results = seen.wait(for: 20)
        #expect(results.compactMap(\.record).count == 20)
    }

    @Test func waitingAppendsShareOneTransaction() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try openLog(dir.file())
        defer { log.close() }
        log.pauseWriter()
        let completions = Completions()
        for n in 0..<50 {
            log.append(
                kind: "test.batch",
                subject: .none,
                fields: ["n": AuditValue(n)],
                completion: completions.handler
            )
        }
        #expect(completions.count == 0)
        #expect(try log.lastIndex == 0)
        log.resumeWriter()
        let results = completions.wait(for: 50)
        #expect(results.compactMap(\.record).map(\.index) == Array(1...50))
        #expect(log.writerStatistics == .init(committedTransactions: 1, failedTransactions: 0, maximumBatch: 50))
    }

    @Test func deferredEntriesRideWithTheNextUrgentCommitOrGoAloneSoon() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try openLog(dir.file())
        defer { log.close() }
        // Alone: committed after the short delay, without anything else arriving.
        let alone = Completions()
        log.append(kind: "test.late", subject: .none, fields: [:], deferred: true, completion: alone.handler)
        #expect(alone.wait(for: 1).compactMap(\.record).map(\.index) == [1])
        #expect(log.writerStatistics.committedTransactions == 1)
        // With an urgent entry right behind it: one transaction for both, in queue order.
        log.pauseWriter()
        let both = Completions()
        log.append(kind: "test.late", subject: .none, fields: [:], deferred: true, completion: both.handler)
        log.append(kind: "test.now", subject: .none, fields: [:], completion: both.handler)
        log.resumeWriter()
        let records = both.wait(for: 2).compactMap(\.record).sorted { $0.index < $1.index }
        #expect(records.map(\.kind) == ["test.late", "test.now"])
        #expect(log.writerStatistics.committedTransactions == 2)
    }

    @Test func reopeningContinuesAfterTheLastIndex() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let clock = ManualClock(Date(timeIntervalSince1970: 2_000_000_000))
        do {
            let log = try openLog(dir.file(), clock: clock.source)
            for n in 0..<5 {
                _ = try await log.append(kind: "test.reopen", subject: .none, fields: ["n": AuditValue(n)])
            }
            log.close()
        }
        // The clock stepped back while the daemon was down: times still never decrease.
        clock.now = Date(timeIntervalSince1970: 1_000_000_000)
        let log = try openLog(dir.file(), clock: clock.source)
        defer { log.close() }
        #expect(try log.lastIndex == 5)
        let record = try await log.append(kind: "test.reopen", subject: .none, fields: [:])
        #expect(record.index == 6)
        #expect(record.time == Date(timeIntervalSince1970: 2_000_000_000))
        #expect(try log.entries(from: 1, count: 100).map(\.index) == Array(1...6))
    }

    @Test func updateDeleteAndGapsAreRefusedByTheDatabaseItself() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try openLog(dir.file())
        defer { log.close() }
        let first = try await log.append(kind: "test.tamper", subject: AuditSubject(user: "alice"), fields: ["x": 1])
        _ = try await log.append(kind: "test.tamper", subject: AuditSubject(user: "alice"), fields: ["x": 2])

        // Someone with the file and an SQLite client.
        let intruder = try DatabaseQueue(path: dir.file())
        let refusals = [
            ("UPDATE entries SET body = x'7b7d' WHERE idx = 1", "UPDATE is refused"),
            ("UPDATE entries SET user = 'mallory'", "UPDATE is refused"),
            ("DELETE FROM entries WHERE idx = 2", "DELETE is refused"),
            ("DELETE FROM entries", "DELETE is refused"),
            ("INSERT INTO entries VALUES (5, 0, 'x', NULL, NULL, NULL, x'7b7d')", "gap-free"),
            ("INSERT INTO entries VALUES (2, 0, 'x', NULL, NULL, NULL, x'7b7d')", "gap-free"),
        ]
        for (sql, reason) in refusals {
            do {
                try await intruder.write { db in try db.execute(sql: sql) }
                Issue.record("\(sql) was accepted")
            } catch let error as DatabaseError {
                #expect(error.message?.contains(reason) == true, "\(sql): \(error)")
            }
        }
        try intruder.close()
        #expect(try log.entries(from: 1, count: 10).map(\.index) == [1, 2])
        #expect(try log.entries(from: 1, count: 1) == [first])
    }

    @Test func queryFiltersReturnTheNewestMatchesInAscendingOrder() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let clock = ManualClock(t0)
        let log = try openLog(dir.file(), clock: clock.source)
        defer { log.close() }
        let alice = AuditSubject(user: "alice", resource: "orders-db", session: "s1")
        let bob = AuditSubject(user: "bob", resource: "artifacts", session: "s2")
        let script: [(String, AuditSubject)] = [
            ("daemon.started", .none), ("session.open", alice), ("session.open", bob),
            ("session.close", alice), ("policy.loaded", .none), ("session.close", bob),
            ("sessions.other", .none),
        ]
        for (n, (kind, subject)) in script.enumerated() {
            clock.now = t0.addingTimeInterval(Double(n))
            _ = try await log.append(kind: kind, subject: subject, fields: [:])
        }
        func indexes(_ q: AuditQuery) throws -> [UInt64] { try log.query(q).map(\.index) }
        let at = { (seconds: Double) in t0.addingTimeInterval(seconds) }

        #expect(try indexes(AuditQuery()) == [1, 2, 3, 4, 5, 6, 7])
        #expect(try indexes(AuditQuery(since: at(2))) == [3, 4, 5, 6, 7])
        #expect(try indexes(AuditQuery(until: at(2))) == [1, 2])
        #expect(try indexes(AuditQuery(since: at(1), until: at(4))) == [2, 3, 4])
        #expect(try indexes(AuditQuery(since: at(1.5), until: at(1.9))) == [])
        #expect(try indexes(AuditQuery(user: "alice")) == [2, 4])
        #expect(try indexes(AuditQuery(resource: "artifacts")) == [3, 6])
        #expect(try indexes(AuditQuery(user: "alice", resource: "artifacts")) == [])
        #expect(try indexes(AuditQuery(kind: "session.")) == [2, 3, 4, 6])
        #expect(try indexes(AuditQuery(kind: "session.open")) == [2, 3])
        #expect(try indexes(AuditQuery(kind: "session")) == [])
        #expect(try indexes(AuditQuery(afterIndex: 4)) == [5, 6, 7])
        #expect(try indexes(AuditQuery(afterIndex: 7)) == [])
        #expect(try indexes(AuditQuery(limit: 2)) == [6, 7])
        #expect(try indexes(AuditQuery(kind: "session.", limit: 3)) == [3, 4, 6])
        #expect(try indexes(AuditQuery(user: "alice", kind: "session.close")) == [4])
        #expect(try indexes(AuditQuery(since: at(1), user: "bob", afterIndex: 3, limit: 5)) == [6])
        #expect(try indexes(AuditQuery(limit: 0)) == [])
        #expect(try log.query(AuditQuery(kind: "session.open"))[1].time == at(2))
        #expect(try log.entries(from: 6, count: 10).map(\.index) == [6, 7])
    }

    /// Statement entries are left out of the secondary indexes (they are most of a busy log); every
    /// filter must still find them, merged in index order with the indexed kinds.
    @Test func statementEntriesAreFoundByEveryFilterWithoutTheirOwnIndexes() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let clock = ManualClock(t0)
        let log = try openLog(dir.file(), clock: clock.source)
        defer { log.close() }
        let alice = AuditSubject(user: "alice", resource: "orders-db", session: "s1")
        let bob = AuditSubject(user: "bob", resource: "orders-db", session: "s2")
        let script: [(String, AuditSubject)] = [
            ("session.open", alice), ("statement", alice), ("session.open", bob), ("statement.end", alice),
            ("statement", bob), ("session.close", alice), ("statement", alice), ("statement.end", bob),
        ]
        for (n, (kind, subject)) in script.enumerated() {
            clock.now = t0.addingTimeInterval(Double(n))
            _ = try await log.append(kind: kind, subject: subject, fields: [:])
        }
        func indexes(_ q: AuditQuery) throws -> [UInt64] { try log.query(q).map(\.index) }
        #expect(try indexes(AuditQuery(user: "alice")) == [1, 2, 4, 6, 7])
        #expect(try indexes(AuditQuery(user: "alice", limit: 3)) == [4, 6, 7])
        #expect(try indexes(AuditQuery(resource: "orders-db", limit: 4)) == [5, 6, 7, 8])
        #expect(try indexes(AuditQuery(kind: "statement")) == [2, 5, 7])
        #expect(try indexes(AuditQuery(kind: "statement.")) == [4, 8])
        #expect(try indexes(AuditQuery(kind: "session.")) == [1, 3, 6])
        #expect(try indexes(AuditQuery(since: t0.addingTimeInterval(3), user: "bob")) == [5, 8])
        #expect(try indexes(AuditQuery(until: t0.addingTimeInterval(3), kind: "statement")) == [2])
    }

    /// The builder (for per-statement entries) writes exactly what the dictionary path writes.
    @Test func builtEntriesAreTheSameBytesAsDictionaryEntries() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let log = try openLog(dir.file(), clock: { t0 })
        defer { log.close() }
        let subject = AuditSubject(user: "svc-ci", resource: "orders-db", session: "0123456789abcdef")
        let viaDictionary = try await log.append(
            kind: "statement", subject: subject,
            fields: [
                "decision": "allow", "kinds": .array(["SELECT"]), "origin": "query", "statement": .uint(3),
                "text": .string("SELECT \"a\"\n"), "text_redacted": .bool(false),
                "parameter_masking": .object(["values_masked": .int(1)]), "zeta": .null,
            ])
        var builder = AuditEntryBuilder(kind: "statement", subject: subject)
        builder.string("decision", "allow")
        builder.strings("kinds", ["SELECT"])
        builder.string("origin", "query")
        builder.value("parameter_masking", .object(["values_masked": .int(1)]))
        builder.uint("statement", 3)
        builder.string("text", "SELECT \"a\"\n")
        builder.bool("text_redacted", false)
        builder.value("zeta", .null)
        let viaBuilder = try await withCheckedThrowingContinuation { continuation in
            log.append(builder) { continuation.resume(with: $0) }
        }
        #expect(viaBuilder.index == viaDictionary.index + 1)
        let expected = String(decoding: viaDictionary.body, as: UTF8.self)
            .replacingOccurrences(of: "\"index\":\(viaDictionary.index)", with: "\"index\":\(viaBuilder.index)")
        #expect(String(decoding: viaBuilder.body, as: UTF8.self) == expected)
        #expect(CanonicalJSON.isCanonical(viaBuilder.body))
        #expect(try log.query(AuditQuery(user: "svc-ci", kind: "statement")).count == 2)
    }

    @Test func oversizedEntriesAreRejectedAndNothingIsWritten() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try openLog(dir.file())
        defer { log.close() }

        // Find the padding that makes entry 1 exactly 64 KiB.
        let probe = try EntryTemplate.make(kind: "test.size", subject: .none, fields: ["pad": ""])
        let padding = AuditLog.maximumEntrySize - probe.size(index: 1)
        let tooBig = String(repeating: "x", count: padding + 1)
        await #expect(throws: AuditError.self) {
            _ = try await log.append(kind: "test.size", subject: .none, fields: ["pad": .string(tooBig)])
        }
        do {
            _ = try await log.append(kind: "test.size", subject: .none, fields: ["pad": .string(tooBig)])
        } catch {
            #expect(error.code == .entryTooLarge)
        }
        do {
            _ = try await log.append(
                kind: "test.size",
                subject: .none,
                fields: ["pad": .string(String(repeating: "y", count: 200_000))]
            )
        } catch {
            #expect(error.code == .entryTooLarge)
        }
        #expect(try log.lastIndex == 0)
        let exact = try await log.append(
            kind: "test.size",
            subject: .none,
            fields: ["pad": .string(String(repeating: "x", count: padding))]
        )
        #expect(exact.index == 1)
        #expect(exact.body.count == AuditLog.maximumEntrySize)
    }

    @Test func oversizeDetectedOnlyByTheWriterConsumesNoIndex() throws {
        // Entry 10 has two index digits: an entry that fits at index 9 is one byte too big at 10.
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try openLog(dir.file())
        defer { log.close() }
        let probe = try EntryTemplate.make(kind: "test.size", subject: .none, fields: ["pad": ""])
        let padding = AuditLog.maximumEntrySize - probe.size(index: 9)
        let completions = Completions()
        log.pauseWriter()
        for _ in 0..<9 {
            log.append(kind: "test.size", subject: .none, fields: [:], completion: completions.handler)
        }
        log.append(
            kind: "test.size",
            subject: .none,
            fields: ["pad": .string(String(repeating: "x", count: padding))],
            completion: completions.handler
        )
        log.append(kind: "test.size", subject: .none, fields: ["last": true], completion: completions.handler)
        log.resumeWriter()
        let results = completions.wait(for: 11)
        #expect(results.compactMap(\.error).map(\.code) == [.entryTooLarge])
        #expect(results.compactMap(\.record).map(\.index).sorted() == Array(1...10))
        #expect(try log.entries(from: 10, count: 1).first?.value()["last"] == true)
    }

    @Test func invalidEntriesAreRefusedBeforeQueueing() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try openLog(dir.file())
        defer { log.close() }
        let attempts: [(String, AuditSubject, [String: AuditValue])] = [
            ("test.reserved", .none, ["index": 5]),
            ("test.reserved", .none, ["time": "2026-01-01T00:00:00Z"]),
            ("test.reserved", .none, ["v": 2]),
            ("test.reserved", .none, ["kind": "other"]),
            ("Session.Open", .none, [:]),
            ("session..open", .none, [:]),
            ("session.", .none, [:]),
            ("", .none, [:]),
            ("test.subject", AuditSubject(user: "alice"), ["user": "bob"]),
            ("test.subject", AuditSubject(user: "alice"), ["user": nil]),
            ("test.subject", .none, ["session": 5]),
        ]
        for (kind, subject, fields) in attempts {
            do {
                _ = try await log.append(kind: kind, subject: subject, fields: fields)
                Issue.record("\(kind) \(fields) was accepted")
            } catch {
                #expect(error.code == .invalidEntry)
            }
        }
        #expect(try log.lastIndex == 0)
    }

    @Test func indexedColumnsAreTheBodysTopLevelSubjectMembers() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try openLog(dir.file())
        defer { log.close() }
        // Subject only: written into the body.
        let a = try await log.append(
            kind: "test.subject",
            subject: AuditSubject(user: "alice", session: "s1"),
            fields: [:]
        )
        // Field and subject agree.
        let b = try await log.append(
            kind: "test.subject",
            subject: AuditSubject(user: "alice"),
            fields: ["user": "alice"]
        )
        // Field only: fills the column. Null: none.
        let c = try await log.append(kind: "test.subject", subject: .none, fields: ["session": "s9", "resource": nil])
        #expect(try a.value()["user"] == "alice")
        #expect(try a.value()["session"] == "s1")
        #expect(try a.value()["resource"] == nil)
        #expect(try b.value()["user"] == "alice")
        #expect(try c.value()["resource"] == .null)
        let columns = try await log.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT user, resource, session FROM entries ORDER BY idx").map {
                [$0["user"] as String?, $0["resource"] as String?, $0["session"] as String?]
            }
        }
        #expect(columns == [["alice", nil, "s1"], ["alice", nil, nil], [nil, nil, "s9"]])
        #expect(try log.query(AuditQuery(user: "alice")).map(\.index) == [1, 2])
    }

    @Test func aFullDiskFailsTheBatchThenAppendsResumeWithoutGaps() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let recorder = LogRecorder()
        let log = try openLog(dir.file(), logger: recorder.logger())
        defer { log.close() }
        let before = Completions()
        for n in 0..<3 {
            log.append(kind: "test.disk", subject: .none, fields: ["n": AuditValue(n)], completion: before.handler)
        }
        #expect(before.wait(for: 3).compactMap(\.record).count == 3)

        let applied = try log.setMaximumPageCount(1)
        #expect(applied > 1)  // SQLite never goes below the current size
        let big = AuditValue.string(String(repeating: "z", count: 20_000))
        let failing = Completions()
        log.pauseWriter()
        for n in 0..<3 {
            log.append(
                kind: "test.disk",
                subject: AuditSubject(user: "u"),
                fields: ["n": AuditValue(n), "big": big],
                completion: failing.handler
            )
        }
        log.resumeWriter()
        let failures = failing.wait(for: 3)
        #expect(failures.count == 3)
        #expect(failures.compactMap(\.error).map(\.code) == [.storage, .storage, .storage])
        #expect(failures.first?.error?.message.contains("full") == true)
        #expect(recorder.messages.contains { $0.level == .critical })
        #expect(try log.lastIndex == 3)
        #expect(try log.query(AuditQuery(user: "u")).isEmpty)
        #expect(log.writerStatistics.failedTransactions == 1)

        // Make room again: the next entry takes index 4, as if the failed batch never happened.
        try log.setMaximumPageCount(nil)
        let after = Completions()
        log.append(kind: "test.disk", subject: .none, fields: ["big": big], completion: after.handler)
        let recovered = after.wait(for: 1)
        #expect(recovered.first?.record?.index == 4)
        #expect(try log.entries(from: 1, count: 10).map(\.index) == [1, 2, 3, 4])
    }

    @Test func closeDrainsQueuedAppendsAndThenRefuses() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try openLog(dir.file())
        let completions = Completions()
        log.pauseWriter()  // close must drain even a paused queue
        for n in 0..<1000 {
            log.append(
                kind: "test.drain",
                subject: .none,
                fields: ["n": AuditValue(n)],
                completion: completions.handler
            )
        }
        log.close()
        #expect(completions.count == 1000)
        #expect(completions.wait(for: 1000, timeout: 0).compactMap(\.record).count == 1000)

        let late = Completions()
        log.append(kind: "test.drain", subject: .none, fields: [:], completion: late.handler)
        #expect(late.count == 1)  // synchronously
        #expect(late.wait(for: 1, timeout: 0).first?.error?.code == .closed)
        #expect(throws: AuditError.self) { try log.query(AuditQuery()) }
        log.close()  // idempotent

        let reopened = try openLog(dir.file())
        defer { reopened.close() }
        #expect(try reopened.lastIndex == 1000)
    }

    @Test func foreignDatabasesAreNotTakenOver() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        let other = try DatabaseQueue(path: dir.file())
        try other.write { db in try db.execute(sql: "CREATE TABLE t (x)") }
        try other.close()
        do {
            _ = try openLog(dir.file())
            Issue.record("a foreign database was opened as an audit log")
        } catch let error as AuditError {
            #expect(error.code == .unsupportedSchema)
        }
        let notSQLite = dir.file("junk.db")
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: notSQLite))
        do {
            _ = try openLog(notSQLite)
            Issue.record("a non-SQLite file was opened as an audit log")
        } catch let error as AuditError {
            #expect(error.code == .corrupt)
        }
    }
}
