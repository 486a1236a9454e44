import Audit
import Foundation
import Logging
import NIOCore

/// Records one session's exchange as the client experienced it, in chunks the evidence log keeps as
/// blobs (`session.recording` entries, see ``RecordingChunk``).
///
/// The recording trails the exchange by at most ``flushInterval`` or ``chunkSize`` bytes: a chunk is
/// committed when it is full, a second after its first frame, and when the session ends. Unlike a
/// statement's entry, nothing waits for it: the statement evidence stays the durable record that
/// gates forwarding, and the recording is what an auditor replays to see what the client saw. A
/// crash loses at most the chunk being filled.
///
/// Confined to the session's event loop.
final class SessionRecorder {
    /// A chunk is committed when it reaches this size.
    static let chunkSize = 128 << 10
    /// ... or this long after its first frame.
    static let flushInterval = TimeAmount.seconds(1)
    /// More than a chunk's header (or the limit note) takes, counted against `audit.recording_limit` so
    /// the blobs of a session never add up to more than it.
    static let headerAllowance = 256

    private let log: AuditLog
    private let subject: AuditSubject
    private let session: ProxySession
    private let protocolName: String
    private let eventLoop: any EventLoop
    /// The most this session's recording keeps (`audit.recording_limit`).
    private let limit: Int
    /// The wall-clock time the session started, the origin of frame offsets.
    private let startedText: String

    private var chunk: RecordingChunkBuilder?
    private var seq: UInt64 = 0
    private var recordedBytes = 0
    private var droppedBytes = 0
    private var finished = false
    private var timer: Scheduled<Void>?

    init(
        log: AuditLog, subject: AuditSubject, session: ProxySession, protocol: String, limit: Int,
        eventLoop: any EventLoop
    ) {
        self.log = log
        self.subject = subject
        self.session = session
        self.protocolName = `protocol`
        self.limit = limit
        self.eventLoop = eventLoop
        let elapsed = Double((NIODeadline.now() - session.started).nanoseconds) / 1e9
        self.startedText = AuditLog.formatTime(Date().addingTimeInterval(-elapsed))
    }

    /// Microseconds since the session started.
    private var offset: UInt64 {
        UInt64(max(0, (NIODeadline.now() - session.started).nanoseconds / 1000))
    }

    /// Records one frame: the readable bytes of `buffer`, whole.
    func record(_ kind: RecordingChunk.FrameKind, _ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { record(kind, $0) }
    }

    func record(_ kind: RecordingChunk.FrameKind, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { record(kind, $0) }
    }

    /// Records one frame (`bytes`, whole).
    func record(_ kind: RecordingChunk.FrameKind, _ bytes: UnsafeRawBufferPointer) {
        guard !finished else { return }
        // Room is kept for the note that says the limit was reached, and for a chunk's header.
        let size = bytes.count + 13 + (chunk == nil ? Self.headerAllowance : 0)
        guard droppedBytes == 0, recordedBytes + size + Self.headerAllowance * 2 <= limit else {
            if droppedBytes == 0 {
                let note = Array(
                    "recording limit reached (audit.recording_limit \(limit) bytes); later frames are not recorded".utf8
                )
                note.withUnsafeBytes { append(.note, $0) }
                commit(final: false)
            }
            droppedBytes += bytes.count
            return
        }
        append(kind, bytes)
    }

    /// Commits what is buffered as the last chunk. Call once, when the session ends.
    func finish() {
        guard !finished else { return }
        commit(final: true)
        finished = true
    }

    private func append(_ kind: RecordingChunk.FrameKind, _ bytes: UnsafeRawBufferPointer) {
        if chunk == nil {
            recordedBytes += Self.headerAllowance
            chunk = newChunk(capacity: Self.chunkSize)
            let bound = NIOLoopBound(self, eventLoop: eventLoop)
            timer = eventLoop.scheduleTask(in: Self.flushInterval) { bound.value.commit(final: false) }
        }
        chunk?.append(kind, offset: offset, bytes)
        recordedBytes += bytes.count + 13
        if (chunk?.size ?? 0) >= Self.chunkSize {
            commit(final: false)
        }
    }

    private func commit(final: Bool) {
        timer?.cancel()
        timer = nil
        // The last chunk is written even when empty, so the recording says the session ended.
        guard let built = chunk ?? (final && seq > 0 ? newChunk(capacity: 0) : nil) else { return }
        chunk = nil
        let blob = AuditBlob(Data(built.finish()))
        var fields: [String: AuditValue] = [
            "seq": .uint(seq), "size": .uint(UInt64(blob.data.count)), "frames": .uint(UInt64(built.frames)),
            "from_ms": .uint((built.firstOffset ?? offset) / 1000), "to_ms": .uint(built.lastOffset / 1000),
            "final": .bool(final), "protocol": .string(protocolName),
        ]
        if droppedBytes > 0 { fields["dropped_bytes"] = .uint(UInt64(droppedBytes)) }
        seq += 1
        log.append(kind: AuditKind.recording, subject: subject, fields: fields, blob: blob, deferred: true) {
            [logger = session.logger] result in
            if case .failure(let error) = result {
                logger.error("could not record a chunk of the session's recording", metadata: ["error": "\(error)"])
            }
        }
    }

    /// The builder of chunk `seq`.
    private func newChunk(capacity: Int) -> RecordingChunkBuilder {
        RecordingChunkBuilder(
            header: RecordingChunk.Header(protocol: protocolName, seq: seq, session: session.id, started: startedText),
            capacity: capacity)
    }
}
