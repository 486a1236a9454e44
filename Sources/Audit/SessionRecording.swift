import Foundation

/// One piece of a session's recording: the exchange as the client experienced it, stored as a blob
/// (named by its SHA-256) that a `session.recording` entry references.
///
/// A recording is cut into chunks so no session holds more than one chunk in memory and a crash
/// loses at most the chunk being filled; the entries give their order (`seq`), and the tree proves
/// the entries, which prove the blobs by hash.
///
/// The bytes are protocol frames, kept as they crossed the client's connection: what the client
/// sent (`fromClient`), and what the daemon sent back to it (`toClient`, after masking: originals
/// never reach a recording). Secrets are replaced before they are recorded (authentication
/// responses, cancel keys). `note` frames are the daemon's own remarks (the recording was cut short).
///
/// ```
/// "ILREC1\n"                          magic
/// u32 n, n bytes                      header: canonical JSON {protocol, seq, session, started}
/// repeated:
///   u8 kind ('c' | 's' | 'n')         from the client, to the client, a note (UTF-8)
///   u64 offset                        microseconds since the session started
///   u32 length, length bytes          the frame
/// ```
/// Integers are big-endian. A chunk holds whole frames only.
public struct RecordingChunk: Sendable, Equatable {
    public static let magic: [UInt8] = Array("ILREC1\n".utf8)

    public enum FrameKind: UInt8, Sendable {
        case fromClient = 0x63  // c
        case toClient = 0x73  // s
        case note = 0x6E  // n
    }

    public struct Frame: Sendable, Equatable {
        public var kind: FrameKind
        /// Microseconds since the session started.
        public var offset: UInt64
        public var bytes: [UInt8]

        public init(kind: FrameKind, offset: UInt64, bytes: [UInt8]) {
            self.kind = kind
            self.offset = offset
            self.bytes = bytes
        }
    }

    public struct Header: Sendable, Equatable {
        /// `postgres`, and later `http`, `mysql`, ...
        public var `protocol`: String
        /// The chunk's position in its session's recording, from 0.
        public var seq: UInt64
        public var session: String
        /// When the session started (RFC 3339, microseconds), the origin of every frame's offset.
        public var started: String

        public init(protocol: String, seq: UInt64, session: String, started: String) {
            self.protocol = `protocol`
            self.seq = seq
            self.session = session
            self.started = started
        }
    }

    public var header: Header
    public var frames: [Frame]

    /// Frames larger than this are not made by the recorder (the gateway's message limit is lower);
    /// the parser refuses them so a damaged length cannot ask for gigabytes.
    public static let maximumFrameSize = 1 << 30

    /// Reads a chunk, refusing anything that is not exactly one well-formed chunk.
    public static func parse(_ bytes: [UInt8]) throws(AuditError) -> RecordingChunk {
        var reader = Reader(bytes: bytes)
        guard reader.take(magic.count).map(Array.init) == magic else {
            throw AuditError(.corrupt, "not a session recording (no ILREC1 magic)")
        }
        guard let headerLength = reader.integer(UInt32.self), let headerBytes = reader.take(Int(headerLength)) else {
            throw AuditError(.corrupt, "the recording's header is cut short")
        }
        guard case .object(let m) = try CanonicalJSON.decode(Array(headerBytes), requireCanonical: true),
            case .string(let proto)? = m["protocol"], let seq = m["seq"]?.uint64Value,
            case .string(let session)? = m["session"], case .string(let started)? = m["started"]
        else {
            throw AuditError(.corrupt, "the recording's header lacks protocol, seq, session or started")
        }
        var frames: [Frame] = []
        while !reader.atEnd {
            guard let raw = reader.integer(UInt8.self), let kind = FrameKind(rawValue: raw) else {
                throw AuditError(.corrupt, "frame \(frames.count + 1) has an unknown kind")
            }
            guard let offset = reader.integer(UInt64.self), let length = reader.integer(UInt32.self),
                Int(length) <= maximumFrameSize, let body = reader.take(Int(length))
            else {
                throw AuditError(.corrupt, "frame \(frames.count + 1) is cut short")
            }
            frames.append(Frame(kind: kind, offset: offset, bytes: Array(body)))
        }
        return RecordingChunk(
            header: Header(protocol: proto, seq: seq, session: session, started: started), frames: frames)
    }

    private struct Reader {
        let bytes: [UInt8]
        var position = 0

        var atEnd: Bool { position == bytes.count }

        mutating func take(_ n: Int) -> ArraySlice<UInt8>? {
            guard n >= 0, bytes.count - position >= n else { return nil }
            defer { position += n }
            return bytes[position..<position + n]
        }

        mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
            guard let slice = take(MemoryLayout<T>.size) else { return nil }
            return slice.reduce(T(0)) { $0 << 8 | T($1) }
        }
    }
}

/// Builds one chunk frame by frame, in the encoded form, so finishing it copies nothing.
public struct RecordingChunkBuilder: Sendable {
    private var bytes: [UInt8]
    public private(set) var frames = 0
    /// Offsets of the first and last frame.
    public private(set) var firstOffset: UInt64?
    public private(set) var lastOffset: UInt64 = 0
    public let header: RecordingChunk.Header

    public init(header: RecordingChunk.Header, capacity: Int = 0) {
        self.header = header
        let json = CanonicalJSON.encode(
            .object([
                "protocol": .string(header.protocol), "seq": .uint(header.seq), "session": .string(header.session),
                "started": .string(header.started),
            ]))
        bytes = []
        bytes.reserveCapacity(capacity + json.count + 16)
        bytes += RecordingChunk.magic
        Self.put(UInt32(json.count), into: &bytes)
        bytes += json
    }

    /// Encoded size so far.
    public var size: Int { bytes.count }

    public var isEmpty: Bool { frames == 0 }

    /// Appends one frame. Raw bytes, not a generic collection: a generic across modules is copied
    /// element by element, and recordings copy every byte a session sends.
    public mutating func append(_ kind: RecordingChunk.FrameKind, offset: UInt64, _ frame: UnsafeRawBufferPointer) {
        bytes.append(kind.rawValue)
        Self.put(offset, into: &bytes)
        Self.put(UInt32(truncatingIfNeeded: frame.count), into: &bytes)
        bytes.append(contentsOf: frame)
        frames += 1
        if firstOffset == nil { firstOffset = offset }
        lastOffset = offset
    }

    public mutating func append(_ kind: RecordingChunk.FrameKind, offset: UInt64, _ frame: [UInt8]) {
        frame.withUnsafeBytes { append(kind, offset: offset, $0) }
    }

    public func finish() -> [UInt8] { bytes }

    private static func put<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8]) {
        var big = value.bigEndian
        withUnsafeBytes(of: &big) { bytes.append(contentsOf: $0) }
    }
}
