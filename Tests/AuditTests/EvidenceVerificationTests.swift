import Crypto
import Foundation
import GRDB
import Logging
import Synchronization
import Testing

@testable import Audit

/// The tree, the checkpoints and the verifiers on a real log: a signed log verifies; every way of
/// tampering with its database file is caught and named; every bit flip of an export bundle is
/// caught.
@Suite struct EvidenceVerificationTests {
    static let logger = Logger(label: "t", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A signed log of `count` entries plus its genesis, closed, with a checkpoint over everything.
    static func makeLog(_ dir: String, signer: NoteSigner, count: Int = 20) throws -> String {
        let path = dir + "/audit.db"
        let log = try AuditLog.open(
            path: path, durability: .crash,
            signing: AuditSigning(signer: signer, genesis: ["version": .string("test")]),
            logger: logger)
        for i in 0..<count {
            let kind = i % 3 == 0 ? "session.open" : "statement"
            let done = DispatchSemaphore(value: 0)
            log.append(
                kind: kind, subject: AuditSubject(user: "svc-ci", resource: "orders-db", session: "s\(i / 3)"),
                fields: ["n": .int(Int64(i)), "text": .string("SELECT \(i)")]
            ) { _ in done.signal() }
            done.wait()
            if i == count / 2 {
                log.checkpointNow()
                try waitForCheckpoint(log)
            }
        }
        log.close()  // signs the last checkpoint
        return path
    }

    static func waitForCheckpoint(_ log: AuditLog) throws {
        let last = try log.lastIndex
        for _ in 0..<300 {
            if (try log.latestCheckpoint()?.size ?? 0) >= last { return }
            Thread.sleep(forTimeInterval: 0.01)
        }
        Issue.record("no checkpoint over \(last) entries")
    }

    static func withDir(_ body: (String) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("verify-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try body(dir)
    }

    /// A copy of the database with the append-only triggers dropped, changed by `tamper`.
    static func tampered(_ path: String, _ name: String, _ tamper: (Database) throws -> Void) throws -> String {
        let copy = (path as NSString).deletingLastPathComponent + "/\(name).db"
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            try FileManager.default.copyItem(atPath: path + suffix, toPath: copy + suffix)
        }
        let queue = try DatabaseQueue(path: copy)
        try queue.writeWithoutTransaction { db in
            for trigger in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'trigger'") {
                try db.execute(sql: "DROP TRIGGER \(trigger)")
            }
            try tamper(db)
        }
        try queue.close()
        return copy
    }

    static func verifier(_ signer: NoteSigner) throws -> NoteVerifier {
        try NoteVerifier(verifierKey: signer.verifierKey)
    }

    @Test func aSignedLogStartsWithItsGenesisAndVerifies() throws {
        try Self.withDir { dir in
            let signer = try NoteSigner.generate(name: "test-appliance")
            let path = try Self.makeLog(dir, signer: signer)
            let report = LocalVerifier.verify(databasePath: path, verifier: try Self.verifier(signer))
            #expect(report.passed, "\(report.failures)")
            #expect(report.entries == 21 && report.checkpoints >= 2)
            let log = try AuditLog.open(
                path: path, durability: .crash, signing: AuditSigning(signer: signer), logger: Self.logger)
            defer { log.close() }
            let genesis = try #require(try log.entries(from: 1, count: 1).first)
            #expect(genesis.kind == "log.genesis")
            #expect(genesis.text.contains(signer.verifierKey) && genesis.text.contains(log.applianceID))
            // Another key is refused: a log's key is part of its history.
            #expect(throws: AuditError.self) {
                try AuditLog.open(
                    path: path, durability: .crash,
                    signing: AuditSigning(signer: try NoteSigner.generate(name: "other")),
                    logger: Self.logger)
            }
        }
    }

    @Test func everyTamperingOfTheDatabaseIsCaughtAndNamed() throws {
        try Self.withDir { dir in
            let signer = try NoteSigner.generate(name: "test-appliance")
            let path = try Self.makeLog(dir, signer: signer)
            let verifier = try Self.verifier(signer)
            func failures(_ name: String, _ tamper: (Database) throws -> Void) throws -> [VerificationReport.Failure] {
                let report = LocalVerifier.verify(
                    databasePath: try Self.tampered(path, name, tamper), verifier: verifier)
                #expect(!report.passed, "\(name) was not caught")
                return report.failures
            }
            // One byte of entry 5's body.
            var f = try failures("byte") { db in
                try db.execute(
                    sql:
                        "UPDATE entries SET body = CAST(replace(CAST(body AS TEXT), 'SELECT 3', 'SELECT 4') AS BLOB) WHERE idx = 5"
                )
            }
            #expect(f.contains { $0.entry == 5 }, "\(f)")
            // Entry 7 deleted.
            f = try failures("delete") { db in try db.execute(sql: "DELETE FROM entries WHERE idx = 7") }
            #expect(f.contains { $0.entry == 7 && $0.message.contains("missing") }, "\(f)")
            // Entries 3 and 4 swapped.
            f = try failures("reorder") { db in
                try db.execute(sql: "UPDATE entries SET idx = 1000 WHERE idx = 3")
                try db.execute(sql: "UPDATE entries SET idx = 3 WHERE idx = 4")
                try db.execute(sql: "UPDATE entries SET idx = 4 WHERE idx = 1000")
            }
            #expect(f.contains { $0.entry == 3 }, "\(f)")
            // The tail cut off.
            f = try failures("truncate") { db in try db.execute(sql: "DELETE FROM entries WHERE idx > 15") }
            #expect(f.contains { $0.message.contains("16") && $0.message.contains("gone") }, "\(f)")
            // The newest checkpoint replaced by an older one's note.
            f = try failures("replace") { db in
                try db.execute(
                    sql: "UPDATE checkpoints SET note = (SELECT note FROM checkpoints ORDER BY size LIMIT 1) "
                        + "WHERE size = (SELECT max(size) FROM checkpoints)")
            }
            #expect(f.contains { $0.checkpoint != nil }, "\(f)")
            // Re-signed by another key of the same name, over a changed entry and its rewritten tree.
            let forger = try NoteSigner.generate(name: "test-appliance")
            f = try failures("resign") { db in
                for row in try Row.fetchAll(db, sql: "SELECT size, root FROM checkpoints") {
                    let root = [UInt8](row["root"] as Data)
                    let text = Checkpoint(origin: "interlock/x", size: UInt64(row["size"] as Int64), rootHash: root)
                        .text
                    try db.execute(
                        sql: "UPDATE checkpoints SET note = ? WHERE size = ?",
                        arguments: [try forger.sign(text), row["size"]])
                }
            }
            #expect(f.contains { $0.checkpoint != nil && $0.message.contains("signature") }, "\(f)")
            // A changed entry whose stored leaf is rewritten to match: the signed roots still catch it.
            f = try failures("leaf") { db in
                try db.execute(
                    sql:
                        "UPDATE entries SET body = CAST(replace(CAST(body AS TEXT), 'SELECT 9', 'SELECT 8') AS BLOB) WHERE idx = 11"
                )
                let body = try #require(try Data.fetchOne(db, sql: "SELECT body FROM entries WHERE idx = 11"))
                try db.execute(
                    sql: "UPDATE tree_nodes SET hash = ? WHERE level = 0 AND idx = 10",
                    arguments: [Data(Merkle.leafHash(body).bytes)])
            }
            #expect(f.contains { $0.checkpoint != nil && $0.message.contains("signed root") }, "\(f)")
        }
    }

    /// A bundle of the whole log, built the way `interlock audit export` builds it.
    static func makeBundle(_ path: String, signer: NoteSigner, into dir: String, kind: String? = nil) throws {
        let log = try AuditLog.open(
            path: path, durability: .crash, signing: AuditSigning(signer: signer), logger: logger)
        defer { log.close() }
        try writeBundle(log, into: dir, kind: kind)
    }

    /// A bundle of an open log. With `chain`, as exports are written since key rotation: the
    /// genesis and rotation entries, each rotation's hand-over checkpoint, and a manifest naming the
    /// root and the chain's size; without, in the format written before it (which must still verify).
    static func writeBundle(_ log: AuditLog, into dir: String, kind: String? = nil, chain: Bool = false) throws {
        let checkpoint = try #require(try log.latestCheckpoint())
        var q = AuditQuery(kind: kind)
        q.maxIndex = checkpoint.size
        q.oldestFirst = true
        q.limit = 100_000
        let records = try log.query(q)
        let proofs = try log.inclusionProofs(indexes: records.map(\.index), size: checkpoint.size)
        var writer = try AuditBundle.Writer(directory: dir)
        var digest = SHA256()
        for (record, proof) in zip(records, proofs) {
            try writer.append(
                index: record.index, leafHash: Merkle.leafHash(record.body).hex, proof: proof.map(\.hex),
                entry: record.body)
            digest.update(data: record.body + [0x0A])
        }
        var older: [StoredCheckpoint] = []
        if let first = records.first, let covering = try log.firstCheckpoint(covering: first.index),
            covering.size < checkpoint.size
        {
            older.append(covering)
        }
        let chainRecords = chain ? try log.keyChainRecords(upTo: checkpoint.size) : []
        let chainProofs = try log.inclusionProofs(indexes: chainRecords.map(\.index), size: checkpoint.size)
        for (record, proof) in zip(chainRecords, chainProofs) {
            try writer.appendChain(
                index: record.index, leafHash: Merkle.leafHash(record.body).hex, proof: proof.map(\.hex),
                entry: record.body)
        }
        for record in chainRecords where record.kind == AuditKind.keyRotated && record.index < checkpoint.size {
            let handOver = try #require(try log.checkpoints(sizes: record.index...record.index).first)
            if !older.contains(handOver) { older.append(handOver) }
        }
        let consistency = try older.map {
            AuditBundle.Consistency(
                from: $0.size, to: checkpoint.size,
                proof: try log.consistencyProof(from: $0.size, to: checkpoint.size).map(\.hex))
        }
        let manifest = AuditBundle.Manifest(
            origin: log.origin, checkpointSize: checkpoint.size, query: kind.map { #"{"kind":"\#($0)"}"# } ?? "{}",
            filtered: kind != nil, entries: records.count, firstIndex: records.first?.index,
            lastIndex: records.last?.index, digest: digest.finalize().map { String(format: "%02x", $0) }.joined(),
            time: "2026-11-22T00:00:00Z", root: chain ? checkpoint.root.hex : nil,
            chainEntries: chain ? chainRecords.count : nil)
        try writer.finish(
            checkpoint: checkpoint.note, olderCheckpoints: older.map(\.note), consistency: consistency,
            verifierKey: try #require(log.verifierKey), manifest: try log.signNote(manifest.text))
    }

    @Test func aBundleVerifiesOfflineAndEveryBitFlipIsCaught() throws {
        try Self.withDir { dir in
            let signer = try NoteSigner.generate(name: "test-appliance")
            // Genesis and two entries, with a checkpoint between them: every file kind is present
            // (an older checkpoint and its consistency proof too), and each flip is one verification.
            let path = try Self.makeLog(dir, signer: signer, count: 3)
            let bundle = dir + "/bundle"
            try Self.makeBundle(path, signer: signer, into: bundle)
            let verifier = try Self.verifier(signer)
            let clean = BundleVerifier.verify(directory: bundle, verifier: verifier)
            #expect(clean.passed, "\(clean.failures)")
            #expect(clean.entries == 4 && clean.inclusionProofs == 4 && clean.consistencyProofs == 1)

            let fm = FileManager.default
            let files = try #require(fm.enumerator(atPath: bundle)).compactMap { $0 as? String }.filter { name in
                var isDirectory: ObjCBool = false
                return fm.fileExists(atPath: bundle + "/" + name, isDirectory: &isDirectory) && !isDirectory.boolValue
            }.sorted()
            #expect(files.count >= 8, "\(files)")
            // Two workers, each flipping in its own copy of the bundle.
            let workers = 2
            for w in 0..<workers { try fm.copyItem(atPath: bundle, toPath: bundle + "-\(w)") }
            let results = Mutex<(flips: Int, missed: [String])>((0, []))
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let copy = bundle + "-\(w)"
                var flips = 0
                var missed: [String] = []
                for name in files {
                    let url = URL(fileURLWithPath: copy + "/" + name)
                    guard let original = try? Data(contentsOf: url) else { continue }
                    var bytes = [UInt8](original)
                    for i in bytes.indices where i % workers == w {
                        for bit in 0..<8 {
                            bytes[i] ^= 1 << bit
                            try? Data(bytes).write(to: url)
                            if BundleVerifier.verify(directory: copy, verifier: verifier).passed {
                                missed.append("\(name) byte \(i) bit \(bit)")
                            }
                            bytes[i] ^= 1 << bit
                            flips += 1
                        }
                    }
                    try? original.write(to: url)
                }
                results.withLock {
                    $0.flips += flips
                    $0.missed += missed
                }
            }
            let (flips, missed) = results.withLock { $0 }
            #expect(flips > 8 * 2000, "\(flips) flips")
            #expect(missed.isEmpty, "\(missed.count) of \(flips) flips went unnoticed: \(missed.prefix(10))")
            #expect(BundleVerifier.verify(directory: bundle, verifier: verifier).passed)
            // With another key, nothing verifies.
            let stranger = try Self.verifier(try NoteSigner.generate(name: "test-appliance"))
            #expect(!BundleVerifier.verify(directory: bundle, verifier: stranger).passed)
        }
    }

    @Test func anIdleLogWritesAHeartbeatAndSignsOverIt() throws {
        try Self.withDir { dir in
            let signer = try NoteSigner.generate(name: "test-appliance")
            let log = try AuditLog.open(
                path: dir + "/audit.db", durability: .crash, signing: AuditSigning(signer: signer), logger: Self.logger,
                clock: { Date() }, heartbeatInterval: 0.3)
            defer { log.close() }
            var beats: [AuditRecord] = []
            for _ in 0..<300 where beats.isEmpty {
                Thread.sleep(forTimeInterval: 0.01)
                beats = try log.query(AuditQuery(kind: AuditKind.heartbeat))
            }
            let beat = try #require(beats.first)
            try Self.waitForCheckpoint(log)
            #expect(try log.latestCheckpoint()?.size ?? 0 >= beat.index, "a checkpoint covers the heartbeat")
        }
    }

    @Test func retentionRemovesBodiesButEveryProofStillVerifies() throws {
        try Self.withDir { dir in
            let signer = try NoteSigner.generate(name: "test-appliance")
            let path = try Self.makeLog(dir, signer: signer)
            let log = try AuditLog.open(
                path: path, durability: .crash, signing: AuditSigning(signer: signer), logger: Self.logger)
            defer { log.close() }
            let before = try #require(try log.latestCheckpoint())
            let oldProof = try log.inclusionProof(index: 5, size: before.size)
            let oldLeaf = try log.leafHash(index: 5)
            // Everything up to now is older than a cutoff a second ahead.
            let result = try #require(try log.prune(before: Date().addingTimeInterval(1), policy: "entries: 0d"))
            #expect(
                result.prunedBelow == before.size + 1 && result.removed == Int(before.size) - 1, "all but the genesis")
            #expect(try log.entries(from: 1, count: 10).prefix(2).map(\.kind) == ["log.genesis", "log.prune"])
            // The proof issued before the prune still verifies, and a new one can still be made.
            #expect(
                Merkle.verifyInclusion(leaf: oldLeaf, index: 4, size: before.size, proof: oldProof, root: before.root))
            let after = try #require(try log.latestCheckpoint())
            let newProof = try log.inclusionProof(index: 5, size: after.size)
            #expect(
                Merkle.verifyInclusion(leaf: oldLeaf, index: 4, size: after.size, proof: newProof, root: after.root))
            let report = LocalVerifier.verify(databasePath: path, verifier: try Self.verifier(signer))
            #expect(report.passed, "\(report.failures)")
            #expect(report.notes.contains { $0.contains("pruned") })
            // Nothing at or above the first kept index may be deleted.
            let queue = try DatabaseQueue(path: path)
            #expect(throws: (any Error).self) {
                try queue.write { db in
                    try db.execute(sql: "DELETE FROM entries WHERE idx = ?", arguments: [result.entry])
                }
            }
            try queue.close()
        }
    }

    @Test func aFilteredBundleVerifiesWithoutContiguousIndexes() throws {
        try Self.withDir { dir in
            let signer = try NoteSigner.generate(name: "test-appliance")
            let path = try Self.makeLog(dir, signer: signer)
            try Self.makeBundle(path, signer: signer, into: dir + "/sessions", kind: "session.open")
            let report = BundleVerifier.verify(directory: dir + "/sessions", verifier: try Self.verifier(signer))
            #expect(report.passed, "\(report.failures)")
            #expect(report.entries == 7 && report.consistencyProofs == 1)
        }
    }
}
