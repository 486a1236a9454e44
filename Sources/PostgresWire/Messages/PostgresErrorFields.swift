/// The fields of an `ErrorResponse` or `NoticeResponse`, in wire order.
///
/// It exists because masking rewrites single fields (`D` detail, `M` message) and the gateway synthesizes errors;
/// both need the fields by code while unknown codes (which clients must ignore) and order survive a re-encode.
public struct PostgresErrorFields: Sendable, Hashable, Sequence {
    /// A one-byte field type code. The known codes are constants; any other byte is kept as is.
    public struct Field: Hashable, Sendable, CustomStringConvertible {
        public let code: UInt8

        public init(code: UInt8) {
            self.code = code
        }

        public var description: String { PostgresWireError.describe(self.code) }

        /// `S`: severity, possibly localized (ERROR, FATAL, PANIC, WARNING, NOTICE, DEBUG, INFO, LOG).
        public static let localizedSeverity = Field(code: UInt8(ascii: "S"))
        /// `V`: severity, never localized (PostgreSQL 9.6 and later).
        public static let severity = Field(code: UInt8(ascii: "V"))
        /// `C`: the SQLSTATE code.
        public static let sqlState = Field(code: UInt8(ascii: "C"))
        /// `M`: the primary message.
        public static let message = Field(code: UInt8(ascii: "M"))
        /// `D`: detail; may carry data values (a unique violation names the key), so masking looks here.
        public static let detail = Field(code: UInt8(ascii: "D"))
        /// `H`: hint.
        public static let hint = Field(code: UInt8(ascii: "H"))
        /// `P`: cursor position in the query string, decimal, 1-based, in characters.
        public static let position = Field(code: UInt8(ascii: "P"))
        /// `p`: cursor position in an internally generated query.
        public static let internalPosition = Field(code: UInt8(ascii: "p"))
        /// `q`: the internally generated query.
        public static let internalQuery = Field(code: UInt8(ascii: "q"))
        /// `W`: context (call stack) of the error.
        public static let context = Field(code: UInt8(ascii: "W"))
        /// `s`: schema name.
        public static let schemaName = Field(code: UInt8(ascii: "s"))
        /// `t`: table name.
        public static let tableName = Field(code: UInt8(ascii: "t"))
        /// `c`: column name.
        public static let columnName = Field(code: UInt8(ascii: "c"))
        /// `d`: data type name.
        public static let dataTypeName = Field(code: UInt8(ascii: "d"))
        /// `n`: constraint name.
        public static let constraintName = Field(code: UInt8(ascii: "n"))
        /// `F`: source file of the server.
        public static let file = Field(code: UInt8(ascii: "F"))
        /// `L`: source line of the server.
        public static let line = Field(code: UInt8(ascii: "L"))
        /// `R`: source routine of the server.
        public static let routine = Field(code: UInt8(ascii: "R"))
    }

    /// One field with its value.
    public struct Entry: Hashable, Sendable {
        public var field: Field
        public var value: String

        public init(field: Field, value: String) {
            self.field = field
            self.value = value
        }
    }

    /// The fields in the order they appeared (or were added).
    public var entries: [Entry]

    public init(_ entries: [Entry] = []) {
        self.entries = entries
    }

    /// The value of the first field with this code; setting replaces it in place, appends it, or removes it (`nil`).
    public subscript(field: Field) -> String? {
        get {
            self.entries.first(where: { $0.field == field })?.value
        }
        set {
            if let index = self.entries.firstIndex(where: { $0.field == field }) {
                if let newValue {
                    self.entries[index].value = newValue
                    let rest = self.entries[(index + 1)...].filter { $0.field != field }
                    self.entries.replaceSubrange((index + 1)..., with: rest)
                } else {
                    self.entries.removeAll(where: { $0.field == field })
                }
            } else if let newValue {
                self.entries.append(Entry(field: field, value: newValue))
            }
        }
    }

    public func makeIterator() -> IndexingIterator<[Entry]> {
        self.entries.makeIterator()
    }
}
