import NIOCore

/// Reading helpers for a message body. Each takes the message's name so a failure says where it happened.
/// They only move the reader index forward; a body is always a slice, so nothing here indexes from 0.
extension ByteBuffer {

    mutating func pgReadInteger<I: FixedWidthInteger>(_ what: String, as: I.Type = I.self) throws -> I {
        guard let value = self.readInteger(endianness: .big, as: I.self) else {
            throw PostgresWireError.malformed(what, "truncated (expected a \(I.bitWidth)-bit integer)")
        }
        return value
    }

    /// A NUL-terminated string. Invalid UTF-8 is repaired (U+FFFD); the frame keeps the original bytes.
    mutating func pgReadCString(_ what: String) throws -> String {
        guard let string = self.readNullTerminatedString() else {
            throw PostgresWireError.malformed(what, "string without NUL terminator")
        }
        return string
    }

    mutating func pgReadSlice(_ what: String, length: Int) throws -> ByteBuffer {
        guard length >= 0, let slice = self.readSlice(length: length) else {
            throw PostgresWireError.malformed(what, "truncated (expected \(length) more bytes)")
        }
        return slice
    }

    /// An `Int32` length followed by that many bytes; `-1` is SQL NULL. Any other negative length is an error.
    mutating func pgReadNullableValue(_ what: String) throws -> ByteBuffer? {
        let length = try self.pgReadInteger(what, as: Int32.self)
        if length == -1 {
            return nil
        }
        guard length >= 0 else {
            throw PostgresWireError.malformed(what, "negative value length \(length)")
        }
        return try self.pgReadSlice(what, length: Int(length))
    }

    /// An `Int16` count that must not be negative.
    mutating func pgReadCount(_ what: String) throws -> Int {
        let count = try self.pgReadInteger(what, as: Int16.self)
        guard count >= 0 else {
            throw PostgresWireError.malformed(what, "negative count \(count)")
        }
        return Int(count)
    }

    mutating func pgReadFormat(_ what: String) throws -> PostgresFormat {
        let raw = try self.pgReadInteger(what, as: Int16.self)
        guard let format = PostgresFormat(rawValue: raw) else {
            throw PostgresWireError.malformed(what, "unknown format code \(raw)")
        }
        return format
    }

    mutating func pgReadFormats(_ what: String) throws -> [PostgresFormat] {
        let count = try self.pgReadCount(what)
        // Each format is two bytes: refuse counts the body cannot hold before allocating.
        guard count * 2 <= self.readableBytes else {
            throw PostgresWireError.malformed(what, "format count \(count) exceeds the message")
        }
        var formats = [PostgresFormat]()
        formats.reserveCapacity(count)
        for _ in 0..<count {
            formats.append(try self.pgReadFormat(what))
        }
        return formats
    }

    func pgExpectEnd(_ what: String) throws {
        guard self.readableBytes == 0 else {
            throw PostgresWireError.malformed(what, "\(self.readableBytes) unexpected trailing bytes")
        }
    }

    /// Writes `string` followed by NUL. A string cannot carry NUL on the wire: anything from the first NUL on is
    /// dropped, so a value can never end one field early and smuggle the next one in.

    mutating func pgWriteCString(_ string: String) {
        let utf8 = string.utf8
        if let nul = utf8.firstIndex(of: 0) {
            self.writeBytes(utf8[..<nul])
        } else {
            self.writeString(string)
        }
        self.writeInteger(UInt8(0))
    }

    mutating func pgWriteNullableValue(_ value: ByteBuffer?) {
        if let value {
            self.writeInteger(Int32(value.readableBytes))
            self.writeImmutableBuffer(value)
        } else {
            self.writeInteger(Int32(-1))
        }
    }

    mutating func pgWriteFormats(_ formats: [PostgresFormat]) {
        self.writeInteger(Int16(formats.count))
        for format in formats {
            self.writeInteger(format.rawValue)
        }
    }

    /// Writes a typed message: the type byte, a length placeholder, the body, then the real length
    /// (which counts itself and the body, not the type byte).

    mutating func pgWriteMessage(id: UInt8, _ body: (inout ByteBuffer) -> Void) {
        self.writeInteger(id)
        self.pgWriteLengthPrefixed(body)
    }

    /// Writes an `Int32` length that counts itself, then the body (startup packets have no type byte).

    mutating func pgWriteLengthPrefixed(_ body: (inout ByteBuffer) -> Void) {
        let lengthIndex = self.writerIndex
        self.writeInteger(Int32(0))
        body(&self)
        let length = self.writerIndex - lengthIndex
        precondition(length <= Int32.max, "PostgreSQL message larger than 2 GiB")
        self.setInteger(Int32(length), at: lengthIndex)
    }
}
