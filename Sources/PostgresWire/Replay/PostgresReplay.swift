import NIOCore

/// Turns a recorded PostgreSQL session (the frames its client sent and received) back into what the
/// client experienced: statements, result rows, notices, errors, waits.
///
/// It exists for `interlock sessions replay`: auditors read a session the way the service account
/// saw it, masked values included, without a database. Pure: frames in, lines out.
///
/// Frames are whole messages (the recorder splits them). A frame that does not decode is shown as
/// such, with its type byte and size, and the replay goes on.
public struct PostgresReplay {
    public enum Direction: String, Sendable {
        /// From the client.
        case client
        /// To the client (the server's answers as the gateway passed them on, or the gateway's own).
        case server
        /// The recorder's remark, or a wait the replay noticed.
        case note
    }

    public struct Line: Sendable, Equatable {
        /// Microseconds since the session started.
        public var offset: UInt64
        public var direction: Direction
        public var text: String

        public init(offset: UInt64, direction: Direction, text: String) {
            self.offset = offset
            self.direction = direction
            self.text = text
        }
    }

    /// Rows shown per result (the count is always shown).
    public var maximumRows: Int
    /// Show protocol chatter too (`Parse`, `Bind`, `Sync`, `ReadyForQuery`, parameters, key data).
    public var verbose: Bool
    /// Silence longer than this before an answer is shown as a wait (a held statement, a slow query).
    public var waitThreshold: UInt64 = 1_000_000

    private var columns: [PostgresBackendMessage.Field]?
    private var rows: [[String]] = []
    private var rowCount = 0
    private var copyBytes = 0
    private var lastOffset: UInt64?
    private var lastDirection: Direction?

    public init(maximumRows: Int = 20, verbose: Bool = false) {
        self.maximumRows = maximumRows
        self.verbose = verbose
    }

    /// Lines for one frame: `kind` is `c` (from the client), `s` (to the client) or `n` (a note).
    public mutating func frame(kind: UInt8, offset: UInt64, bytes: [UInt8]) -> [Line] {
        var out: [Line] = []
        if kind == UInt8(ascii: "s"), lastDirection == .client, let last = lastOffset,
            offset >= last + waitThreshold
        {
            out.append(Line(offset: offset, direction: .note, text: "waited \(Self.seconds(offset - last)) s"))
        }
        switch kind {
        case UInt8(ascii: "c"):
            out += client(bytes).map { Line(offset: offset, direction: .client, text: $0) }
            lastDirection = .client
        case UInt8(ascii: "s"):
            out += server(bytes).map { Line(offset: offset, direction: .server, text: $0) }
            lastDirection = .server
        default:
            out.append(Line(offset: offset, direction: .note, text: String(decoding: bytes, as: UTF8.self)))
        }
        lastOffset = offset
        return out
    }

    // MARK: from the client

    private func client(_ bytes: [UInt8]) -> [String] {
        var buffer = ByteBuffer(bytes: bytes)
        // Startup-phase packets begin with their length (under 16 MiB, so a zero byte); typed
        // messages with a letter.
        var decoder = PostgresFrontendMessageDecoder(
            phase: bytes.first == 0 ? .startup : .typed, limits: Self.limits)
        guard let framed = try? decoder.decode(buffer: &buffer) else {
            return [Self.undecodable(bytes)]
        }
        switch framed.message {
        case .startup(let startup):
            let parameters = startup.parameters.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
            return ["connect \(parameters)"]
        case .sslRequest:
            return verbose ? ["SSLRequest"] : []
        case .gssEncRequest:
            return verbose ? ["GSSENCRequest"] : []
        case .cancelRequest:
            return ["CancelRequest"]
        case .query(let text):
            return Self.statement(text)
        case .parse(let parse):
            return Self.statement(parse.query, prefix: parse.name.isEmpty ? "prepare: " : "prepare \(parse.name): ")
        case .bind(let bind):
            guard verbose || !bind.parameters.isEmpty else { return [] }
            let values = zip(bind.parameters.indices, bind.parameters).map { i, value in
                let format =
                    bind.parameterFormats.count == 1
                    ? bind.parameterFormats[0] : i < bind.parameterFormats.count ? bind.parameterFormats[i] : .text
                return "$\(i + 1) = \(Self.value(value, format: format, quote: true))"
            }
            return ["bind " + (values.isEmpty ? "(no parameters)" : values.joined(separator: ", "))]
        case .execute(let portal, let maxRows):
            return verbose
                ? ["execute\(portal.isEmpty ? "" : " \(portal)")\(maxRows > 0 ? " (\(maxRows) rows)" : "")"] : []
        case .describe, .close, .sync, .flush:
            return verbose ? [framed.message.name] : []
        case .terminate:
            return ["disconnect"]
        case .copyData(let data):
            return verbose ? ["COPY data, \(data.readableBytes) bytes"] : []
        case .copyDone:
            return ["COPY done"]
        case .copyFail(let message):
            return ["COPY failed: \(message)"]
        case .functionCall(let call):
            return ["function call \(call.functionOID) with \(call.arguments.count) argument(s)"]
        case .authenticationResponse:
            return ["authentication response (not recorded)"]
        }
    }

    // MARK: to the client

    private mutating func server(_ bytes: [UInt8]) -> [String] {
        if bytes.count == 1 {
            switch bytes[0] {
            case UInt8(ascii: "S"): return ["TLS accepted"]
            case UInt8(ascii: "G"): return ["GSSAPI encryption accepted"]
            case UInt8(ascii: "N"): return verbose ? ["TLS or GSSAPI refused"] : []
            default: return [Self.undecodable(bytes)]
            }
        }
        var buffer = ByteBuffer(bytes: bytes)
        var decoder = PostgresBackendMessageDecoder(phase: .typed, limits: Self.limits)
        guard let framed = try? decoder.decode(buffer: &buffer) else {
            return [Self.undecodable(bytes)]
        }
        switch framed.message {
        case .authentication(.ok):
            return ["authenticated"]
        case .authentication:
            return verbose ? ["authentication request"] : []
        case .parameterStatus(let name, let value):
            return verbose || name == "server_version" ? ["\(name) = \(value)"] : []
        case .backendKeyData(let key):
            return verbose ? ["backend pid \(key.processID) (cancel key not recorded)"] : []
        case .readyForQuery(let status):
            guard verbose else { return [] }
            switch status {
            case .idle: return ["ready"]
            case .inTransaction: return ["ready (in a transaction)"]
            case .failedTransaction: return ["ready (in a failed transaction)"]
            }
        case .rowDescription(let fields):
            columns = fields
            rows = []
            rowCount = 0
            return []
        case .dataRow(let row):
            rowCount += 1
            if rowCount <= maximumRows {
                let formats = columns?.map(\.format) ?? []
                rows.append(
                    row.enumerated().map { i, value in
                        Self.value(value, format: i < formats.count ? formats[i] : .text, quote: false)
                    })
            }
            return []
        case .commandComplete(let tag):
            return finishResult() + [tag]
        case .emptyQueryResponse:
            return ["(empty query)"]
        case .errorResponse(let fields):
            return finishResult() + Self.report("ERROR", fields)
        case .noticeResponse(let fields):
            return Self.report("NOTICE", fields)
        case .portalSuspended:
            return finishResult() + ["(portal suspended)"]
        case .copyInResponse:
            return ["COPY from the client started"]
        case .copyOutResponse:
            copyBytes = 0
            return ["COPY to the client started"]
        case .copyBothResponse:
            return ["COPY both ways started"]
        case .copyData(let data):
            copyBytes += data.readableBytes
            return verbose ? ["COPY data, \(data.readableBytes) bytes"] : []
        case .copyDone:
            return ["COPY done, \(copyBytes) bytes"]
        case .notificationResponse(_, let channel, let payload):
            return ["NOTIFY \(channel): \(payload)"]
        case .functionCallResponse(let value):
            return ["function result: \(Self.value(value, format: .binary, quote: false))"]
        case .parseComplete, .bindComplete, .closeComplete, .noData, .parameterDescription:
            return verbose ? [framed.message.name] : []
        case .negotiateProtocolVersion(let minor, _):
            return verbose ? ["protocol 3.\(minor)"] : []
        case .sslResponse(let yes), .gssEncResponse(let yes):
            return verbose || yes ? [yes ? "encryption accepted" : "encryption refused"] : []
        }
    }

    /// The table of the result that just ended, psql-style, and its row count.
    private mutating func finishResult() -> [String] {
        guard let columns else { return [] }
        defer {
            self.columns = nil
            rows = []
        }
        let names = columns.map(\.name)
        var widths = names.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                i < widths.count ? c + String(repeating: " ", count: widths[i] - c.count) : c
            }.joined(separator: " | ").trimmingTrailingSpaces()
        }
        var out = [line(names), widths.map { String(repeating: "-", count: $0) }.joined(separator: "-+-")]
        out += rows.map(line)
        if rowCount > rows.count { out.append("… \(rowCount - rows.count) more row(s)") }
        out.append("(\(rowCount) row\(rowCount == 1 ? "" : "s"))")
        return out
    }

    // MARK: text

    /// Larger than any recorded frame can be: the recorder keeps whole messages the gateway accepted.
    static let limits = PostgresMessageLimits(maximumMessageSize: Int(Int32.max), maximumStartupPacketSize: 1 << 20)

    /// Longest cell shown.
    static let cellWidth = 60

    static func statement(_ text: String, prefix: String = "") -> [String] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        return lines.enumerated().map { i, l in i == 0 ? prefix + l : String(repeating: " ", count: prefix.count) + l }
    }

    static func value(_ value: ByteBuffer?, format: PostgresFormat, quote: Bool) -> String {
        guard let value else { return quote ? "NULL" : "" }
        let bytes = Array(value.readableBytesView)
        var text: String
        if format == .text, let s = String(validating: bytes, as: UTF8.self),
            !s.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\t" })
        {
            text = quote ? "'\(s.replacingOccurrences(of: "'", with: "''"))'" : s
        } else {
            text = "\\x" + bytes.prefix(32).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
            if bytes.count > 32 { text += "… (\(bytes.count) bytes)" }
        }
        if text.count > cellWidth { text = String(text.prefix(cellWidth - 1)) + "…" }
        return text
    }

    static func report(_ what: String, _ fields: PostgresErrorFields) -> [String] {
        let code = fields[.sqlState].map { " \($0)" } ?? ""
        var out = ["\(fields[.severity] ?? what)\(code): \(fields[.message] ?? "")"]
        if let detail = fields[.detail] { out.append("  DETAIL: \(detail)") }
        if let hint = fields[.hint] { out.append("  HINT: \(hint)") }
        return out
    }

    static func undecodable(_ bytes: [UInt8]) -> String {
        let type =
            bytes.first.map {
                $0 >= 0x21 && $0 < 0x7F ? "'\(Character(UnicodeScalar($0)))'" : "0x\(String($0, radix: 16))"
            } ?? "-"
        return "undecodable message (type \(type), \(bytes.count) bytes)"
    }

    static func seconds(_ micros: UInt64) -> String {
        let tenths = (micros + 50_000) / 100_000
        return "\(tenths / 10).\(tenths % 10)"
    }
}

extension String {
    fileprivate func trimmingTrailingSpaces() -> String {
        var s = Substring(self)
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
