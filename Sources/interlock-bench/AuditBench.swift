// interlock-bench audit: the evidence log's speed (issue 5, "Speed"), on a temporary database:
//
// - durable appends per second with group commit: 256 appends kept in flight for a bounded time;
// - latency an append adds before a request could be forwarded, at a steady 1,000 appends per second
//   (one every millisecond, like 1,000 statements per second), p50 / p99 / max;
// - verification speed: `verify --local` over the whole log, and an export bundle of the newest
//   entries verified offline (entries per second);
// - proof size: an inclusion proof's hashes and bytes at the log's size, and bundle bytes per entry.
//
// Prints one JSON object. Writes only below its directory (default: a new one in /tmp), removed at the end.
import Audit
import Foundation
import Logging
import Synchronization

func runAuditBench(_ args: [String]) {
    var seconds = 5.0
    var directory: String?
    var durability = AuditDurability.crash
    var it = args.makeIterator()
    while let a = it.next() {
        switch a {
        case "--seconds": seconds = Double(it.next() ?? "") ?? seconds
        case "--dir": directory = it.next()
        case "--power-loss": durability = .powerLoss
        default:
            FileHandle.standardError.write(
                Data("usage: interlock-bench audit [--seconds S] [--dir DIR] [--power-loss]\n".utf8))
            exit(2)
        }
    }
    seconds = min(max(seconds, 1), 60)
    let dir = directory ?? NSTemporaryDirectory() + "interlock-audit-bench-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { if directory == nil { try? FileManager.default.removeItem(atPath: dir) } }
    let logger = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
    do {
        let signer = try NoteSigner.generate(name: "bench")
        let log = try AuditLog.open(
            path: dir + "/audit.db", durability: durability, signing: AuditSigning(signer: signer), logger: logger)
        let subject = AuditSubject(user: "svc-ci", resource: "orders-db", session: "0123456789abcdef")
        let fields: [String: AuditValue] = [
            "decision": .string("allow"), "kinds": .array([.string("SELECT")]), "origin": .string("query"),
            "statement": .uint(1), "text": .string("SELECT abalance FROM pgbench_accounts WHERE aid = 48213"),
            "text_redacted": .bool(false),
        ]

        // 1. Throughput: 256 in flight.
        let done = Mutex(0)
        let failed = Mutex(0)
        let window = DispatchSemaphore(value: 256)
        let start = Date()
        var issued = 0
        while Date().timeIntervalSince(start) < seconds {
            window.wait()
            issued += 1
            log.append(kind: "statement", subject: subject, fields: fields) { result in
                if case .failure = result { failed.withLock { $0 += 1 } }
                done.withLock { $0 += 1 }
                window.signal()
            }
        }
        for _ in 0..<256 { window.wait() }
        // A semaphore must be back at its initial value when it goes away.
        for _ in 0..<256 { window.signal() }
        let elapsed = Date().timeIntervalSince(start)
        let appendsPerSecond = Double(done.withLock { $0 }) / elapsed

        // 2. Latency at a steady 1,000 per second.
        let latencies = Mutex<[Double]>([])
        let steady = Date()
        var n = 0
        let group = DispatchGroup()
        while Date().timeIntervalSince(steady) < seconds {
            let due = steady.addingTimeInterval(Double(n) / 1000)
            let wait = due.timeIntervalSinceNow
            if wait > 0 { Thread.sleep(forTimeInterval: wait) }
            let t0 = DispatchTime.now().uptimeNanoseconds
            group.enter()
            log.append(kind: "statement", subject: subject, fields: fields) { _ in
                let us = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1000
                latencies.withLock { $0.append(us) }
                group.leave()
            }
            n += 1
        }
        group.wait()
        let sorted = latencies.withLock { $0 }.sorted()
        func pct(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int((p / 100) * Double(sorted.count - 1)))] }

        // 3. Verification: the whole log locally, then a bundle of the newest 100,000 entries offline.
        let last = try log.lastIndex
        guard let checkpoint = try log.checkpoint(covering: last, within: 5) else {
            throw NoteError("no checkpoint")
        }
        let verifier = try NoteVerifier(verifierKey: signer.verifierKey)
        var t = Date()
        let local = LocalVerifier.verify(databasePath: dir + "/audit.db", verifier: verifier)
        let localSeconds = Date().timeIntervalSince(t)

        var q = AuditQuery()
        q.maxIndex = checkpoint.size
        q.limit = 100_000
        let records = try log.query(q)
        let proofs = try log.inclusionProofs(indexes: records.map(\.index), size: checkpoint.size)
        let bundleDir = dir + "/bundle"
        var writer = try AuditBundle.Writer(directory: bundleDir)
        var digest = [UInt8]()
        for (record, proof) in zip(records, proofs) {
            try writer.append(
                index: record.index, leafHash: Merkle.leafHash(record.body).hex, proof: proof.map(\.hex),
                entry: record.body)
            digest += record.body + [0x0A]
        }
        let manifest = AuditBundle.Manifest(
            origin: log.origin, checkpointSize: checkpoint.size, query: "{}", filtered: false, entries: records.count,
            firstIndex: records.first?.index, lastIndex: records.last?.index,
            digest: sha256Hex(digest), time: AuditLog.formatTime(Date()))
        try writer.finish(
            checkpoint: checkpoint.note, olderCheckpoints: [], consistency: [], verifierKey: signer.verifierKey,
            manifest: try log.signNote(manifest.text))
        t = Date()
        let offline = BundleVerifier.verify(directory: bundleDir, verifier: verifier)
        let offlineSeconds = Date().timeIntervalSince(t)
        let bundleBytes =
            (try? FileManager.default.contentsOfDirectory(atPath: bundleDir))?.reduce(0) { total, name in
                total
                    + ((try? FileManager.default.attributesOfItem(atPath: bundleDir + "/" + name)[.size] as? Int) ?? 0)
            } ?? 0
        // The longest proof of the export (entries on the tree's right edge have shorter ones).
        let proofHashes = proofs.map(\.count).max() ?? 0
        let checkpoints = try log.checkpoints(sizes: 0...UInt64.max).count
        log.close()

        let out: [String: Any] = [
            "durability": durability.rawValue,
            "appends_per_second": Int(appendsPerSecond), "appends_failed": failed.withLock { $0 },
            "steady_rate_per_second": 1000, "steady_appends": sorted.count,
            "latency_us_p50": Int(pct(50)), "latency_us_p99": Int(pct(99)), "latency_us_max": Int(sorted.last ?? 0),
            "log_entries": Int(last), "verify_local_passed": local.passed,
            "verify_local_entries_per_second": Int(Double(local.entries) / localSeconds),
            "verify_bundle_passed": offline.passed, "bundle_entries": records.count,
            "verify_bundle_entries_per_second": Int(Double(offline.entries) / offlineSeconds),
            "inclusion_proof_hashes": proofHashes, "inclusion_proof_bytes": proofHashes * 32,
            "bundle_bytes_per_entry": records.isEmpty ? 0 : bundleBytes / records.count,
            "checkpoints": checkpoints,
        ]
        let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted])
        print(String(decoding: data, as: UTF8.self))
    } catch {
        FileHandle.standardError.write(Data("interlock-bench audit: \(error)\n".utf8))
        exit(1)
    }
}

func sha256Hex(_ bytes: [UInt8]) -> String {
    AuditBundle.sha256Hex(bytes)
}
