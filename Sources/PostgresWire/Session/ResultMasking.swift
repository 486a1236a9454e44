import Masking
import NIOCore
import Policy

/// How each column of a result is treated, decided once per `RowDescription` so rows cost one switch per value.
///
/// Value policy by type and format:
/// - Text-like types (`text`, `varchar`, `bpchar`, `name`, `"char"`, `unknown`, `xml`) in either format (their binary
///   form is the text): column masks and detectors rewrite the value as text.
/// - `json` (either format) and `jsonb` (text; binary after its version byte): detectors rewrite inside the text; a
///   column mask's replacement is written as a JSON string so the value stays valid JSON.
/// - Other types in text format (numbers, arrays, ...): scanned, but a masked value becomes SQL NULL, because a
///   replacement like `****1111` would not parse as the column's type in a typed driver.
/// - Types that cannot carry the detected kinds of text (booleans, floats, dates and times, `uuid`, `oid`, `bytea`),
///   and every other binary value: never scanned; a column rule turns them into SQL NULL.
struct ResultPlan: Sendable {
    enum ValueKind: Sendable, Equatable {
        case text
        case json
        case jsonbBinary
        case textOfOtherType
        case opaque
    }

    enum Treatment: Sendable, Equatable {
        case pass
        case scan(ValueKind)
        /// `counter` indexes `sources`; `nil` counts as unresolved.
        case mask(MaskMethod, ValueKind, counter: Int?)
    }

    var treatments: [Treatment]
    var sources: [String]
    var counts: [Int]
    var unresolvedCount = 0
    var isPassThrough: Bool

    func fold(into masking: inout MaskingCounts) {
        for (index, count) in self.counts.enumerated() where count > 0 {
            masking.columns[self.sources[index], default: 0] += count
        }
        masking.unresolvedColumnValues += self.unresolvedCount
    }

    static func valueKind(typeOID: UInt32, format: PostgresFormat) -> ValueKind {
        switch typeOID {
        case 25, 1043, 1042, 19, 18, 705, 142:
            return .text
        case 114:
            return .json
        case 3802:
            return format == .text ? .json : .jsonbBinary
        case 16, 17, 21, 26, 700, 701, 1082, 1083, 1114, 1184, 1186, 1266, 2950:
            return .opaque
        default:
            return format == .text ? .textOfOtherType : .opaque
        }
    }
}

/// A masked value as the wire writes it.
enum MaskedValue {
    case null
    case bytes([UInt8])
}

/// The result of masking a `DataRow` whose width does not match its description.
struct RowWidthMismatch: Error {}

extension SessionPolicy {
    /// The plan for rows described by `fields` (`nil`: undescribed rows of `columnCount` columns, treated as
    /// unresolved text columns: masked when column rules exist, scanned otherwise; fail closed).
    func plan(
        for fields: [PostgresBackendMessage.Field]?, columnCount: Int = 0,
        resolutions: [PostgresColumnID:
            PostgresColumnResolution] = [:]
    ) -> ResultPlan {
        guard let fields else {
            let treatment: ResultPlan.Treatment =
                self.hasColumnRules
                ? .mask(self.unresolvedColumnMethod, .textOfOtherType, counter: nil)
                : (self.detectorGroups.isEmpty ? .pass : .scan(.textOfOtherType))
            return ResultPlan(
                treatments: Array(repeating: treatment, count: columnCount), sources: [], counts: [],
                isPassThrough: treatment == .pass)
        }
        var treatments: [ResultPlan.Treatment] = []
        treatments.reserveCapacity(fields.count)
        var sources: [String] = []
        var passThrough = true
        for field in fields {
            let kind = ResultPlan.valueKind(typeOID: field.dataTypeOID, format: field.format)
            var treatment = ResultPlan.Treatment.pass
            if self.hasColumnRules && field.tableOID != 0 && field.columnAttributeNumber > 0 {
                let column = PostgresColumnID(tableOID: field.tableOID, attributeNumber: field.columnAttributeNumber)
                switch resolutions[column] ?? self.resolver.resolution(of: column) {
                case .source(let source):
                    if let rule = self.rules.columnMask(
                        schema: source.schema, table: source.table, column: source.column),
                        let method = MaskMethod(rawValue: rule.spec.method.rawValue)
                    {
                        let name = source.description
                        let counter = sources.firstIndex(of: name) ?? sources.count
                        if counter == sources.count { sources.append(name) }
                        treatment = .mask(method, kind, counter: counter)
                    }
                case .unresolvable, nil:
                    treatment = .mask(self.unresolvedColumnMethod, kind, counter: nil)
                }
            }
            if treatment == .pass && !self.detectorGroups.isEmpty && kind != .opaque {
                treatment = .scan(kind)
            }
            if treatment != .pass { passThrough = false }
            treatments.append(treatment)
        }
        return ResultPlan(
            treatments: treatments, sources: sources, counts: Array(repeating: 0, count: sources.count),
            isPassThrough: passThrough)
    }

    /// Masks one row. Returns the new `DataRow` message, or `nil` when no value changed (forward the frame).
    func maskRow(_ row: DataRow, plan: inout ResultPlan, stats: inout MaskStats) throws -> ByteBuffer? {
        guard row.columnCount == plan.treatments.count else { throw RowWidthMismatch() }
        var out: ByteBuffer?
        var lengthIndex = 0
        var index = row.startIndex
        for column in 0..<row.columnCount {
            let next = row.index(after: index)
            var replacement: MaskedValue?
            if let value = row[index] {
                switch plan.treatments[column] {
                case .pass:
                    break
                case .scan(let kind):
                    replacement = self.scanned(value, kind: kind, stats: &stats)
                case .mask(let method, let kind, let counter):
                    replacement = self.masked(value, method: method, kind: kind, stats: &stats)
                    if let counter {
                        plan.counts[counter] += 1
                    } else {
                        plan.unresolvedCount += 1
                    }
                }
            }
            if let replacement {
                if out == nil {
                    var buffer = ByteBuffer()
                    buffer.reserveCapacity(row.bytes.readableBytes + 64)
                    buffer.writeInteger(PostgresBackendMessage.ID.dataRow)
                    lengthIndex = buffer.writerIndex
                    buffer.writeInteger(Int32(0))
                    buffer.writeInteger(Int16(row.columnCount))
                    buffer.writeImmutableBuffer(
                        row.bytes.getSlice(at: row.bytes.readerIndex, length: index.offset)!)
                    out = buffer
                }
                switch replacement {
                case .null:
                    out!.writeInteger(Int32(-1))
                case .bytes(let bytes):
                    out!.writeInteger(Int32(bytes.count))
                    out!.writeBytes(bytes)
                }
            } else if out != nil {
                let original = row.bytes.getSlice(
                    at: row.bytes.readerIndex + index.offset, length: next.offset - index.offset)!
                out!.writeImmutableBuffer(original)
            }
            index = next
        }
        guard var out else { return nil }
        out.setInteger(Int32(out.writerIndex - lengthIndex), at: lengthIndex)
        return out
    }

    /// A value a column rule covers.
    func masked(
        _ value: ByteBuffer, method: MaskMethod, kind: ResultPlan.ValueKind, stats: inout MaskStats
    )
        -> MaskedValue
    {
        switch kind {
        case .textOfOtherType, .opaque:
            _ = self.masker.maskColumn(value, method: .null, stats: &stats)
            return .null
        case .text:
            switch self.masker.maskColumn(value, method: method, stats: &stats) {
            case .sqlNull: return .null
            case .replaced(let bytes): return .bytes(bytes)
            }
        case .json:
            switch self.masker.maskColumn(value, method: method, stats: &stats) {
            case .sqlNull: return .null
            case .replaced(let bytes): return .bytes(jsonString(bytes))
            }
        case .jsonbBinary:
            var body = value
            body.moveReaderIndex(forwardBy: min(1, body.readableBytes))
            switch self.masker.maskColumn(body, method: method, stats: &stats) {
            case .sqlNull: return .null
            case .replaced(let bytes): return .bytes([1] + jsonString(bytes))
            }
        }
    }

    /// A value only the detectors look at; `nil` when they found nothing.
    func scanned(_ value: ByteBuffer, kind: ResultPlan.ValueKind, stats: inout MaskStats) -> MaskedValue? {
        switch kind {
        case .opaque:
            return nil
        case .text, .json:
            return value.withUnsafeReadableBytes { self.scan($0, stats: &stats) }
        case .textOfOtherType:
            guard value.withUnsafeReadableBytes({ self.scan($0, stats: &stats) }) != nil else { return nil }
            return .null
        case .jsonbBinary:
            guard value.readableBytes > 1 else { return nil }
            let result = value.withUnsafeReadableBytes {
                self.scan(UnsafeRawBufferPointer(rebasing: $0[1...]), stats: &stats)
            }
            switch result {
            case nil: return nil
            case .null: return .null
            case .bytes(let bytes): return .bytes([1] + bytes)
            }
        }
    }

    /// Runs every detector group over `value` (each over the previous group's output).
    func scan(_ value: UnsafeRawBufferPointer, stats: inout MaskStats) -> MaskedValue? {
        var current: [UInt8]?
        for group in self.detectorGroups {
            let outcome: MaskOutcome?
            if let bytes = current {
                outcome = bytes.withUnsafeBytes {
                    self.masker.scan($0, detectors: group.detectors, method: group.method, stats: &stats)
                }
            } else {
                outcome = self.masker.scan(value, detectors: group.detectors, method: group.method, stats: &stats)
            }
            switch outcome {
            case nil: continue
            case .sqlNull: return .null
            case .replaced(let bytes): current = bytes
            }
        }
        return current.map { .bytes($0) }
    }

    /// Text that is not a column value (error fields, COPY fields, evidence parameters): `null` masks as `redact`.
    func scanText(_ value: UnsafeRawBufferPointer, stats: inout MaskStats) -> [UInt8]? {
        switch self.scan(value, stats: &stats) {
        case nil: return nil
        case .bytes(let bytes): return bytes
        case .null: return Masker.redactionMarker
        }
    }

    // MARK: ErrorResponse and NoticeResponse

    /// The fields with data values masked, or `nil` when nothing changed.
    ///
    /// Detectors run over the message, detail, hint, context and internal query. When the error names a table with a
    /// column a rule masks (a unique or check violation's DETAIL quotes the key or the whole row), the quoted values
    /// are replaced: `Key (email)=([REDACTED]) already exists.` (only when a listed key column is masked) or
    /// `Failing row contains ([REDACTED]).`.
    func maskErrorFields(_ fields: PostgresErrorFields, stats: inout MaskStats) -> PostgresErrorFields? {
        var result = fields
        var changed = false
        if self.hasColumnRules, let table = fields[.tableName], let detail = fields[.detail],
            let masked = self.maskDetailValues(detail, schema: fields[.schemaName], table: table, stats: &stats)
        {
            result[.detail] = masked
            changed = true
        }
        guard !self.detectorGroups.isEmpty else { return changed ? result : nil }
        for index in result.entries.indices {
            switch result.entries[index].field {
            case .message, .detail, .hint, .context, .internalQuery:
                var text = result.entries[index].value
                let masked = text.withUTF8 { self.scanText(UnsafeRawBufferPointer($0), stats: &stats) }
                if let masked {
                    result.entries[index].value = String(decoding: masked, as: UTF8.self)
                    changed = true
                }
            default:
                continue
            }
        }
        return changed ? result : nil
    }

    private func maskDetailValues(_ detail: String, schema: String?, table: String, stats: inout MaskStats) -> String? {
        let tablePatterns = self.rules.masks.flatMap(\.spec.columns).filter { pattern in
            pattern.table.matches(table) && (schema == nil || pattern.schema == nil || pattern.schema!.matches(schema!))
        }
        guard !tablePatterns.isEmpty else { return nil }
        guard let open = detail.firstIndex(of: "("), let close = detail.lastIndex(of: ")"), open < close else {
            return nil
        }
        if detail.hasPrefix("Key ("), let separator = detail.range(of: ")=(") {
            let columns = detail[detail.index(after: open)..<separator.lowerBound]
                .split(separator: ",").map { name in
                    String(
                        name.drop(while: { $0 == " " || $0 == "\"" }).reversed().drop(while: { $0 == " " || $0 == "\"" }
                        ).reversed())
                }
            let masked = columns.contains { column in
                tablePatterns.contains { $0.column.matches(column) }
            }
            guard masked else { return nil }
            _ = self.masker.maskColumn(ByteBuffer(), method: .redact, stats: &stats)
            return String(detail[..<separator.upperBound]) + "[REDACTED]" + String(detail[close...])
        }
        _ = self.masker.maskColumn(ByteBuffer(), method: .redact, stats: &stats)
        return String(detail[...open]) + "[REDACTED]" + String(detail[close...])
    }

    // MARK: COPY TO STDOUT

    /// Scans each field of text-format COPY data (rows end with `\n`, fields with `\t`; a CSV row is one field, which
    /// the detectors scan whole). Returns the rewritten `CopyData` message or `nil`, and the number of rows.
    func maskCopyText(_ data: ByteBuffer, stats: inout MaskStats) -> (ByteBuffer?, Int) {
        data.withUnsafeReadableBytes { bytes in
            var out: ByteBuffer?
            var lengthIndex = 0
            var lines = 0
            var fieldStart = 0
            var copied = 0
            var position = 0
            while position <= bytes.count {
                let atEnd = position == bytes.count
                let byte: UInt8 = atEnd ? 0x0A : bytes[position]
                if byte == 0x0A || byte == 0x09 {
                    if byte == 0x0A && !atEnd { lines += 1 }
                    let field = UnsafeRawBufferPointer(rebasing: bytes[fieldStart..<position])
                    let isNull = field.count == 2 && field[0] == UInt8(ascii: "\\") && field[1] == UInt8(ascii: "N")
                    if !field.isEmpty, !isNull, let masked = self.scan(field, stats: &stats) {
                        if out == nil {
                            var buffer = ByteBuffer()
                            buffer.reserveCapacity(bytes.count + 64)
                            buffer.writeInteger(PostgresBackendMessage.ID.copyData)
                            lengthIndex = buffer.writerIndex
                            buffer.writeInteger(Int32(0))
                            out = buffer
                        }
                        out!.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[copied..<fieldStart]))
                        switch masked {
                        case .null: out!.writeString("\\N")
                        case .bytes(let replacement): out!.writeBytes(replacement)
                        }
                        copied = position
                    }
                    fieldStart = position + 1
                }
                position += 1
            }
            guard var buffer = out else { return (nil, lines) }
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[copied...]))
            buffer.setInteger(Int32(buffer.writerIndex - lengthIndex), at: lengthIndex)
            return (buffer, lines)
        }
    }

    // MARK: Evidence parameters

    /// Bound values as evidence text: text values scanned by the detectors then cut to the configured length, binary
    /// values as `\x` hex (cut), NULL as `nil`; every value `?` when literals are redacted.
    func evidenceParameters(_ values: [ByteBuffer?], format: (Int) -> PostgresFormat) -> ([String?], MaskStats) {
        var stats = MaskStats()
        var out: [String?] = []
        out.reserveCapacity(values.count)
        for (index, value) in values.enumerated() {
            guard let value else {
                out.append(nil)
                continue
            }
            if self.textMode == .redactLiterals {
                out.append("?")
                continue
            }
            switch format(index) {
            case .text:
                var bytes = value.withUnsafeReadableBytes { raw in
                    self.scanText(raw, stats: &stats) ?? Array(raw)
                }
                let total = bytes.count
                if total > self.maximumParameterLength {
                    bytes.removeSubrange(self.maximumParameterLength...)
                    out.append(String(decoding: bytes, as: UTF8.self) + "…(\(total) bytes)")
                } else {
                    out.append(String(decoding: bytes, as: UTF8.self))
                }
            case .binary:
                let shown = min(value.readableBytes, self.maximumParameterLength / 2)
                var text = "\\x"
                text.reserveCapacity(2 + shown * 2)
                for byte in value.readableBytesView.prefix(shown) {
                    text += String(byte >> 4, radix: 16) + String(byte & 0x0F, radix: 16)
                }
                if shown < value.readableBytes {
                    text += "…(\(value.readableBytes) bytes)"
                }
                out.append(text)
            }
        }
        return (out, stats)
    }
}

/// `bytes` as a JSON string literal.
func jsonString(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = [UInt8(ascii: "\"")]
    out.reserveCapacity(bytes.count + 2)
    for byte in bytes {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"):
            out.append(UInt8(ascii: "\\"))
            out.append(byte)
        case 0..<0x20:
            let hex = Array("0123456789abcdef".utf8)
            out.append(contentsOf: Array("\\u00".utf8))
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0x0F)])
        default:
            out.append(byte)
        }
    }
    out.append(UInt8(ascii: "\""))
    return out
}
