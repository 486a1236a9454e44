import Foundation
import GRDB

/// A payload too large for an entry, named by its SHA-256 (a session recording's chunk).
public struct AuditBlob: Sendable, Equatable {
    public let hash: MerkleHash
    public let data: Data

    public init(_ data: Data) {
        self.data = data
        self.hash = MerkleHash.sha256(data)
    }
}

/// What a recordings prune did.
public struct RecordingPruneResult: Sendable, Equatable {
    public var removed: Int
    public var bytes: Int64
    /// The `recording.prune` entry's index.
    public var entry: UInt64
}

extension AuditLog {
    /// Enqueues an entry that references `blob`: the entry gets a `blob` member (the blob's SHA-256
    /// in hex), and the blob is committed in the entry's transaction, so neither exists without the
    /// other. Otherwise as ``append(kind:subject:fields:deferred:completion:)``.
    public func append(
        kind: String,
        subject: AuditSubject,
        fields: [String: AuditValue],
        blob: AuditBlob,
        deferred: Bool = false,
        completion: @escaping @Sendable (Result<AuditRecord, AuditError>) -> Void
    ) {
        var fields = fields
        fields["blob"] = .string(blob.hash.hex)
        let template: EntryTemplate
        do {
            template = try EntryTemplate.make(kind: kind, subject: subject, fields: fields)
        } catch {
            completion(.failure(error))
            return
        }
        enqueue(kind: kind, template: template, deferred: deferred, blob: blob, completion: completion)
    }

    /// The blob named `hash` (lower-case hex SHA-256); nil when there is none (never written, or
    /// removed by retention).
    public func blob(_ hash: String) throws(AuditError) -> Data? {
        guard let name = MerkleHash(hex: hash) else { return nil }
        return try read("reading a blob") { db in
            try Data.fetchOne(db, sql: "SELECT data FROM blobs WHERE hash = ?", arguments: [Data(name.bytes)])
        }
    }

    /// Whether each of `hashes` is stored (retention removes old ones).
    public func blobsPresent(_ hashes: [String]) throws(AuditError) -> Set<String> {
        try read("looking up blobs") { db in
            var found: Set<String> = []
            let statement = try db.cachedStatement(sql: "SELECT 1 FROM blobs WHERE hash = ?")
            for hex in hashes {
                guard let name = MerkleHash(hex: hex) else { continue }
                if try Bool.fetchOne(statement, arguments: [Data(name.bytes)]) != nil { found.insert(hex) }
            }
            return found
        }
    }

    /// The `session.recording` entries of one session, in order.
    public func recordingEntries(session: String) throws(AuditError) -> [AuditRecord] {
        var q = AuditQuery(kind: AuditKind.recording, limit: Int.max)
        q.session = session
        q.oldestFirst = true
        return try query(q)
    }

    /// Removes recording blobs older than `cutoff`, after a `recording.prune` entry (and a
    /// checkpoint over it) says which entries' blobs go, how many and why. The entries stay, so
    /// their proofs and the fact that a recording existed remain; only the payloads go. Blocking:
    /// call it off the event loops. Nil when nothing is old enough.
    public func pruneRecordings(before cutoff: Date, policy: String) throws(AuditError) -> RecordingPruneResult? {
        let micros = AuditTime.micros(cutoff)
        let plan = try read("planning a recordings prune") { db -> (Int, Int64)? in
            let row = try Row.fetchOne(
                db, sql: "SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM blobs WHERE time_us < ?",
                arguments: [micros])
            let count: Int = row?["n"] ?? 0
            return count == 0 ? nil : (count, row?["bytes"] ?? 0)
        }
        guard let (count, bytes) = plan else { return nil }
        let range = try read("finding the pruned recordings' entries") { db -> (Int64, Int64) in
            let row = try Row.fetchOne(
                db,
                sql: "SELECT coalesce(min(idx), 0) AS lo, coalesce(max(idx), 0) AS hi FROM entries "
                    + "WHERE kind = ? AND time_us < ? AND " + AuditSchema.indexedRows,
                arguments: [AuditKind.recording, micros])
            return (row?["lo"] ?? 0, row?["hi"] ?? 0)
        }
        let fields: [String: AuditValue] = [
            "cutoff": .string(AuditTime.format(micros: micros)), "policy": .string(policy),
            "removed": .uint(UInt64(count)), "bytes": .uint(UInt64(bytes)),
            "first_entry": .uint(UInt64(range.0)), "last_entry": .uint(UInt64(range.1)),
        ]
        let record = try appendAndWait(kind: AuditKind.recordingPrune, subject: AuditSubject(), fields: fields)
        try waitForCheckpoint(covering: record.index, what: "the recordings prune entry")
        do {
            try pool.write { db in
                try db.execute(
                    sql: "INSERT INTO meta (key, value) VALUES ('blobs_pruned_before', ?) "
                        + "ON CONFLICT (key) DO UPDATE SET value = max(CAST(value AS INTEGER), excluded.value)",
                    arguments: ["\(micros)"])
                try db.execute(sql: "DELETE FROM blobs WHERE time_us < ?", arguments: [micros])
            }
        } catch {
            throw AuditError.from(error, while: "removing pruned recordings", path: path)
        }
        logger.notice(
            "pruned session recordings",
            metadata: ["audit.removed": "\(count)", "audit.bytes": "\(bytes)", "audit.policy": "\(policy)"])
        return RecordingPruneResult(removed: count, bytes: bytes, entry: record.index)
    }

    /// Asks for a checkpoint and waits (up to 10 s) until one covers entry `index`.
    func waitForCheckpoint(covering index: UInt64, what: String) throws(AuditError) {
        guard (try checkpoint(covering: index, within: 10)?.size ?? 0) >= index else {
            throw AuditError(.storage, "no checkpoint covered \(what) (\(index)); nothing was removed")
        }
    }
}

extension LocalVerifier {
    /// Every blob an entry references is stored and hashes to its name, unless retention removed
    /// it (the entry is older than `meta.blobs_pruned_before`); every stored blob is referenced.
    static func verifyBlobs(_ db: Database, report: inout VerificationReport) throws {
        guard try db.tableExists("blobs") else { return }
        let prunedBefore =
            try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'blobs_pruned_before'").flatMap {
                Int64($0)
            } ?? Int64.min
        let lookup = try db.makeStatement(sql: "SELECT data FROM blobs WHERE hash = ?")
        var referenced: Set<Data> = []
        var checked = 0
        var pruned = 0
        let rows = try Row.fetchCursor(
            db, sql: "SELECT idx, time_us, body FROM entries WHERE kind = ? AND " + AuditSchema.indexedRows,
            arguments: [AuditKind.recording])
        while let row = try rows.next() {
            let index = UInt64(row["idx"] as Int64)
            guard case .object(let m)? = try? CanonicalJSON.decode([UInt8](row["body"] as Data)),
                case .string(let hex)? = m["blob"], let name = MerkleHash(hex: hex)
            else {
                report.fail(entry: index, "a recording entry without a readable blob name")
                continue
            }
            let key = Data(name.bytes)
            referenced.insert(key)
            guard let data = try Data.fetchOne(lookup, arguments: [key]) else {
                if (row["time_us"] as Int64) < prunedBefore {
                    pruned += 1
                } else {
                    report.fail(entry: index, "its blob \(hex) is missing, and retention did not remove it")
                }
                continue
            }
            if MerkleHash.sha256(data) != name {
                report.fail(entry: index, "its blob \(hex) was changed: the bytes hash to something else")
            }
            checked += 1
        }
        for hash in try Data.fetchAll(db, sql: "SELECT hash FROM blobs") where !referenced.contains(hash) {
            report.fail("blob \(MerkleHash(bytes: [UInt8](hash))?.hex ?? "?") is referenced by no entry")
        }
        if checked > 0 { report.notes.append("\(checked) blob(s) checked") }
        if pruned > 0 { report.notes.append("\(pruned) recording chunk(s) were removed by retention") }
    }
}
