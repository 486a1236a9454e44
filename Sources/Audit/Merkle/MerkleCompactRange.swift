/// The right edge of a tree (one hash per set bit of `size`, largest subtree first), so appending a
/// leaf costs O(log n) and reports the perfect subtrees it completes, for a store to persist.
///
/// A writer keeps only this (at most 64 hashes) in memory: it is enough to compute the root after
/// every append, and the nodes ``append(_:)`` returns are exactly the ones a
/// ``MerkleNodeSource`` must later serve for proofs, each produced once and never rewritten.
public struct MerkleCompactRange: Sendable, Equatable {
    /// Number of leaves appended so far.
    public private(set) var size: UInt64
    /// Roots of the perfect subtrees that make up the tree, leftmost (largest) first; entry j
    /// covers the j-th set bit of ``size`` counted from the most significant.
    public private(set) var edge: [MerkleHash]

    /// The empty tree.
    public init() {
        size = 0
        edge = []
    }

    /// Resumes a tree from a persisted edge, e.g. after a restart.
    ///
    /// Throws ``MerkleError/invalidSizes(old:new:)`` with `old` = `size` and `new` = the edge's
    /// length when the edge does not have exactly one hash per set bit of `size`: such an edge
    /// cannot belong to a tree of that size, and appending to it would corrupt every later root.
    public init(size: UInt64, edge: [MerkleHash]) throws {
        guard edge.count == size.nonzeroBitCount else {
            throw MerkleError.invalidSizes(old: size, new: UInt64(edge.count))
        }
        self.size = size
        self.edge = edge
    }

    /// Appends a leaf hash; returns every node completed by it, level 0 (the leaf) first, ascending
    /// levels.
    ///
    /// Each trailing set bit of the old size is a perfect subtree that the new leaf's subtree now
    /// pairs with; merging them is a binary carry. The tree cannot grow past 2^64 − 1 leaves.
    @discardableResult
    public mutating func append(_ leaf: MerkleHash) -> [(level: Int, index: UInt64, hash: MerkleHash)] {
        precondition(size < UInt64.max, "a Merkle tree holds at most 2^64 - 1 leaves")
        var completed: [(level: Int, index: UInt64, hash: MerkleHash)] = [(level: 0, index: size, hash: leaf)]
        var hash = leaf
        var level = 0
        while size & (1 << UInt64(level)) != 0 {
            let left = edge.removeLast()
            hash = Merkle.nodeHash(left, hash)
            level += 1
            completed.append((level: level, index: size >> UInt64(level), hash: hash))
        }
        edge.append(hash)
        size += 1
        return completed
    }

    /// MTH of the tree so far (emptyRoot when size == 0).
    public var root: MerkleHash {
        Merkle.fold(edge: edge)
    }
}
