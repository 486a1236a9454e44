/// What a statement does, by its leading key words: the unit a policy blocks (`DROP`, `COPY`, ...)
/// and the kind recorded in the evidence log.
///
/// `description` is the canonical upper-case name (`DROP TABLE`, `COPY FROM PROGRAM`, `CREATE
/// FUNCTION`); ``StatementPattern`` matches kinds against the names written in a policy.
public enum StatementKind: Hashable, Sendable, CustomStringConvertible {
    case select, insert, update, delete, merge
    /// `COPY ... TO` or `COPY ... FROM`, and where the data goes or comes from.
    case copy(CopyDirection, CopyEndpoint)
    /// `CREATE [OR REPLACE] ...`
    case create(ObjectType)
    case alter(ObjectType)
    case drop(ObjectType)
    case truncate, grant, revoke
    /// `BEGIN` or `START TRANSACTION`.
    case begin
    /// `COMMIT` or `END`.
    case commit
    /// `ROLLBACK`, `ABORT` or `ROLLBACK TO SAVEPOINT`.
    case rollback
    case savepoint, release
    case prepareTransaction, commitPrepared, rollbackPrepared
    case set, reset, show
    /// `PREPARE name AS ...`; `EXECUTE name` runs it (``execute``), `DEALLOCATE` drops it.
    case prepare, execute, deallocate
    /// Anonymous code block: its body is opaque, so it is a kind of its own.
    case `do`
    /// Procedure call: what the procedure does is opaque.
    case call
    /// `EXPLAIN`; with `ANALYZE` the explained statement really runs.
    case explain(analyze: Bool)
    case values, table
    case listen, notify, unlisten
    case vacuum, analyze, cluster, reindex
    case lock, discard, comment, securityLabel, refreshMaterializedView, importForeignSchema, load
    case fetch, move, close, declare, checkpoint
    /// The first word is not a command this classifier knows.
    case unknown
    /// The lexer could not finish the statement (unterminated quote, dollar quote or comment, bad
    /// `U&` escape) or its parentheses do not balance. PostgreSQL would reject it; policy may block it.
    case unparseable

    /// The canonical name, as a policy would write it.
    public var description: String { names[0].joined(separator: " ") }

    /// Every name this kind answers to, as upper-case words; a policy name matches a kind when its
    /// words are a prefix of one of these.
    var names: [[String]] {
        switch self {
        case .select: return [["SELECT"]]
        case .insert: return [["INSERT"]]
        case .update: return [["UPDATE"]]
        case .delete: return [["DELETE"]]
        case .merge: return [["MERGE"]]
        case .copy(let direction, let endpoint):
            let directionWord = direction == .to ? "TO" : "FROM"
            let endpointWord: String
            switch endpoint {
            case .standardStream: endpointWord = direction == .to ? "STDOUT" : "STDIN"
            case .file: endpointWord = "FILE"
            case .program: endpointWord = "PROGRAM"
            }
            return [["COPY", directionWord, endpointWord], ["COPY", endpointWord]]
        case .create(let object): return object.names.map { ["CREATE"] + $0 }
        case .alter(let object): return object.names.map { ["ALTER"] + $0 }
        case .drop(let object): return object.names.map { ["DROP"] + $0 }
        case .truncate: return [["TRUNCATE"]]
        case .grant: return [["GRANT"]]
        case .revoke: return [["REVOKE"]]
        case .begin: return [["BEGIN"], ["START", "TRANSACTION"]]
        case .commit: return [["COMMIT"], ["END"]]
        case .rollback: return [["ROLLBACK"], ["ABORT"]]
        case .savepoint: return [["SAVEPOINT"]]
        case .release: return [["RELEASE", "SAVEPOINT"]]
        case .prepareTransaction: return [["PREPARE", "TRANSACTION"]]
        case .commitPrepared: return [["COMMIT", "PREPARED"]]
        case .rollbackPrepared: return [["ROLLBACK", "PREPARED"]]
        case .set: return [["SET"]]
        case .reset: return [["RESET"]]
        case .show: return [["SHOW"]]
        case .prepare: return [["PREPARE"]]
        case .execute: return [["EXECUTE"]]
        case .deallocate: return [["DEALLOCATE"]]
        case .do: return [["DO"]]
        case .call: return [["CALL"]]
        case .explain(let analyze): return analyze ? [["EXPLAIN", "ANALYZE"]] : [["EXPLAIN"]]
        case .values: return [["VALUES"]]
        case .table: return [["TABLE"]]
        case .listen: return [["LISTEN"]]
        case .notify: return [["NOTIFY"]]
        case .unlisten: return [["UNLISTEN"]]
        case .vacuum: return [["VACUUM"]]
        case .analyze: return [["ANALYZE"]]
        case .cluster: return [["CLUSTER"]]
        case .reindex: return [["REINDEX"]]
        case .lock: return [["LOCK", "TABLE"]]
        case .discard: return [["DISCARD"]]
        case .comment: return [["COMMENT", "ON"]]
        case .securityLabel: return [["SECURITY", "LABEL"]]
        case .refreshMaterializedView: return [["REFRESH", "MATERIALIZED", "VIEW"]]
        case .importForeignSchema: return [["IMPORT", "FOREIGN", "SCHEMA"]]
        case .load: return [["LOAD"]]
        case .fetch: return [["FETCH"]]
        case .move: return [["MOVE"]]
        case .close: return [["CLOSE"]]
        case .declare: return [["DECLARE"]]
        case .checkpoint: return [["CHECKPOINT"]]
        case .unknown: return [["UNKNOWN"]]
        case .unparseable: return [["UNPARSEABLE"]]
        }
    }

    /// Every kind there is (each object type under CREATE, ALTER and DROP, each COPY variant), for
    /// tables built once per process (policy name lookups).
    public static let allKinds: [StatementKind] = {
        var kinds: [StatementKind] = [
            .select, .insert, .update, .delete, .merge, .truncate, .grant, .revoke, .begin, .commit, .rollback,
            .savepoint, .release, .prepareTransaction, .commitPrepared, .rollbackPrepared, .set, .reset, .show,
            .prepare, .execute, .deallocate, .do, .call, .explain(analyze: false), .explain(analyze: true), .values,
            .table, .listen, .notify, .unlisten, .vacuum, .analyze, .cluster, .reindex, .lock, .discard, .comment,
            .securityLabel, .refreshMaterializedView, .importForeignSchema, .load, .fetch, .move, .close, .declare,
            .checkpoint, .unknown, .unparseable,
        ]
        for object in ObjectType.allCases {
            kinds += [.create(object), .alter(object), .drop(object)]
        }
        for direction in [CopyDirection.to, .from] {
            for endpoint in [CopyEndpoint.standardStream, .file, .program] {
                kinds.append(.copy(direction, endpoint))
            }
        }
        return kinds
    }()

    /// Whether a policy's statement name (`DROP`, `CREATE FUNCTION`, `COPY FROM PROGRAM`) covers this
    /// kind. Parses the name on every call: for repeated checks build a ``StatementPattern`` once.
    public func matches(policyName: String) -> Bool {
        StatementPattern(policyName)?.matches(self) ?? false
    }
}

/// Which way a `COPY` moves data.
public enum CopyDirection: Hashable, Sendable {
    /// `COPY ... TO`: data leaves the database.
    case to
    /// `COPY ... FROM`: data enters the database.
    case from
}

/// Where `COPY` reads or writes.
public enum CopyEndpoint: Hashable, Sendable {
    /// `STDIN`/`STDOUT`: the client's connection (psql's `\copy`).
    case standardStream
    /// A file on the database server (`COPY t TO '/path'`).
    case file
    /// A shell command run by the database server (`TO PROGRAM`/`FROM PROGRAM`).
    case program
}

/// The object a `CREATE`, `ALTER` or `DROP` acts on; the raw value is its name in SQL.
public enum ObjectType: String, CaseIterable, Hashable, Sendable {
    case table = "TABLE"
    case index = "INDEX"
    case view = "VIEW"
    case materializedView = "MATERIALIZED VIEW"
    case function = "FUNCTION"
    case procedure = "PROCEDURE"
    /// `ALTER/DROP ROUTINE`: a function or a procedure.
    case routine = "ROUTINE"
    case aggregate = "AGGREGATE"
    case role = "ROLE"
    case user = "USER"
    case group = "GROUP"
    case `extension` = "EXTENSION"
    case schema = "SCHEMA"
    case database = "DATABASE"
    case sequence = "SEQUENCE"
    case trigger = "TRIGGER"
    case eventTrigger = "EVENT TRIGGER"
    case type = "TYPE"
    case domain = "DOMAIN"
    case policy = "POLICY"
    case rule = "RULE"
    case publication = "PUBLICATION"
    case subscription = "SUBSCRIPTION"
    case server = "SERVER"
    case foreignTable = "FOREIGN TABLE"
    case foreignDataWrapper = "FOREIGN DATA WRAPPER"
    case userMapping = "USER MAPPING"
    case tablespace = "TABLESPACE"
    case collation = "COLLATION"
    case conversion = "CONVERSION"
    case cast = "CAST"
    /// Operators, operator classes and operator families.
    case `operator` = "OPERATOR"
    case language = "LANGUAGE"
    case statistics = "STATISTICS"
    /// Text search configurations, dictionaries, parsers and templates.
    case textSearch = "TEXT SEARCH"
    case accessMethod = "ACCESS METHOD"
    case transform = "TRANSFORM"
    case largeObject = "LARGE OBJECT"
    /// `DROP OWNED BY`.
    case owned = "OWNED"
    /// `ALTER DEFAULT PRIVILEGES`.
    case defaultPrivileges = "DEFAULT PRIVILEGES"
    /// `ALTER SYSTEM`: writes postgresql.auto.conf.
    case system = "SYSTEM"
    /// A word this classifier does not know after CREATE/ALTER/DROP; matched only by the bare verb.
    case other = "OTHER"

    /// The names this object answers to after the verb. A user and a group are roles; a routine is
    /// a function or a procedure, so `DROP FUNCTION` also covers `DROP ROUTINE`.
    var names: [[String]] {
        let own = rawValue.split(separator: " ").map(String.init)
        switch self {
        case .user, .group: return [own, ["ROLE"]]
        case .routine: return [own, ["FUNCTION"], ["PROCEDURE"]]
        case .other: return [[]]
        default: return [own]
        }
    }
}

/// A statement name from a policy (`DROP`, `CREATE FUNCTION`, `copy from program`), parsed once and
/// checked against kinds without allocating.
///
/// A name matches every kind whose name starts with its words: `DROP` matches `DROP TABLE` and
/// `DROP FUNCTION`, `COPY` every COPY, `COPY PROGRAM` both directions of `COPY ... PROGRAM`.
/// `CREATE OR REPLACE FUNCTION` is read as `CREATE FUNCTION`, `ANALYSE` as `ANALYZE`, and a
/// `CREATE ROLE` rule also covers `CREATE USER` and `CREATE GROUP`.
public struct StatementPattern: Hashable, Sendable, CustomStringConvertible {
    /// The normalised name: upper case, single spaces.
    public let description: String
    private let kinds: Set<StatementKind>

    /// Nil when the name matches no kind at all (a typo such as `DRPO`), so a policy loader can
    /// reject it with the line it came from.
    public init?(_ policyName: String) {
        var words = policyName.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" })
            .map { String($0).uppercasedASCII }
        words = words.map { $0 == "ANALYSE" ? "ANALYZE" : $0 }
        if words.count >= 3 && words[0] == "CREATE" && words[1] == "OR" && words[2] == "REPLACE" {
            words.removeSubrange(1...2)
        }
        guard !words.isEmpty else { return nil }
        var kinds = Set<StatementKind>()
        for kind in StatementKind.allKinds where kind.names.contains(where: { $0.starts(with: words) }) {
            kinds.insert(kind)
        }
        guard !kinds.isEmpty else { return nil }
        self.description = words.joined(separator: " ")
        self.kinds = kinds
    }

    /// Whether `kind` is one of the kinds this name covers.
    public func matches(_ kind: StatementKind) -> Bool {
        kinds.contains(kind)
    }
}

extension String {
    var uppercasedASCII: String {
        String(decoding: utf8.map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }, as: UTF8.self)
    }
}
