import Foundation
import GRDB

/// What a verification found: how much it checked, and every failure, each naming the entry or
/// checkpoint it is about. A report with no failures is a pass.
public struct VerificationReport: Sendable {
    public struct Failure: Sendable, CustomStringConvertible {
        /// The entry (1-based index) the failure is about, if one.
        public var entry: UInt64?
        /// The checkpoint (tree size) the failure is about, if one.
        public var checkpoint: UInt64?
        public var message: String

        public var description: String {
            var where_: [String] = []
            if let entry { where_.append("entry \(entry)") }
            if let checkpoint { where_.append("checkpoint \(checkpoint)") }
            return (where_.isEmpty ? "" : where_.joined(separator: ", ") + ": ") + message
        }
    }

    public var entries = 0
    public var checkpoints = 0
    public var inclusionProofs = 0
    public var consistencyProofs = 0
    public var sessionsOpenAtCheckpoint = 0
    /// The newest verified checkpoint: size and root.
    public var latest: (size: UInt64, root: MerkleHash)?
    /// The keys the log signed with, as proven (the key given alone for a log that never rotated).
    public var keyChain: AuditKeyChain?
    public var failures: [Failure] = []
    /// Facts worth printing that are not failures.
    public var notes: [String] = []

    public var passed: Bool { failures.isEmpty }

    mutating func fail(entry: UInt64? = nil, checkpoint: UInt64? = nil, _ message: String) {
        // A broken log can fail at every entry after the break: the first few name it.
        if failures.count < 1000 {
            failures.append(Failure(entry: entry, checkpoint: checkpoint, message: message))
        }
    }

    public init() {}
}

/// Checks a log's checkpoints against its entries.
///
/// It trusts nothing in the database but the bytes it hashes: every entry body is hashed again,
/// the tree is rebuilt from those hashes, and every stored checkpoint must carry a valid signature
/// by the key in force for its size over the root of the rebuilt tree at its size. A changed,
/// removed, reordered or added entry changes some root; the stored leaf hashes then say which entry.
///
/// `verifier` may be any key of the log's chain (``AuditKeyChain``): a checkpoint it signed proves
/// the entries before it, the genesis and rotation entries among them, and those name the others.
public enum LocalVerifier {
    /// Verifies the database at `path` (opened read-only; the daemon may be running).
    public static func verify(databasePath path: String, verifier: NoteVerifier) -> VerificationReport {
        var report = VerificationReport()
        var configuration = Configuration()
        configuration.readonly = true
        do {
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            try queue.read { db in try verify(db, verifier: verifier, report: &report) }
        } catch {
            report.fail("cannot read \(path): \(error)")
        }
        return report
    }

    static func verify(_ db: Database, verifier: NoteVerifier, report: inout VerificationReport) throws {
        let origin = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'appliance_id'").map {
            "interlock/\($0)"
        }
        var checkpoints: [StoredCheckpoint] = []
        for row in try Row.fetchAll(db, sql: "SELECT size, time_us, root, note FROM checkpoints ORDER BY size") {
            guard let checkpoint = StoredTree.checkpoint(row) else {
                report.fail(checkpoint: UInt64(row["size"] as Int64), "the stored root is not 32 bytes")
                continue
            }
            checkpoints.append(checkpoint)
        }
        let chain = try keyChain(db, origin: origin ?? "", verifier: verifier, report: &report)
        guard let chain else { return }
        // Each checkpoint's note must be signed by the key in force for its size, and say what its
        // row says.
        var signed: [UInt64: MerkleHash] = [:]
        for checkpoint in checkpoints {
            do {
                let text: String
                switch chain.checkSignature(checkpoint.note, size: checkpoint.size) {
                case .verified(let verified): text = verified
                case .refused(let problem):
                    report.fail(checkpoint: checkpoint.size, problem)
                    continue
                }
                let parsed = try Checkpoint.parse(text)
                guard let root = MerkleHash(bytes: parsed.rootHash), parsed.size == checkpoint.size else {
                    report.fail(
                        checkpoint: checkpoint.size, "the signed note is for size \(parsed.size), not its row's")
                    continue
                }
                if let origin, parsed.origin != origin {
                    report.fail(
                        checkpoint: checkpoint.size, "the signed note names log \(parsed.origin), not \(origin)")
                }
                signed[checkpoint.size] = root
                report.checkpoints += 1
            } catch {
                report.fail(checkpoint: checkpoint.size, "the signed note is unreadable: \(error)")
            }
        }
        guard let newest = checkpoints.last else {
            report.fail("the log has no checkpoint")
            return
        }
        checkHandOvers(chain, verifier: verifier, signedSizes: Set(signed.keys), report: &report)
        // Walk the entries in index order, rebuilding the tree.
        var range = MerkleCompactRange()
        var expected: UInt64 = 1
        var firstBadLeaf: UInt64?
        let leafStatement = try db.makeStatement(sql: "SELECT hash FROM tree_nodes WHERE level = 0 AND idx = ?")
        let sizes = checkpoints.map(\.size)
        var nextCheckpoint = 0
        while nextCheckpoint < sizes.count && sizes[nextCheckpoint] == 0 {
            check(size: 0, root: range.root, signed: signed, report: &report, firstBadLeaf: nil)
            nextCheckpoint += 1
        }
        // Retention: bodies below the newest `log.prune` entry's `pruned_below` are gone by design.
        // Their kept leaf hashes stand in for them, and the signed roots check those.
        var prunedBelow: UInt64 = 1
        for body in try Data.fetchAll(db, sql: "SELECT body FROM entries WHERE kind = 'log.prune'") {
            if case .object(let m)? = try? CanonicalJSON.decode([UInt8](body)) {
                switch m["pruned_below"] {
                case .uint(let v)?: prunedBelow = max(prunedBelow, v)
                case .int(let v)? where v > 0: prunedBelow = max(prunedBelow, UInt64(v))
                default: break
                }
            }
        }
        if prunedBelow > 1 {
            // The key chain's entries stay below the cut: each must still hash to its leaf.
            var kept: [UInt64: [UInt8]] = [:]
            for row in try Row.fetchAll(
                db, sql: "SELECT idx, body FROM entries WHERE idx < ?", arguments: [Int64(prunedBelow)])
            {
                kept[UInt64(row["idx"] as Int64)] = [UInt8](row["body"] as Data)
            }
            for leafIndex in 0..<(prunedBelow - 1) {
                guard let stored = try Data.fetchOne(leafStatement, arguments: [Int64(leafIndex)]),
                    let leaf = MerkleHash(bytes: [UInt8](stored))
                else {
                    report.fail(entry: leafIndex + 1, "pruned, and its leaf hash is missing too")
                    break
                }
                if let body = kept[leafIndex + 1] {
                    if Merkle.leafHash(body) != leaf {
                        report.fail(
                            entry: leafIndex + 1, "its body does not hash to its stored leaf: the entry was changed")
                    }
                    report.entries += 1
                }
                _ = range.append(leaf)
                while nextCheckpoint < sizes.count && sizes[nextCheckpoint] == range.size {
                    check(size: range.size, root: range.root, signed: signed, report: &report, firstBadLeaf: nil)
                    nextCheckpoint += 1
                }
            }
            expected = prunedBelow
            report.notes.append("entries 1–\(prunedBelow - 1) were pruned by retention; their leaf hashes were checked")
        }
        let cursor = try Row.fetchCursor(
            db, sql: "SELECT idx, body FROM entries WHERE idx >= ? ORDER BY idx", arguments: [Int64(prunedBelow)])
        // The stored leaves, walked alongside the entries (one scan instead of a lookup each).
        let storedLeaves = try Row.fetchCursor(
            db, sql: "SELECT idx, hash FROM tree_nodes WHERE level = 0 AND idx >= ? ORDER BY idx",
            arguments: [Int64(prunedBelow - 1)])
        var storedLeaf: (UInt64, Data)?
        func stored(_ leafIndex: UInt64) throws -> Data? {
            while storedLeaf.map({ $0.0 < leafIndex }) ?? true {
                guard let row = try storedLeaves.next() else {
                    storedLeaf = (UInt64.max, Data())
                    break
                }
                storedLeaf = (UInt64(row["idx"] as Int64), row["hash"])
            }
            return storedLeaf.flatMap { $0.0 == leafIndex ? $0.1 : nil }
        }
        while let row = try cursor.next() {
            let index = UInt64(row["idx"] as Int64)
            let body = [UInt8](row["body"] as Data)
            if index != expected {
                report.fail(
                    entry: expected,
                    index > expected
                        ? "missing: the log jumps from entry \(expected - 1) to \(index)"
                        : "duplicate or out-of-order index \(index)")
                expected = index
            }
            if let member = Self.indexMember(body), member != index {
                report.fail(entry: index, "its body says index \(member): entries were moved")
            }
            let leaf = Merkle.leafHash(body)
            if let stored = try stored(index - 1), stored != Data(leaf.bytes) {
                report.fail(entry: index, "its body does not hash to its stored leaf: the entry was changed")
                if firstBadLeaf == nil { firstBadLeaf = index }
            }
            _ = range.append(leaf)
            report.entries += 1
            expected = index + 1
            while nextCheckpoint < sizes.count && sizes[nextCheckpoint] == range.size {
                check(size: range.size, root: range.root, signed: signed, report: &report, firstBadLeaf: firstBadLeaf)
                nextCheckpoint += 1
            }
        }
        if range.size < newest.size {
            report.fail(
                checkpoint: newest.size,
                "the log ends at entry \(range.size) but checkpoint \(newest.size) covers \(newest.size): "
                    + "entries \(range.size + 1)–\(newest.size) are gone")
        }
        if let root = signed[newest.size] {
            report.latest = (newest.size, root)
        }
        try verifyBlobs(db, report: &report)
        report.notes.append("\(range.size - min(range.size, newest.size)) entries after the newest checkpoint")
    }

    /// The log's key chain from its genesis and rotation entries, with the problems of its rotation
    /// statements reported. Nil (and a failure) when the key given is not one of the chain's.
    static func keyChain(
        _ db: Database, origin: String, verifier: NoteVerifier, report: inout VerificationReport
    ) throws -> AuditKeyChain? {
        var chain = AuditKeyChain(genesisKey: verifier.encodedKey)
        do {
            chain = try AuditKeyChain.from(AuditKeyChain.chainEntries(db)) ?? chain
        } catch {
            report.fail("the genesis and rotation entries are unreadable: \(error)")
        }
        return adopt(chain, origin: origin, verifier: verifier, report: &report)
    }

    /// Reports the chain's own problems, and returns it when the key given is one of its keys.
    static func adopt(
        _ chain: AuditKeyChain, origin: String, verifier: NoteVerifier, report: inout VerificationReport
    ) -> AuditKeyChain? {
        for problem in chain.problems(origin: origin) {
            report.fail(entry: problem.entry, problem.message)
        }
        guard chain.keys.contains(verifier.encodedKey) else {
            report.fail(
                "the key given (\(verifier.encodedKey)) is not one this log signed with; its keys are "
                    + chain.keys.joined(separator: ", "))
            return nil
        }
        report.keyChain = chain
        return chain
    }

    /// Every rotation must have a checkpoint of exactly its size signed by the old key (its
    /// hand-over), and some checkpoint must be signed by the key the auditor trusts: that is where
    /// trust in the rest of the chain comes from.
    static func checkHandOvers(
        _ chain: AuditKeyChain, verifier: NoteVerifier, signedSizes: Set<UInt64>, report: inout VerificationReport
    ) {
        for rotation in chain.rotations where !signedSizes.contains(rotation.index) {
            report.fail(
                entry: rotation.index,
                "no checkpoint of size \(rotation.index) signed by the old key: the rotation's hand-over is not proven")
        }
        let trusted = chain.keys.firstIndex(of: verifier.encodedKey) ?? 0
        if !signedSizes.contains(where: { chain.keyIndex(forSize: $0) == trusted }) {
            report.fail(
                "no checkpoint is signed by the key given (\(chain.describe(keyIndex: trusted))); "
                    + "verify with another key of the chain, or after the next checkpoint")
        }
        if !chain.rotations.isEmpty {
            report.notes.append(
                "key chain: the genesis key and \(chain.rotations.count) rotation(s) (entries "
                    + chain.rotations.map { String($0.index) }.joined(separator: ", ") + "), trusted through "
                    + chain.describe(keyIndex: trusted))
        }
    }

    private static func check(
        size: UInt64, root: MerkleHash, signed: [UInt64: MerkleHash], report: inout VerificationReport,
        firstBadLeaf: UInt64?
    ) {
        guard let expected = signed[size] else { return }
        if expected != root {
            let hint = firstBadLeaf.map { " (entry \($0) is the first whose body no longer matches its leaf)" } ?? ""
            report.fail(
                checkpoint: size,
                "the entries do not hash to the signed root \(expected.hex)\(hint): the log was changed at or before entry \(size)"
            )
        }
    }

    /// The `index` member of a canonical entry. Fast path: the digits after the first `"index":`
    /// (no entry kind nests an object with an `index` member); otherwise a full decode.
    static func indexMember(_ body: [UInt8]) -> UInt64? {
        let key: [UInt8] = Array(#""index":"#.utf8)
        if body.count > key.count {
            var i = 0
            let last = body.count - key.count
            while i <= last {
                if body[i] == key[0] && body[i..<(i + key.count)].elementsEqual(key) {
                    var j = i + key.count
                    var value: UInt64 = 0
                    var digits = 0
                    while j < body.count, body[j] >= 0x30, body[j] <= 0x39, digits < 19 {
                        value = value * 10 + UInt64(body[j] - 0x30)
                        j += 1
                        digits += 1
                    }
                    if digits > 0 { return value }
                    break
                }
                i += 1
            }
        }
        guard case .object(let members)? = try? CanonicalJSON.decode(body) else { return nil }
        switch members["index"] {
        case .uint(let index)?: return index
        case .int(let index)? where index >= 0: return UInt64(index)
        default: return nil
        }
    }
}
