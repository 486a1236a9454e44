import Testing

@testable import Audit

/// Perfect nodes collected from ``MerkleCompactRange/append(_:)``, the way a store persists them.
private struct DictionaryNodeSource: MerkleNodeSource {
    struct Key: Hashable {
        let level: Int
        let index: UInt64
    }

    var nodes: [Key: MerkleHash] = [:]
    var range = MerkleCompactRange()

    init(leaves: [MerkleHash]) {
        for leaf in leaves {
            append(leaf)
        }
    }

    mutating func append(_ leaf: MerkleHash) {
        for completed in range.append(leaf) {
            #expect(nodes[Key(level: completed.level, index: completed.index)] == nil, "node written twice")
            nodes[Key(level: completed.level, index: completed.index)] = completed.hash
        }
    }

    func node(level: Int, index: UInt64) throws -> MerkleHash {
        guard let hash = nodes[Key(level: level, index: index)] else {
            throw MerkleError.missingNode(level: level, index: index)
        }
        return hash
    }
}

/// A tree of any size (up to 2^64 − 1) whose leaves are all the same hash, so the node at level k
/// is the same for every index and the source needs only 64 hashes: enough to run the proof math at
/// sizes no test could store.
private struct UniformNodeSource: MerkleNodeSource {
    let perLevel: [MerkleHash]

    init(leaf: MerkleHash) {
        var perLevel = [leaf]
        for _ in 1..<64 {
            let below = perLevel[perLevel.count - 1]
            perLevel.append(Merkle.nodeHash(below, below))
        }
        self.perLevel = perLevel
    }

    func node(level: Int, index: UInt64) throws -> MerkleHash {
        guard level >= 0, level < perLevel.count, index < UInt64.max >> UInt64(level) else {
            throw MerkleError.missingNode(level: level, index: index)
        }
        return perLevel[level]
    }
}

private func hash(_ hex: String) -> MerkleHash {
    guard let hash = MerkleHash(hex: hex) else {
        Issue.record("bad hex in test vector: \(hex)")
        return Merkle.emptyRoot
    }
    return hash
}

private func bytes(hex: String) -> [UInt8] {
    let digits = Array(hex.utf8)
    return stride(from: 0, to: digits.count, by: 2).map { index in
        UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16) ?? 0
    }
}

private func flippingBit(_ bit: Int, of hash: MerkleHash) -> MerkleHash {
    var bytes = hash.bytes
    bytes[bit / 8] ^= 1 << UInt8(bit % 8)
    return MerkleHash(bytes: bytes) ?? hash
}

private func leaves(_ count: Int) -> [MerkleHash] {
    (0..<count).map { Merkle.leafHash(Array("interlock leaf \($0)".utf8)) }
}

/// RFC 6962 test data as published with Certificate Transparency's reference implementations
/// (transparency-dev/merkle `testonly/constants.go` and `proof/verify_test.go`).
private enum RFC6962Vectors {
    static let leafInputs: [[UInt8]] = [
        "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
    ].map { bytes(hex: $0) }

    /// Perfect nodes: `nodes[level][index]`.
    static let nodes: [[String]] = [
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ],
        [
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ],
        [
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
    ]

    /// Roots by size; index 0 is the empty tree.
    static let roots: [String] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]

    /// Compact-range edges by size, as (level, index) of `nodes`.
    static let edges: [[(Int, Int)]] = [
        [], [(0, 0)], [(1, 0)], [(1, 0), (0, 2)], [(2, 0)], [(2, 0), (0, 4)], [(2, 0), (1, 2)],
        [(2, 0), (1, 2), (0, 6)], [(3, 0)],
    ]

    /// Inclusion proofs; the published vectors number leaves from 1, these are 0-based indices.
    static let inclusion: [(index: UInt64, size: UInt64, proof: [String])] = [
        (0, 1, []),
        (
            0, 8,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
        ),
        (
            5, 8,
            [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]
        ),
        (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
        (
            1, 5,
            [
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ]
        ),
    ]

    static let consistency: [(old: UInt64, new: UInt64, proof: [String])] = [
        (1, 1, []),
        (
            1, 8,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
        ),
        (
            6, 8,
            [
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]
        ),
        (
            2, 5,
            [
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ]
        ),
        (
            6, 7,
            [
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]
        ),
    ]

    static var leafHashes: [MerkleHash] { leafInputs.map { Merkle.leafHash($0) } }
}

/// Every way of spoiling a valid inclusion claim; each entry must fail verification.
private func tamperedInclusions(
    leaf: MerkleHash,
    index: UInt64,
    size: UInt64,
    proof: [MerkleHash],
    root: MerkleHash
) -> [(String, Bool)] {
    let other = hash("abacaba000000000000000000000000000000000000000000060061e00123456")
    func verify(_ leaf: MerkleHash, _ index: UInt64, _ size: UInt64, _ proof: [MerkleHash], _ root: MerkleHash) -> Bool
    {
        Merkle.verifyInclusion(leaf: leaf, index: index, size: size, proof: proof, root: root)
    }
    var probes: [(String, Bool)] = [
        ("index + 1", verify(leaf, index + 1, size, proof, root)),
        ("index ^ 2", verify(leaf, index ^ 2, size, proof, root)),
        ("size * 2", verify(leaf, index, size * 2, proof, root)),
        ("size / 2", verify(leaf, index, size / 2, proof, root)),
        ("index = size", verify(leaf, size, size, proof, root)),
        ("wrong leaf", verify(other, index, size, proof, root)),
        ("leaf bit flipped", verify(flippingBit(0, of: leaf), index, size, proof, root)),
        ("empty root", verify(leaf, index, size, proof, Merkle.emptyRoot)),
        ("other root", verify(leaf, index, size, proof, other)),
        ("root bit flipped", verify(leaf, index, size, proof, flippingBit(255, of: root))),
        ("trailing root", verify(leaf, index, size, proof + [root], root)),
        ("trailing other", verify(leaf, index, size, proof + [other], root)),
        ("preceding root", verify(leaf, index, size, [root] + proof, root)),
        ("preceding leaf", verify(leaf, index, size, [leaf] + proof, root)),
    ]
    if index > 0 {
        probes.append(("index - 1", verify(leaf, index - 1, size, proof, root)))
    }
    if !proof.isEmpty {
        probes.append(("last dropped", verify(leaf, index, size, Array(proof.dropLast()), root)))
        probes.append(("first dropped", verify(leaf, index, size, Array(proof.dropFirst()), root)))
    }
    if proof.count > 1 {
        probes.append(("reversed", verify(leaf, index, size, proof.reversed(), root)))
        probes.append(("inserted", verify(leaf, index, size, [proof[0], other] + proof.dropFirst(), root)))
    }
    for position in proof.indices {
        for bit in [0, 3, 100, 255] {
            var wrong = proof
            wrong[position] = flippingBit(bit, of: wrong[position])
            probes.append(("proof[\(position)] bit \(bit)", verify(leaf, index, size, wrong, root)))
        }
    }
    return probes
}

/// Every way of spoiling a valid, non-trivial consistency claim; each entry must fail verification.
private func tamperedConsistencies(
    old: UInt64,
    new: UInt64,
    oldRoot: MerkleHash,
    newRoot: MerkleHash,
    proof: [MerkleHash]
) -> [(String, Bool)] {
    let other = hash("abacaba000000000000000000000000000000000000000000060061e00123456")
    func verify(
        _ old: UInt64, _ new: UInt64, _ oldRoot: MerkleHash, _ newRoot: MerkleHash, _ proof: [MerkleHash]
    )
        -> Bool
    {
        Merkle.verifyConsistency(oldSize: old, newSize: new, oldRoot: oldRoot, newRoot: newRoot, proof: proof)
    }
    var probes: [(String, Bool)] = [
        ("old - 1", verify(old - 1, new, oldRoot, newRoot, proof)),
        ("old + 1", verify(old + 1, new, oldRoot, newRoot, proof)),
        ("old ^ 2", verify(old ^ 2, new, oldRoot, newRoot, proof)),
        ("new * 2", verify(old, new * 2, oldRoot, newRoot, proof)),
        ("new / 2", verify(old, new / 2, oldRoot, newRoot, proof)),
        ("sizes swapped", verify(new, old, oldRoot, newRoot, proof)),
        ("sizes and roots swapped", verify(new, old, newRoot, oldRoot, proof)),
        ("roots swapped", verify(old, new, newRoot, oldRoot, proof)),
        ("wrong old root", verify(old, new, other, newRoot, proof)),
        ("wrong new root", verify(old, new, oldRoot, other, proof)),
        ("old root bit flipped", verify(old, new, flippingBit(7, of: oldRoot), newRoot, proof)),
        ("new root bit flipped", verify(old, new, oldRoot, flippingBit(7, of: newRoot), proof)),
        ("empty proof", verify(old, new, oldRoot, newRoot, [])),
        ("trailing old root", verify(old, new, oldRoot, newRoot, proof + [oldRoot])),
        ("trailing new root", verify(old, new, oldRoot, newRoot, proof + [newRoot])),
        ("trailing other", verify(old, new, oldRoot, newRoot, proof + [other])),
        ("preceding old root", verify(old, new, oldRoot, newRoot, [oldRoot] + proof)),
        ("preceding new root", verify(old, new, oldRoot, newRoot, [newRoot] + proof)),
        ("preceding proof[0]", verify(old, new, oldRoot, newRoot, [proof[0]] + proof)),
        ("last dropped", verify(old, new, oldRoot, newRoot, Array(proof.dropLast()))),
        ("first dropped", verify(old, new, oldRoot, newRoot, Array(proof.dropFirst()))),
    ]
    if proof.count > 1 {
        probes.append(("reversed", verify(old, new, oldRoot, newRoot, proof.reversed())))
    }
    for position in proof.indices {
        for bit in [0, 4, 100, 255] {
            var wrong = proof
            wrong[position] = flippingBit(bit, of: wrong[position])
            probes.append(("proof[\(position)] bit \(bit)", verify(old, new, oldRoot, newRoot, wrong)))
        }
    }
    return probes
}

@Suite struct MerkleTests {
    // MARK: Golden vectors

    @Test func emptyTreeRootIsSHA256OfNothing() throws {
        let expected = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        #expect(Merkle.emptyRoot.hex == expected)
        #expect(Merkle.root(of: []) == Merkle.emptyRoot)
        #expect(MerkleCompactRange().root == Merkle.emptyRoot)
        #expect(InMemoryMerkleTree().root == Merkle.emptyRoot)
        #expect(InMemoryMerkleTree().size == 0)
        #expect(try Merkle.root(size: 0, source: InMemoryMerkleTree()) == Merkle.emptyRoot)
    }

    @Test func leafHashesMatchRFC6962Vectors() {
        #expect(RFC6962Vectors.leafHashes.map(\.hex) == RFC6962Vectors.nodes[0])
        // A non-contiguous sequence hashes the same as its array.
        #expect(Merkle.leafHash(RFC6962Vectors.leafInputs[7].lazy.map { $0 }) == RFC6962Vectors.leafHashes[7])
    }

    @Test func perfectNodesMatchRFC6962Vectors() throws {
        let tree = InMemoryMerkleTree(leaves: RFC6962Vectors.leafHashes)
        let stored = DictionaryNodeSource(leaves: RFC6962Vectors.leafHashes)
        for (level, row) in RFC6962Vectors.nodes.enumerated() {
            for (index, expected) in row.enumerated() {
                #expect(try tree.node(level: level, index: UInt64(index)).hex == expected)
                #expect(try stored.node(level: level, index: UInt64(index)).hex == expected)
            }
        }
        #expect(stored.nodes.count == 15)
    }

    @Test(arguments: 0...8) func rootsMatchRFC6962Vectors(size: Int) throws {
        let expected = RFC6962Vectors.roots[size]
        let leaves = Array(RFC6962Vectors.leafHashes.prefix(size))
        #expect(Merkle.root(of: leaves).hex == expected)
        #expect(InMemoryMerkleTree(leaves: leaves).root.hex == expected)
        #expect(DictionaryNodeSource(leaves: leaves).range.root.hex == expected)
        let full = InMemoryMerkleTree(leaves: RFC6962Vectors.leafHashes)
        #expect(try Merkle.root(size: UInt64(size), source: full).hex == expected)
    }

    @Test(arguments: 0...8) func compactEdgesMatchRFC6962Vectors(size: Int) throws {
        let range = DictionaryNodeSource(leaves: Array(RFC6962Vectors.leafHashes.prefix(size))).range
        let expected = RFC6962Vectors.edges[size].map { RFC6962Vectors.nodes[$0.0][$0.1] }
        #expect(range.size == UInt64(size))
        #expect(range.edge.map(\.hex) == expected)
        #expect(try MerkleCompactRange(size: UInt64(size), edge: range.edge) == range)
    }

    @Test(arguments: RFC6962Vectors.inclusion.indices)
    func inclusionProofsMatchRFC6962Vectors(vector: Int) throws {
        let (index, size, expectedHex) = RFC6962Vectors.inclusion[vector]
        let tree = InMemoryMerkleTree(leaves: RFC6962Vectors.leafHashes)
        let expected = expectedHex.map(hash)
        let leaf = RFC6962Vectors.leafHashes[Int(index)]
        let root = hash(RFC6962Vectors.roots[Int(size)])
        #expect(try Merkle.inclusionProof(index: index, size: size, source: tree) == expected)
        #expect(Merkle.verifyInclusion(leaf: leaf, index: index, size: size, proof: expected, root: root))
        for (description, verified) in tamperedInclusions(
            leaf: leaf, index: index, size: size, proof: expected, root: root)
        {
            #expect(!verified, "tampered inclusion verified: \(description)")
        }
    }

    @Test(arguments: RFC6962Vectors.consistency.indices)
    func consistencyProofsMatchRFC6962Vectors(vector: Int) throws {
        let (old, new, expectedHex) = RFC6962Vectors.consistency[vector]
        let tree = InMemoryMerkleTree(leaves: RFC6962Vectors.leafHashes)
        let expected = expectedHex.map(hash)
        let oldRoot = hash(RFC6962Vectors.roots[Int(old)])
        let newRoot = hash(RFC6962Vectors.roots[Int(new)])
        #expect(try Merkle.consistencyProof(from: old, to: new, source: tree) == expected)
        #expect(
            Merkle.verifyConsistency(oldSize: old, newSize: new, oldRoot: oldRoot, newRoot: newRoot, proof: expected))
        guard !expected.isEmpty else { return }
        for (description, verified) in tamperedConsistencies(
            old: old, new: new, oldRoot: oldRoot, newRoot: newRoot, proof: expected)
        {
            #expect(!verified, "tampered consistency verified: \(description)")
        }
    }

    // MARK: Properties

    @Test func compactRangeRootEqualsListRootForEverySize() throws {
        let all = leaves(300)
        var range = MerkleCompactRange()
        var tree = InMemoryMerkleTree()
        for size in 0...all.count {
            let expected = Merkle.root(of: Array(all.prefix(size)))
            #expect(range.root == expected, "size \(size)")
            #expect(tree.root == expected, "size \(size)")
            #expect(tree.size == UInt64(size))
            #expect(range.edge.count == size.nonzeroBitCount)
            guard size < all.count else { break }
            let completed = range.append(all[size])
            tree.append(all[size])
            // The leaf first, then one node per trailing set bit of the old size, each the node
            // the full tree has at that place.
            #expect(completed.count == 1 + (~size).trailingZeroBitCount)
            for (offset, node) in completed.enumerated() {
                #expect(node.level == offset)
                #expect(node.index == UInt64(size) >> UInt64(offset))
                #expect(try node.hash == tree.node(level: node.level, index: node.index))
            }
        }
        #expect(try Merkle.root(size: 300, source: tree) == range.root)
    }

    @Test func everyInclusionProofVerifiesUpTo70Leaves() throws {
        let all = leaves(70)
        let tree = InMemoryMerkleTree(leaves: all)
        let stored = DictionaryNodeSource(leaves: all)
        for size in UInt64(1)...70 {
            let root = Merkle.root(of: Array(all.prefix(Int(size))))
            #expect(try Merkle.root(size: size, source: stored) == root)
            for index in 0..<size {
                let proof = try Merkle.inclusionProof(index: index, size: size, source: tree)
                #expect(try Merkle.inclusionProof(index: index, size: size, source: stored) == proof)
                #expect(
                    Merkle.verifyInclusion(leaf: all[Int(index)], index: index, size: size, proof: proof, root: root),
                    "index \(index) size \(size)")
            }
        }
    }

    @Test func everyConsistencyProofVerifiesUpTo40Leaves() throws {
        let all = leaves(40)
        let tree = InMemoryMerkleTree(leaves: all)
        let stored = DictionaryNodeSource(leaves: all)
        let roots = (0...40).map { Merkle.root(of: Array(all.prefix($0))) }
        for new in UInt64(0)...40 {
            for old in UInt64(0)...new {
                let proof = try Merkle.consistencyProof(from: old, to: new, source: tree)
                #expect(try Merkle.consistencyProof(from: old, to: new, source: stored) == proof)
                #expect(proof.isEmpty == (old == 0 || old == new))
                #expect(
                    Merkle.verifyConsistency(
                        oldSize: old, newSize: new, oldRoot: roots[Int(old)], newRoot: roots[Int(new)], proof: proof),
                    "\(old) -> \(new)")
            }
        }
    }

    @Test func proofsVerifyInAThousandLeafTree() throws {
        let all = leaves(1000)
        let tree = InMemoryMerkleTree(leaves: all)
        let stored = DictionaryNodeSource(leaves: all)
        #expect(tree.root == Merkle.root(of: all))
        for size: UInt64 in [511, 512, 513, 777, 999, 1000] {
            let root = Merkle.root(of: Array(all.prefix(Int(size))))
            for index in 0..<size {
                let proof = try Merkle.inclusionProof(index: index, size: size, source: tree)
                #expect(try Merkle.inclusionProof(index: index, size: size, source: stored) == proof)
                #expect(
                    Merkle.verifyInclusion(leaf: all[Int(index)], index: index, size: size, proof: proof, root: root))
            }
            for old in stride(from: UInt64(1), through: size, by: 7) {
                let oldRoot = Merkle.root(of: Array(all.prefix(Int(old))))
                let proof = try Merkle.consistencyProof(from: old, to: size, source: tree)
                #expect(try Merkle.consistencyProof(from: old, to: size, source: stored) == proof)
                #expect(
                    Merkle.verifyConsistency(oldSize: old, newSize: size, oldRoot: oldRoot, newRoot: root, proof: proof)
                )
            }
        }
    }

    @Test func proofMathRunsAtSizesNear2To63() throws {
        let source = UniformNodeSource(leaf: Merkle.leafHash([0x2A]))
        let sizes: [UInt64] = [1 << 62 + 3, 1 << 63 - 1, 1 << 63, 1 << 63 + 12_345, UInt64.max - 1]
        for size in sizes {
            let root = try Merkle.root(size: size, source: source)
            for index: UInt64 in [0, size / 3, size - 2, size - 1] {
                let proof = try Merkle.inclusionProof(index: index, size: size, source: source)
                #expect(proof.count <= 64)
                #expect(
                    Merkle.verifyInclusion(leaf: source.perLevel[0], index: index, size: size, proof: proof, root: root)
                )
            }
            for old: UInt64 in [1, 1 << 40 + 17, size / 2 + 1, size - 1] {
                let oldRoot = try Merkle.root(size: old, source: source)
                let proof = try Merkle.consistencyProof(from: old, to: size, source: source)
                #expect(proof.count <= 2 * 64)
                #expect(
                    Merkle.verifyConsistency(oldSize: old, newSize: size, oldRoot: oldRoot, newRoot: root, proof: proof)
                )
                #expect(
                    !Merkle.verifyConsistency(
                        oldSize: size, newSize: old, oldRoot: root, newRoot: oldRoot, proof: proof))
            }
        }
    }

    // MARK: Tampering

    @Test func tamperedInclusionProofsFail() throws {
        let all = leaves(33)
        let tree = InMemoryMerkleTree(leaves: all)
        for size in UInt64(1)...33 {
            let root = try Merkle.root(size: size, source: tree)
            for index in 0..<size {
                let proof = try Merkle.inclusionProof(index: index, size: size, source: tree)
                for (description, verified) in tamperedInclusions(
                    leaf: all[Int(index)], index: index, size: size, proof: proof, root: root)
                {
                    #expect(!verified, "index \(index) size \(size): \(description)")
                }
            }
        }
    }

    @Test func tamperedConsistencyProofsFail() throws {
        let all = leaves(33)
        let tree = InMemoryMerkleTree(leaves: all)
        for new in UInt64(2)...33 {
            let newRoot = try Merkle.root(size: new, source: tree)
            for old in 1..<new {
                let oldRoot = try Merkle.root(size: old, source: tree)
                let proof = try Merkle.consistencyProof(from: old, to: new, source: tree)
                for (description, verified) in tamperedConsistencies(
                    old: old, new: new, oldRoot: oldRoot, newRoot: newRoot, proof: proof)
                {
                    #expect(!verified, "\(old) -> \(new): \(description)")
                }
            }
        }
    }

    @Test func inclusionOutsideTheTreeNeverVerifies() {
        let leaf = Merkle.leafHash([1])
        #expect(!Merkle.verifyInclusion(leaf: leaf, index: 0, size: 0, proof: [], root: Merkle.emptyRoot))
        #expect(!Merkle.verifyInclusion(leaf: leaf, index: 0, size: 0, proof: [], root: leaf))
        #expect(!Merkle.verifyInclusion(leaf: leaf, index: 1, size: 1, proof: [], root: leaf))
        #expect(!Merkle.verifyInclusion(leaf: leaf, index: UInt64.max, size: UInt64.max, proof: [], root: leaf))
        #expect(Merkle.verifyInclusion(leaf: leaf, index: 0, size: 1, proof: [], root: leaf))
        #expect(!Merkle.verifyInclusion(leaf: leaf, index: 0, size: 1, proof: [leaf], root: leaf))
    }

    @Test func consistencyWithEqualOrEmptyOldSizes() {
        let empty = Merkle.emptyRoot
        let a = Merkle.leafHash([1])
        let b = Merkle.leafHash([2])
        // Equal sizes: empty proof and equal roots.
        #expect(Merkle.verifyConsistency(oldSize: 5, newSize: 5, oldRoot: a, newRoot: a, proof: []))
        #expect(!Merkle.verifyConsistency(oldSize: 5, newSize: 5, oldRoot: a, newRoot: b, proof: []))
        #expect(!Merkle.verifyConsistency(oldSize: 5, newSize: 5, oldRoot: a, newRoot: a, proof: [a]))
        // Old size 0: the empty tree's root, an empty proof, any new tree.
        #expect(Merkle.verifyConsistency(oldSize: 0, newSize: 0, oldRoot: empty, newRoot: empty, proof: []))
        #expect(Merkle.verifyConsistency(oldSize: 0, newSize: 9, oldRoot: empty, newRoot: b, proof: []))
        #expect(!Merkle.verifyConsistency(oldSize: 0, newSize: 9, oldRoot: empty, newRoot: b, proof: [empty]))
        #expect(!Merkle.verifyConsistency(oldSize: 0, newSize: 9, oldRoot: a, newRoot: b, proof: []))
        #expect(!Merkle.verifyConsistency(oldSize: 0, newSize: 0, oldRoot: a, newRoot: a, proof: []))
        #expect(!Merkle.verifyConsistency(oldSize: 0, newSize: 0, oldRoot: empty, newRoot: empty, proof: [empty]))
        // Backwards in time.
        #expect(!Merkle.verifyConsistency(oldSize: 1, newSize: 0, oldRoot: a, newRoot: empty, proof: []))
        #expect(!Merkle.verifyConsistency(oldSize: 2, newSize: 1, oldRoot: a, newRoot: b, proof: []))
        // A real growth step with no proof.
        #expect(
            !Merkle.verifyConsistency(oldSize: 1, newSize: 2, oldRoot: a, newRoot: Merkle.nodeHash(a, b), proof: []))
        #expect(
            Merkle.verifyConsistency(oldSize: 1, newSize: 2, oldRoot: a, newRoot: Merkle.nodeHash(a, b), proof: [b]))
    }

    // MARK: Errors

    @Test func proofsReportBadArgumentsAndMissingNodes() throws {
        let tree = InMemoryMerkleTree(leaves: leaves(5))
        #expect(throws: MerkleError.indexOutOfRange(index: 5, size: 5)) {
            try Merkle.inclusionProof(index: 5, size: 5, source: tree)
        }
        #expect(throws: MerkleError.indexOutOfRange(index: 0, size: 0)) {
            try Merkle.inclusionProof(index: 0, size: 0, source: tree)
        }
        #expect(throws: MerkleError.invalidSizes(old: 4, new: 3)) {
            try Merkle.consistencyProof(from: 4, to: 3, source: tree)
        }
        #expect(try Merkle.consistencyProof(from: 0, to: 5, source: tree) == [])
        #expect(try Merkle.consistencyProof(from: 5, to: 5, source: tree) == [])
        // Size 6 is 4 + 2 leaves; the pair [4, 6) is not complete in a 5-leaf tree.
        #expect(throws: MerkleError.missingNode(level: 1, index: 2)) {
            try Merkle.root(size: 6, source: tree)
        }
        #expect(throws: MerkleError.missingNode(level: 2, index: 1)) {
            try Merkle.inclusionProof(index: 0, size: 8, source: tree)
        }
        #expect(throws: MerkleError.missingNode(level: -1, index: 0)) {
            try tree.node(level: -1, index: 0)
        }
        #expect(throws: MerkleError.missingNode(level: 3, index: 0)) {
            try tree.node(level: 3, index: 0)
        }
    }

    @Test func compactRangeRejectsAnEdgeThatDoesNotFitItsSize() throws {
        let a = Merkle.leafHash([1])
        #expect(throws: MerkleError.invalidSizes(old: 3, new: 1)) {
            try MerkleCompactRange(size: 3, edge: [a])
        }
        #expect(throws: MerkleError.invalidSizes(old: 0, new: 1)) {
            try MerkleCompactRange(size: 0, edge: [a])
        }
        #expect(throws: MerkleError.invalidSizes(old: 4, new: 2)) {
            try MerkleCompactRange(size: 4, edge: [a, a])
        }
        // A resumed range continues exactly where the original was.
        let all = leaves(11)
        var original = MerkleCompactRange()
        for leaf in all.prefix(6) { original.append(leaf) }
        var resumed = try MerkleCompactRange(size: original.size, edge: original.edge)
        for leaf in all.dropFirst(6) {
            #expect(resumed.append(leaf).map(\.hash) == original.append(leaf).map(\.hash))
        }
        #expect(resumed.root == Merkle.root(of: all))
    }

    // MARK: MerkleHash

    @Test func hashParsingAcceptsOnlyCanonical32ByteForms() throws {
        let root = hash("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
        #expect(root.description == root.hex)
        #expect(MerkleHash(hex: root.hex.uppercased()) == root)
        #expect(MerkleHash(hex: String(root.hex.dropLast(2))) == nil)
        #expect(MerkleHash(hex: root.hex + "00") == nil)
        #expect(MerkleHash(hex: "g" + root.hex.dropFirst()) == nil)
        #expect(MerkleHash(hex: "") == nil)
        #expect(MerkleHash(bytes: Array(repeating: 0, count: 31)) == nil)
        #expect(MerkleHash(bytes: Array(repeating: 0, count: 33)) == nil)
        #expect(MerkleHash(bytes: root.bytes) == root)

        #expect(root.base64 == "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=")
        #expect(MerkleHash(base64: root.base64) == root)
        #expect(MerkleHash(base64: "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg") == nil)
        #expect(MerkleHash(base64: "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyh=") == nil)
        #expect(MerkleHash(base64: " XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=") == nil)
        #expect(MerkleHash(base64: "AAAA") == nil)
        #expect(MerkleHash(base64: Merkle.emptyRoot.base64) == Merkle.emptyRoot)
    }
}
