import Masking
import NIOCore
import SQL

/// How the rows of one `COPY ... TO STDOUT` are split into fields, so a column plan can mask them.
struct CopyLayout: Sendable, Equatable {
    var format: CopyOutput.Format
    /// The next row is the header (column names): forwarded as is.
    var headerPending: Bool
}

extension SessionPolicy {
    /// Masks the rows of one `CopyData` message field by field, as `plan` says (the COPY's query was described, so
    /// each field has a source column). Returns the rewritten `CopyData` message, or `nil` when nothing changed, and
    /// the number of rows. Throws ``RowWidthMismatch`` when a row's field count differs from the plan's.
    ///
    /// Fields are decoded before they are masked (text: backslash escapes; CSV: quotes), so rules see the values the
    /// client would, and replacements are encoded back. `null` writes the format's NULL (`\N`, or an empty unquoted
    /// CSV field).
    func maskCopyRows(
        _ data: ByteBuffer, plan: inout ResultPlan, layout: inout CopyLayout, stats: inout MaskStats
    ) throws -> (ByteBuffer?, Int) {
        try data.withUnsafeReadableBytes { bytes in
            var out = ByteBuffer()
            out.reserveCapacity(bytes.count + 64)
            out.writeInteger(PostgresBackendMessage.ID.copyData)
            out.writeInteger(Int32(0))  // the length, set at the end
            var changed = false
            var rows = 0
            var position = 0
            while position < bytes.count {
                let rowEnd = Self.copyRowEnd(bytes, from: position, csv: layout.format == .csv)
                let row = UnsafeRawBufferPointer(rebasing: bytes[position..<rowEnd])
                let terminator = UnsafeRawBufferPointer(rebasing: bytes[rowEnd..<min(rowEnd + 1, bytes.count)])
                position = min(rowEnd + 1, bytes.count)
                if layout.headerPending || (row.count == 2 && row[0] == UInt8(ascii: "\\") && row[1] == 0x2E) {
                    // The header, or the `\.` end marker of old protocol versions.
                    layout.headerPending = false
                    out.writeBytes(row)
                    out.writeBytes(terminator)
                    continue
                }
                rows += 1
                if try self.maskCopyRow(row, plan: &plan, csv: layout.format == .csv, stats: &stats, into: &out) {
                    changed = true
                }
                out.writeBytes(terminator)
            }
            guard changed else { return (nil, rows) }
            out.setInteger(Int32(out.readableBytes - 1), at: out.readerIndex + 1)
            return (out, rows)
        }
    }

    /// Appends one row (without its newline) to `out`, masked. Returns whether a value changed.
    private func maskCopyRow(
        _ row: UnsafeRawBufferPointer, plan: inout ResultPlan, csv: Bool, stats: inout MaskStats,
        into out: inout ByteBuffer
    ) throws -> Bool {
        let separator: UInt8 = csv ? UInt8(ascii: ",") : 0x09
        var changed = false
        var column = 0
        var start = 0
        while true {
            let end = csv ? Self.csvFieldEnd(row, from: start) : Self.textFieldEnd(row, from: start)
            guard column < plan.treatments.count else { throw RowWidthMismatch() }
            let field = UnsafeRawBufferPointer(rebasing: row[start..<end])
            if column > 0 { out.writeInteger(separator) }
            let treatment = plan.treatments[column]
            if treatment == .pass || Self.isNull(field, csv: csv) {
                out.writeBytes(field)  // NULL stays NULL
            } else {
                var replacement: MaskedValue?
                switch treatment {
                case .pass:
                    break
                case .scan(let kind):
                    replacement = self.copyValue(field, csv: csv) { self.scanned($0, kind: kind, stats: &stats) }
                case .mask(let method, let kind, let counter):
                    replacement = self.copyValue(field, csv: csv) {
                        self.masked($0, method: method, kind: kind, stats: &stats)
                    }
                    if let counter { plan.counts[counter] += 1 } else { plan.unresolvedCount += 1 }
                }
                switch replacement {
                case nil:
                    out.writeBytes(field)
                case .null:
                    changed = true
                    if !csv { out.writeStaticString("\\N") }
                case .bytes(let bytes):
                    changed = true
                    csv ? Self.appendCSV(bytes, to: &out) : Self.appendText(bytes, to: &out)
                }
            }
            column += 1
            guard end < row.count else { break }
            start = end + 1
        }
        guard column == plan.treatments.count else { throw RowWidthMismatch() }
        return changed
    }

    private static func isNull(_ field: UnsafeRawBufferPointer, csv: Bool) -> Bool {
        csv ? field.isEmpty : (field.count == 2 && field[0] == UInt8(ascii: "\\") && field[1] == UInt8(ascii: "N"))
    }

    /// Runs `body` on the field's value: the bytes as they are when nothing is escaped or quoted (the common
    /// case), else decoded.
    private func copyValue(
        _ field: UnsafeRawBufferPointer, csv: Bool, _ body: (ByteBuffer) -> MaskedValue?
    ) -> MaskedValue? {
        let plain =
            csv ? (field.first != UInt8(ascii: "\"")) : !field.contains(UInt8(ascii: "\\"))
        if plain {
            return body(ByteBuffer(bytes: field))
        }
        let decoded = (csv ? Self.csvValue(field) : Self.textValue(field)) ?? []
        return body(ByteBuffer(bytes: decoded))
    }

    /// The end of the row starting at `start`: its `\n`, or the end of the bytes. A CSV newline inside quotes is data.
    static func copyRowEnd(_ bytes: UnsafeRawBufferPointer, from start: Int, csv: Bool) -> Int {
        var quoted = false
        var index = start
        while index < bytes.count {
            let byte = bytes[index]
            if csv && byte == UInt8(ascii: "\"") {
                quoted.toggle()
            } else if byte == 0x0A && !quoted {
                return index
            }
            index += 1
        }
        return bytes.count
    }

    private static func textFieldEnd(_ row: UnsafeRawBufferPointer, from start: Int) -> Int {
        var index = start
        while index < row.count && row[index] != 0x09 {
            index += row[index] == UInt8(ascii: "\\") ? 2 : 1
        }
        return min(index, row.count)
    }

    private static func csvFieldEnd(_ row: UnsafeRawBufferPointer, from start: Int) -> Int {
        var quoted = false
        var index = start
        while index < row.count {
            let byte = row[index]
            if byte == UInt8(ascii: "\"") {
                quoted.toggle()
            } else if byte == UInt8(ascii: ",") && !quoted {
                return index
            }
            index += 1
        }
        return row.count
    }

    /// A text-format field decoded (`nil` for `\N`).
    static func textValue(_ field: UnsafeRawBufferPointer) -> [UInt8]? {
        if field.count == 2 && field[0] == UInt8(ascii: "\\") && field[1] == UInt8(ascii: "N") { return nil }
        var value: [UInt8] = []
        value.reserveCapacity(field.count)
        var index = 0
        while index < field.count {
            let byte = field[index]
            guard byte == UInt8(ascii: "\\"), index + 1 < field.count else {
                value.append(byte)
                index += 1
                continue
            }
            let next = field[index + 1]
            index += 2
            switch next {
            case UInt8(ascii: "b"): value.append(0x08)
            case UInt8(ascii: "f"): value.append(0x0C)
            case UInt8(ascii: "n"): value.append(0x0A)
            case UInt8(ascii: "r"): value.append(0x0D)
            case UInt8(ascii: "t"): value.append(0x09)
            case UInt8(ascii: "v"): value.append(0x0B)
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var code = UInt32(next - UInt8(ascii: "0"))
                var digits = 1
                while digits < 3, index < field.count, (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(field[index]) {
                    code = code * 8 + UInt32(field[index] - UInt8(ascii: "0"))
                    index += 1
                    digits += 1
                }
                value.append(UInt8(truncatingIfNeeded: code))
            case UInt8(ascii: "x"):
                var code: UInt32 = 0
                var digits = 0
                while digits < 2, index < field.count, let digit = hexDigit(field[index]) {
                    code = code * 16 + digit
                    index += 1
                    digits += 1
                }
                if digits == 0 { value.append(UInt8(ascii: "x")) } else { value.append(UInt8(code)) }
            default:
                value.append(next)
            }
        }
        return value
    }

    private static func hexDigit(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(byte - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }

    /// A CSV field decoded (`nil` for the empty unquoted field, CSV's NULL).
    static func csvValue(_ field: UnsafeRawBufferPointer) -> [UInt8]? {
        guard !field.isEmpty else { return nil }
        guard field[0] == UInt8(ascii: "\"") else { return Array(field) }
        var value: [UInt8] = []
        value.reserveCapacity(field.count)
        var index = 1
        while index < field.count {
            let byte = field[index]
            if byte == UInt8(ascii: "\"") {
                if index + 1 < field.count && field[index + 1] == UInt8(ascii: "\"") {
                    value.append(byte)
                    index += 2
                    continue
                }
                index += 1  // the closing quote
                continue
            }
            value.append(byte)
            index += 1
        }
        return value
    }

    private static func appendText(_ value: [UInt8], to out: inout ByteBuffer) {
        guard value.contains(where: { $0 == UInt8(ascii: "\\") || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) else {
            out.writeBytes(value)
            return
        }
        for byte in value {
            switch byte {
            case UInt8(ascii: "\\"): out.writeStaticString("\\\\")
            case 0x09: out.writeStaticString("\\t")
            case 0x0A: out.writeStaticString("\\n")
            case 0x0D: out.writeStaticString("\\r")
            default: out.writeInteger(byte)
            }
        }
    }

    private static func appendCSV(_ value: [UInt8], to out: inout ByteBuffer) {
        let needsQuotes =
            value.isEmpty
            || value.contains { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") || $0 == 0x0A || $0 == 0x0D }
        guard needsQuotes else {
            out.writeBytes(value)
            return
        }
        out.writeInteger(UInt8(ascii: "\""))
        for byte in value {
            if byte == UInt8(ascii: "\"") { out.writeInteger(byte) }
            out.writeInteger(byte)
        }
        out.writeInteger(UInt8(ascii: "\""))
    }
}
