import Foundation
import Testing

@testable import Audit

/// Durable appends per second with group commit. Prints numbers; asserts only correctness (timing
/// asserts would fail on a loaded CI machine, not on a regression).
@Suite(.serialized) struct AuditThroughputTests {
    static let total = 10_000
    static let threads = 8

    static func fields(_ thread: Int, _ n: Int) -> [String: AuditValue] {
        // Roughly a session.close entry.
        [
            "bytes_up": AuditValue(1200 + n), "bytes_down": AuditValue(48_000 + n), "duration_ms": AuditValue(n),
            "reason": "client_closed", "thread": AuditValue(thread),
        ]
    }

    /// Every thread queues its share without waiting: the writer sees deep queues (bulk load).
    @Test(arguments: AuditDurability.allCases)
    func burstOfAppendsFromEightThreads(_ durability: AuditDurability) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try openLog(dir.file(), durability: durability)
        defer { log.close() }
        let completions = Completions()
        let start = DispatchTime.now()
        onThreads(Self.threads) { thread in
            for n in 0..<(Self.total / Self.threads) {
                log.append(
                    kind: "session.close",
                    subject: AuditSubject(user: "svc-\(thread)", resource: "orders-db", session: "s-\(thread)-\(n)"),
                    fields: Self.fields(thread, n),
                    completion: completions.handler
                )
            }
        }
        let results = completions.wait(for: Self.total, timeout: 300)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        #expect(results.compactMap(\.record).count == Self.total)
        #expect(try log.lastIndex == UInt64(Self.total))
        let stats = log.writerStatistics
        print(
            "audit throughput [burst, \(durability.rawValue)]: \(Self.total) appends from \(Self.threads) threads in "
                + "\(String(format: "%.3f", seconds)) s = \(Int(Double(Self.total) / seconds)) appends/s; "
                + "\(stats.committedTransactions) transactions, largest batch \(stats.maximumBatch)"
        )
    }

    /// 64 concurrent "sessions" (8 threads × 8 in flight), each waiting for its entry to commit before
    /// the next, like requests that are forwarded only once recorded: throughput and added latency.
    @Test(arguments: AuditDurability.allCases)
    func requestsWaitingForTheirEntry(_ durability: AuditDurability) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try openLog(dir.file(), durability: durability)
        defer { log.close() }
        let inFlightPerThread = 8
        let perThread = Self.total / Self.threads
        let latencies = LatencyRecorder()
        let start = DispatchTime.now()
        onThreads(Self.threads) { thread in
            let slots = DispatchSemaphore(value: inFlightPerThread)
            let done = DispatchGroup()
            for n in 0..<perThread {
                slots.wait()
                done.enter()
                let queued = DispatchTime.now().uptimeNanoseconds
                log.append(
                    kind: "session.close",
                    subject: AuditSubject(user: "svc-\(thread)"),
                    fields: Self.fields(thread, n)
                ) { result in
                    latencies.add(DispatchTime.now().uptimeNanoseconds - queued, ok: result.record != nil)
                    slots.signal()
                    done.leave()
                }
            }
            done.wait()
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        let (ok, p50, p99) = latencies.summary()
        #expect(ok == Self.total)
        #expect(try log.lastIndex == UInt64(Self.total))
        let stats = log.writerStatistics
        print(
            "audit throughput [64 waiting, \(durability.rawValue)]: \(Self.total) appends in "
                + "\(String(format: "%.3f", seconds)) s = \(Int(Double(Self.total) / seconds)) appends/s; "
                + "commit latency p50 \(String(format: "%.2f", p50)) ms p99 \(String(format: "%.2f", p99)) ms; "
                + "\(stats.committedTransactions) transactions, largest batch \(stats.maximumBatch)"
        )
    }
}

final class LatencyRecorder: @unchecked Sendable {
    // Guarded by `lock`.
    private var nanos: [UInt64] = []
    private var succeeded = 0
    private let lock = NSLock()

    func add(_ value: UInt64, ok: Bool) {
        lock.withLock {
            nanos.append(value)
            if ok { succeeded += 1 }
        }
    }

    /// Successes, p50 and p99 in milliseconds.
    func summary() -> (Int, Double, Double) {
        lock.withLock {
            let sorted = nanos.sorted()
            guard !sorted.isEmpty else { return (succeeded, 0, 0) }
            func at(_ q: Double) -> Double {
                Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]) / 1e6
            }
            return (succeeded, at(0.5), at(0.99))
        }
    }
}
