import Foundation
import Logging

@testable import Audit

/// A fresh directory under the system temp dir, removed by `cleanup()`.
struct TemporaryDirectory {
    let path: String

    init() {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent("audit-tests-\(UUID().uuidString)")
    }

    func file(_ name: String = "audit.db") -> String {
        (path as NSString).appendingPathComponent(name)
    }

    func cleanup() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// A clock the test moves by hand.
final class ManualClock: @unchecked Sendable {
    // Guarded by `lock`.
    private var current: Date
    private let lock = NSLock()

    init(_ start: Date) { current = start }

    var now: Date {
        get { lock.withLock { current } }
        set { lock.withLock { current = newValue } }
    }

    var source: @Sendable () -> Date { { [self] in now } }
}

/// Collects log messages so tests can assert that an alert was raised.
final class LogRecorder: @unchecked Sendable {
    struct Message: Sendable {
        var level: Logger.Level
        var text: String
    }

    // Guarded by `lock`.
    private var recorded: [Message] = []
    private let lock = NSLock()

    var messages: [Message] { lock.withLock { recorded } }

    func record(_ message: Message) { lock.withLock { recorded.append(message) } }

    func logger() -> Logger {
        var logger = Logger(label: "audit-tests") { _ in RecordingHandler(recorder: self) }
        logger.logLevel = .trace
        return logger
    }

    struct RecordingHandler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            recorder.record(Message(level: event.level, text: "\(event.message)"))
        }
    }
}

/// Waits for a known number of completions from other threads.
final class Completions: @unchecked Sendable {
    // Guarded by `condition`.
    private var results: [Result<AuditRecord, AuditError>] = []
    private let condition = NSCondition()

    var handler: @Sendable (Result<AuditRecord, AuditError>) -> Void {
        { [self] result in
            condition.lock()
            results.append(result)
            condition.broadcast()
            condition.unlock()
        }
    }

    /// All results once `count` arrived (or what arrived after `timeout` seconds).
    func wait(for count: Int, timeout: TimeInterval = 60) -> [Result<AuditRecord, AuditError>] {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while results.count < count {
            if !condition.wait(until: deadline) { break }
        }
        return results
    }

    var count: Int {
        condition.lock()
        defer { condition.unlock() }
        return results.count
    }
}

extension Result where Failure == AuditError {
    var record: Success? { if case .success(let r) = self { return r } else { return nil } }
    var error: AuditError? { if case .failure(let e) = self { return e } else { return nil } }
}

func openLog(
    _ path: String,
    durability: AuditDurability = .crash,
    clock: (@Sendable () -> Date)? = nil,
    logger: Logger = Logger(label: "audit-tests", factory: { _ in SwiftLogNoOpLogHandler() })
) throws -> AuditLog {
    try AuditLog.open(path: path, durability: durability, logger: logger, clock: clock ?? { Date() })
}

/// Runs `body(i)` for i in 0..<count on `count` real threads at once (concurrentPerform would cap the
/// parallelism at the number of cores) and returns when all are done.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let done = DispatchGroup()
    for i in 0..<count {
        done.enter()
        let thread = Thread {
            body(i)
            done.leave()
        }
        thread.start()
    }
    done.wait()
}
