import ArgumentParser
import Audit
import Control
import Foundation
import PostgresWire

struct SessionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions", abstract: "Captured sessions and their recordings.",
        subcommands: [List.self, Replay.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List sessions, newest last.")
        @OptionGroup var socket: SocketOption
        @Option(help: "Sessions with entries at or after this time (RFC 3339, or 15m / 2h / 7d ago).")
        var since: String?
        @Option(help: "... and before this time.") var until: String?
        @Option(help: "Only sessions of this user name.") var user: String?
        @Option(help: "Only sessions to this resource.") var resource: String?
        @Option(help: "At most this many (the newest; default 50).") var limit: Int?
        @Flag(help: "One JSON object per session.") var json = false

        func run() throws {
            let args = AuditQueryArgs(since: since, until: until, user: user, resource: resource, limit: limit)
            let sessions = try socket.send(ControlRequest(command: .sessionsList, audit: args)).sessions ?? []
            if json {
                for s in sessions { try printJSON(s) }
                return
            }
            print("SESSION           OPENED                       USER        RESOURCE      DURATION  RECORDING")
            for s in sessions {
                let duration = s.durationMs.map { String(format: "%.1f s", Double($0) / 1000) } ?? "open"
                var recording =
                    s.recordingChunks == 0
                    ? "none" : "\(s.recordingChunks) chunk(s), \(s.recordingBytes) bytes"
                if s.recordingChunks > 0 && !s.recordingComplete && s.closed != nil { recording += ", incomplete" }
                if let dropped = s.recordingDropped { recording += ", \(dropped) bytes over the limit" }
                print(
                    [
                        s.id.padding(17), (s.opened ?? "-").padding(28), (s.user ?? "-").padding(11),
                        (s.resource ?? "-").padding(13), duration.padding(9), recording,
                    ].joined(separator: " "))
            }
        }
    }

    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a session as its client experienced it: statements, rows, notices, errors, waits.",
            discussion: """
                Reads the recording from interlockd, or with --bundle from an export bundle (verified first \
                with --key). Every chunk is checked against the SHA-256 its evidence entry names.
                """)
        @OptionGroup var socket: SocketOption
        @Argument(help: "The session id (from `interlock sessions list`).") var id: String
        @Option(help: "Read an export bundle instead of asking interlockd.") var bundle: String?
        @Option(help: "With --bundle: the verifier key file; the bundle must verify before it is replayed.")
        var key: String?
        @Option(help: "Play at this speed (1 = real time); default: print at once.") var speed: Double?
        @Flag(help: "Play at real speed (--speed 1).") var realTime = false
        @Option(help: "With --speed: the longest pause, in seconds (the waited time is still printed).")
        var maxPause: Double = 5
        @Option(help: "Rows shown per result.") var maxRows = 20
        @Flag(help: "Show protocol chatter too (Parse, Bind, Sync, ReadyForQuery...).") var verbose = false
        @Flag(help: "One JSON object per line: offset_us, direction, text.") var json = false

        func run() throws {
            let source: RecordingSource =
                try bundle.map { try BundleRecordings(directory: $0, key: key) }
                ?? DaemonRecordings(socket: socket)
            let entries = try source.entries(session: id)
            guard !entries.isEmpty else { throw CLIError("no entries for session \(id)") }
            if !json { printHeader(entries) }
            let chunks = entries.filter { $0.kind == AuditKind.recording }
            guard !chunks.isEmpty else {
                throw CLIError("session \(id) has no recording (audit.recording was off, or it sent nothing)")
            }
            var replay = PostgresReplay(maximumRows: maxRows, verbose: verbose)
            let pace = realTime ? 1 : speed
            var previous: UInt64 = 0
            var expected: UInt64 = 0
            for entry in chunks {
                let seq = entry.uint("seq") ?? 0
                if seq > expected { note("chunk(s) \(expected)–\(seq - 1) missing", offset: previous) }
                expected = seq + 1
                guard let hash = entry.string("blob") else { throw CLIError("entry \(entry.index) names no blob") }
                guard let data = try source.blob(hash) else {
                    note("chunk \(seq) removed by retention (entry \(entry.index))", offset: previous)
                    continue
                }
                guard AuditBlob(data).hash.hex == hash else {
                    throw CLIError("chunk \(seq) does not hash to \(hash), the hash entry \(entry.index) names")
                }
                let chunk: RecordingChunk
                do {
                    chunk = try RecordingChunk.parse([UInt8](data))
                } catch {
                    throw CLIError("chunk \(seq): \(error)")
                }
                guard chunk.header.session == id, chunk.header.seq == seq else {
                    throw CLIError("chunk \(seq) is chunk \(chunk.header.seq) of session \(chunk.header.session)")
                }
                guard chunk.header.protocol == "postgres" else {
                    throw CLIError("chunk \(seq) is a \(chunk.header.protocol) recording; this build replays postgres")
                }
                for frame in chunk.frames {
                    for line in replay.frame(kind: frame.kind.rawValue, offset: frame.offset, bytes: frame.bytes) {
                        if let pace, pace > 0, line.offset > previous {
                            let pause = min(Double(line.offset - previous) / 1e6 / pace, maxPause)
                            Thread.sleep(forTimeInterval: pause)
                        }
                        previous = max(previous, line.offset)
                        try show(line)
                    }
                }
            }
            if chunks.last?.bool("final") != true {
                note("the recording continues (the session is open, or its last chunk was lost)", offset: previous)
            }
        }

        private func printHeader(_ entries: [EntryView]) {
            let open = entries.first { $0.kind == AuditKind.sessionOpen }
            let close = entries.first { $0.kind == AuditKind.sessionClose }
            let who = open?.string("user") ?? "?"
            let resource = open?.string("resource") ?? "?"
            print("session \(id): \(who) → \(resource) (\(open?.string("protocol") ?? "?"))")
            if let open { print("opened \(open.string("time") ?? "?")") }
            if let close {
                let ms = close.uint("duration_ms").map { String(format: "%.1f s", Double($0) / 1000) } ?? "?"
                print("closed \(close.string("time") ?? "?") (\(close.string("reason") ?? "?"), \(ms))")
            }
            print("")
        }

        private func show(_ line: PostgresReplay.Line) throws {
            if json {
                struct Out: Encodable {
                    var offset_us: UInt64
                    var direction: String
                    var text: String
                }
                return try printJSON(Out(offset_us: line.offset, direction: line.direction.rawValue, text: line.text))
            }
            let arrow =
                switch line.direction {
                case .client: "→"
                case .server: "←"
                case .note: "#"
                }
            let stamp = String(format: "+%9.3fs", Double(line.offset) / 1e6)
            print("\(stamp) \(arrow) \(line.text)")
        }

        private func note(_ text: String, offset: UInt64) {
            if json {
                try? show(PostgresReplay.Line(offset: offset, direction: .note, text: text))
            } else {
                print(String(format: "+%9.3fs", Double(offset) / 1e6) + " # " + text)
            }
        }
    }
}

/// An entry decoded for reading its members.
struct EntryView {
    var index: UInt64
    var kind: String
    var members: [String: AuditValue]

    init?(_ text: String) {
        guard case .object(let m)? = try? CanonicalJSON.decode(Array(text.utf8)),
            case .string(let kind)? = m["kind"]
        else { return nil }
        guard let index = m["index"]?.uint64Value else { return nil }
        self.index = index
        self.kind = kind
        self.members = m
    }

    func string(_ k: String) -> String? { members[k]?.stringValue }
    func uint(_ k: String) -> UInt64? { members[k]?.uint64Value }
    func bool(_ k: String) -> Bool? { members[k]?.boolValue }
}

/// Where a replay reads a session's entries and blobs.
protocol RecordingSource {
    func entries(session: String) throws -> [EntryView]
    /// Nil when the blob is gone (retention).
    func blob(_ hash: String) throws -> Data?
}

struct DaemonRecordings: RecordingSource {
    var socket: SocketOption

    func entries(session: String) throws -> [EntryView] {
        let args = AuditQueryArgs(kind: "session.", limit: 100_000, session: session)
        return (try socket.send(ControlRequest(command: .auditList, audit: args)).entries ?? []).compactMap(
            EntryView.init)
    }

    func blob(_ hash: String) throws -> Data? {
        let answer = try socket.answer(ControlRequest(command: .auditBlob, blob: hash))
        if answer.error?.code == "not_found" { return nil }
        guard answer.ok, let text = answer.blob, let data = Data(base64Encoded: text) else {
            throw CLIError(answer.error?.message ?? "the daemon sent no blob \(hash)")
        }
        return data
    }
}

/// A bundle, verified before anything in it is shown.
struct BundleRecordings: RecordingSource {
    var directory: String

    init(directory: String, key: String?) throws {
        guard let key else { throw CLIError("--bundle needs --key FILE: a bundle is replayed only once it verifies") }
        let report = BundleVerifier.verify(directory: directory, verifier: try AuditCommand.Verify.verifier(key))
        guard report.passed else {
            throw CLIError(
                "the bundle does not verify (\(report.failures.count) problem(s); see interlock audit verify): "
                    + (report.failures.first.map { "\($0)" } ?? ""))
        }
        self.directory = directory
    }

    func entries(session: String) throws -> [EntryView] {
        let url = URL(fileURLWithPath: directory).appendingPathComponent("entries.jsonl")
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw CLIError("cannot read \(url.path)")
        }
        return text.split(separator: "\n").compactMap { EntryView(String($0)) }.filter {
            $0.string("session") == session && $0.kind.hasPrefix("session.")
        }
    }

    func blob(_ hash: String) throws -> Data? {
        try? Data(contentsOf: URL(fileURLWithPath: directory).appendingPathComponent("blobs/\(hash)"))
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
