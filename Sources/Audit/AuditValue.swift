/// A value inside an audit entry.
///
/// Audit entries are hashed byte for byte by the Merkle log, so they are built from this closed set of
/// JSON values rather than from `Codable` types: there are no floats (durations are integer
/// microseconds or milliseconds), and every value has exactly one canonical encoding
/// (see ``CanonicalJSON``).
///
/// `int` and `uint` are two spellings of one JSON number: `.int(5) == .uint(5)`, and decoding yields
/// `.int` for every value that fits in `Int64` and `.uint` only above `Int64.max`.
public indirect enum AuditValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case string(String)
    case array([AuditValue])
    case object([String: AuditValue])

    public static func == (lhs: AuditValue, rhs: AuditValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null):
            return true
        case (.bool(let a), .bool(let b)):
            return a == b
        case (.int(let a), .int(let b)):
            return a == b
        case (.uint(let a), .uint(let b)):
            return a == b
        case (.int(let a), .uint(let b)), (.uint(let b), .int(let a)):
            return a >= 0 && UInt64(a) == b
        case (.string(let a), .string(let b)):
            // Compare scalars, not Swift's canonical-equivalence: "é" and "e\u{301}" encode differently.
            return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case (.array(let a), .array(let b)):
            return a == b
        case (.object(let a), .object(let b)):
            guard a.count == b.count else { return false }
            for (key, value) in a {
                guard let other = b[key], other == value else { return false }
            }
            return true
        case (.null, _), (.bool, _), (.int, _), (.uint, _), (.string, _), (.array, _), (.object, _):
            return false
        }
    }
}

extension AuditValue {
    /// `.string(value)`, or `.null` when `value` is nil.
    public init(_ value: String?) {
        if let value {
            self = .string(value)
        } else {
            self = .null
        }
    }

    /// Any integer: `.int` when it fits in `Int64`, else `.uint`.
    public init<T: BinaryInteger>(_ value: T) {
        if let signed = Int64(exactly: value) {
            self = .int(signed)
        } else {
            self = .uint(UInt64(value))
        }
    }

    /// The member `key` of an object, nil for other values or a missing key.
    public subscript(key: String) -> AuditValue? {
        if case .object(let members) = self {
            return members[key]
        }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var int64Value: Int64? {
        switch self {
        case .int(let i): return i
        case .uint(let u): return Int64(exactly: u)
        case .null, .bool, .string, .array, .object: return nil
        }
    }

    public var uint64Value: UInt64? {
        switch self {
        case .int(let i): return UInt64(exactly: i)
        case .uint(let u): return u
        case .null, .bool, .string, .array, .object: return nil
        }
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: [AuditValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: [String: AuditValue]? {
        if case .object(let o) = self { return o }
        return nil
    }
}

extension AuditValue: ExpressibleByNilLiteral {
    public init(nilLiteral: ()) { self = .null }
}

extension AuditValue: ExpressibleByBooleanLiteral {
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension AuditValue: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int64) { self = .int(value) }
}

extension AuditValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension AuditValue: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: AuditValue...) { self = .array(elements) }
}

extension AuditValue: ExpressibleByDictionaryLiteral {
    /// A later duplicate key replaces an earlier one.
    public init(dictionaryLiteral elements: (String, AuditValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

extension AuditValue: CustomStringConvertible {
    /// The canonical JSON text.
    public var description: String {
        String(decoding: CanonicalJSON.encode(self), as: UTF8.self)
    }
}
