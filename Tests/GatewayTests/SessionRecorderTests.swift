import Audit
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import Policy
import PostgresWire
import Testing

@testable import Gateway

/// What a PostgreSQL session's recording keeps: whole messages in order, secrets replaced, chunks
/// cut by size and committed with their entries, and a limit past which it only counts.
@Suite struct SessionRecorderTests {
    static func session(_ loop: EmbeddedEventLoop) -> ProxySession {
        ProxySession(
            id: "00000000000000aa", identity: Identity(uid: 1001, user: "svc-ci"), resource: nil,
            source: Endpoint(address: IPAddress("198.18.0.1")!, port: 40000),
            destination: Endpoint(address: IPAddress("198.18.0.10")!, port: 5432),
            logger: Logger(label: "t", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    static func withRecorder(
        limit: Int = 64 << 20, _ body: (SessionRecorder, EmbeddedEventLoop) throws -> Void
    ) throws -> [(entry: [String: AuditValue], chunk: RecordingChunk)] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("recorder-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try AuditLog.open(
            path: dir + "/audit.db", durability: .crash,
            logger: Logger(label: "t", factory: { _ in SwiftLogNoOpLogHandler() }))
        let loop = EmbeddedEventLoop()
        let recorder = SessionRecorder(
            log: log, subject: AuditSubject(user: "svc-ci", resource: "orders-db", session: "00000000000000aa"),
            session: session(loop), protocol: "postgres", limit: limit, eventLoop: loop)
        try body(recorder, loop)
        recorder.finish()
        log.close()
        let reopened = try AuditLog.open(
            path: dir + "/audit.db", durability: .crash,
            logger: Logger(label: "t", factory: { _ in SwiftLogNoOpLogHandler() }))
        defer { reopened.close() }
        return try reopened.recordingEntries(session: "00000000000000aa").map { record in
            guard case .object(let m) = try CanonicalJSON.decode(record.body), case .string(let hash)? = m["blob"],
                let data = try reopened.blob(hash)
            else { throw AuditError(.corrupt, "no blob") }
            return (m, try RecordingChunk.parse([UInt8](data)))
        }
    }

    static func framed(_ m: PostgresFrontendMessage) -> PostgresFramedMessage<PostgresFrontendMessage> {
        var b = ByteBuffer()
        m.encode(into: &b)
        return .init(message: m, frame: b)
    }

    @Test func messagesAreRecordedWholeWithSecretsReplaced() throws {
        let recorded = try Self.withRecorder { recorder, _ in
            PostgresRecording.fromClient(Self.framed(.query("SELECT 1")), into: recorder)
            var password = ByteBuffer()
            password.writeString("p")
            password.writeInteger(Int32(4 + 7))
            password.writeString("secret\0")
            PostgresRecording.fromClient(
                .init(message: .authenticationResponse(.init(bytes: ByteBuffer(string: "secret\0"))), frame: password),
                into: recorder)
            // Two messages in one write, the second a BackendKeyData whose secret must go.
            var out = ByteBuffer()
            PostgresBackendMessage.authentication(.ok).encode(into: &out)
            PostgresBackendMessage.backendKeyData(
                PostgresBackendKey(processID: 4242, secretKey: ByteBuffer(bytes: [9, 9, 9, 9]))
            ).encode(into: &out)
            PostgresRecording.toClient(out, into: recorder)
            PostgresRecording.toClient(ByteBuffer(bytes: [UInt8(ascii: "N")]), into: recorder)
        }
        #expect(recorded.count == 1)
        let (entry, chunk) = try #require(recorded.first)
        #expect(entry["final"] == .bool(true) && entry["seq"]?.uint64Value == 0 && entry["frames"]?.uint64Value == 5)
        let frames = chunk.frames
        #expect(frames.map(\.kind) == [.fromClient, .fromClient, .toClient, .toClient, .toClient])
        #expect(frames[1].bytes == PostgresRecording.emptyAuthenticationResponse)
        #expect(frames[2].bytes == [UInt8(ascii: "R"), 0, 0, 0, 8, 0, 0, 0, 0])
        #expect(frames[3].bytes == [UInt8(ascii: "K"), 0, 0, 0, 12, 0, 0, 0x10, 0x92, 0, 0, 0, 0])
        #expect(frames[4].bytes == [UInt8(ascii: "N")])
        #expect(!chunk.frames.flatMap(\.bytes).contains(9))
    }

    @Test func largeSessionsAreCutIntoChunksAndStopAtTheLimit() throws {
        let row = [UInt8](repeating: 0x61, count: 10_000)
        let recorded = try Self.withRecorder(limit: 1 << 20) { recorder, _ in
            for _ in 0..<200 {  // 2 MB offered, 1 MiB kept
                recorder.record(.toClient, row)
            }
        }
        #expect(recorded.count >= 8, "cut at \(SessionRecorder.chunkSize) bytes")
        #expect(recorded.map { $0.chunk.header.seq } == Array(0..<UInt64(recorded.count)))
        #expect(recorded.reduce(0) { $0 + Int($1.entry["size"]?.uint64Value ?? 0) } <= 1 << 20)
        let last = try #require(recorded.last)
        #expect(last.entry["final"] == .bool(true))
        let dropped = try #require(last.entry["dropped_bytes"]?.uint64Value)
        let kept = recorded.flatMap(\.chunk.frames).filter { $0.kind == .toClient }.count
        #expect(Int(dropped) == (200 - kept) * row.count)
        #expect(recorded.flatMap(\.chunk.frames).contains { $0.kind == .note })
    }

    @Test func aQuietSessionsChunkIsCommittedAfterASecond() throws {
        let recorded = try Self.withRecorder { recorder, loop in
            recorder.record(.fromClient, [1, 2, 3])
            loop.advanceTime(by: .milliseconds(900))
            recorder.record(.toClient, [4])
            loop.advanceTime(by: .milliseconds(200))  // the first chunk's second is up
            recorder.record(.fromClient, [5])
        }
        #expect(recorded.map { $0.chunk.frames.count } == [2, 1])
        #expect(recorded.map { $0.entry["final"] } == [.bool(false), .bool(true)])
    }
}
