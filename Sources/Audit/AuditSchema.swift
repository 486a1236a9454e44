import Foundation
import GRDB

/// The SQLite layout of the evidence store.
///
/// `entries` holds one row per fact. `idx` is the entry's position in the log (and its Merkle leaf
/// index minus one); `time_us`, `kind`, `user`, `resource` and `session` are copies of members of
/// `body` kept in columns only so queries can use indexes. `body` is the canonical JSON entry and
/// the only thing that is hashed. Triggers make the table append-only and gap-free, whoever writes.
///
/// Statement entries (`statement`, `statement.end`) are most of a busy log, written at every
/// statement a client runs, and each index is one more page written per commit. So the secondary
/// indexes leave them out (``indexedRows``) and cover the rare kinds only; a query for statement
/// entries scans the primary key from the newest end, bounded by the index range its time bounds
/// give (time never decreases with the index, so ``AuditLog`` finds that range by binary search and
/// needs no time index).
enum AuditSchema {
    static let version = 4
    /// The `WHERE` of the partial indexes, repeated verbatim by queries that use them (SQLite uses a
    /// partial index only when the query's `WHERE` contains that term).
    static let indexedRows = "kind NOT IN ('statement', 'statement.end')"
    /// Kinds retention never removes: the key chain (the genesis and every rotation), which a
    /// verifier must read to know which key signed which checkpoint.
    static let keptKinds = "('log.genesis', 'log.key_rotated')"
    /// The kinds the secondary indexes leave out.
    static let unindexedKinds: Set<String> = ["statement", "statement.end"]
    static let indexStatements = [
        "CREATE INDEX entries_by_kind ON entries (kind, idx) WHERE \(indexedRows)",
        "CREATE INDEX entries_by_user ON entries (user, idx) WHERE \(indexedRows) AND user IS NOT NULL",
        "CREATE INDEX entries_by_resource ON entries (resource, idx) WHERE \(indexedRows) AND resource IS NOT NULL",
        "CREATE INDEX entries_by_session ON entries (session, idx) WHERE \(indexedRows) AND session IS NOT NULL",
    ]
    /// "ILK1" in `PRAGMA application_id`, so `file(1)`-like tools and people can tell what this is.
    static let applicationID: Int32 = 0x494C_4B31

    /// Version 3: the Merkle tree over the entries and the signed checkpoints.
    ///
    /// `tree_nodes` holds every perfect, aligned subtree hash of the RFC 6962 tree (level 0: the
    /// leaf hash of entry `idx + 1`; level k, index i: leaves i·2^k ..< (i+1)·2^k), written in the
    /// transaction that appends the entries. Any inclusion or consistency proof, and the root of any
    /// size, is computed from O(log n) of them. They stay when retention removes entry bodies, so
    /// proofs issued before still verify. `checkpoints` holds every signed checkpoint (C2SP signed
    /// note) with its size and root.
    static let treeStatements = [
        """
        CREATE TABLE tree_nodes (
            level INTEGER NOT NULL CHECK (level >= 0 AND level < 64),
            idx INTEGER NOT NULL CHECK (idx >= 0),
            hash BLOB NOT NULL CHECK (length(hash) = 32),
            PRIMARY KEY (level, idx)
        ) WITHOUT ROWID
        """,
        """
        CREATE TRIGGER tree_nodes_append_only_update BEFORE UPDATE ON tree_nodes
        BEGIN
            SELECT RAISE(ABORT, 'tree nodes are append-only: UPDATE is refused');
        END
        """,
        """
        CREATE TRIGGER tree_nodes_append_only_delete BEFORE DELETE ON tree_nodes
        BEGIN
            SELECT RAISE(ABORT, 'tree nodes are append-only: DELETE is refused');
        END
        """,
        // Retention removes entry bodies below `meta.pruned_below`, and only those, after a
        // `log.prune` entry and a checkpoint over it are committed (see AuditLog.prune).
        "DROP TRIGGER entries_append_only_delete",
        """
        CREATE TRIGGER entries_append_only_delete BEFORE DELETE ON entries
        WHEN OLD.idx >= coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'pruned_below'), 1)
        BEGIN
            SELECT RAISE(ABORT, 'audit entries are append-only: DELETE is refused');
        END
        """,
        """
        CREATE TABLE checkpoints (
            size INTEGER PRIMARY KEY CHECK (size >= 0),
            time_us INTEGER NOT NULL,
            root BLOB NOT NULL CHECK (length(root) = 32),
            note TEXT NOT NULL
        )
        """,
        """
        CREATE TRIGGER checkpoints_append_only_update BEFORE UPDATE ON checkpoints
        BEGIN
            SELECT RAISE(ABORT, 'checkpoints are append-only: UPDATE is refused');
        END
        """,
        """
        CREATE TRIGGER checkpoints_append_only_delete BEFORE DELETE ON checkpoints
        BEGIN
            SELECT RAISE(ABORT, 'checkpoints are append-only: DELETE is refused');
        END
        """,
    ]

    /// Version 4: blobs, the payloads too large for an entry (session recordings).
    ///
    /// A blob is named by its SHA-256 and written in the transaction of the entry that references it
    /// (`blob` member), so the tree proves the entry and the entry proves the blob. Blobs are never
    /// changed; retention removes those older than `meta.blobs_pruned_before` (microseconds), and
    /// only after a `recording.prune` entry and a checkpoint over it are committed.
    static let blobStatements = [
        """
        CREATE TABLE blobs (
            hash BLOB PRIMARY KEY NOT NULL CHECK (length(hash) = 32),
            time_us INTEGER NOT NULL,
            size INTEGER NOT NULL CHECK (size >= 0),
            data BLOB NOT NULL
        )
        """,
        "CREATE INDEX blobs_by_time ON blobs (time_us)",
        """
        CREATE TRIGGER blobs_append_only_update BEFORE UPDATE ON blobs
        BEGIN
            SELECT RAISE(ABORT, 'blobs are append-only: UPDATE is refused');
        END
        """,
        """
        CREATE TRIGGER blobs_append_only_delete BEFORE DELETE ON blobs
        WHEN OLD.time_us >= coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'blobs_pruned_before'), 0)
        BEGIN
            SELECT RAISE(ABORT, 'blobs are append-only: DELETE is refused');
        END
        """,
    ]

    static let createStatements = [
        """
        CREATE TABLE meta (
            key TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE entries (
            idx INTEGER PRIMARY KEY CHECK (idx >= 1),
            time_us INTEGER NOT NULL,
            kind TEXT NOT NULL,
            user TEXT,
            resource TEXT,
            session TEXT,
            body BLOB NOT NULL
        )
        """,
        """
        CREATE TRIGGER entries_append_only_update BEFORE UPDATE ON entries
        BEGIN
            SELECT RAISE(ABORT, 'audit entries are append-only: UPDATE is refused');
        END
        """,
        """
        CREATE TRIGGER entries_append_only_delete BEFORE DELETE ON entries
        BEGIN
            SELECT RAISE(ABORT, 'audit entries are append-only: DELETE is refused');
        END
        """,
        """
        CREATE TRIGGER entries_gap_free BEFORE INSERT ON entries
        WHEN NEW.idx IS NOT (SELECT coalesce(max(idx), 0) + 1 FROM entries)
        BEGIN
            SELECT RAISE(ABORT, 'audit entries are gap-free: idx must be the last index + 1');
        END
        """,
    ]

    /// Creates the schema in an empty database, or checks that an existing one is ours and current.
    static func prepare(_ db: Database, path: String) throws {
        let hasEntries = try db.tableExists("entries")
        let hasMeta = try db.tableExists("meta")
        if !hasEntries && !hasMeta {
            let tables = try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master WHERE type = 'table'") ?? 0
            guard tables == 0 else {
                throw AuditError(
                    .unsupportedSchema,
                    "\(path) is an SQLite database but not an Interlock audit log; point audit.database at a new file"
                )
            }
            try db.execute(sql: "PRAGMA application_id = \(applicationID)")
            for sql in createStatements + indexStatements + treeStatements + blobStatements {
                try db.execute(sql: sql)
            }
            try db.execute(
                sql: "INSERT INTO meta (key, value) VALUES ('schema_version', ?), ('entry_format', ?)",
                arguments: ["\(version)", "\(EntryTemplate.formatVersion)"]
            )
            return
        }
        guard hasEntries && hasMeta,
            let text = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'schema_version'"),
            let found = Int(text)
        else {
            throw AuditError(
                .corrupt,
                "\(path) has an incomplete audit schema (missing table or schema_version); "
                    + "keep the file for investigation"
            )
        }
        if found == 1 {
            // Version 1 indexed every row and time: same entries, other indexes.
            for name in ["time", "kind", "user", "resource", "session"] {
                try db.execute(sql: "DROP INDEX IF EXISTS entries_by_\(name)")
            }
            for sql in indexStatements {
                try db.execute(sql: sql)
            }
            try migrateToTree(db)
            try migrateToBlobs(db)
            return
        }
        if found == 2 {
            try migrateToTree(db)
            try migrateToBlobs(db)
            return
        }
        if found == 3 {
            try migrateToBlobs(db)
            return
        }
        guard found == version else {
            throw AuditError(
                .unsupportedSchema,
                "\(path) has audit schema version \(found); this build reads version \(version). "
                    + (found > version ? "Upgrade interlock." : "Migration is not supported yet.")
            )
        }
    }

    /// Version 3 → 4: the blobs table (no entry changes).
    static func migrateToBlobs(_ db: Database) throws {
        for sql in blobStatements {
            try db.execute(sql: sql)
        }
        try db.execute(sql: "UPDATE meta SET value = ? WHERE key = 'schema_version'", arguments: ["\(version)"])
    }

    /// Version 2 → 3: the tree over every existing entry, built in index order (in batches, so a
    /// large log does not hold every body in memory at once).
    static func migrateToTree(_ db: Database) throws {
        for sql in treeStatements {
            try db.execute(sql: sql)
        }
        var range = MerkleCompactRange()
        var next: Int64 = 1
        let insert = try db.makeStatement(sql: "INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?)")
        while true {
            let rows = try Row.fetchAll(
                db, sql: "SELECT idx, body FROM entries WHERE idx >= ? ORDER BY idx LIMIT 10000", arguments: [next])
            guard !rows.isEmpty else { break }
            for row in rows {
                let body: Data = row["body"]
                for node in range.append(Merkle.leafHash(body)) {
                    try insert.execute(arguments: [node.level, Int64(node.index), Data(node.hash.bytes)])
                }
                next = (row["idx"] as Int64) + 1
            }
        }
    }
}
