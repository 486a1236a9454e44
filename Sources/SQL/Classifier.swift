/// What the classifier found in one statement.
struct Classification {
    var kind: StatementKind
    var innerKind: StatementKind?
    var effectiveKinds: [StatementKind]
    var targets: [QualifiedName]
    var functions: [QualifiedName]
    var hasWhere: Bool
    var isUnboundedWrite: Bool
    var copyOut: CopyOutput? = nil
}

/// Classifies the tokens of one statement (no top-level `;`) in two linear passes: the head (the
/// command and the objects named right after it), then a scan of every token for function calls,
/// `FROM`/`JOIN` relations, data-modifying sub-statements and `WHERE` clauses at each nesting level.
struct Classifier {
    private let tokens: UnsafeBufferPointer<Token>
    private let bytes: UnsafeBufferPointer<UInt8>
    /// For each `(` or `[`, the index of its closing token (`tokens.count` when unclosed).
    private var closing: [Int]
    private var targets: [QualifiedName] = []
    private var targetSet: Set<QualifiedName> = []
    private var functions: [QualifiedName] = []
    private var functionSet: Set<QualifiedName> = []
    /// Token indices of names that are declared or referenced, not called, even before a `(`.
    private var declared: Set<Int> = []
    private var subKinds: [StatementKind] = []
    private var hasWhere = false
    private var unbounded = false
    private var copyOut: CopyOutput?

    /// Where the statement that decides the kind begins: after leading `(`, a `WITH` list, or the
    /// `EXPLAIN`/`PREPARE` header.
    private struct Head {
        var kind: StatementKind
        var index: Int
        var depth: Int
        var inner: StatementKind? = nil
    }

    private enum FromState {
        case none
        /// After `FROM`, `JOIN` or a from-list comma: the next name is a relation.
        case expectItem
        /// Inside a from-list, after an item: a comma at this level starts another.
        case inList
    }

    private struct Frame {
        var isCall = false
        var isDefinition = false
        var from = FromState.none
        var dml: StatementKind? = nil
        var sawWhere = false
    }

    static func classify(_ tokens: UnsafeBufferPointer<Token>, in bytes: UnsafeBufferPointer<UInt8>) -> Classification {
        var classifier = Classifier(tokens: tokens, bytes: bytes)
        return classifier.run()
    }

    private init(tokens: UnsafeBufferPointer<Token>, bytes: UnsafeBufferPointer<UInt8>) {
        self.tokens = tokens
        self.bytes = bytes
        var closing = [Int](repeating: tokens.count, count: tokens.count)
        var open: [Int] = []
        for index in tokens.indices {
            switch tokens[index].kind {
            case .leftParen, .leftBracket:
                open.append(index)
            case .rightParen, .rightBracket:
                if let opener = open.popLast() { closing[opener] = index }
            default:
                break
            }
        }
        self.closing = closing
    }

    private mutating func run() -> Classification {
        let head = head(at: 0)
        scan(head)
        var kinds = [head.kind]
        switch head.kind {
        case .explain(analyze: true), .prepare:
            if let inner = head.inner { kinds.append(inner) }
        default:
            break
        }
        if head.kind == .truncate { unbounded = true }
        for kind in subKinds where !kinds.contains(kind) { kinds.append(kind) }
        return Classification(
            kind: head.kind, innerKind: head.inner, effectiveKinds: kinds, targets: targets, functions: functions,
            hasWhere: hasWhere, isUnboundedWrite: unbounded, copyOut: copyOut)
    }

    // MARK: Token access

    @inline(__always)
    private func keyword(_ index: Int) -> Keyword? {
        guard index >= 0 && index < tokens.count && tokens[index].kind == .word else { return nil }
        return tokens[index].keyword
    }

    @inline(__always)
    private func isKeyword(_ index: Int, _ keyword: Keyword) -> Bool {
        index >= 0 && index < tokens.count && tokens[index].kind == .word && tokens[index].isKeyword(keyword)
    }

    @inline(__always)
    private func isKind(_ index: Int, _ kind: Token.Kind) -> Bool {
        index >= 0 && index < tokens.count && tokens[index].kind == kind
    }

    private func isStar(_ index: Int) -> Bool {
        isKind(index, .op) && tokens[index].end - tokens[index].start == 1
            && bytes[tokens[index].start] == UInt8(ascii: "*")
    }

    /// The index after a parenthesised or bracketed group at `index`, or `index` if there is none.
    private func skipGroup(_ index: Int) -> Int {
        guard isKind(index, .leftParen) || isKind(index, .leftBracket) else { return index }
        return min(closing[index] + 1, tokens.count)
    }

    private func skipIfExists(_ index: Int) -> Int {
        guard isKeyword(index, .if) else { return index }
        return isKeyword(index + 1, .not) ? index + 3 : index + 2
    }

    /// The index after the dotted name starting at `index` (`index` itself if none starts there).
    private func nameEnd(_ index: Int) -> Int {
        guard index < tokens.count && tokens[index].isName else { return index }
        var position = index + 1
        while position + 1 < tokens.count && tokens[position].kind == .dot && tokens[position + 1].isName {
            position += 2
        }
        return position
    }

    private mutating func addTarget(_ name: QualifiedName) {
        if targetSet.insert(name).inserted { targets.append(name) }
    }

    /// Records the name at `index` as a target; returns the index after it (`index` if no name).
    @discardableResult
    private mutating func addTarget(at index: Int) -> Int {
        guard let (name, end) = QualifiedName.parse(tokens, at: index, in: bytes) else { return index }
        declared.insert(index)
        addTarget(name)
        return end
    }

    /// `[ONLY] name [*] [(...)] [, ...]`; returns the index after the list.
    @discardableResult
    private mutating func addTargetList(at start: Int, skippingArguments: Bool = true) -> Int {
        var index = start
        while true {
            if isKeyword(index, .only) { index += 1 }
            let end = addTarget(at: index)
            guard end != index else { return index }
            index = end
            if isStar(index) { index += 1 }
            if skippingArguments { index = skipGroup(index) }
            guard isKind(index, .comma) else { return index }
            index += 1
        }
    }

    // MARK: Head

    private mutating func head(at start: Int) -> Head {
        var index = start
        var depth = 0
        while isKind(index, .leftParen) {
            index += 1
            depth += 1
        }
        var head = Head(kind: .unknown, index: index, depth: depth)
        guard let word = keyword(index) else { return head }
        let next = index + 1
        switch word {
        case .select: head.kind = .select
        case .with:
            var inner = self.head(at: skipWith(at: index))
            inner.depth += depth
            return inner
        case .values: head.kind = .values
        case .table:
            head.kind = .table
            addTarget(at: isKeyword(next, .only) ? next + 1 : next)
        case .insert:
            head.kind = .insert
            if isKeyword(next, .into) { addTarget(at: next + 1) }
        case .update:
            head.kind = .update
            addTarget(at: isKeyword(next, .only) ? next + 1 : next)
        case .delete:
            head.kind = .delete
            var position = isKeyword(next, .from) ? next + 1 : next
            if isKeyword(position, .only) { position += 1 }
            addTarget(at: position)
        case .merge:
            head.kind = .merge
            var position = isKeyword(next, .into) ? next + 1 : next
            if isKeyword(position, .only) { position += 1 }
            addTarget(at: position)
        case .copy: head.kind = copy(at: next)
        case .create: head.kind = create(at: next)
        case .alter: head.kind = alter(at: next)
        case .drop: head.kind = drop(at: next)
        case .truncate:
            head.kind = .truncate
            addTargetList(at: isKeyword(next, .table) ? next + 1 : next, skippingArguments: false)
        case .grant, .revoke:
            head.kind = word == .grant ? .grant : .revoke
            privilegeTargets(from: next)
        case .begin, .start: head.kind = .begin
        case .commit, .end: head.kind = isKeyword(next, .prepared) ? .commitPrepared : .commit
        case .rollback, .abort: head.kind = isKeyword(next, .prepared) ? .rollbackPrepared : .rollback
        case .savepoint: head.kind = .savepoint
        case .release: head.kind = .release
        case .set, .reset, .show:
            head.kind = word == .set ? .set : word == .reset ? .reset : .show
            settingTarget(at: next)
        case .prepare:
            if isKeyword(next, .transaction) && isKind(next + 1, .string) {
                head.kind = .prepareTransaction
                break
            }
            var position = skipGroup(addTarget(at: next))
            guard isKeyword(position, .as) else {
                head.kind = .prepare
                break
            }
            position += 1
            let inner = self.head(at: position)
            return Head(kind: .prepare, index: inner.index, depth: inner.depth, inner: inner.kind)
        case .execute:
            head.kind = .execute
            addTarget(at: next)
        case .deallocate:
            head.kind = .deallocate
            let position = isKeyword(next, .prepare) ? next + 1 : next
            if !isKeyword(position, .all) { addTarget(at: position) }
        case .do: head.kind = .do
        case .call: head.kind = .call
        case .explain: return explain(at: next)
        case .listen, .notify, .unlisten:
            head.kind = word == .listen ? .listen : word == .notify ? .notify : .unlisten
            addTarget(at: next)
        case .vacuum, .analyze, .analyse:
            head.kind = word == .vacuum ? .vacuum : .analyze
            var position = skipGroup(next)
            while let option = keyword(position), [.full, .freeze, .verbose, .analyze, .analyse].contains(option) {
                position += 1
            }
            addTargetList(at: position)
        case .cluster:
            head.kind = .cluster
            var position = skipGroup(next)
            if isKeyword(position, .verbose) { position += 1 }
            addTarget(at: position)
        case .reindex:
            head.kind = .reindex
            var position = skipGroup(next) + 1
            if isKeyword(position, .concurrently) { position += 1 }
            addTarget(at: position)
        case .lock:
            head.kind = .lock
            addTargetList(at: isKeyword(next, .table) ? next + 1 : next, skippingArguments: false)
        case .discard: head.kind = .discard
        case .comment:
            head.kind = .comment
            objectTarget(at: isKeyword(next, .on) ? next + 1 : next)
        case .security:
            guard isKeyword(next, .label) else { break }
            head.kind = .securityLabel
            var position = next + 1
            if isKeyword(position, .for) { position += 2 }
            if isKeyword(position, .on) { objectTarget(at: position + 1) }
        case .refresh:
            head.kind = .refreshMaterializedView
            var position = next
            if isKeyword(position, .materialized) { position += 2 }
            if isKeyword(position, .concurrently) { position += 1 }
            addTarget(at: position)
        case .import:
            head.kind = .importForeignSchema
            if let into = firstTopLevel(.into, from: next) { addTarget(at: into + 1) }
        case .load: head.kind = .load
        case .fetch: head.kind = .fetch
        case .move: head.kind = .move
        case .close:
            head.kind = .close
            if !isKeyword(next, .all) { addTarget(at: next) }
        case .declare:
            head.kind = .declare
            addTarget(at: next)
        case .checkpoint: head.kind = .checkpoint
        default: break
        }
        return head
    }

    /// The index of the first `keyword` at this nesting level from `start`, skipping groups.
    private static let statementStarts: KeywordSet = [.with, .select, .insert, .update, .delete, .merge, .values]

    private func firstTopLevel(_ keyword: Keyword, from start: Int, stoppingAt stops: KeywordSet = []) -> Int? {
        var index = start
        while index < tokens.count {
            if isKeyword(index, keyword) { return index }
            if stops.contains(self.keyword(index)) || isKind(index, .semicolon) { return nil }
            index = isKind(index, .leftParen) || isKind(index, .leftBracket) ? skipGroup(index) : index + 1
        }
        return nil
    }

    /// Skips `WITH [RECURSIVE] name [(columns)] AS [[NOT] MATERIALIZED] (...) [SEARCH ...] [CYCLE ...], ...`,
    /// marking the CTE names as declared; returns the index of the statement after the list.
    private mutating func skipWith(at withIndex: Int) -> Int {
        var index = withIndex + 1
        if isKeyword(index, .recursive) { index += 1 }
        while index < tokens.count {
            guard tokens[index].isName else { return index }
            let nameIndex = index
            index = skipGroup(index + 1)
            guard isKeyword(index, .as) else { return nameIndex }
            declared.insert(nameIndex)
            index += 1
            if isKeyword(index, .not) { index += 1 }
            if isKeyword(index, .materialized) { index += 1 }
            guard isKind(index, .leftParen) else { return index }
            index = skipGroup(index)
            while isKeyword(index, .search) || isKeyword(index, .cycle) {
                let isCycle = isKeyword(index, .cycle)
                guard let set = firstTopLevel(.set, from: index, stoppingAt: Self.statementStarts) else { return index }
                index = set + 2
                if isCycle {
                    if isKeyword(index, .to) { index += 4 }
                    if isKeyword(index, .using) { index += 2 }
                }
            }
            guard isKind(index, .comma) else { return index }
            index += 1
        }
        return index
    }

    private mutating func explain(at start: Int) -> Head {
        var index = start
        var analyze = false
        let statementWords: KeywordSet = [.select, .values, .with, .table, .insert, .update, .delete, .merge]
        if isKind(index, .leftParen) && isKind(index + 1, .word) && !statementWords.contains(keyword(index + 1)) {
            // EXPLAIN (option [value], ...): ANALYZE counts unless its value is plainly false.
            let end = closing[index]
            var position = index + 1
            while position < end {
                if isKeyword(position, .analyze) || isKeyword(position, .analyse) {
                    analyze = analyze || !isFalse(position + 1)
                }
                position = isKind(position, .leftParen) ? skipGroup(position) : position + 1
            }
            index = min(end + 1, tokens.count)
        } else {
            while let word = keyword(index), [.analyze, .analyse, .verbose].contains(word) {
                if word != .verbose { analyze = true }
                index += 1
            }
        }
        let inner = head(at: index)
        return Head(kind: .explain(analyze: analyze), index: inner.index, depth: inner.depth, inner: inner.kind)
    }

    /// Whether the option value at `index` is false (`FALSE`, `OFF`, `NO`, `0`, `'off'`, ...).
    private func isFalse(_ index: Int) -> Bool {
        guard index < tokens.count else { return false }
        let token = tokens[index]
        switch token.kind {
        case .word:
            return token.isKeyword(.false) || token.isKeyword(.off) || token.isKeyword(.no)
        case .number:
            return token.end - token.start == 1 && bytes[token.start] == UInt8(ascii: "0")
        case .string:
            guard bytes[token.start] == UInt8(ascii: "'") else { return false }
            let value = String(decoding: bytes[(token.start + 1)..<(token.end - 1)], as: UTF8.self).lowercasedASCII
            return ["false", "off", "no", "0", "f", "n"].contains(value)
        default:
            return false
        }
    }

    private mutating func copy(at start: Int) -> StatementKind {
        var index = start
        var format = CopyOutput.Format.text
        if isKeyword(index, .binary) {
            index += 1
            format = .binary
        }
        // A query with the COPY's output columns, so a gateway can describe them.
        var query: String?
        if isKind(index, .leftParen) {
            let close = closing[index]
            if close < tokens.count && close > index + 1 { query = text(index + 1, close - 1) }
            index = skipGroup(index)
        } else {
            let nameStart = index
            let nameEnd = addTarget(at: index)
            if nameEnd > nameStart {
                var columns = "*"
                if isKind(nameEnd, .leftParen), closing[nameEnd] < tokens.count, closing[nameEnd] > nameEnd + 1 {
                    columns = text(nameEnd + 1, closing[nameEnd] - 1)
                }
                query = "SELECT \(columns) FROM \(text(nameStart, nameEnd - 1))"
            }
            index = skipGroup(nameEnd)
        }
        let direction: CopyDirection
        if isKeyword(index, .to) {
            direction = .to
        } else if isKeyword(index, .from) {
            direction = .from
        } else {
            return .unparseable
        }
        index += 1
        if isKeyword(index, .program) { return .copy(direction, .program) }
        if isKeyword(index, .stdin) || isKeyword(index, .stdout) {
            if direction == .to {
                copyOut = copyOptions(after: index + 1, format: format, query: query)
            }
            return .copy(direction, .standardStream)
        }
        return .copy(direction, .file)
    }

    /// The output layout of `COPY ... TO STDOUT` from its options, old style (`CSV HEADER`, `DELIMITER ';'`) or new
    /// (`WITH (FORMAT csv, HEADER true)`).
    private func copyOptions(after start: Int, format initial: CopyOutput.Format, query: String?) -> CopyOutput {
        var output = CopyOutput(query: query, format: initial, header: false, hasLayoutOptions: false)
        var index = start
        while index < tokens.count {
            let word = lowercasedText(index)
            switch word {
            case "csv", "'csv'": output.format = .csv
            case "binary", "'binary'": output.format = .binary
            case "text", "'text'": output.format = .text
            case "header":
                let value = lowercasedText(index + 1)
                output.header = !["false", "off", "0", "'false'", "'off'", "'0'"].contains(value)
            case "delimiter", "quote", "escape", "null", "force_quote", "encoding", "default":
                output.hasLayoutOptions = true
            default:
                break
            }
            index += 1
        }
        return output
    }

    /// The source text of tokens `first...last`.
    private func text(_ first: Int, _ last: Int) -> String {
        String(decoding: bytes[tokens[first].start..<tokens[last].end], as: UTF8.self)
    }

    private func lowercasedText(_ index: Int) -> String {
        guard index < tokens.count, tokens[index].kind == .word || tokens[index].kind == .string else { return "" }
        return text(index, index).lowercased()
    }

    private func objectType(at index: Int) -> (ObjectType, Int) {
        guard let word = keyword(index) else { return (.other, index) }
        let next = index + 1
        switch word {
        case .table: return (.table, next)
        case .index: return (.index, next)
        case .view: return (.view, next)
        case .materialized: return isKeyword(next, .view) ? (.materializedView, next + 1) : (.other, index)
        case .function: return (.function, next)
        case .procedure: return (.procedure, next)
        case .routine: return (.routine, next)
        case .aggregate: return (.aggregate, next)
        case .role: return (.role, next)
        case .user: return isKeyword(next, .mapping) ? (.userMapping, next + 1) : (.user, next)
        case .group: return (.group, next)
        case .extension: return (.extension, next)
        case .schema: return (.schema, next)
        case .database: return (.database, next)
        case .sequence: return (.sequence, next)
        case .trigger: return (.trigger, next)
        case .event: return isKeyword(next, .trigger) ? (.eventTrigger, next + 1) : (.other, index)
        case .type: return (.type, next)
        case .domain: return (.domain, next)
        case .policy: return (.policy, next)
        case .rule: return (.rule, next)
        case .publication: return (.publication, next)
        case .subscription: return (.subscription, next)
        case .server: return (.server, next)
        case .foreign:
            if isKeyword(next, .table) { return (.foreignTable, next + 1) }
            if isKeyword(next, .data) { return (.foreignDataWrapper, next + 2) }
            if isKeyword(next, .server) { return (.server, next + 1) }
            return (.other, index)
        case .tablespace: return (.tablespace, next)
        case .collation: return (.collation, next)
        case .conversion: return (.conversion, next)
        case .cast: return (.cast, next)
        case .operator: return (.operator, isKeyword(next, .class) || isKeyword(next, .family) ? next + 1 : next)
        case .language: return (.language, next)
        case .statistics: return (.statistics, next)
        case .text: return isKeyword(next, .search) ? (.textSearch, next + 2) : (.other, index)
        case .access: return (.accessMethod, next + 1)
        case .transform: return (.transform, next)
        case .large: return (.largeObject, next + 1)
        case .owned: return (.owned, next)
        case .default: return isKeyword(next, .privileges) ? (.defaultPrivileges, next + 1) : (.other, index)
        case .system: return (.system, next)
        default: return (.other, index)
        }
    }

    private static let createModifiers: KeywordSet = [
        .temp, .temporary, .local, .global, .unlogged, .unique, .recursive, .trusted, .procedural, .default,
        .constraint,
    ]

    private mutating func create(at start: Int) -> StatementKind {
        var index = start
        if isKeyword(index, .or) && isKeyword(index + 1, .replace) { index += 2 }
        while Self.createModifiers.contains(keyword(index)) { index += 1 }
        let (object, next) = objectType(at: index)
        index = next
        switch object {
        case .index:
            if isKeyword(index, .concurrently) { index += 1 }
            index = skipIfExists(index)
            if !isKeyword(index, .on) { index = addTarget(at: index) }
            if isKeyword(index, .on) { addTarget(at: isKeyword(index + 1, .only) ? index + 2 : index + 1) }
        case .trigger, .policy, .rule:
            index = addTarget(at: skipIfExists(index))
            tableAfterOn(from: index, rule: object == .rule)
        case .schema:
            index = skipIfExists(index)
            addTarget(at: isKeyword(index, .authorization) ? index + 1 : index)
        case .cast, .transform, .userMapping, .operator, .other:
            break
        default:
            addTarget(at: skipIfExists(index))
        }
        return .create(object)
    }

    /// `... ON [ONLY] table` (or `ON event TO table` for a rule) at this level.
    private mutating func tableAfterOn(from start: Int, rule: Bool) {
        guard var index = firstTopLevel(.on, from: start) else { return }
        index += 1
        if rule {
            guard let to = firstTopLevel(.to, from: index) else { return }
            index = to + 1
        }
        addTarget(at: isKeyword(index, .only) ? index + 1 : index)
    }

    private mutating func alter(at start: Int) -> StatementKind {
        let (object, next) = objectType(at: start)
        var index = skipIfExists(next)
        switch object {
        case .system, .defaultPrivileges, .userMapping, .cast, .transform, .operator, .other:
            break
        default:
            if isKeyword(index, .all) { break }  // ALTER TABLE ALL IN TABLESPACE ...
            if isKeyword(index, .only) { index += 1 }
            index = addTarget(at: index)
            if object == .trigger || object == .policy || object == .rule { tableAfterOn(from: index, rule: false) }
        }
        return .alter(object)
    }

    private mutating func drop(at start: Int) -> StatementKind {
        let (object, next) = objectType(at: start)
        var index = next
        if isKeyword(index, .concurrently) { index += 1 }
        index = skipIfExists(index)
        switch object {
        case .trigger, .policy, .rule:
            index = addTarget(at: index)
            if isKeyword(index, .on) { addTarget(at: index + 1) }
        case .owned:
            addTargetList(at: isKeyword(index, .by) ? index + 1 : index)
        case .cast, .transform, .userMapping, .operator, .other:
            break
        default:
            addTargetList(at: index)
        }
        return .drop(object)
    }

    /// `GRANT/REVOKE ... ON [object type] names TO/FROM ...`, or the roles of a role grant.
    private mutating func privilegeTargets(from start: Int) {
        guard let on = firstTopLevel(.on, from: start, stoppingAt: [.to, .from]) else {
            var index = start
            if let word = keyword(index), [.admin, .inherit, .set].contains(word), isKeyword(index + 1, .option) {
                index += 3
            }
            addTargetList(at: index, skippingArguments: false)
            return
        }
        var index = on + 1
        if isKeyword(index, .all) {
            guard let schema = firstTopLevel(.schema, from: index, stoppingAt: [.to, .from]) else { return }
            index = schema + 1
        } else {
            let (object, next) = objectType(at: index)
            if object != .other { index = next }
        }
        addTargetList(at: index)
    }

    /// The object of `COMMENT ON` / `SECURITY LABEL ON`: `TABLE x`, `COLUMN t.c`, `FUNCTION f(int)`...
    private mutating func objectTarget(at start: Int) {
        let (object, next) = objectType(at: start)
        var index = next
        if object == .other && isKeyword(index, .column) { index += 1 }
        addTarget(at: index)
    }

    /// The parameter a `SET`, `RESET` or `SHOW` names (`search_path`, `role`, `session_authorization`).
    private mutating func settingTarget(at start: Int) {
        var index = start
        if isKeyword(index, .session) && isKeyword(index + 1, .authorization) {
            addTarget(QualifiedName(["session_authorization"]))
            return
        }
        if isKeyword(index, .session) || isKeyword(index, .local) { index += 1 }
        if isKeyword(index, .time) && isKeyword(index + 1, .zone) {
            addTarget(QualifiedName(["timezone"]))
        } else if let (name, _) = QualifiedName.parse(tokens, at: index, in: bytes) {
            addTarget(name)
        }
    }

    // MARK: Scan

    /// Key words that are never a function name before `(`: `IN (`, `VALUES (`, `numeric(10,2)`...
    private static let notCalls: KeywordSet = [
        .in, .exists, .values, .any, .all, .some, .array, .row, .as, .on, .using, .over, .filter, .within, .group,
        .and, .or, .not, .select, .from, .where, .join, .lateral, .with, .into, .table, .key, .unique, .check,
        .default, .primary, .include, .by, .exclude, .window, .set, .like, .ilike, .similar, .between, .case, .when,
        .then, .else, .end, .is, .null, .limit, .offset, .having, .order, .union, .intersect, .except, .returning,
        .of, .only, .distinct, .numeric, .decimal, .dec, .float, .char, .character, .varchar, .bit, .varying,
        .interval, .timestamp, .time, .nchar, .national, .precision, .double, .options, .cube, .rollup, .sets,
        .for, .do, .conflict, .inherits, .enum, .insert, .update, .delete, .references, .variadic, .both, .leading,
        .trailing, .explain, .analyze, .analyse, .vacuum, .prepare, .execute, .call, .returns, .setof, .rows,
        .tablesample, .merge, .copy, .to, .return, .cast,
    ]

    /// Key words after which `name (` declares or references a name rather than calling it.
    private static let declaringPrefixes: KeywordSet = [
        .as, .table, .into, .view, .type, .references, .of, .index, .function, .procedure, .routine, .aggregate,
        .tablesample, .returns, .setof, .sequence, .trigger,
    ]

    /// Key words that end a from-list at their level.
    private static let fromListEnds: KeywordSet = [
        .where, .group, .having, .window, .order, .limit, .offset, .fetch, .for, .union, .intersect, .except,
        .returning, .set, .do, .conflict, .when, .select, .values, .table, .into, .stdin, .stdout, .program,
        .current, .with,
    ]

    private mutating func scan(_ head: Head) {
        let executesBody = head.kind != .explain(analyze: false)
        let fromIsTableSource: Bool
        switch head.kind {
        case .grant, .revoke, .fetch, .move, .importForeignSchema, .alter(.defaultPrivileges): fromIsTableSource = false
        default: fromIsTableSource = true
        }
        var isCopy = false
        if case .copy = head.kind { isCopy = true }

        var frames: [Frame] = [Frame()]
        var callParen = -1
        var definitionParen = -1
        var index = 0
        while index < tokens.count {
            let token = tokens[index]
            let top = frames.count - 1
            switch token.kind {
            case .leftParen, .leftBracket:
                var frame = Frame()
                frame.isCall = index == callParen
                frame.isDefinition =
                    index == definitionParen || isKeyword(index - 1, .as) || isKeyword(index - 1, .table)
                if frames[top].from == .expectItem {
                    frames[top].from = .inList
                    frame.from = .expectItem
                }
                frames.append(frame)
                index += 1
                continue
            case .rightParen, .rightBracket:
                if frames.count > 1 { close(frames.removeLast(), executesBody: executesBody) }
                index += 1
                continue
            case .comma:
                if frames[top].from == .inList { frames[top].from = .expectItem }
                index += 1
                continue
            case .semicolon:
                close(frames[top], executesBody: executesBody)
                frames[top].dml = nil
                frames[top].from = .none
                index += 1
                continue
            case .word, .quotedIdentifier, .unicodeIdentifier:
                break
            default:
                index += 1
                continue
            }

            if let word = token.kind == .word ? token.keyword : nil {
                var handled = true
                switch word {
                case .insert, .update, .delete, .merge:
                    if let kind = dmlStatement(at: index) {
                        close(frames[top], executesBody: executesBody)
                        frames[top].dml = kind
                        frames[top].sawWhere = false
                        if executesBody && index != head.index { subKinds.append(kind) }
                    } else if executesBody && (isKeyword(index - 1, .then) || isKeyword(index - 1, .do)) {
                        // MERGE ... THEN UPDATE/DELETE/INSERT, INSERT ... ON CONFLICT DO UPDATE
                        subKinds.append(word == .update ? .update : word == .delete ? .delete : .insert)
                    }
                    frames[top].from = .none
                case .where:
                    frames[top].sawWhere = true
                    frames[top].from = .none
                    if top == head.depth && index > head.index { hasWhere = true }
                case .from:
                    let distinctFrom =
                        isKeyword(index - 1, .distinct) && (isKeyword(index - 2, .is) || isKeyword(index - 2, .not))
                    let allowed =
                        fromIsTableSource && !frames[top].isCall && !(isCopy && top == 0) && !distinctFrom
                    frames[top].from = allowed ? .expectItem : .none
                case .join:
                    frames[top].from = .expectItem
                case .using:
                    if frames[top].dml == .delete || frames[top].dml == .merge, !isKind(index + 1, .leftParen) {
                        frames[top].from = .expectItem
                    }
                case .with:
                    _ = skipWith(at: index)
                    frames[top].from = .none
                case .into:
                    frames[top].from = .none
                    if head.kind == .select && top == head.depth && index > head.index && !isKeyword(index - 1, .insert)
                        && !isKeyword(index - 1, .merge)
                    {
                        // SELECT ... INTO new_table creates a table.
                        var position = index + 1
                        while let modifier = keyword(position),
                            [.temp, .temporary, .unlogged, .table].contains(modifier)
                        {
                            position += 1
                        }
                        addTarget(at: position)
                        if executesBody { subKinds.append(.create(.table)) }
                    }
                case .lateral, .only:
                    break
                case .rows where frames[top].from == .expectItem && isKeyword(index + 1, .from):
                    index += 1  // ROWS FROM (f(), g())
                default:
                    handled = false
                }
                if handled {
                    index += 1
                    continue
                }
                if Self.fromListEnds.contains(word) {
                    frames[top].from = .none
                    if !isKind(index + 1, .leftParen) {
                        index += 1
                        continue
                    }
                }
            }

            // A name: a relation in a from-list, a function call, or neither.
            let end = nameEnd(index)
            if isKind(end, .leftParen) {
                if isCall(nameAt: index, parenAt: end, frame: frames[top], definitionParen: &definitionParen) {
                    if let (name, _) = QualifiedName.parse(tokens, at: index, in: bytes),
                        functionSet.insert(name).inserted
                    {
                        functions.append(name)
                    }
                    callParen = end
                }
                if frames[top].from == .expectItem { frames[top].from = .inList }
            } else if frames[top].from == .expectItem {
                if let (name, _) = QualifiedName.parse(tokens, at: index, in: bytes) { addTarget(name) }
                frames[top].from = .inList
            }
            index = end
        }
        while let frame = frames.popLast() { close(frame, executesBody: executesBody) }
    }

    private mutating func close(_ frame: Frame, executesBody: Bool) {
        if executesBody, frame.dml == .update || frame.dml == .delete, !frame.sawWhere { unbounded = true }
    }

    /// Whether the name at `nameIndex` followed by `(` at `paren` calls a function.
    private func isCall(nameAt nameIndex: Int, parenAt paren: Int, frame: Frame, definitionParen: inout Int) -> Bool {
        let single = paren == nameIndex + 1
        if single && Self.notCalls.contains(keyword(nameIndex)) { return false }
        if declared.contains(nameIndex) {
            definitionParen = paren
            return false
        }
        let previous = nameIndex - 1
        guard previous >= 0 else { return true }
        let before = tokens[previous]
        switch before.kind {
        case .typecast:
            return false  // x::numeric(10, 2)
        case .rightParen:
            definitionParen = paren  // FROM f() AS t(a int): an alias with a column list
            return false
        case .word:
            if let word = before.keyword, Self.declaringPrefixes.contains(word) {
                // EXECUTE FUNCTION f() in CREATE TRIGGER does call f.
                if (word == .function || word == .procedure) && isKeyword(previous - 1, .execute) { return true }
                definitionParen = paren
                return false
            }
        default:
            break
        }
        // In a definition list `(name type(...), ...)`, or `ADD [COLUMN] name type(...)`, a name after
        // a name is a type with a modifier.
        if before.isName && !Self.notCalls.contains(keyword(previous)) {
            if frame.isDefinition && (isKind(previous - 1, .leftParen) || isKind(previous - 1, .comma)) { return false }
            if isKeyword(previous - 1, .add) || isKeyword(previous - 1, .column) { return false }
        }
        return true
    }

    /// The data-modifying statement starting at `index`: `INSERT INTO`, `DELETE FROM`, `MERGE INTO`,
    /// or `UPDATE [ONLY] name [*] [[AS] alias] SET`.
    private func dmlStatement(at index: Int) -> StatementKind? {
        switch keyword(index) {
        case .insert: return isKeyword(index + 1, .into) ? .insert : nil
        case .delete: return isKeyword(index + 1, .from) ? .delete : nil
        case .merge: return isKeyword(index + 1, .into) ? .merge : nil
        case .update:
            var position = index + 1
            if isKeyword(position, .only) { position += 1 }
            if isKeyword(position, .set) { return nil }
            let end = nameEnd(position)
            guard end > position else { return nil }
            position = end
            if isStar(position) { position += 1 }
            if isKeyword(position, .set) { return .update }
            if isKeyword(position, .as) { position += 1 }
            guard position < tokens.count && tokens[position].isName && !isKeyword(position, .set) else { return nil }
            return isKeyword(position + 1, .set) ? .update : nil
        default:
            return nil
        }
    }
}

extension String {
    var lowercasedASCII: String {
        String(decoding: utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
    }
}
