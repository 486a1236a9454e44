import NIOCore

/// One row of a result (`D` message), kept as the wire bytes and read lazily.
///
/// Rows are the hot path (`pgbench -S`, `COPY`-sized results): decoding one costs a walk over the column lengths and
/// no allocation per column. Iterating gives each column as a slice of the original bytes, `nil` for SQL NULL.
/// Masking builds a new row with ``init(columns:)``.
public struct DataRow: Sendable, Hashable, Collection {
    /// The number of columns.
    public let columnCount: Int
    /// The columns as on the wire: for each, an `Int32` length (-1 for NULL) and the bytes.
    public let bytes: ByteBuffer

    /// A row from its values; `nil` is SQL NULL.
    public init(columns: some Sequence<ByteBuffer?>) {
        var buffer = ByteBuffer()
        var count = 0
        for column in columns {
            buffer.pgWriteNullableValue(column)
            count += 1
        }
        self.columnCount = count
        self.bytes = buffer
    }

    /// Validates the column layout so that iteration can never fail.
    init(columnCount: Int, validating bytes: ByteBuffer) throws {
        var reader = bytes
        for _ in 0..<columnCount {
            _ = try reader.pgReadNullableValue("DataRow")
        }
        try reader.pgExpectEnd("DataRow")
        self.columnCount = columnCount
        self.bytes = bytes
    }

    /// A position in the row: the byte offset of a column's length field, relative to `bytes`.
    public struct Index: Comparable, Hashable, Sendable {
        let offset: Int

        public static func < (lhs: Index, rhs: Index) -> Bool { lhs.offset < rhs.offset }
    }

    public var startIndex: Index { Index(offset: 0) }
    public var endIndex: Index { Index(offset: self.bytes.readableBytes) }
    public var count: Int { self.columnCount }
    public var isEmpty: Bool { self.columnCount == 0 }

    public subscript(position: Index) -> ByteBuffer? {
        let lengthIndex = self.bytes.readerIndex + position.offset
        let length = self.bytes.getInteger(at: lengthIndex, as: Int32.self)!
        if length < 0 {
            return nil
        }
        return self.bytes.getSlice(at: lengthIndex + 4, length: Int(length))!
    }

    public func index(after i: Index) -> Index {
        let length = self.bytes.getInteger(at: self.bytes.readerIndex + i.offset, as: Int32.self)!
        return Index(offset: i.offset + 4 + Swift.max(0, Int(length)))
    }

    /// The value of the column at `column` (0-based), walking the row; prefer iterating for all columns.
    public func column(_ column: Int) -> ByteBuffer?? {
        guard column >= 0, column < self.columnCount else {
            return .none
        }
        return .some(self[self.index(self.startIndex, offsetBy: column)])
    }
}
