import Crypto
import Foundation
import GRDB

/// How the log signs its checkpoints: the appliance's Ed25519 key.
///
/// The key file is created at install (or at the first start), readable only by the daemon; its
/// public half is the verifier key auditors check exports with (`interlock audit public-key`).
/// The checkpoints' origin line is `interlock/<appliance id>`, the id a new log makes for itself.
public struct AuditSigning: Sendable {
    public var signer: NoteSigner
    /// Members of the genesis entry besides the key, the appliance id and the origin (`version`).
    public var genesis: [String: AuditValue]
    /// The file `signer` was read from (`checkpoint.key`). With it the log can rotate its key
    /// (``AuditLog/rotateKey(reason:requestedBy:)``) and, at open, finish or discard a rotation a
    /// crash interrupted; without it (tests, tools) rotation is refused.
    public var keyFile: String?

    public init(signer: NoteSigner, genesis: [String: AuditValue] = [:], keyFile: String? = nil) {
        self.signer = signer
        self.genesis = genesis
        self.keyFile = keyFile
    }
}

/// One signed checkpoint as stored.
public struct StoredCheckpoint: Sendable, Equatable {
    public var size: UInt64
    public var root: MerkleHash
    public var time: Date
    /// The C2SP signed note.
    public var note: String
}

/// The log's Merkle tree as stored in `tree_nodes`, read through one database connection.
struct StoredTree: MerkleNodeSource {
    let db: Database

    func node(level: Int, index: UInt64) throws -> MerkleHash {
        guard
            let data = try Data.fetchOne(
                db.cachedStatement(sql: "SELECT hash FROM tree_nodes WHERE level = ? AND idx = ?"),
                arguments: [level, Int64(index)]),
            let hash = MerkleHash(bytes: [UInt8](data))
        else {
            throw MerkleError.missingNode(level: level, index: index)
        }
        return hash
    }

    /// The right edge of the tree of `size` leaves: one perfect node per set bit, largest first.
    func compactRange(size: UInt64) throws -> MerkleCompactRange {
        var edge: [MerkleHash] = []
        var start: UInt64 = 0
        for level in stride(from: 63, through: 0, by: -1) where size & (UInt64(1) << UInt64(level)) != 0 {
            edge.append(try node(level: level, index: start >> UInt64(level)))
            start += UInt64(1) << UInt64(level)
        }
        return try MerkleCompactRange(size: size, edge: edge)
    }

    static func insert(_ db: Database, _ nodes: [(level: Int, index: UInt64, hash: MerkleHash)]) throws {
        let statement = try db.cachedStatement(sql: "INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?)")
        for node in nodes {
            try statement.execute(arguments: [node.level, Int64(node.index), Data(node.hash.bytes)])
        }
    }

    static func latestCheckpoint(_ db: Database) throws -> StoredCheckpoint? {
        guard
            let row = try Row.fetchOne(
                db, sql: "SELECT size, time_us, root, note FROM checkpoints ORDER BY size DESC LIMIT 1")
        else { return nil }
        return checkpoint(row)
    }

    static func checkpoint(_ row: Row) -> StoredCheckpoint? {
        let root: Data = row["root"]
        guard let hash = MerkleHash(bytes: [UInt8](root)) else { return nil }
        return StoredCheckpoint(
            size: UInt64(row["size"] as Int64), root: hash, time: AuditTime.date(micros: row["time_us"]),
            note: row["note"])
    }
}

extension MerkleHash {
    /// The plain SHA-256 of `data` (blob names, the export digest), not a tree hash.
    static func sha256(_ data: Data) -> MerkleHash {
        // SHA-256 is always 32 bytes.
        MerkleHash(bytes: Array(SHA256.hash(data: data))) ?? Merkle.emptyRoot
    }
}
