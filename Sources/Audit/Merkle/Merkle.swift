import Crypto

/// Hashes of perfect, aligned subtrees: `level` k, `index` i covers leaves [i·2^k, (i+1)·2^k).
/// Level 0 is the leaf hash.
///
/// Only perfect subtrees are asked for because they never change once complete, so a store can
/// write each exactly once (see ``MerkleCompactRange/append(_:)``); the hashes of the ragged right
/// edge that proofs also need are recomputed from them on demand.
public protocol MerkleNodeSource {
    /// The stored hash, or ``MerkleError/missingNode(level:index:)`` if the store does not have it.
    func node(level: Int, index: UInt64) throws -> MerkleHash
}

/// Why a tree could not produce a root or proof.
public enum MerkleError: Error, Equatable, Sendable {
    /// A leaf index at or past the tree's size (every index is out of range of the empty tree).
    case indexOutOfRange(index: UInt64, size: UInt64)
    /// A consistency proof from a larger tree to a smaller one, or a compact range whose edge does
    /// not have one hash per set bit of its size (`old` is then the size, `new` the edge's length).
    case invalidSizes(old: UInt64, new: UInt64)
    /// The node source has no hash for a perfect subtree the computation needs.
    case missingNode(level: Int, index: UInt64)
}

/// RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification, with SHA-256.
///
/// Pure functions over hashes: the audit log uses them to commit to its entries and to hand out
/// proofs, and an auditor uses the same code offline to check those proofs, so neither side needs
/// the other's storage. Proof generation reads perfect subtrees from a ``MerkleNodeSource``;
/// verification needs nothing but its arguments.
public enum Merkle {
    /// MTH({}) = SHA-256 of the empty string (RFC 6962 §2.1).
    public static let emptyRoot = MerkleHash(digest: SHA256.hash(data: [UInt8]()))

    /// H(0x00 || data). The prefix keeps a leaf from ever hashing like an interior node, which is
    /// what stops second-preimage forgeries of a shorter tree.
    public static func leafHash<D: Sequence>(_ data: D) -> MerkleHash where D.Element == UInt8 {
        var hasher = SHA256()
        hasher.update(data: [0x00])
        let hashedContiguously: Void? = data.withContiguousStorageIfAvailable { buffer in
            hasher.update(bufferPointer: UnsafeRawBufferPointer(buffer))
        }
        if hashedContiguously == nil {
            hasher.update(data: Array(data))
        }
        return MerkleHash(digest: hasher.finalize())
    }

    /// H(0x01 || left || right).
    public static func nodeHash(_ left: MerkleHash, _ right: MerkleHash) -> MerkleHash {
        var input: [UInt8] = []
        input.reserveCapacity(1 + 2 * MerkleHash.byteCount)
        input.append(0x01)
        input.append(contentsOf: left.bytes)
        input.append(contentsOf: right.bytes)
        return MerkleHash(digest: SHA256.hash(data: input))
    }

    /// MTH of a list of leaf hashes (RFC 6962 2.1).
    ///
    /// Computed level by level, carrying an unpaired last node up unchanged; that gives the same
    /// tree as RFC 6962's split at the largest power of two, without recursion. Kept independent of
    /// ``MerkleCompactRange`` so each can check the other.
    public static func root(of leaves: [MerkleHash]) -> MerkleHash {
        guard !leaves.isEmpty else { return emptyRoot }
        var level = leaves
        while level.count > 1 {
            var parents: [MerkleHash] = []
            parents.reserveCapacity((level.count + 1) / 2)
            var index = 0
            while index + 1 < level.count {
                parents.append(nodeHash(level[index], level[index + 1]))
                index += 2
            }
            if index < level.count {
                parents.append(level[index])
            }
            level = parents
        }
        return level[0]
    }

    /// MTH of leaves [0, size) using stored perfect-subtree hashes.
    public static func root(size: UInt64, source: some MerkleNodeSource) throws -> MerkleHash {
        guard size > 0 else { return emptyRoot }
        return try subtreeRoot(start: 0, count: size, source: source)
    }

    /// RFC 6962 2.1.1 PATH(index, D[size]): audit path, leaf-to-root order.
    ///
    /// Walks RFC 6962's recursion top-down in a loop (no recursion depth to worry about up to
    /// 2^63 leaves) and reverses at the end, since the path is read from the leaf up.
    public static func inclusionProof(
        index: UInt64,
        size: UInt64,
        source: some MerkleNodeSource
    ) throws -> [MerkleHash] {
        guard index < size else { throw MerkleError.indexOutOfRange(index: index, size: size) }
        var rootToLeaf: [MerkleHash] = []
        var start: UInt64 = 0
        var count = size
        while count > 1 {
            let split = largestPowerOfTwo(below: count)
            if index - start < split {
                rootToLeaf.append(try subtreeRoot(start: start + split, count: count - split, source: source))
                count = split
            } else {
                rootToLeaf.append(try subtreeRoot(start: start, count: split, source: source))
                start += split
                count -= split
            }
        }
        return rootToLeaf.reversed()
    }

    /// RFC 6962 2.1.2 PROOF(old, D[new]).
    ///
    /// An old size of 0 or equal to the new size gives an empty proof, matching what
    /// ``verifyConsistency(oldSize:newSize:oldRoot:newRoot:proof:)`` accepts for those sizes.
    /// Throws ``MerkleError/invalidSizes(old:new:)`` when `oldSize > newSize`.
    public static func consistencyProof(
        from oldSize: UInt64,
        to newSize: UInt64,
        source: some MerkleNodeSource
    ) throws -> [MerkleHash] {
        guard oldSize <= newSize else { throw MerkleError.invalidSizes(old: oldSize, new: newSize) }
        guard oldSize > 0, oldSize < newSize else { return [] }
        // SUBPROOF(m, D[start, start + count), startsAtOldRoot), unrolled.
        var rootToLeaf: [MerkleHash] = []
        var start: UInt64 = 0
        var count = newSize
        var old = oldSize
        var startsAtOldRoot = true
        while old != count {
            let split = largestPowerOfTwo(below: count)
            if old <= split {
                rootToLeaf.append(try subtreeRoot(start: start + split, count: count - split, source: source))
                count = split
            } else {
                rootToLeaf.append(try subtreeRoot(start: start, count: split, source: source))
                start += split
                count -= split
                old -= split
                startsAtOldRoot = false
            }
        }
        var proof: [MerkleHash] = []
        proof.reserveCapacity(rootToLeaf.count + 1)
        if !startsAtOldRoot {
            // SUBPROOF(m, D[m], false) = {MTH(D[m])}: the old tree's last subtree, which the
            // verifier cannot know from the old root alone.
            proof.append(try subtreeRoot(start: start, count: count, source: source))
        }
        proof.append(contentsOf: rootToLeaf.reversed())
        return proof
    }

    /// RFC 9162 2.1.3.2.
    ///
    /// Rejects rather than throws: to an auditor a malformed proof and a wrong proof mean the same.
    public static func verifyInclusion(
        leaf: MerkleHash,
        index: UInt64,
        size: UInt64,
        proof: [MerkleHash],
        root: MerkleHash
    ) -> Bool {
        guard index < size else { return false }
        var fn = index
        var sn = size - 1
        var hash = leaf
        for sibling in proof {
            guard sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                hash = nodeHash(sibling, hash)
                if fn & 1 == 0 {
                    // fn is the last node of its level but not a right child: skip the levels
                    // where it is promoted unchanged.
                    while fn & 1 == 0 && fn != 0 {
                        fn >>= 1
                        sn >>= 1
                    }
                }
            } else {
                hash = nodeHash(hash, sibling)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 && hash == root
    }

    /// RFC 9162 2.1.4.2 (oldSize == newSize needs an empty proof and equal roots; oldSize 0 is
    /// consistent with anything only with an empty proof).
    ///
    /// Choice for `oldSize == 0`: the proof must be empty and `oldRoot` must be ``emptyRoot`` (the
    /// only root a tree of size 0 has); `newRoot` is then unconstrained, because every tree extends
    /// the empty one. Requiring ``emptyRoot`` turns a claim such as "size 0 with root X" from a
    /// source that is confused about its own tree into a failure instead of a silent pass.
    /// `oldSize == newSize == 0` therefore needs both roots to be ``emptyRoot``.
    public static func verifyConsistency(
        oldSize: UInt64,
        newSize: UInt64,
        oldRoot: MerkleHash,
        newRoot: MerkleHash,
        proof: [MerkleHash]
    ) -> Bool {
        guard oldSize <= newSize else { return false }
        if oldSize == 0 {
            return proof.isEmpty && oldRoot == emptyRoot && (newSize > 0 || newRoot == emptyRoot)
        }
        if oldSize == newSize {
            return proof.isEmpty && oldRoot == newRoot
        }
        guard !proof.isEmpty else { return false }
        // When the old tree is perfect, PROOF omits its root; the verifier supplies it.
        let path = oldSize & (oldSize - 1) == 0 ? [oldRoot] + proof : proof
        var fn = oldSize - 1
        var sn = newSize - 1
        while fn & 1 == 1 {
            fn >>= 1
            sn >>= 1
        }
        var oldHash = path[0]
        var newHash = path[0]
        for node in path.dropFirst() {
            guard sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                oldHash = nodeHash(node, oldHash)
                newHash = nodeHash(node, newHash)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 {
                        fn >>= 1
                        sn >>= 1
                    }
                }
            } else {
                newHash = nodeHash(newHash, node)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 && oldHash == oldRoot && newHash == newRoot
    }

    // MARK: - Internal helpers

    /// The largest power of two strictly below `count` (RFC 6962's k); `count` must be at least 2.
    static func largestPowerOfTwo(below count: UInt64) -> UInt64 {
        precondition(count >= 2, "a split needs at least two leaves")
        return 1 << (63 - (count - 1).leadingZeroBitCount)
    }

    /// MTH of leaves [start, start + count) from perfect nodes only.
    ///
    /// Every range RFC 6962's recursion produces starts at a multiple of the smallest power of two
    /// not below its length, so it splits into perfect aligned subtrees, one per set bit of `count`,
    /// largest first; folding them right to left is the range's MTH. That is why a store needs only
    /// perfect nodes, and the loop has at most 64 steps whatever the size.
    static func subtreeRoot(start: UInt64, count: UInt64, source: some MerkleNodeSource) throws -> MerkleHash {
        precondition(count > 0, "an empty range has no subtree root")
        var edge: [MerkleHash] = []
        var position = start
        var level = 63 - count.leadingZeroBitCount
        while level >= 0 {
            if count & (1 << UInt64(level)) != 0 {
                precondition(position & ((1 << UInt64(level)) - 1) == 0, "subtree range is not aligned")
                edge.append(try source.node(level: level, index: position >> UInt64(level)))
                position += 1 << UInt64(level)
            }
            level -= 1
        }
        return fold(edge: edge)
    }

    /// MTH of adjacent perfect subtrees listed largest (leftmost) first: each joins the hash of
    /// everything to its right, as RFC 6962's split at the largest power of two does.
    static func fold(edge: [MerkleHash]) -> MerkleHash {
        guard var hash = edge.last else { return emptyRoot }
        for left in edge.dropLast().reversed() {
            hash = nodeHash(left, hash)
        }
        return hash
    }
}

/// Every perfect node of a tree in memory (tests; offline verification of bundles).
///
/// Builds its nodes by pairing siblings level by level, independently of ``MerkleCompactRange``, so
/// the two can be checked against each other. Memory is about two hashes per leaf.
public struct InMemoryMerkleTree: MerkleNodeSource, Sendable {
    /// `levels[k][i]` is the perfect node at level k, index i.
    private var levels: [[MerkleHash]] = [[]]

    /// The empty tree.
    public init() {}

    /// A tree of `leaves` (leaf hashes, not leaf data), in order.
    public init(leaves: [MerkleHash]) {
        for leaf in leaves {
            append(leaf)
        }
    }

    /// Adds a leaf hash and every perfect node it completes.
    public mutating func append(_ leaf: MerkleHash) {
        levels[0].append(leaf)
        var level = 0
        while levels[level].count % 2 == 0 {
            let count = levels[level].count
            let parent = Merkle.nodeHash(levels[level][count - 2], levels[level][count - 1])
            if levels.count == level + 1 {
                levels.append([])
            }
            levels[level + 1].append(parent)
            level += 1
        }
    }

    /// Number of leaves.
    public var size: UInt64 { UInt64(levels[0].count) }

    /// MTH of all leaves (``Merkle/emptyRoot`` when there are none).
    public var root: MerkleHash {
        var edge: [MerkleHash] = []
        var position: UInt64 = 0
        for level in stride(from: levels.count - 1, through: 0, by: -1) where size & (1 << UInt64(level)) != 0 {
            edge.append(levels[level][Int(position >> UInt64(level))])
            position += 1 << UInt64(level)
        }
        return Merkle.fold(edge: edge)
    }

    /// The perfect node, or ``MerkleError/missingNode(level:index:)`` if it is not complete yet.
    public func node(level: Int, index: UInt64) throws -> MerkleHash {
        guard level >= 0, level < levels.count, index < UInt64(levels[level].count) else {
            throw MerkleError.missingNode(level: level, index: index)
        }
        return levels[level][Int(index)]
    }
}
