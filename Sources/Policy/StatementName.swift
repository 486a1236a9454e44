/// A `statements:` entry of a rule: one or more command words, normalised (upper case, single
/// spaces), that name a kind of statement or a family of them.
///
/// The vocabulary and the matching are the SQL classifier's (`SQL.StatementPattern`), repeated
/// here because Policy cannot import SQL: every name this type accepts, `StatementPattern`
/// accepts, and means the same. A name matches a statement when its words are a prefix of one of
/// the names the statement's kind answers to: `DROP` matches `DROP TABLE` and `DROP FUNCTION`,
/// `COPY PROGRAM` both directions of `COPY ... PROGRAM`, `DROP ROLE` also `DROP USER` (a kind may
/// answer to several names; see `canonicalNames`). `create or replace function` is read as
/// `CREATE FUNCTION`, `ANALYSE` as `ANALYZE`, `_` as a space.
public struct StatementName: Sendable, Hashable, CustomStringConvertible {
    /// The normalised name: upper case, single spaces (`CREATE FUNCTION`).
    public let description: String
    private let prefix: String

    /// Parses a rule's `statements:` entry; nil when it names no statement kind (a typo).
    public init?(parsing text: String) {
        guard case .success(let s) = Self.parse(text) else { return nil }
        self = s
    }

    private init(words: [String]) {
        description = words.joined(separator: " ")
        prefix = description + " "
    }

    /// Whether this name covers a statement whose kind answers to `commandName` (one of the names
    /// `SQL.StatementKind` gives it, words joined by single spaces: `DROP TABLE`, `COPY TO PROGRAM`).
    public func matches(commandName: String) -> Bool {
        commandName == description || commandName.hasPrefix(prefix)
    }

    /// Every full name a statement kind answers to, mirroring `SQL.StatementKind.names` (aliases
    /// included: `DROP USER` and `DROP ROLE`, `COPY TO PROGRAM` and `COPY PROGRAM`). A rule may name
    /// any leading run of words of one of these.
    public static let canonicalNames: [String] = {
        var names = [
            "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "GRANT", "REVOKE", "BEGIN",
            "START TRANSACTION", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE SAVEPOINT",
            "PREPARE TRANSACTION", "COMMIT PREPARED", "ROLLBACK PREPARED", "SET", "RESET", "SHOW", "PREPARE",
            "EXECUTE", "DEALLOCATE", "DO", "CALL", "EXPLAIN", "EXPLAIN ANALYZE", "VALUES", "TABLE", "LISTEN",
            "NOTIFY", "UNLISTEN", "VACUUM", "ANALYZE", "CLUSTER", "REINDEX", "LOCK TABLE", "DISCARD", "COMMENT ON",
            "SECURITY LABEL", "REFRESH MATERIALIZED VIEW", "IMPORT FOREIGN SCHEMA", "LOAD", "FETCH", "MOVE",
            "CLOSE", "DECLARE", "CHECKPOINT",
            // The classifier's own kinds: a first word it does not know, a statement it cannot lex.
            "UNKNOWN", "UNPARSEABLE",
        ]
        for (direction, stream) in [("TO", "STDOUT"), ("FROM", "STDIN")] {
            for endpoint in [stream, "FILE", "PROGRAM"] {
                names += ["COPY \(direction) \(endpoint)", "COPY \(endpoint)"]
            }
        }
        let objects = [
            "TABLE", "INDEX", "VIEW", "MATERIALIZED VIEW", "FUNCTION", "PROCEDURE", "ROUTINE", "AGGREGATE", "ROLE",
            "USER", "GROUP", "EXTENSION", "SCHEMA", "DATABASE", "SEQUENCE", "TRIGGER", "EVENT TRIGGER", "TYPE",
            "DOMAIN", "POLICY", "RULE", "PUBLICATION", "SUBSCRIPTION", "SERVER", "FOREIGN TABLE",
            "FOREIGN DATA WRAPPER", "USER MAPPING", "TABLESPACE", "COLLATION", "CONVERSION", "CAST", "OPERATOR",
            "LANGUAGE", "STATISTICS", "TEXT SEARCH", "ACCESS METHOD", "TRANSFORM", "LARGE OBJECT", "OWNED",
            "DEFAULT PRIVILEGES", "SYSTEM",
        ]
        for verb in ["CREATE", "ALTER", "DROP"] {
            names.append(verb)  // an object word the classifier does not know
            names += objects.map { "\(verb) \($0)" }
        }
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }
    }()

    static let canonicalWords: [[String]] = canonicalNames.map { $0.split(separator: " ").map(String.init) }

    /// Normalises like `SQL.StatementPattern`: words split on spaces, tabs, newlines and `_`, ASCII
    /// upper case, `ANALYSE` → `ANALYZE`, `CREATE OR REPLACE` → `CREATE`.
    static func words(_ text: String) -> [String] {
        var words = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "_" })
            .map { w in String(decoding: w.utf8.map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }, as: UTF8.self) }
            .map { $0 == "ANALYSE" ? "ANALYZE" : $0 }
        if words.count >= 3, words[0] == "CREATE", words[1] == "OR", words[2] == "REPLACE" {
            words.removeSubrange(1...2)
        }
        return words
    }

    static func parse(_ text: String) -> Result<StatementName, SyntaxProblem> {
        let words = words(text)
        guard !words.isEmpty else { return .failure(SyntaxProblem("empty statement name")) }
        if canonicalWords.contains(where: { $0.starts(with: words) }) { return .success(StatementName(words: words)) }
        // The longest known leading part, to say which word is wrong.
        var known = 0
        while known < words.count, canonicalWords.contains(where: { $0.starts(with: words[0...known]) }) {
            known += 1
        }
        if known == 0 {
            let firsts = Set(canonicalWords.map { $0[0] })
            let hint = suggestion(for: words[0], among: firsts).map { "did you mean \($0)? " } ?? ""
            return .failure(
                SyntaxProblem(
                    "unknown statement '\(text)' (\(hint)expected a command such as SELECT, UPDATE, DELETE, DROP, "
                        + "TRUNCATE, ALTER TABLE, CREATE FUNCTION, GRANT, COPY TO PROGRAM, DO, CALL)"))
        }
        let head = words[..<known].joined(separator: " ")
        let rest = words[known...].joined(separator: " ")
        let continuations = Set(
            canonicalWords.filter { $0.count > known && $0.starts(with: words[..<known]) }
                .map { $0[known...].joined(separator: " ") })
        guard !continuations.isEmpty else {
            return .failure(SyntaxProblem("\(head) takes no further words, got '\(text)'"))
        }
        let hint = suggestion(for: rest, among: continuations).map { " (did you mean \(head) \($0)?)" } ?? ""
        return .failure(SyntaxProblem("unknown object '\(rest)' for \(head)\(hint)"))
    }
}

/// Why a piece of rule syntax was refused; the loader adds the place.
struct SyntaxProblem: Error, Equatable {
    var message: String
    init(_ message: String) { self.message = message }
}

/// The closest candidate within two edits, to turn `DORP` into "did you mean DROP?".
func suggestion(for word: String, among candidates: some Collection<String>) -> String? {
    var best: (String, Int)?
    for c in candidates.sorted() {
        let d = editDistance(Array(word.utf8), Array(c.utf8))
        if d <= 2, d < (best?.1 ?? .max) { best = (c, d) }
    }
    return best?.0
}

/// Optimal string alignment distance (Levenshtein plus adjacent transposition: `DORP` → `DROP` is 1).
func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in 0...a.count { d[i][0] = i }
    for j in 0...b.count { d[0][j] = j }
    for i in 1...a.count {
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
            }
        }
    }
    return d[a.count][b.count]
}

extension IdentityPattern {
    static let unitTypes: Set<String> = [
        "service", "socket", "device", "mount", "automount", "swap", "target", "path", "timer", "slice", "scope",
    ]

    static let expected = "expected user:NAME, group:NAME, uid:N or unit:NAME.service"

    static func parse(_ text: String) -> Result<IdentityPattern, SyntaxProblem> {
        guard let colon = text.firstIndex(of: ":") else {
            return .failure(SyntaxProblem("'\(text)': \(expected)"))
        }
        let kind = String(text[..<colon])
        let value = String(text[text.index(after: colon)...])
        switch kind {
        case "user", "group":
            guard isAccountName(value) else {
                return .failure(
                    SyntaxProblem(
                        "'\(text)': \(kind) names are letters, digits, '_', '.', '-' (not first) and an optional final '$'"
                    ))
            }
            return .success(kind == "user" ? .user(value) : .group(value))
        case "uid":
            guard value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = UInt32(value), n != .max else {
                return .failure(SyntaxProblem("'\(text)': expected uid:N with N from 0 to 4294967294"))
            }
            return .success(.uid(n))
        case "unit":
            guard let dot = value.lastIndex(of: "."), unitTypes.contains(String(value[value.index(after: dot)...]))
            else {
                let types = unitTypes.sorted().joined(separator: ", ")
                return .failure(SyntaxProblem("'\(text)': expected unit:NAME.TYPE with TYPE one of \(types)"))
            }
            let name = value[..<dot]
            guard !name.isEmpty, value.utf8.count <= 255,
                name.utf8.allSatisfy({ b in
                    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                        || b == UInt8(ascii: ":") || b == UInt8(ascii: "_") || b == UInt8(ascii: ".")
                        || b == UInt8(ascii: "-") || b == UInt8(ascii: "@") || b == UInt8(ascii: "\\")
                })
            else {
                return .failure(
                    SyntaxProblem("'\(text)': unit names are letters, digits and ':', '_', '.', '-', '@', '\\'"))
            }
            return .success(.unit(value))
        default:
            let hint = suggestion(for: kind, among: ["user", "group", "uid", "unit"]).map { " (did you mean \($0):?)" }
            return .failure(SyntaxProblem("unknown identity kind '\(kind)'\(hint ?? ""): \(expected)"))
        }
    }

    /// POSIX-ish account names as shadow-utils accepts them, not all digits (that is a uid).
    static func isAccountName(_ s: String) -> Bool {
        var body = Substring(s)
        if body.hasSuffix("$") { body = body.dropLast() }
        guard !body.isEmpty, s.utf8.count <= 256, !body.hasPrefix("-") else { return false }
        guard !body.allSatisfy(\.isNumber) else { return false }
        return body.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == UInt8(ascii: "_") || b == UInt8(ascii: ".") || b == UInt8(ascii: "-")
        }
    }
}

/// Splits `schema."Table".column` into identifier parts: unquoted parts are folded to lower case
/// and must be SQL identifiers (or `*` when `wildcards`); quoted parts keep their case and may
/// hold anything but be empty, with `""` for a quote.
func identifierParts(_ text: String, wildcards: Bool) -> Result<[IdentifierPart], SyntaxProblem> {
    var parts: [IdentifierPart] = []
    var chars = Array(text.unicodeScalars)[...]
    while true {
        if chars.first == "\"" {
            chars = chars.dropFirst()
            var name = String.UnicodeScalarView()
            var closed = false
            while let c = chars.first {
                chars = chars.dropFirst()
                if c == "\"" {
                    if chars.first == "\"" {
                        name.append("\"")
                        chars = chars.dropFirst()
                    } else {
                        closed = true
                        break
                    }
                } else {
                    name.append(c)
                }
            }
            guard closed else { return .failure(SyntaxProblem("unterminated quoted name in '\(text)'")) }
            guard !name.isEmpty else { return .failure(SyntaxProblem("empty quoted name in '\(text)'")) }
            parts.append(.exact(String(name)))
        } else {
            let end = chars.firstIndex(of: ".") ?? chars.endIndex
            let word = String(String.UnicodeScalarView(chars[..<end]))
            chars = chars[end...]
            if word == "*" {
                guard wildcards else { return .failure(SyntaxProblem("'*' is not allowed in '\(text)'")) }
                parts.append(.any)
            } else {
                guard let first = word.unicodeScalars.first,
                    first == "_" || first.properties.isAlphabetic,
                    word.unicodeScalars.allSatisfy({
                        $0 == "_" || $0 == "$" || $0.properties.isAlphabetic || ("0"..."9").contains($0)
                    })
                else {
                    let shown = word.isEmpty ? "an empty part" : "'\(word)'"
                    return .failure(
                        SyntaxProblem(
                            "\(shown) in '\(text)' is not an SQL identifier (quote it: '\"\(word)\"')"
                                + (wildcards ? " or *" : "")))
                }
                parts.append(.folded(word.lowercased()))
            }
        }
        guard let next = chars.first else { break }
        guard next == "." else {
            return .failure(SyntaxProblem("expected '.' after a quoted name in '\(text)'"))
        }
        chars = chars.dropFirst()
    }
    return .success(parts)
}

extension ColumnPattern {
    static func parse(_ text: String) -> Result<ColumnPattern, SyntaxProblem> {
        let parts: [IdentifierPart]
        switch identifierParts(text, wildcards: true) {
        case .success(let p): parts = p
        case .failure(let e): return .failure(e)
        }
        switch parts.count {
        case 2: return .success(ColumnPattern(schema: nil, table: parts[0], column: parts[1], text: text))
        case 3: return .success(ColumnPattern(schema: parts[0], table: parts[1], column: parts[2], text: text))
        default:
            return .failure(
                SyntaxProblem("'\(text)': expected table.column or schema.table.column (any part may be *: *.ssn)"))
        }
    }
}

extension FunctionPattern {
    static func parse(_ text: String) -> Result<FunctionPattern, SyntaxProblem> {
        let parts: [IdentifierPart]
        switch identifierParts(text, wildcards: false) {
        case .success(let p): parts = p
        case .failure(let e): return .failure(e)
        }
        switch parts.count {
        case 1: return .success(FunctionPattern(schema: nil, name: parts[0], text: text))
        case 2: return .success(FunctionPattern(schema: parts[0], name: parts[1], text: text))
        default: return .failure(SyntaxProblem("'\(text)': expected name or schema.name"))
        }
    }
}
