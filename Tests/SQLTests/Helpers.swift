@testable import SQL

/// The tokens of `sql` as (kind, source text) pairs.
func lex(_ sql: String, standardConformingStrings: Bool = true) -> [(Token.Kind, String)] {
    var sql = sql
    return sql.withUTF8 { bytes in
        Lexer.tokenize(bytes, standardConformingStrings: standardConformingStrings).map { token in
            (token.kind, String(decoding: bytes[token.start..<token.end], as: UTF8.self))
        }
    }
}

func lexKinds(_ sql: String, standardConformingStrings: Bool = true) -> [Token.Kind] {
    lex(sql, standardConformingStrings: standardConformingStrings).map(\.0)
}

/// The only statement of `sql`, or a statement of kind `.unknown` with text "<n statements>".
func statement(_ sql: String, standardConformingStrings: Bool = true) -> SQLStatement {
    let all = SQLParser.statements(in: sql, standardConformingStrings: standardConformingStrings)
    guard all.count == 1 else {
        return SQLStatement(
            range: 0..<0, text: "<\(all.count) statements>", kind: .unknown, innerKind: nil, effectiveKinds: [],
            targets: [], functions: [], hasWhere: false, isUnboundedWrite: false)
    }
    return all[0]
}

func kind(_ sql: String) -> StatementKind {
    statement(sql).kind
}

func kinds(_ sql: String, standardConformingStrings: Bool = true) -> [StatementKind] {
    SQLParser.statements(in: sql, standardConformingStrings: standardConformingStrings).map(\.kind)
}

func targets(_ sql: String) -> [String] {
    statement(sql).targets.map(\.description)
}

func functions(_ sql: String) -> [String] {
    statement(sql).functions.map(\.description)
}

func blocked(_ sql: String, by policyName: String) -> Bool {
    guard let pattern = StatementPattern(policyName) else { return false }
    return SQLParser.statements(in: sql).contains { $0.matches(pattern) }
}
