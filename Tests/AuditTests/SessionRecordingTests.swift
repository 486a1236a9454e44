import Foundation
import GRDB
import Logging
import Testing

@testable import Audit

/// Recordings in the store: the chunk format, blobs committed with their entries, the local and the
/// bundle verifier checking them, and retention removing them while the entries stay.
@Suite struct SessionRecordingTests {
    typealias E = EvidenceVerificationTests

    static func chunk(seq: UInt64, session: String = "s1", frames: Int = 3) -> [UInt8] {
        var b = RecordingChunkBuilder(
            header: .init(protocol: "postgres", seq: seq, session: session, started: "2026-11-22T04:00:00.000000Z"))
        for i in 0..<frames {
            b.append(i % 2 == 0 ? .fromClient : .toClient, offset: UInt64(i * 1000), Array("frame \(i)".utf8))
        }
        return b.finish()
    }

    @Test func aChunkReadsBackExactlyAndDamageIsRefused() throws {
        var b = RecordingChunkBuilder(
            header: .init(protocol: "postgres", seq: 7, session: "abc", started: "2026-11-22T04:00:00.000000Z"))
        b.append(.fromClient, offset: 5, [0x51, 0, 0, 0, 4])
        b.append(.toClient, offset: 1_000_000, [UInt8](repeating: 0xFF, count: 70_000))
        b.append(.note, offset: 1_000_001, Array("limit".utf8))
        #expect(b.frames == 3 && b.firstOffset == 5 && b.lastOffset == 1_000_001)
        let bytes = b.finish()
        let parsed = try RecordingChunk.parse(bytes)
        #expect(
            parsed.header == .init(protocol: "postgres", seq: 7, session: "abc", started: "2026-11-22T04:00:00.000000Z")
        )
        #expect(parsed.frames.map(\.kind) == [.fromClient, .toClient, .note])
        #expect(parsed.frames[1].bytes.count == 70_000 && parsed.frames[1].offset == 1_000_000)
        // Cut anywhere inside a frame, or with a foreign magic, or an unknown frame kind: refused.
        for cut in [bytes.count - 1, bytes.count - 70_005, 20, 3] {
            #expect(throws: AuditError.self) { try RecordingChunk.parse(Array(bytes.prefix(cut))) }
        }
        var magic = bytes
        magic[0] = 0x58
        #expect(throws: AuditError.self) { try RecordingChunk.parse(magic) }
        let headerEnd = 11 + Int(bytes[10])
        var kind = bytes
        kind[headerEnd] = 0x7A
        #expect(throws: AuditError.self) { try RecordingChunk.parse(kind) }
    }

    /// A signed log with `sessions` recorded sessions of two chunks each, closed.
    static func makeRecordedLog(_ dir: String, signer: NoteSigner, sessions: Int = 3) throws -> String {
        let path = try E.makeLog(dir, signer: signer, count: 6)
        let log = try AuditLog.open(
            path: path, durability: .crash, signing: AuditSigning(signer: signer), logger: E.logger)
        for s in 0..<sessions {
            for seq in 0..<2 {
                let blob = AuditBlob(Data(chunk(seq: UInt64(seq), session: "r\(s)")))
                let done = DispatchSemaphore(value: 0)
                let result = ResultBox()
                log.append(
                    kind: AuditKind.recording,
                    subject: AuditSubject(user: "svc-ci", resource: "orders-db", session: "r\(s)"),
                    fields: [
                        "seq": .uint(UInt64(seq)), "size": .uint(UInt64(blob.data.count)), "final": .bool(seq == 1),
                    ],
                    blob: blob, deferred: seq == 0
                ) {
                    result.set($0)
                    done.signal()
                }
                done.wait()
                let record = try result.get()
                guard case .object(let m) = try CanonicalJSON.decode(record.body) else {
                    throw AuditError(.corrupt, "")
                }
                #expect(m["blob"] == .string(blob.hash.hex))
                #expect(try log.blob(blob.hash.hex) == blob.data)
            }
        }
        #expect(try log.recordingEntries(session: "r1").count == 2)
        log.close()
        return path
    }

    final class ResultBox: @unchecked Sendable {
        // Written once by the writer thread before the semaphore, read after it.
        private var value: Result<AuditRecord, AuditError>?
        func set(_ v: Result<AuditRecord, AuditError>) { value = v }
        func get() throws -> AuditRecord {
            guard let value else { throw AuditError(.storage, "no result") }
            return try value.get()
        }
    }

    @Test func blobsAreCheckedByTheLocalVerifierAndTamperingIsNamed() throws {
        try E.withDir { dir in
            let signer = try NoteSigner.generate(name: "test-appliance")
            let path = try Self.makeRecordedLog(dir, signer: signer)
            let verifier = try E.verifier(signer)
            let report = LocalVerifier.verify(databasePath: path, verifier: verifier)
            #expect(report.passed, "\(report.failures)")
            #expect(report.notes.contains("6 blob(s) checked"), "\(report.notes)")

            let recording = try DatabaseQueue(path: path).read { db in
                try Int64.fetchOne(
                    db, sql: "SELECT min(idx) FROM entries WHERE kind = 'session.recording'") ?? 0
            }
            // A changed chunk, a removed one, an extra one: each named.
            let changed = try E.tampered(path, "changed") { db in
                try db.execute(
                    sql: "UPDATE blobs SET data = data || x'00' WHERE rowid = (SELECT min(rowid) FROM blobs)")
            }
            let f1 = LocalVerifier.verify(databasePath: changed, verifier: verifier).failures
            #expect(f1.contains { $0.entry == UInt64(recording) && $0.message.contains("was changed") }, "\(f1)")
            let removed = try E.tampered(path, "removed") { db in
                try db.execute(sql: "DELETE FROM blobs WHERE rowid = (SELECT min(rowid) FROM blobs)")
            }
            let f2 = LocalVerifier.verify(databasePath: removed, verifier: verifier).failures
            #expect(f2.contains { $0.entry == UInt64(recording) && $0.message.contains("missing") }, "\(f2)")
            let extra = try E.tampered(path, "extra") { db in
                let data = Data(Self.chunk(seq: 9, session: "nobody"))
                try db.execute(
                    sql: "INSERT INTO blobs (hash, time_us, size, data) VALUES (?, 0, ?, ?)",
                    arguments: [Data(MerkleHash.sha256(data).bytes), data.count, data])
            }
            let f3 = LocalVerifier.verify(databasePath: extra, verifier: verifier).failures
            #expect(f3.contains { $0.message.contains("referenced by no entry") }, "\(f3)")
            // Blobs cannot be changed or removed through SQLite either.
            let queue = try DatabaseQueue(path: path)
            #expect(throws: (any Error).self) { try queue.write { try $0.execute(sql: "UPDATE blobs SET size = 0") } }
            #expect(throws: (any Error).self) { try queue.write { try $0.execute(sql: "DELETE FROM blobs") } }
            try queue.close()
        }
    }

    @Test func aBundleCarriesTheBlobsItsEntriesReference() throws {
        try E.withDir { dir in
            let signer = try NoteSigner.generate(name: "test-appliance")
            let path = try Self.makeRecordedLog(dir, signer: signer, sessions: 2)
            let bundle = dir + "/bundle"
            try E.makeBundle(path, signer: signer, into: bundle)
            let log = try AuditLog.open(
                path: path, durability: .crash, signing: AuditSigning(signer: signer), logger: E.logger)
            let entries = try log.recordingEntries(session: "r0") + log.recordingEntries(session: "r1")
            var hashes: [String] = []
            for entry in entries {
                guard case .object(let m) = try CanonicalJSON.decode(entry.body), case .string(let hash)? = m["blob"]
                else { continue }
                hashes.append(hash)
                try Data(try #require(try log.blob(hash))).write(to: URL(fileURLWithPath: bundle + "/blobs/" + hash))
            }
            log.close()
            let verifier = try E.verifier(signer)
            let good = BundleVerifier.verify(directory: bundle, verifier: verifier)
            #expect(good.passed, "\(good.failures)")
            #expect(good.notes.contains("4 blob(s) checked"), "\(good.notes)")

            let first = bundle + "/blobs/" + hashes[0]
            let original = try Data(contentsOf: URL(fileURLWithPath: first))
            var changed = original
            changed[changed.count - 1] ^= 1
            try changed.write(to: URL(fileURLWithPath: first))
            let f1 = BundleVerifier.verify(directory: bundle, verifier: verifier).failures
            #expect(f1.contains { $0.entry == entries[0].index && $0.message.contains("does not hash") }, "\(f1)")
            try FileManager.default.removeItem(atPath: first)
            let f2 = BundleVerifier.verify(directory: bundle, verifier: verifier).failures
            #expect(f2.contains { $0.message.contains("missing from the bundle") }, "\(f2)")
            try original.write(to: URL(fileURLWithPath: first))
            let stray = Data(Self.chunk(seq: 0, session: "stray"))
            try stray.write(to: URL(fileURLWithPath: bundle + "/blobs/" + MerkleHash.sha256(stray).hex))
            let f3 = BundleVerifier.verify(directory: bundle, verifier: verifier).failures
            #expect(f3.contains { $0.message.contains("referenced by no exported entry") }, "\(f3)")
        }
    }

    @Test func aManifestStatesItsBlobCountsAndOldManifestsStillRead() throws {
        var m = AuditBundle.Manifest(
            origin: "interlock/x", checkpointSize: 9, query: "{}", filtered: false, entries: 9, firstIndex: 1,
            lastIndex: 9, digest: String(repeating: "0", count: 64), time: "2026-11-22T00:00:00Z", blobs: 4,
            blobsPruned: 2)
        #expect(try AuditBundle.Manifest.parse(m.text) == m)
        m.blobs = nil
        m.blobsPruned = nil
        #expect(!m.text.contains("blobs"))
        #expect(try AuditBundle.Manifest.parse(m.text) == m)
        #expect(throws: (any Error).self) {
            try AuditBundle.Manifest.parse(m.text + "blobs x\nblobs_pruned 0\n")
        }
    }

    @Test func retentionRemovesRecordingsAfterSayingSoAndTheLogStillVerifies() throws {
        try E.withDir { dir in
            let signer = try NoteSigner.generate(name: "test-appliance")
            let path = try Self.makeRecordedLog(dir, signer: signer, sessions: 2)
            let log = try AuditLog.open(
                path: path, durability: .crash, signing: AuditSigning(signer: signer), logger: E.logger)
            defer { log.close() }
            #expect(try log.pruneRecordings(before: Date().addingTimeInterval(-3600), policy: "recordings: 1h") == nil)
            let result = try #require(
                try log.pruneRecordings(before: Date().addingTimeInterval(1), policy: "recordings: 0d"))
            #expect(result.removed == 4 && result.bytes > 0)
            let entry = try #require(try log.query(AuditQuery(kind: AuditKind.recordingPrune)).first)
            guard case .object(let m) = try CanonicalJSON.decode(entry.body) else { throw AuditError(.corrupt, "") }
            #expect(m["removed"]?.uint64Value == 4 && m["policy"] == .string("recordings: 0d"))
            #expect(try log.latestCheckpoint()?.size ?? 0 >= entry.index, "checkpointed before anything went")
            #expect(try log.recordingEntries(session: "r0").count == 2, "the entries stay")
            let report = LocalVerifier.verify(databasePath: path, verifier: try E.verifier(signer))
            #expect(report.passed, "\(report.failures)")
            #expect(report.notes.contains("4 recording chunk(s) were removed by retention"), "\(report.notes)")
        }
    }
}
