import Foundation
import GRDB

/// What a prune did.
public struct PruneResult: Sendable, Equatable {
    /// The first index kept.
    public var prunedBelow: UInt64
    public var removed: Int
    /// The `log.prune` entry's index.
    public var entry: UInt64
}

extension AuditLog {
    /// Removes the bodies of entries older than `cutoff`, keeping every proof valid.
    ///
    /// In this order, so that nothing is ever missing without a signed account of it:
    /// 1. a `log.prune` entry is committed, naming the new first index, how many entries go, the
    ///    cutoff, the `policy` text (`entries: 400d`), and the perfect subtree hashes that cover
    ///    the removed range (so the range's contribution to every root stays checkable);
    /// 2. a checkpoint over it is signed and committed;
    /// 3. only then are the bodies deleted (in batches), and `meta.pruned_below` moves up: the
    ///    delete trigger refuses anything at or above it.
    ///
    /// The key chain's entries (the genesis and every `log.key_rotated`) are kept whatever their
    /// age (`kept` in the prune entry): without them no verifier knows which key signed what.
    ///
    /// Leaf hashes, tree nodes and checkpoints are never removed: inclusion proofs issued before
    /// still verify, and `verify --local` checks the kept leaves of the removed range against the
    /// roots. Returns nil when nothing is old enough. Blocking: call it off the event loops.
    public func prune(before cutoff: Date, policy: String) throws(AuditError) -> PruneResult? {
        let micros = AuditTime.micros(cutoff)
        let (first, below, kept) = try read("planning a prune") { db -> (UInt64, UInt64, UInt64) in
            let first = UInt64(
                try Int64.fetchOne(
                    db, sql: "SELECT coalesce(min(idx), 1) FROM entries WHERE kind NOT IN \(AuditSchema.keptKinds)")
                    ?? 1)
            let below = UInt64(try Self.firstIndex(db, atOrAfter: micros))
            let kept = UInt64(
                try Int64.fetchOne(
                    db,
                    sql: "SELECT count(*) FROM entries WHERE idx >= ? AND idx < ? AND kind IN \(AuditSchema.keptKinds)",
                    arguments: [Int64(first), Int64(below)]) ?? 0)
            return (first, below, kept)
        }
        // Never the whole log: the prune entry itself and what came after the cutoff stay.
        guard below > first else { return nil }
        let subtrees = try read("reading the removed range's subtrees") { db -> [AuditValue] in
            let tree = StoredTree(db: db)
            return try Self.perfectSubtrees(from: first - 1, to: below - 1).map { level, index in
                .object([
                    "level": .int(Int64(level)), "index": .uint(index),
                    "hash": .string(try tree.node(level: level, index: index).hex),
                ])
            }
        }
        let fields: [String: AuditValue] = [
            "pruned_below": .uint(below), "previous_first": .uint(first), "removed": .uint(below - first - kept),
            "kept": .uint(kept),
            "cutoff": .string(AuditTime.format(micros: micros)), "policy": .string(policy),
            "subtrees": .array(subtrees),
        ]
        let record = try appendAndWait(kind: AuditKind.prune, subject: AuditSubject(), fields: fields)
        // A checkpoint over the prune entry, before anything goes.
        try waitForCheckpoint(covering: record.index, what: "the prune entry")
        do {
            var next = first
            while next < below {
                let end = min(below, next + 10_000)
                try pool.write { db in
                    try db.execute(
                        sql: "INSERT INTO meta (key, value) VALUES ('pruned_below', ?) "
                            + "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        arguments: ["\(end)"])
                    try db.execute(
                        sql: "DELETE FROM entries WHERE idx < ? AND kind NOT IN \(AuditSchema.keptKinds)",
                        arguments: [Int64(end)])
                }
                next = end
            }
        } catch {
            throw AuditError.from(error, while: "removing pruned entries", path: path)
        }
        logger.notice(
            "pruned the evidence log",
            metadata: [
                "audit.pruned_below": "\(below)", "audit.removed": "\(below - first - kept)",
                "audit.policy": "\(policy)",
            ])
        return PruneResult(prunedBelow: below, removed: Int(below - first - kept), entry: record.index)
    }

    /// The aligned perfect subtrees (level, index) that exactly cover leaves [lo, hi).
    static func perfectSubtrees(from lo: UInt64, to hi: UInt64) -> [(Int, UInt64)] {
        var out: [(Int, UInt64)] = []
        var start = lo
        while start < hi {
            var level = 0
            while level < 63 {
                let size = UInt64(1) << UInt64(level + 1)
                guard start % size == 0, start + size <= hi else { break }
                level += 1
            }
            out.append((level, start >> UInt64(level)))
            start += UInt64(1) << UInt64(level)
        }
        return out
    }
}
