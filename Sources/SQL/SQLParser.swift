/// One statement of a query string, classified for policy and evidence.
///
/// It exists so that the gateway can decide on each statement without parsing SQL itself: what it
/// does (``kind``, ``effectiveKinds``), what it touches (``targets``), what it calls
/// (``functions``), and whether it writes without a `WHERE` (``isUnboundedWrite``).
public struct SQLStatement: Hashable, Sendable {
    /// Byte offsets of the statement in the input, from its first token to its last (comments and
    /// white space around it and the terminating `;` excluded; comments inside kept).
    public var range: Range<Int>
    /// The bytes of ``range`` as text (invalid UTF-8 repaired with U+FFFD).
    public var text: String
    /// The command, from the statement's leading words. `WITH ... DELETE` is `.delete` (the main
    /// statement after the CTEs); `EXPLAIN ...` is `.explain`; `(SELECT 1)` is `.select`.
    public var kind: StatementKind
    /// The statement an `EXPLAIN` explains or a `PREPARE` prepares.
    public var innerKind: StatementKind?
    /// Every kind this statement runs, for blocking: ``kind`` first, then the explained statement
    /// of `EXPLAIN ANALYZE` and the prepared statement of `PREPARE` (blocked when prepared, since
    /// the later `EXECUTE` is opaque), then data-modifying statements inside it: `WITH d AS (DELETE
    /// ...) SELECT` includes `.delete`, `INSERT ... ON CONFLICT DO UPDATE` includes `.update`, `MERGE`
    /// includes the actions of its `WHEN` clauses, `SELECT ... INTO t` includes `CREATE TABLE`.
    /// Plain `EXPLAIN` only plans, so its statement's kinds are not included. An ``kind`` of
    /// `.unparseable` still lists what was recognised before the error.
    public var effectiveKinds: [StatementKind]
    /// Objects the statement acts on, normalised (`public.customers`; quoted names keep their case),
    /// in order of appearance without repeats: the object of the command (`INSERT INTO x`, `UPDATE
    /// x`, `DELETE FROM x`, `TRUNCATE x, y`, `DROP TABLE a, b`, `ALTER TABLE x`, `COPY x`, `CREATE
    /// TABLE x`, `GRANT ... ON x`, `LOCK x`, `SET x`...), then every relation named after `FROM`,
    /// `JOIN` or `USING` (`DELETE`/`MERGE`) at any depth, best effort.
    public var targets: [QualifiedName]
    /// Every function called, at any depth (subqueries, CTEs, `FROM f()`, `CALL p()`, `EXECUTE
    /// FUNCTION f()` in a trigger), without repeats. Type modifiers (`numeric(10,2)`, `x::t(3)`),
    /// key words (`IN (`, `EXISTS (`, `VALUES (`) and declared names (`CREATE FUNCTION f(`, `INSERT
    /// INTO t (`) are not calls. Bodies of `DO`, `CREATE FUNCTION ... AS $$...$$` and string
    /// arguments of `EXECUTE` are opaque and not looked into.
    public var functions: [QualifiedName]
    /// Whether the main statement has a `WHERE` at its own level (one inside a subquery or CTE does
    /// not count; `WHERE CURRENT OF` does). For `EXPLAIN`/`PREPARE`, that of the inner statement.
    public var hasWhere: Bool
    /// An `UPDATE` or `DELETE` without a `WHERE` at its own level, anywhere in the statement (a
    /// data-modifying CTE, the statement of `EXPLAIN ANALYZE` or `PREPARE`), or a `TRUNCATE`.
    /// `WHERE true` still counts as a `WHERE`.
    public var isUnboundedWrite: Bool
    /// For `COPY ... TO STDOUT`: the layout of its output and a query with the same columns.
    public var copyOut: CopyOutput? = nil

    /// Whether a policy's statement pattern covers any of ``effectiveKinds``.
    public func matches(_ pattern: StatementPattern) -> Bool {
        effectiveKinds.contains { pattern.matches($0) }
    }

    /// Whether the statement calls `function` (`pg_read_file` matches a call of
    /// `pg_catalog.pg_read_file` and the reverse; see ``QualifiedName/matches(_:)``).
    public func calls(_ function: QualifiedName) -> Bool {
        functions.contains { $0.matches(function) }
    }
}

/// What `COPY ... TO STDOUT` writes, so a gateway can mask its fields by source column.
///
/// It exists because COPY data carries no column description: the gateway describes ``query`` (a
/// `SELECT` with the COPY's output columns, in order) to learn each field's source, then splits the
/// rows per ``format``.
public struct CopyOutput: Hashable, Sendable {
    public enum Format: Hashable, Sendable {
        /// Tab-separated fields, `\N` for NULL, backslash escapes, one row per line.
        case text
        /// Comma-separated, `"` quoting with `""` inside, empty unquoted for NULL.
        case csv
        case binary
    }

    /// `SELECT cols FROM table` for `COPY table (cols)`, `SELECT * FROM table` for `COPY table`, the
    /// query of `COPY (query)`; nil when the statement is too broken to say.
    public var query: String?
    public var format: Format
    /// The first row is column names (`HEADER`).
    public var header: Bool
    /// `DELIMITER`, `QUOTE`, `ESCAPE`, `NULL`, `FORCE_QUOTE`, `ENCODING` or `DEFAULT` change the layout.
    public var hasLayoutOptions: Bool

    public init(query: String?, format: Format, header: Bool, hasLayoutOptions: Bool) {
        self.query = query
        self.format = format
        self.header = header
        self.hasLayoutOptions = hasLayoutOptions
    }
}

/// The entry point: splits a simple-query string into statements and classifies each.
///
/// Pure and allocation-light: the input is lexed once as UTF-8 bytes into a token array; nothing is
/// decoded per character. Statements end at a `;` outside parentheses, quotes, dollar quotes and
/// comments (and outside a `BEGIN ATOMIC ... END` function body, as psql does); empty statements
/// are dropped, so white space and comments alone give no statement.
///
/// `standardConformingStrings` must follow the session (the server's `ParameterStatus`): with it
/// off, a backslash escapes a quote in `'...'` too, which changes where statements end.
public enum SQLParser {
    /// The statements of a simple-query string, in order.
    public static func statements(in sql: String, standardConformingStrings: Bool = true) -> [SQLStatement] {
        var sql = sql
        return sql.withUTF8 { statements(inBuffer: $0, standardConformingStrings: standardConformingStrings) }
    }

    /// The statements of a query given as UTF-8 bytes (a `ByteBuffer`'s readable bytes view, a
    /// `[UInt8]`, a slice); contiguous storage is read in place.
    public static func statements(
        in bytes: some Collection<UInt8>, standardConformingStrings: Bool = true
    ) -> [SQLStatement] {
        let result = bytes.withContiguousStorageIfAvailable {
            statements(inBuffer: $0, standardConformingStrings: standardConformingStrings)
        }
        if let result { return result }
        let copy = Array(bytes)
        return copy.withUnsafeBufferPointer {
            statements(inBuffer: $0, standardConformingStrings: standardConformingStrings)
        }
    }

    /// The text with every string constant replaced by `'?'` and every numeric constant by `?`,
    /// comments removed and white space between tokens collapsed to one space, for evidence that
    /// must not keep literal values. Identifiers, key words, operators and `$n` parameters stay.
    /// An unterminated literal or comment is replaced as a whole.
    public static func redactLiterals(_ sql: String, standardConformingStrings: Bool = true) -> String {
        var sql = sql
        return sql.withUTF8 { bytes in
            let tokens = Lexer.tokenize(bytes, standardConformingStrings: standardConformingStrings)
            var output: [UInt8] = []
            output.reserveCapacity(bytes.count)
            var previousEnd = -1
            for token in tokens {
                if previousEnd >= 0 && token.start > previousEnd { output.append(UInt8(ascii: " ")) }
                previousEnd = token.end
                switch token.kind {
                case .string:
                    output.append(contentsOf: "'?'".utf8)
                case .number:
                    output.append(UInt8(ascii: "?"))
                case .error:
                    let first = bytes[token.start]
                    if first == UInt8(ascii: "/") {
                        if !output.isEmpty && output.last == UInt8(ascii: " ") { output.removeLast() }
                    } else {
                        output.append(contentsOf: (first == UInt8(ascii: "\"") ? "\"?\"" : "'?'").utf8)
                    }
                default:
                    output.append(contentsOf: bytes[token.start..<token.end])
                }
            }
            return String(decoding: output, as: UTF8.self)
        }
    }

    static func statements(
        inBuffer bytes: UnsafeBufferPointer<UInt8>, standardConformingStrings: Bool
    ) -> [SQLStatement] {
        let tokens = Lexer.tokenize(bytes, standardConformingStrings: standardConformingStrings)
        return tokens.withUnsafeBufferPointer { tokens in
            split(tokens).map { piece in
                let statementTokens = UnsafeBufferPointer(rebasing: tokens[piece.tokens])
                let classification = Classifier.classify(statementTokens, in: bytes)
                let range = statementTokens.first!.start..<statementTokens.last!.end
                var statement = SQLStatement(
                    range: range, text: String(decoding: bytes[range], as: UTF8.self), kind: classification.kind,
                    innerKind: classification.innerKind, effectiveKinds: classification.effectiveKinds,
                    targets: classification.targets, functions: classification.functions,
                    hasWhere: classification.hasWhere, isUnboundedWrite: classification.isUnboundedWrite,
                    copyOut: classification.copyOut)
                if piece.isBroken {
                    statement.kind = .unparseable
                    statement.effectiveKinds.insert(.unparseable, at: 0)
                }
                return statement
            }
        }
    }

    /// A statement's tokens, and whether they cannot be a valid statement (lexer error, unbalanced
    /// parentheses, unclosed `BEGIN ATOMIC`).
    struct Piece: Equatable {
        var tokens: Range<Int>
        var isBroken: Bool
    }

    /// Splits tokens at top-level semicolons, dropping empty statements.
    static func split(_ tokens: UnsafeBufferPointer<Token>) -> [Piece] {
        var pieces: [Piece] = []
        var start = 0
        var depth = 0
        var broken = false
        var isRoutine = false
        var atomicDepth = 0
        var index = 0
        func finish(_ end: Int) {
            if end > start {
                pieces.append(Piece(tokens: start..<end, isBroken: broken || depth != 0 || atomicDepth != 0))
            }
            start = end + 1
            depth = 0
            broken = false
            atomicDepth = 0
        }
        while index < tokens.count {
            let token = tokens[index]
            if index == start {
                isRoutine = isRoutineDefinition(tokens, at: index)
            }
            switch token.kind {
            case .leftParen:
                depth += 1
            case .rightParen:
                depth -= 1
                if depth < 0 {
                    broken = true
                    depth = 0
                }
            case .semicolon:
                if depth == 0 && atomicDepth == 0 { finish(index) }
            case .error:
                broken = true
            case .word:
                guard isRoutine && depth == 0 else { break }
                if token.isKeyword(.begin) && index + 1 < tokens.count && tokens[index + 1].isKeyword(.atomic) {
                    atomicDepth += 1
                } else if token.isKeyword(.case) && atomicDepth > 0 {
                    atomicDepth += 1
                } else if token.isKeyword(.end) && atomicDepth > 0 {
                    atomicDepth -= 1
                }
            default:
                break
            }
            index += 1
        }
        finish(tokens.count)
        return pieces
    }

    /// `CREATE [OR REPLACE] FUNCTION|PROCEDURE` at `index`: its body may be `BEGIN ATOMIC ...; END`.
    private static func isRoutineDefinition(_ tokens: UnsafeBufferPointer<Token>, at index: Int) -> Bool {
        guard tokens[index].isKeyword(.create) else { return false }
        var position = index + 1
        if position + 1 < tokens.count && tokens[position].isKeyword(.or) && tokens[position + 1].isKeyword(.replace) {
            position += 2
        }
        guard position < tokens.count else { return false }
        return tokens[position].isKeyword(.function) || tokens[position].isKeyword(.procedure)
    }
}
