/// One entry of the `rules:` list: who and where it applies to, and what it does to their
/// statements and results.
///
/// A rule applies to a session when its identity matcher matches the session's identity and its
/// resource list (when given) names the session's resource. `block`, `mask` and `approve` are
/// independent; a rule has at least one of them.
public struct Rule: Sendable, Equatable {
    /// Unique in the file; named in errors sent to clients and in evidence.
    public var name: String
    /// `identities:`; `.everyone` when the key is absent.
    public var identities: IdentityMatcher
    /// `resources:` by name; nil when the key is absent (every postgres resource).
    public var resources: [Located<String>]?
    public var block: BlockSpec?
    public var mask: MaskSpec?
    public var approve: ApproveSpec?
    public var location: SourceLocation?

    public init(
        name: String, identities: IdentityMatcher = .everyone, resources: [Located<String>]? = nil,
        block: BlockSpec? = nil, mask: MaskSpec? = nil, approve: ApproveSpec? = nil, location: SourceLocation? = nil
    ) {
        self.name = name
        self.identities = identities
        self.resources = resources
        self.block = block
        self.mask = mask
        self.approve = approve
        self.location = location
    }
}

/// `block:`: statements that never reach the server; the client gets `ErrorResponse` 42501 with
/// the rule name and `message`.
public struct BlockSpec: Sendable, Equatable {
    public var match: StatementMatcher
    /// The operator's explanation for the client; nil: a generic sentence naming the rule.
    public var message: String?

    public init(match: StatementMatcher, message: String? = nil) {
        self.match = match
        self.message = message
    }
}

/// `approve:` (issue 4): statements held until `required` distinct approvers say yes.
public struct ApproveSpec: Sendable, Equatable {
    public static let defaultTimeout: Duration = .seconds(600)
    /// Longest `timeout` and `grant` accepted.
    public static let maxDuration: Duration = .seconds(86_400)

    public var match: StatementMatcher
    /// Who may decide: `user:` and `group:` entries only. The requester never may.
    public var approvers: IdentityMatcher
    /// Distinct approvers needed, 1...5.
    public var required: Int
    /// How long a statement waits before it fails (default 10m, at most 24h).
    public var timeout: Duration
    /// The longest window an approval may open (`--grant`); nil: approvals never open windows.
    public var grant: Duration?
    public var webhook: WebhookSpec?

    public init(
        match: StatementMatcher, approvers: IdentityMatcher, required: Int = 1, timeout: Duration = defaultTimeout,
        grant: Duration? = nil, webhook: WebhookSpec? = nil
    ) {
        self.match = match
        self.approvers = approvers
        self.required = required
        self.timeout = timeout
        self.grant = grant
        self.webhook = webhook
    }
}

/// Where approvers are told about a held statement: an HTTP POST of JSON, signed with an HMAC of
/// the key read from `secret`.
public struct WebhookSpec: Sendable, Equatable {
    /// `https://...` (or `http://` for a relay on a trusted network).
    public var url: String
    public var secret: SecretReference

    public init(url: String, secret: SecretReference) {
        self.url = url
        self.secret = secret
    }
}

/// `mask:`: how result values are rewritten before they reach the client.
public struct MaskSpec: Sendable, Equatable {
    /// Source columns (resolved through the catalog, so aliases do not evade them).
    public var columns: [ColumnPattern]
    /// Content detectors run on every value not already masked by a column pattern.
    public var detectors: [DetectorName]
    /// `with:`; default `redact`.
    public var method: MaskMethodName

    public init(columns: [ColumnPattern] = [], detectors: [DetectorName] = [], method: MaskMethodName = .redact) {
        self.columns = columns
        self.detectors = detectors
        self.method = method
    }
}

/// A content detector by name. Policy cannot import Masking, so the names are repeated here; the
/// raw values are the Masking module's `DetectorKind` raw values and must stay identical to them
/// (`Masking.DetectorKind(rawValue: name.rawValue)!`).
public enum DetectorName: String, Sendable, Hashable, CaseIterable {
    case creditCard = "credit_card"
    case email
    case usSSN = "us_ssn"
    case phone
    case iban
    case secret
}

/// A mask method by name; the raw values are the Masking module's `MaskMethod` names and must stay
/// identical to them.
public enum MaskMethodName: String, Sendable, Hashable, CaseIterable {
    /// A fixed replacement: nothing of the value is left.
    case redact
    /// A useful tail: `****1111`, `j***@example.com`.
    case partial
    /// A keyed HMAC: equal values stay equal (joinable), the value cannot be read back.
    case hash
    /// SQL NULL.
    case null
}

/// What a `block:` or `approve:` catches. A statement matches when any one of the parts matches:
/// its command is listed, it calls a listed function, it is an unbounded write and
/// `unboundedWrites` is set, or its text matches a pattern.
public struct StatementMatcher: Sendable, Equatable {
    public var statements: [StatementName]
    public var functions: [FunctionPattern]
    /// `UPDATE` or `DELETE` without `WHERE` (as the SQL classifier reports it).
    public var unboundedWrites: Bool
    public var patterns: [TextPattern]

    public init(
        statements: [StatementName] = [], functions: [FunctionPattern] = [], unboundedWrites: Bool = false,
        patterns: [TextPattern] = []
    ) {
        self.statements = statements
        self.functions = functions
        self.unboundedWrites = unboundedWrites
        self.patterns = patterns
    }

    /// True when nothing is listed: such a matcher matches no statement (the loader refuses it).
    public var isEmpty: Bool { statements.isEmpty && functions.isEmpty && !unboundedWrites && patterns.isEmpty }

    public func matches(_ statement: StatementFacts) -> Bool {
        if unboundedWrites && statement.isUnboundedWrite { return true }
        for name in statement.commandNames {
            for s in statements where s.matches(commandName: name) { return true }
        }
        for f in functions {
            for call in statement.functions where f.matches(schema: call.schema, name: call.name) { return true }
        }
        if !patterns.isEmpty {
            let text = TextPattern.normalise(statement.text)
            for p in patterns where p.matches(normalised: text) { return true }
        }
        return false
    }
}

/// What the SQL classifier found in one statement, in the terms rules are written in. The wire
/// module fills it from its classification (Policy cannot import SQL) and asks
/// `ApplicableRules` what to do.
public struct StatementFacts: Sendable, Hashable {
    /// Every name the statement's kind answers to, as `SQL.StatementKind` gives them (words joined
    /// by single spaces): `["DROP USER", "DROP ROLE"]` for `drop user x`, `["CREATE FUNCTION"]` for
    /// `create or replace function ...`.
    public var commandNames: [String]
    /// Every function the statement calls, as written (schema only when qualified).
    public var functions: [CalledFunction]
    /// An `UPDATE` or `DELETE` without `WHERE`.
    public var isUnboundedWrite: Bool
    /// The statement's text with comments removed (used by `patterns` only).
    public var text: String

    public init(
        commandNames: [String], functions: [CalledFunction] = [], isUnboundedWrite: Bool = false, text: String = ""
    ) {
        self.commandNames = commandNames
        self.functions = functions
        self.isUnboundedWrite = isUnboundedWrite
        self.text = text
    }
}

/// A function call found in a statement: `pg_read_file(...)` or `pg_catalog.pg_read_file(...)`.
/// From `SQL.QualifiedName`: `name` is its last part, `schema` the one before it (nil when the
/// call is unqualified).
public struct CalledFunction: Sendable, Hashable {
    public var schema: String?
    public var name: String

    public init(schema: String? = nil, name: String) {
        self.schema = schema
        self.name = name
    }
}

/// A name in a rule's `functions:` list: `name` or `schema.name`, each part an SQL identifier.
///
/// Unquoted parts compare case-insensitively (ASCII), quoted parts (`"MyFunc"`) exactly. `name`
/// matches the function in any schema. `schema.name` matches calls qualified with that schema
/// and unqualified calls of `name` (the search path may well resolve them to it: fail closed).
public struct FunctionPattern: Sendable, Hashable, CustomStringConvertible {
    public var schema: IdentifierPart?
    public var name: IdentifierPart
    public var description: String

    public init?(parsing text: String) {
        guard case .success(let p) = Self.parse(text) else { return nil }
        self = p
    }

    init(schema: IdentifierPart?, name: IdentifierPart, text: String) {
        self.schema = schema
        self.name = name
        self.description = text
    }

    public func matches(schema callSchema: String?, name callName: String) -> Bool {
        guard name.matches(callName) else { return false }
        guard let schema, let callSchema else { return true }
        return schema.matches(callSchema)
    }
}

/// A column in a `mask:` rule's `columns:` list, matched against the *source* column of a
/// result (schema, table and column names as the catalog stores them).
///
/// Forms: `table.column` (any schema), `schema.table.column`; any part may be `*` (every name):
/// `*.ssn`, `public.*.ssn`, `customers.*`. A part is an SQL identifier: unquoted parts compare
/// case-insensitively (ASCII; broader than PostgreSQL's folding, so a mixed-case table created
/// with quotes is still caught), double-quoted parts (`'"Customers".email'` in YAML) compare
/// exactly, and may contain `.` or `""` for a quote. `"*"` is a column literally named `*`.
public struct ColumnPattern: Sendable, Hashable, CustomStringConvertible {
    /// nil for `table.column`: any schema.
    public var schema: IdentifierPart?
    public var table: IdentifierPart
    public var column: IdentifierPart
    /// As written in the file.
    public var description: String

    public init?(parsing text: String) {
        guard case .success(let p) = Self.parse(text) else { return nil }
        self = p
    }

    init(schema: IdentifierPart?, table: IdentifierPart, column: IdentifierPart, text: String) {
        self.schema = schema
        self.table = table
        self.column = column
        self.description = text
    }

    public func matches(schema s: String, table t: String, column c: String) -> Bool {
        column.matches(c) && table.matches(t) && (schema?.matches(s) ?? true)
    }
}

/// One dotted part of a column or function pattern.
public enum IdentifierPart: Sendable, Hashable, CustomStringConvertible {
    /// `*`: any name.
    case any
    /// An unquoted name, stored in lower case, compared case-insensitively (ASCII).
    case folded(String)
    /// A double-quoted name, compared exactly.
    case exact(String)

    public func matches(_ name: String) -> Bool {
        switch self {
        case .any: return true
        case .exact(let n): return n == name
        case .folded(let n):
            let a = n.utf8
            let b = name.utf8
            guard a.count == b.count else { return false }
            return zip(a, b).allSatisfy { x, y in x == asciiLower(y) }
        }
    }

    public var description: String {
        switch self {
        case .any: "*"
        case .folded(let n): n
        case .exact(let n):
            "\"" + n.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\"\"") + "\""
        }
    }
}

@inline(__always) func asciiLower(_ b: UInt8) -> UInt8 {
    b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z") ? b | 0x20 : b
}

/// A `patterns:` entry: a glob over a statement's text, for what the classifier's structure
/// cannot express (`COPY * TO PROGRAM *`).
///
/// Not a regular expression, and not a substring: `*` matches any run of characters (also none),
/// `?` exactly one, everything else itself; the pattern must match the *whole* statement, so
/// write `*pg_sleep*` for "contains". Matching ignores ASCII case, and both sides are normalised
/// first: every run of whitespace becomes one space, leading and trailing whitespace and `;` are
/// dropped. Comments must be removed by the caller (`StatementFacts.text`). Text patterns are
/// easy to evade; prefer `statements` and `functions`.
public struct TextPattern: Sendable, Hashable, CustomStringConvertible {
    /// As written in the file.
    public var description: String
    let normalised: [UInt8]

    public init?(_ text: String) {
        let n = TextPattern.normalise(text)
        guard !n.isEmpty else { return nil }
        self.description = text
        self.normalised = n
    }

    public func matches(_ statementText: String) -> Bool {
        matches(normalised: TextPattern.normalise(statementText))
    }

    /// Lower-cased (ASCII), whitespace runs as one space, trimmed, without trailing `;`.
    static func normalise(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        var pendingSpace = false
        for b in text.utf8 {
            if b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D || b == 0x0B || b == 0x0C {
                pendingSpace = !out.isEmpty
                continue
            }
            if pendingSpace {
                out.append(0x20)
                pendingSpace = false
            }
            out.append(asciiLower(b))
        }
        while let last = out.last, last == UInt8(ascii: ";") || last == 0x20 { out.removeLast() }
        return out
    }

    /// Iterative glob with one backtrack point (the last `*`): linear in practice, never
    /// exponential.
    func matches(normalised text: [UInt8]) -> Bool {
        let p = normalised
        var pi = 0
        var ti = 0
        var star = -1
        var mark = 0
        while ti < text.count {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == text[ti]) {
                pi += 1
                ti += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                star = pi
                mark = ti
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                ti = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}

/// An `identities:` (or `approvers:`) entry.
public enum IdentityPattern: Sendable, Hashable, CustomStringConvertible {
    /// `user:NAME`: the socket owner's user name.
    case user(String)
    /// `group:NAME`: the user is a member (primary or supplementary).
    case group(String)
    /// `uid:N`: also matches uids with no passwd entry.
    case uid(UInt32)
    /// `unit:NAME.TYPE`: the systemd unit the process runs in (`ci-runner.service`,
    /// `backup.timer`, `session-3.scope`), exact.
    case unit(String)

    public init?(parsing text: String) {
        guard case .success(let p) = Self.parse(text) else { return nil }
        self = p
    }

    public func matches(_ identity: Identity) -> Bool {
        switch self {
        case .user(let name): identity.user == name
        case .group(let name): identity.groups.contains(name)
        case .uid(let uid): identity.uid == uid
        case .unit(let name): identity.unit == name
        }
    }

    public var description: String {
        switch self {
        case .user(let n): "user:\(n)"
        case .group(let n): "group:\(n)"
        case .uid(let n): "uid:\(n)"
        case .unit(let n): "unit:\(n)"
        }
    }
}

/// A list of identity patterns: matches an identity when any entry does. `everyone` (the
/// `identities:` key left out) matches every identity.
public struct IdentityMatcher: Sendable, Hashable, CustomStringConvertible {
    /// nil: everyone.
    public var patterns: [IdentityPattern]?

    public init(_ patterns: [IdentityPattern]?) { self.patterns = patterns }

    public static let everyone = IdentityMatcher(nil)

    public func matches(_ identity: Identity) -> Bool {
        guard let patterns else { return true }
        return patterns.contains { $0.matches(identity) }
    }

    public var description: String {
        patterns.map { $0.map(\.description).joined(separator: ", ") } ?? "everyone"
    }
}
