import NIOCore

/// A result column's origin as `RowDescription` gives it: the table's OID and the column's attribute number.
///
/// It exists as the key of the catalog lookup that turns a result column into the `schema.table.column` a mask rule
/// names, so that `SELECT email AS e` is still masked.
public struct PostgresColumnID: Hashable, Sendable, CustomStringConvertible {
    /// `pg_class.oid` of the table.
    public var tableOID: UInt32
    /// `pg_attribute.attnum` of the column (1-based; system columns are negative and never resolved).
    public var attributeNumber: Int16

    public init(tableOID: UInt32, attributeNumber: Int16) {
        self.tableOID = tableOID
        self.attributeNumber = attributeNumber
    }

    public var description: String { "\(self.tableOID).\(self.attributeNumber)" }
}

/// The catalog names of a result column's source, as PostgreSQL stores them (not folded, not quoted).
public struct PostgresColumnSource: Hashable, Sendable, CustomStringConvertible {
    public var schema: String
    public var table: String
    public var column: String

    public init(schema: String, table: String, column: String) {
        self.schema = schema
        self.table = table
        self.column = column
    }

    /// `schema.table.column`, the key of masking counts in evidence.
    public var description: String { "\(self.schema).\(self.table).\(self.column)" }
}

/// What the catalog says about a result column's source.
public enum PostgresColumnResolution: Hashable, Sendable {
    /// The column's names.
    case source(PostgresColumnSource)
    /// The lookup failed or found nothing (catalog connection down, table dropped meanwhile). The session fails
    /// closed: values of such a column are masked as if a column rule covered them.
    case unresolvable
}

/// The session's view of the gateway's catalog cache.
///
/// It exists so the state machine can ask, without I/O, whether a result column's source is already known. Answer
/// `nil` when it is not: the machine then asks the gateway with ``PostgresSessionStateMachine/Action/resolveColumns(_:)``,
/// holds the server's messages, and continues when the gateway calls
/// ``PostgresSessionStateMachine/columnsResolved(_:)``. Implementations are shared between event loops, so they must
/// be safe to call from any thread and must never block.
public protocol PostgresColumnResolver: Sendable {
    /// The cached resolution of `column`, or `nil` when the catalog must be asked.
    func resolution(of column: PostgresColumnID) -> PostgresColumnResolution?
}

/// A fixed map of columns, for tests and for resources whose catalog is known in advance.
///
/// Columns it does not list are answered `nil` (ask the gateway).
public struct InMemoryColumnResolver: PostgresColumnResolver {
    /// The known columns.
    public var sources: [PostgresColumnID: PostgresColumnSource]

    public init(_ sources: [PostgresColumnID: PostgresColumnSource] = [:]) {
        self.sources = sources
    }

    public func resolution(of column: PostgresColumnID) -> PostgresColumnResolution? {
        self.sources[column].map { .source($0) }
    }
}
