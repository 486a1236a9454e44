import Masking
import NIOCore
import Policy
import SQL

/// The session's rules turned into what the wire needs, computed once per session: statement verdicts, detector
/// groups, the fail-closed method for unresolved columns.
struct SessionPolicy: Sendable {
    /// A set of detectors that share a mask method (rules may give detectors different methods).
    struct DetectorGroup: Sendable {
        var detectors: DetectorSet
        var method: MaskMethod
    }

    /// Why a statement must not run.
    struct Block: Sendable, Hashable {
        var rule: String
        var reason: String
    }

    /// One classified statement of a query string.
    struct Statement: Sendable {
        var text: String
        var kinds: [String]
        /// A `COPY ... TO STDOUT` whose fields column rules may cover: described before its rows are forwarded.
        var copyOut: CopyOutput? = nil
    }

    /// A query string's statements and the verdict on the whole string.
    struct Evaluation: Sendable {
        var statements: [Statement]
        var block: Block?
        /// The first `approve:` rule a statement of the string matches, when none is blocked: the whole string is
        /// held until approvers agree.
        var approval: Applied<ApproveSpec>?
    }

    /// A verdict on statements: blocked, held, or neither.
    struct Verdict: Sendable {
        var block: Block?
        var approval: Applied<ApproveSpec>?
    }

    let rules: ApplicableRules
    let masker: Masker
    let textMode: PostgresStatementTextMode
    let resolver: any PostgresColumnResolver
    let detectorGroups: [DetectorGroup]
    /// Whether any mask rule lists columns (then result columns are resolved to their source).
    let hasColumnRules: Bool
    /// The method of the first rule with columns, for values whose source cannot be resolved (fail closed).
    let unresolvedColumnMethod: MaskMethod
    /// Whether results may be rewritten at all.
    let masksResults: Bool
    let inspectsStatements: Bool
    /// Whether any block or approve rule has text patterns (then comments are stripped for them).
    let usesPatterns: Bool
    /// The first block rule listing functions: a fastpath `FunctionCall` names its function by OID only, so it
    /// cannot be checked against such a rule and is refused (fail closed).
    let functionBlock: Applied<BlockSpec>?
    let maximumParameterLength: Int

    init(_ configuration: PostgresSessionConfiguration) {
        let rules = configuration.rules
        self.rules = rules
        self.masker = configuration.masker
        self.textMode = configuration.statementText
        self.resolver = configuration.columnResolver
        var groups: [DetectorGroup] = []
        for applied in rules.detectorMethods {
            guard let kind = DetectorKind(rawValue: applied.spec.detector.rawValue),
                let method = MaskMethod(rawValue: applied.spec.method.rawValue)
            else { continue }
            if let index = groups.firstIndex(where: { $0.method == method }) {
                groups[index].detectors.insert(DetectorSet([kind]))
            } else {
                groups.append(DetectorGroup(detectors: DetectorSet([kind]), method: method))
            }
        }
        self.detectorGroups = groups
        let firstColumnRule = rules.masks.first { !$0.spec.columns.isEmpty }
        self.hasColumnRules = firstColumnRule != nil
        self.unresolvedColumnMethod =
            firstColumnRule.flatMap { MaskMethod(rawValue: $0.spec.method.rawValue) } ?? .redact
        self.masksResults = rules.masksResults
        self.inspectsStatements = rules.inspectsStatements
        self.usesPatterns =
            rules.blocks.contains { !$0.spec.match.patterns.isEmpty }
            || rules.approvals.contains { !$0.spec.match.patterns.isEmpty }
        self.functionBlock = rules.blocks.first { !$0.spec.match.functions.isEmpty }
        self.maximumParameterLength = max(16, configuration.maximumEvidenceParameterLength)
    }

    // MARK: Statements

    /// Splits and classifies `sql` and decides on it as a whole: one blocked statement blocks the string.
    ///
    /// A string with a backslash is also judged as if `standard_conforming_strings` had the other value: a `SET` of
    /// it earlier in the same string or pipeline changes where the server's statements end, so a statement either
    /// reading would find blocked is blocked (fail closed).
    func evaluate(_ sql: String, standardConformingStrings: Bool) -> Evaluation {
        let parsed = SQLParser.statements(in: sql, standardConformingStrings: standardConformingStrings)
        var verdict = self.judge(parsed, standardConformingStrings: standardConformingStrings)
        if verdict.block == nil, self.inspectsStatements || self.masksResults, sql.utf8.contains(UInt8(ascii: "\\")) {
            let other = self.judge(
                SQLParser.statements(in: sql, standardConformingStrings: !standardConformingStrings),
                standardConformingStrings: !standardConformingStrings)
            verdict.block = other.block
            verdict.approval = verdict.approval ?? other.approval
        }
        var statements: [Statement] = []
        statements.reserveCapacity(parsed.count)
        for statement in parsed {
            statements.append(
                Statement(
                    text: self.evidenceText(statement.text, standardConformingStrings: standardConformingStrings),
                    kinds: statement.effectiveKinds.map(\.description),
                    copyOut: self.hasColumnRules ? statement.copyOut : nil
                )
            )
        }
        return Evaluation(
            statements: statements, block: verdict.block, approval: verdict.block == nil ? verdict.approval : nil)
    }

    /// The statement as approvers read it: the evidence text with the detectors' masks applied (an approver
    /// deciding about `UPDATE ... SET card = '4111...'` needs the shape, not the card number).
    func approverText(_ text: String) -> String {
        var stats = MaskStats()
        var text = text
        let masked = text.withUTF8 { bytes in self.scanText(UnsafeRawBufferPointer(bytes), stats: &stats) }
        return masked.map { String(decoding: $0, as: UTF8.self) } ?? text
    }

    /// The text evidence keeps, per ``PostgresStatementTextMode``.
    func evidenceText(_ text: String, standardConformingStrings: Bool) -> String {
        switch self.textMode {
        case .full: return text
        case .redactLiterals:
            return SQLParser.redactLiterals(text, standardConformingStrings: standardConformingStrings)
        }
    }

    /// The first block among `statements`, and the first approval rule any of them matches.
    private func judge(_ statements: [SQLStatement], standardConformingStrings: Bool) -> Verdict {
        var verdict = Verdict()
        for statement in statements {
            if self.inspectsStatements {
                let facts = self.facts(statement, standardConformingStrings: standardConformingStrings)
                if let block = self.rules.block(for: facts) {
                    verdict.block = Block(
                        rule: block.rule,
                        reason: block.spec.message ?? "\(statement.kind) is not allowed on this resource"
                    )
                    return verdict
                }
                if verdict.approval == nil {
                    verdict.approval = self.rules.approval(for: facts)
                }
            }
            if self.masksResults, statement.effectiveKinds.contains(.copy(.to, .standardStream)),
                let block = self.copyOutBlock(statement)
            {
                verdict.block = block
                return verdict
            }
        }
        return verdict
    }

    /// `COPY ... TO STDOUT` output carries no column description. When the session masks results, binary COPY is
    /// refused (it cannot be scanned); with column rules the gateway describes the COPY's query to learn each field's
    /// source, which needs the default text or CSV layout: a COPY with `DELIMITER`, `QUOTE`, `ESCAPE`, `NULL`... is
    /// refused (fail closed). Other COPYs run, their fields masked like result columns.
    private func copyOutBlock(_ statement: SQLStatement) -> Block? {
        let firstMask = self.rules.masks.first?.rule ?? ""
        let output = statement.copyOut
        if output?.format == .binary || output == nil && statement.text.utf8.containsASCIICaseInsensitive("binary") {
            return Block(
                rule: firstMask,
                reason: "binary COPY TO STDOUT output cannot be masked on this resource; use text or CSV format"
            )
        }
        guard self.hasColumnRules else { return nil }
        guard let output, output.query != nil, !output.hasLayoutOptions else {
            let rule = self.rules.masks.first { !$0.spec.columns.isEmpty }?.rule ?? firstMask
            return Block(
                rule: rule,
                reason: "COPY TO STDOUT with DELIMITER, QUOTE, ESCAPE, NULL or ENCODING options cannot be masked "
                    + "by column on this resource; use the default text or CSV layout"
            )
        }
        return nil
    }

    func facts(_ statement: SQLStatement, standardConformingStrings: Bool) -> StatementFacts {
        var names: [String] = []
        for kind in statement.effectiveKinds {
            names.append(contentsOf: CommandNames.names(for: kind))
        }
        let functions = statement.functions.map { function in
            CalledFunction(
                schema: function.parts.count >= 2 ? function.parts[function.parts.count - 2] : nil,
                name: function.name
            )
        }
        let text =
            self.usesPatterns
            ? stripSQLComments(statement.text, standardConformingStrings: standardConformingStrings) : ""
        return StatementFacts(
            commandNames: names,
            functions: functions,
            isUnboundedWrite: statement.isUnboundedWrite,
            text: text
        )
    }

    // MARK: Errors for the client

    /// The `ErrorResponse` a blocked statement gets: ERROR, 42501 (insufficient_privilege), naming the rule.
    static func errorFields(for block: Block) -> PostgresErrorFields {
        var fields = PostgresErrorFields()
        fields[.localizedSeverity] = "ERROR"
        fields[.severity] = "ERROR"
        fields[.sqlState] = "42501"
        fields[.message] = "blocked by interlock rule \"\(block.rule)\": \(block.reason)"
        fields[.hint] = "The statement was not sent to the server. Ask the owner of the interlock policy."
        return fields
    }
}

/// The names (`SQL.StatementKind` spelled as policies write them, aliases included) each statement kind answers to,
/// for `StatementFacts.commandNames`.
///
/// Built from `StatementName.canonicalNames` (Policy's copy of the vocabulary) and `StatementPattern` (the SQL
/// module's matcher): a canonical name belongs to a kind when it matches the kind. That includes shorter prefixes
/// (`DROP` for `DROP TABLE`), which changes nothing: rules match command names by prefix.
enum CommandNames {
    private static let patterns: [(name: String, pattern: StatementPattern)] = StatementName.canonicalNames
        .compactMap { name in StatementPattern(name).map { (name, $0) } }

    private static let table: [StatementKind: [String]] = {
        let kinds = StatementKind.allKinds
        var table: [StatementKind: [String]] = [:]
        for kind in kinds {
            table[kind] = compute(kind)
        }
        return table
    }()

    static func names(for kind: StatementKind) -> [String] {
        table[kind] ?? compute(kind)
    }

    private static func compute(_ kind: StatementKind) -> [String] {
        let names = patterns.filter { $0.pattern.matches(kind) }.map(\.name)
        // A kind no canonical name covers still gets its own name, so a rule naming it can match.
        return names.isEmpty ? [kind.description] : names
    }
}

/// `text` with every comment replaced by one space, for text patterns (which must not be evaded by `DROP/**/TABLE`).
///
/// Quotes are followed as PostgreSQL's lexer does so that `--` or `/*` inside a string, a quoted identifier or a
/// dollar-quoted body is kept: `'...'` (with `''`; backslash escapes in `E'...'` and when
/// `standard_conforming_strings` is off), `"..."`, `$tag$...$tag$`, nested `/* */`.
func stripSQLComments(_ text: String, standardConformingStrings: Bool) -> String {
    let bytes = Array(text.utf8)
    guard bytes.contains(UInt8(ascii: "-")) || bytes.contains(UInt8(ascii: "/")) else {
        return text
    }
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var i = 0
    let n = bytes.count
    func isIdentifier(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b >= 0x80
            || b == UInt8(ascii: "$")
    }
    while i < n {
        let b = bytes[i]
        switch b {
        case UInt8(ascii: "-") where i + 1 < n && bytes[i + 1] == UInt8(ascii: "-"):
            while i < n && bytes[i] != 0x0A && bytes[i] != 0x0D { i += 1 }
            out.append(0x20)
        case UInt8(ascii: "/") where i + 1 < n && bytes[i + 1] == UInt8(ascii: "*"):
            var depth = 0
            while i < n {
                if bytes[i] == UInt8(ascii: "/") && i + 1 < n && bytes[i + 1] == UInt8(ascii: "*") {
                    depth += 1
                    i += 2
                } else if bytes[i] == UInt8(ascii: "*") && i + 1 < n && bytes[i + 1] == UInt8(ascii: "/") {
                    depth -= 1
                    i += 2
                    if depth == 0 { break }
                } else {
                    i += 1
                }
            }
            out.append(0x20)
        case UInt8(ascii: "'"):
            let escapes =
                !standardConformingStrings
                || (i > 0 && (bytes[i - 1] == UInt8(ascii: "E") || bytes[i - 1] == UInt8(ascii: "e"))
                    && (i < 2 || !isIdentifier(bytes[i - 2])))
            let start = i
            i += 1
            while i < n {
                if escapes && bytes[i] == UInt8(ascii: "\\") {
                    i += 2
                } else if bytes[i] == UInt8(ascii: "'") {
                    if i + 1 < n && bytes[i + 1] == UInt8(ascii: "'") {
                        i += 2
                    } else {
                        i += 1
                        break
                    }
                } else {
                    i += 1
                }
            }
            out.append(contentsOf: bytes[start..<min(i, n)])
        case UInt8(ascii: "\""):
            let start = i
            i += 1
            while i < n {
                if bytes[i] == UInt8(ascii: "\"") {
                    if i + 1 < n && bytes[i + 1] == UInt8(ascii: "\"") {
                        i += 2
                    } else {
                        i += 1
                        break
                    }
                } else {
                    i += 1
                }
            }
            out.append(contentsOf: bytes[start..<min(i, n)])
        case UInt8(ascii: "$") where i == 0 || !isIdentifier(bytes[i - 1]):
            // A dollar quote: $$ or $tag$ where tag does not start with a digit.
            var j = i + 1
            while j < n && isIdentifier(bytes[j]) && bytes[j] != UInt8(ascii: "$") { j += 1 }
            let tagIsValid =
                j < n && bytes[j] == UInt8(ascii: "$")
                && (j == i + 1 || !(bytes[i + 1] >= 0x30 && bytes[i + 1] <= 0x39))
            guard tagIsValid else {
                out.append(b)
                i += 1
                break
            }
            let tag = bytes[i...j]
            var k = j + 1
            var end = n
            while k + tag.count <= n {
                if bytes[k] == UInt8(ascii: "$") && bytes[k..<(k + tag.count)].elementsEqual(tag) {
                    end = k + tag.count
                    break
                }
                k += 1
            }
            out.append(contentsOf: bytes[i..<end])
            i = end
        default:
            out.append(b)
            i += 1
        }
    }
    return String(decoding: out, as: UTF8.self)
}

extension String.UTF8View {
    /// Whether `needle` (lower-case ASCII) occurs, ignoring ASCII case.
    func containsASCIICaseInsensitive(_ needle: StaticString) -> Bool {
        let pattern = needle.withUTF8Buffer { Array($0) }
        guard let first = pattern.first else { return true }
        let bytes = Array(self)
        guard bytes.count >= pattern.count else { return false }
        for start in 0...(bytes.count - pattern.count) where bytes[start] | 0x20 == first {
            var matched = true
            for offset in 1..<pattern.count where bytes[start + offset] | 0x20 != pattern[offset] {
                matched = false
                break
            }
            if matched { return true }
        }
        return false
    }
}
