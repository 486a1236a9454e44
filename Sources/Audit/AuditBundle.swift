import Foundation

/// An export bundle: selected entries with everything needed to check them offline, with nothing
/// but the appliance's public key.
///
/// ```
/// manifest             what was exported: the query, counts, a digest of entries.jsonl (signed note)
/// checkpoint           the newest checkpoint the entries are proven against (C2SP signed note)
/// checkpoints/N.note   older checkpoints (the first that covered the first entry; the auditor's own)
/// consistency.json     a consistency proof from each older checkpoint to the newest
/// entries.jsonl        the entries, canonical JSON, one per line, in index order
/// proofs.jsonl         per entry: index, leaf hash, inclusion proof in the newest checkpoint's tree
/// entries.csv          the same entries for spreadsheets: index, leaf hash, time, kind, user, ...
/// public.key           the verifier key the daemon says it signs with (verify with your own copy)
/// blobs/<sha256>       payloads entries reference by hash (session recordings' chunks)
/// chain.jsonl          the genesis and every `log.key_rotated` entry, whatever the query selected
/// chain-proofs.jsonl   their inclusion proofs in the newest checkpoint's tree
/// ```
///
/// A log that rotated its key also has, in checkpoints/, each rotation's hand-over checkpoint (of
/// exactly the rotation entry's size, signed by the old key) with a consistency proof to the
/// newest. Bundles without chain files (written before rotation existed) verify with one key.
public enum AuditBundle {
    public static let format = "interlock-bundle/1"

    /// What the bundle holds, signed by the appliance when it was exported: the daemon runs the
    /// query again, counts and hashes the entries it selects, and signs this text with its
    /// checkpoint key. So no byte of the bundle is unchecked: the entries by their proofs and this
    /// digest, the checkpoints and this manifest by their signatures.
    public struct Manifest: Sendable, Equatable {
        public var origin: String
        public var checkpointSize: UInt64
        /// The query, as compact JSON with sorted keys (`{"kind":"approval.","since":"24h"}`).
        public var query: String
        /// Whether the query selects by user, resource or kind (then entries need not be contiguous).
        public var filtered: Bool
        public var entries: Int
        public var firstIndex: UInt64?
        public var lastIndex: UInt64?
        /// SHA-256 (hex) of entries.jsonl: every entry's canonical JSON followed by a newline.
        public var digest: String
        public var time: String
        /// The root (hex) of the checkpoint the entries are proven against. With it the manifest,
        /// signed by the key in force at export, is itself a signed tree head: right after a
        /// rotation the newest checkpoint is still the old key's, and this binds it to the new key.
        /// Nil in bundles written before it existed.
        public var root: String?
        /// How many entries chain.jsonl holds, so a bundle cannot lose its key chain unnoticed. Nil
        /// in bundles written before it existed.
        public var chainEntries: Int?
        /// Blobs the entries reference that the bundle holds, and those retention had removed
        /// (nil in bundles written before blobs existed).
        public var blobs: Int?
        public var blobsPruned: Int?

        public init(
            origin: String, checkpointSize: UInt64, query: String, filtered: Bool, entries: Int, firstIndex: UInt64?,
            lastIndex: UInt64?, digest: String, time: String, blobs: Int? = nil, blobsPruned: Int? = nil,
            root: String? = nil, chainEntries: Int? = nil
        ) {
            self.root = root
            self.chainEntries = chainEntries
            self.blobs = blobs
            self.blobsPruned = blobsPruned
            self.origin = origin
            self.checkpointSize = checkpointSize
            self.query = query
            self.filtered = filtered
            self.entries = entries
            self.firstIndex = firstIndex
            self.lastIndex = lastIndex
            self.digest = digest
            self.time = time
        }

        /// The note text (signed as a C2SP note).
        public var text: String {
            [
                AuditBundle.format, "origin \(origin)", "checkpoint \(checkpointSize)", "query \(query)",
                "filtered \(filtered)", "entries \(entries)", "first \(firstIndex.map(String.init) ?? "-")",
                "last \(lastIndex.map(String.init) ?? "-")", "sha256 \(digest)", "time \(time)",
            ].joined(separator: "\n") + "\n"
                + (blobs.map { "blobs \($0)\nblobs_pruned \(blobsPruned ?? 0)\n" } ?? "")
                + (root.map { "root \($0)\n" } ?? "") + (chainEntries.map { "chain \($0)\n" } ?? "")
        }

        public static func parse(_ text: String) throws -> Manifest {
            var fields: [String: String] = [:]
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            guard lines.first == Substring(AuditBundle.format) else {
                throw NoteError("not an \(AuditBundle.format) manifest")
            }
            for line in lines.dropFirst() {
                guard let space = line.firstIndex(of: " ") else { throw NoteError("bad manifest line: \(line)") }
                fields[String(line[..<space])] = String(line[line.index(after: space)...])
            }
            func field(_ k: String) throws -> String {
                guard let v = fields[k] else { throw NoteError("the manifest has no \(k)") }
                return v
            }
            func index(_ k: String) throws -> UInt64? {
                let v = try field(k)
                if v == "-" { return nil }
                guard let n = UInt64(v) else { throw NoteError("manifest \(k) is not a number") }
                return n
            }
            guard let size = UInt64(try field("checkpoint")), let count = Int(try field("entries")),
                let filtered = Bool(try field("filtered"))
            else {
                throw NoteError("the manifest's numbers are unreadable")
            }
            var blobs: Int?
            var pruned: Int?
            if fields["blobs"] != nil || fields["blobs_pruned"] != nil {
                guard let b = Int(try field("blobs")), let p = Int(try field("blobs_pruned")), b >= 0, p >= 0 else {
                    throw NoteError("the manifest's blob counts are unreadable")
                }
                (blobs, pruned) = (b, p)
            }
            return Manifest(
                origin: try field("origin"), checkpointSize: size, query: try field("query"), filtered: filtered,
                entries: count, firstIndex: try index("first"), lastIndex: try index("last"),
                digest: try field("sha256"), time: try field("time"), blobs: blobs, blobsPruned: pruned,
                root: fields["root"],
                chainEntries: try fields["chain"].map {
                    guard let n = Int($0) else { throw NoteError("manifest chain is not a number") }
                    return n
                })
        }
    }

    public struct Proof: Codable, Sendable, Equatable {
        public var index: UInt64
        public var leafHash: String
        public var proof: [String]

        public init(index: UInt64, leafHash: String, proof: [String]) {
            self.index = index
            self.leafHash = leafHash
            self.proof = proof
        }

        enum CodingKeys: String, CodingKey {
            case index, proof
            case leafHash = "leaf_hash"
        }
    }

    public struct Consistency: Codable, Sendable, Equatable {
        public var from: UInt64
        public var to: UInt64
        public var proof: [String]

        public init(from: UInt64, to: UInt64, proof: [String]) {
            self.from = from
            self.to = to
            self.proof = proof
        }
    }

    /// One CSV row (index, leaf hash, time, kind, user, resource, session, the entry's JSON) of
    /// `entry`, decoded here for its members.
    static func csvRowBytes(index: UInt64, leafHash: String, entry: [UInt8], into out: inout [UInt8]) {
        let members: [String: AuditValue]
        if case .object(let m)? = try? CanonicalJSON.decode(entry) { members = m } else { members = [:] }
        csvRowBytes(index: index, leafHash: leafHash, entry: entry, members: members, into: &out)
    }

    public static let csvHeader = "index,leaf_hash,time,kind,user,resource,session,entry"

    /// The row of an entry already decoded, as bytes: the writer writes one and the verifier
    /// compares one for every entry.
    static func csvRowBytes(
        index: UInt64, leafHash: String, entry: [UInt8], members m: [String: AuditValue], into out: inout [UInt8]
    ) {
        out.removeAll(keepingCapacity: true)
        func field<C: Collection>(_ bytes: C) where C.Element == UInt8 {
            let quote = bytes.contains { (b: UInt8) -> Bool in
                switch b {
                case 0x2C, 0x22, 0x0A, 0x0D: return true
                default: return false
                }
            }
            if quote { out.append(0x22) }
            for b in bytes {
                out.append(b)
                if quote && b == 0x22 { out.append(0x22) }
            }
            if quote { out.append(0x22) }
        }
        func text(_ key: String) {
            out.append(0x2C)
            if case .string(let s)? = m[key] { field(s.utf8) }
        }
        field(String(index).utf8)
        out.append(0x2C)
        field(leafHash.utf8)
        for key in ["time", "kind", "user", "resource", "session"] { text(key) }
        out.append(0x2C)
        field(entry)
    }

    /// SHA-256 in lower-case hex (the manifest's digest of entries.jsonl).
    public static func sha256Hex(_ bytes: [UInt8]) -> String { MerkleHash.sha256(Data(bytes)).hex }

}

extension AuditBundle {
    /// Writes a bundle directory as pages of entries arrive (the CLI's export, and tests).
    public struct Writer {
        public let directory: URL
        private var entries = Data()
        private var proofs = Data()
        private var csv = Data((AuditBundle.csvHeader + "\n").utf8)
        /// The CSV row being built (kept between entries so it allocates once).
        private var row: [UInt8] = []
        private var chain = Data()
        private var chainProofs = Data()
        private let encoder: JSONEncoder
        public private(set) var count = 0

        /// Creates `directory` (it must not exist, or be empty).
        public init(directory: String) throws {
            let fm = FileManager.default
            if fm.fileExists(atPath: directory), !((try? fm.contentsOfDirectory(atPath: directory))?.isEmpty ?? false) {
                throw NoteError("\(directory) exists and is not empty")
            }
            self.directory = URL(fileURLWithPath: directory)
            try fm.createDirectory(
                at: self.directory.appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
            try fm.createDirectory(
                at: self.directory.appendingPathComponent("blobs"), withIntermediateDirectories: true)
            encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        }

        /// Writes one blob as `blobs/<sha256>`, refusing bytes that do not hash to `hash`.
        public func addBlob(hash: String, data: Data) throws {
            guard MerkleHash.sha256(data).hex == hash else {
                throw NoteError("blob \(hash) from the appliance does not hash to its name")
            }
            try data.write(to: directory.appendingPathComponent("blobs/\(hash)"))
        }

        public mutating func append(index: UInt64, leafHash: String, proof: [String], entry: [UInt8]) throws {
            entries.append(contentsOf: entry)
            entries.append(0x0A)
            // `{"index":N,"leaf_hash":"…","proof":["…",…]}`: what JSONEncoder with sorted keys writes for
            // a `Proof` (hex needs no escapes), without an encoder per line.
            guard Self.isHex(leafHash), proof.allSatisfy(Self.isHex) else {
                throw NoteError("a proof of entry \(index) is not lower-case hex")
            }
            proofs.append(contentsOf: #"{"index":"#.utf8)
            proofs.append(contentsOf: String(index).utf8)
            proofs.append(contentsOf: #","leaf_hash":""#.utf8)
            proofs.append(contentsOf: leafHash.utf8)
            proofs.append(contentsOf: #"","proof":["#.utf8)
            for (n, hash) in proof.enumerated() {
                if n > 0 { proofs.append(0x2C) }
                proofs.append(0x22)
                proofs.append(contentsOf: hash.utf8)
                proofs.append(0x22)
            }
            proofs.append(contentsOf: "]}\n".utf8)
            AuditBundle.csvRowBytes(index: index, leafHash: leafHash, entry: entry, into: &row)
            row.append(0x0A)
            csv.append(contentsOf: row)
            count += 1
        }

        /// A genesis or rotation entry for chain.jsonl (carried whatever the query selected).
        public mutating func appendChain(index: UInt64, leafHash: String, proof: [String], entry: [UInt8]) throws {
            chain.append(contentsOf: entry)
            chain.append(0x0A)
            chainProofs.append(try encoder.encode(Proof(index: index, leafHash: leafHash, proof: proof)))
            chainProofs.append(0x0A)
        }

        static func isHex(_ s: String) -> Bool {
            s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
        }

        /// Writes every file. `olderCheckpoints` are signed notes; `manifest` the signed manifest.
        public func finish(
            checkpoint: String, olderCheckpoints: [String], consistency: [Consistency], verifierKey: String,
            manifest: String
        ) throws {
            func write(_ data: Data, _ name: String) throws {
                try data.write(to: directory.appendingPathComponent(name))
            }
            try write(entries, "entries.jsonl")
            try write(proofs, "proofs.jsonl")
            try write(csv, "entries.csv")
            try write(Data(checkpoint.utf8), "checkpoint")
            if !chain.isEmpty {
                try write(chain, "chain.jsonl")
                try write(chainProofs, "chain-proofs.jsonl")
            }
            for note in olderCheckpoints {
                let size = (try? Checkpoint.parse(SignedNote.parse(note).text).size).map { String($0) } ?? "unknown"
                try write(Data(note.utf8), "checkpoints/\(size).note")
            }
            try write(try encoder.encode(consistency), "consistency.json")
            try write(Data((verifierKey + "\n").utf8), "public.key")
            try write(Data(manifest.utf8), "manifest")
        }
    }
}

/// Verifies a bundle offline: signatures, every inclusion proof, consistency with the older
/// checkpoints it holds and with one the auditor trusts, blob hashes, and the sanity of what the
/// entries say happened.
///
/// `verifier` may be any key of the log's chain. The chain's entries are proven against the newest
/// checkpoint's tree before any key is taken from them, and then every checkpoint must be signed by
/// the key in force for its size; the trusted key's own checkpoint (a hand-over, or the newest) is
/// what makes the rest follow (see ``AuditKeyChain``).
public enum BundleVerifier {
    public static func verify(
        directory: String, verifier: NoteVerifier, trustedCheckpoint: String? = nil
    ) -> VerificationReport {
        var report = VerificationReport()
        let dir = URL(fileURLWithPath: directory)
        func read(_ name: String) -> Data? { try? Data(contentsOf: dir.appendingPathComponent(name)) }

        // The newest checkpoint, parsed before its signature is checked: which key must have signed
        // it is learned from the chain its tree proves.
        guard let noteData = read("checkpoint"), let note = String(data: noteData, encoding: .utf8) else {
            report.fail("the checkpoint file is missing")
            return report
        }
        let latest: Checkpoint
        do {
            latest = try Checkpoint.parse(try SignedNote.parse(note).text)
        } catch {
            report.fail("the checkpoint is unreadable: \(error)")
            return report
        }
        guard let root = MerkleHash(bytes: latest.rootHash) else {
            report.fail(checkpoint: latest.size, "the checkpoint's root is not 32 bytes")
            return report
        }
        var checker = InclusionChecker(size: latest.size, root: root)
        guard let chain = keyChain(read, verifier: verifier, origin: latest.origin, checker: &checker, report: &report)
        else { return report }

        let manifest: AuditBundle.Manifest
        do {
            guard let data = read("manifest"), let note = String(data: data, encoding: .utf8) else {
                throw NoteError("the manifest file is missing")
            }
            manifest = try AuditBundle.Manifest.parse(try NoteVerifier(verifierKey: chain.currentKey).verify(note))
        } catch {
            report.fail("the manifest does not verify with the log's current key \(chain.currentKey): \(error)")
            return report
        }
        if read("public.key") != Data((chain.currentKey + "\n").utf8) {
            report.fail("public.key is not the log's current key: the bundle names another signer")
        }
        if case .refused(let problem) = chain.checkSignature(note, size: latest.size) {
            report.fail(checkpoint: latest.size, "the checkpoint " + problem)
            return report
        }
        if let claimed = manifest.root, claimed != root.hex {
            report.fail(checkpoint: latest.size, "the manifest names root \(claimed), not the checkpoint's")
        }
        if let count = manifest.chainEntries, count != lines(read("chain.jsonl")).count {
            report.fail("chain.jsonl does not hold the \(count) genesis and rotation entries the manifest names")
        }
        var verifiedSizes: Set<UInt64> = [latest.size]
        if latest.origin != manifest.origin {
            report.fail(
                checkpoint: latest.size,
                "the checkpoint is for log \(latest.origin), the manifest says \(manifest.origin)")
        }
        if latest.size != manifest.checkpointSize {
            report.fail(
                checkpoint: latest.size, "the manifest says the entries are proven at size \(manifest.checkpointSize)")
        }
        report.checkpoints += 1
        report.latest = (latest.size, root)

        // Consistency proofs from the older checkpoints (and the auditor's).
        var consistency: [AuditBundle.Consistency] = []
        if let data = read("consistency.json") {
            if let list = try? JSONDecoder().decode([AuditBundle.Consistency].self, from: data) {
                consistency = list
            } else {
                report.fail("consistency.json is unreadable")
            }
        }
        var usedConsistency: Set<UInt64> = []
        func consistent(_ older: Checkpoint, what: String) {
            guard let oldRoot = MerkleHash(bytes: older.rootHash) else {
                report.fail(checkpoint: older.size, "\(what): root is not 32 bytes")
                return
            }
            if older.origin != latest.origin {
                report.fail(checkpoint: older.size, "\(what) is for log \(older.origin), not \(latest.origin)")
                return
            }
            if older.size > latest.size {
                report.fail(
                    checkpoint: older.size,
                    "\(what) is newer (size \(older.size)) than the bundle's checkpoint (size \(latest.size)): "
                        + "the log was rolled back, or this bundle is stale")
                return
            }
            if older.size == latest.size {
                if oldRoot != root {
                    report.fail(checkpoint: older.size, "\(what) has another root at the same size: the log forked")
                }
                return
            }
            guard let c = consistency.first(where: { $0.from == older.size && $0.to == latest.size }) else {
                report.fail(
                    checkpoint: older.size,
                    "the bundle has no consistency proof from size \(older.size) (export with --trusted-checkpoint)")
                return
            }
            usedConsistency.insert(c.from)
            guard let proof = hashes(c.proof),
                Merkle.verifyConsistency(
                    oldSize: older.size, newSize: latest.size, oldRoot: oldRoot, newRoot: root, proof: proof)
            else {
                report.fail(
                    checkpoint: older.size,
                    "\(what) is not consistent with checkpoint \(latest.size): the log was rewritten between them")
                return
            }
            report.consistencyProofs += 1
        }
        let older =
            (try? FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("checkpoints").path))?
            .sorted() ?? []
        /// A checkpoint signed by the key in force for its size, or nil (and a failure).
        func signed(_ text: String, what: String) -> Checkpoint? {
            guard let checkpoint = try? Checkpoint.parse(try SignedNote.parse(text).text) else {
                report.fail("\(what) is not a signed checkpoint")
                return nil
            }
            switch chain.checkSignature(text, size: checkpoint.size) {
            case .verified:
                return checkpoint
            case .refused(let problem):
                report.fail(checkpoint: checkpoint.size, "\(what) " + problem)
            }
            return nil
        }
        for name in older {
            guard let data = read("checkpoints/" + name), let text = String(data: data, encoding: .utf8) else {
                report.fail("checkpoints/\(name) is unreadable")
                continue
            }
            if let checkpoint = signed(text, what: "checkpoints/\(name)") {
                report.checkpoints += 1
                let before = report.failures.count
                consistent(checkpoint, what: "checkpoint \(checkpoint.size)")
                if report.failures.count == before { verifiedSizes.insert(checkpoint.size) }
            }
        }
        if let trustedCheckpoint, let trusted = signed(trustedCheckpoint, what: "the trusted checkpoint") {
            consistent(trusted, what: "the trusted checkpoint \(trusted.size)")
        }
        // A manifest naming the root is the current key's own signed tree head: it counts as a
        // checkpoint by that key (right after a rotation, the newest checkpoint is the old key's).
        LocalVerifier.checkHandOvers(
            chain, verifier: verifier, signedSizes: verifiedSizes.union(manifest.root == nil ? [] : [UInt64.max]),
            report: &report)

        for c in consistency where !usedConsistency.contains(c.from) {
            // A proof no checkpoint in hand needs must still be sound: it is part of the bundle.
            if c.to != latest.size || hashes(c.proof) == nil {
                report.fail(checkpoint: c.from, "consistency.json lists a proof that fits no checkpoint")
            } else {
                report.notes.append("a consistency proof from size \(c.from) is for a checkpoint not in the bundle")
            }
        }
        // Entries and their inclusion proofs.
        let entryLines = lines(read("entries.jsonl"))
        let proofLines = lines(read("proofs.jsonl"))
        if entryLines.count != manifest.entries {
            report.fail("entries.jsonl has \(entryLines.count) entries, the manifest says \(manifest.entries)")
        }
        if proofLines.count != entryLines.count {
            report.fail("proofs.jsonl has \(proofLines.count) proofs for \(entryLines.count) entries")
        }
        let csv = lines(read("entries.csv"))
        if csv.first.map({ String(decoding: $0, as: UTF8.self) }) != AuditBundle.csvHeader {
            report.fail("entries.csv has no header or another one")
        }
        if csv.count != entryLines.count + 1 {
            report.fail("entries.csv has \(max(0, csv.count - 1)) rows for \(entryLines.count) entries")
        }
        // Each entry on its own (its form, leaf, inclusion proof and CSV row), in slices on every
        // core; then, in order, what relates entries to each other.
        let checked = checkEntries(
            entryLines, proofs: proofLines, csv: csv, checkpoint: latest.size, root: root, from: checker)
        var previous: UInt64?
        var decoded: [(UInt64, [String: AuditValue])] = []
        decoded.reserveCapacity(entryLines.count)
        for entry in checked {
            for failure in entry.failures { report.fail(entry: failure.entry, failure.message) }
            guard let index = entry.index, let members = entry.members else { continue }
            if let previous {
                if index <= previous {
                    report.fail(entry: index, "out of order after entry \(previous)")
                } else if !manifest.filtered && index != previous + 1 {
                    report.fail(entry: previous + 1, "missing: an unfiltered export jumps from \(previous) to \(index)")
                }
            }
            previous = index
            if entry.included { report.inclusionProofs += 1 }
            report.entries += 1
            decoded.append((index, members))
        }
        // Exactly the entries the appliance selected when it exported.
        if let raw = read("entries.jsonl"), MerkleHash.sha256(raw).hex != manifest.digest {
            report.fail("entries.jsonl is not what the appliance exported (its SHA-256 differs from the manifest's)")
        }
        if manifest.firstIndex != decoded.first?.0 || manifest.lastIndex != decoded.last?.0 {
            report.fail("the entries do not span the manifest's range")
        }
        checkBlobs(decoded, manifest: manifest, directory: dir, report: &report)
        Sanity.check(decoded, filtered: manifest.filtered, report: &report)
        return report
    }

    /// What checking one entry on its own found.
    struct EntryCheck: Sendable {
        var index: UInt64?
        var members: [String: AuditValue]?
        var included = false
        var failures: [VerificationReport.Failure] = []

        mutating func fail(_ entry: UInt64?, _ message: String) {
            failures.append(VerificationReport.Failure(entry: entry, checkpoint: nil, message: message))
        }
    }

    /// Checks every entry on its own, in as many slices as there are cores (each with its own
    /// inclusion cache, seeded with what `checker` proved): canonical form, index member, leaf hash,
    /// inclusion proof and CSV row. Results come back in the entries' order.
    static func checkEntries(
        _ entries: [[UInt8]], proofs: [[UInt8]], csv: [[UInt8]], checkpoint size: UInt64, root: MerkleHash,
        from checker: InclusionChecker
    ) -> [EntryCheck] {
        let count = entries.count
        let slices = max(1, min(ProcessInfo.processInfo.activeProcessorCount, count / 4096))
        let results = ResultSlots(count: count)
        DispatchQueue.concurrentPerform(iterations: slices) { slice in
            var checker = checker
            var row: [UInt8] = []
            for n in (count * slice / slices)..<(count * (slice + 1) / slices) {
                var check = EntryCheck()
                defer { results.store(check, at: n) }
                let body = entries[n]
                guard n < proofs.count, let proof = ProofLine(proofs[n]) else {
                    check.fail(nil, "proofs.jsonl line \(n + 1) is missing or not in the appliance's exact form")
                    continue
                }
                let index = proof.index
                guard case .object(let members)? = try? CanonicalJSON.decode(body, requireCanonical: true) else {
                    check.fail(index, "not canonical JSON: the entry was changed")
                    continue
                }
                if LocalVerifier.indexMember(body) != index {
                    check.fail(index, "its body says another index: entries were moved")
                }
                let leaf = Merkle.leafHash(body)
                if leaf != proof.leafHash {
                    check.fail(index, "its body does not hash to its listed leaf hash: the entry was changed")
                }
                if index > 0, checker.verify(leaf: leaf, index: index - 1, proof: proof.proof) {
                    check.included = true
                } else {
                    check.fail(index, "its inclusion proof does not lead to checkpoint \(size)'s root")
                }
                if n + 1 < csv.count {
                    AuditBundle.csvRowBytes(index: index, leafHash: leaf.hex, entry: body, members: members, into: &row)
                    if csv[n + 1] != row {
                        check.fail(index, "its entries.csv row differs from the entry")
                    }
                }
                check.index = index
                check.members = members
            }
        }
        return results.values
    }

    /// One slot per entry, each written by exactly one slice of ``checkEntries``.
    ///
    /// `@unchecked Sendable`: slices write disjoint slots, and `values` is read only after
    /// `concurrentPerform` has returned (which orders every write before it).
    final class ResultSlots: @unchecked Sendable {
        private let slots: UnsafeMutableBufferPointer<EntryCheck>

        init(count: Int) {
            slots = .allocate(capacity: count)
            slots.initialize(repeating: EntryCheck())
        }

        deinit {
            slots.deinitialize()
            slots.deallocate()
        }

        func store(_ check: EntryCheck, at n: Int) { slots[n] = check }

        var values: [EntryCheck] { Array(slots) }
    }

    /// The key chain from chain.jsonl, each entry proven in the newest checkpoint's tree before a key
    /// is taken from it; for a bundle without chain files, the key given alone. Nil (and a
    /// failure) when the key given is not one of the chain's.
    static func keyChain(
        _ read: (String) -> Data?, verifier: NoteVerifier, origin: String, checker: inout InclusionChecker,
        report: inout VerificationReport
    ) -> AuditKeyChain? {
        var chain = AuditKeyChain(genesisKey: verifier.encodedKey)
        let bodies = read("chain.jsonl")
        let proofs = read("chain-proofs.jsonl")
        if bodies != nil || proofs != nil {
            let entryLines = lines(bodies)
            let proofLines = lines(proofs)
            if entryLines.isEmpty || proofLines.count != entryLines.count {
                report.fail("chain-proofs.jsonl has \(proofLines.count) proofs for \(entryLines.count) chain entries")
            }
            var proven: [(index: UInt64, body: [UInt8])] = []
            for (n, body) in entryLines.enumerated() {
                guard n < proofLines.count, let proof = ProofLine(proofLines[n]) else {
                    report.fail("chain-proofs.jsonl line \(n + 1) is missing or not in the appliance's exact form")
                    continue
                }
                guard (try? CanonicalJSON.decode(body, requireCanonical: true)) != nil,
                    LocalVerifier.indexMember(body) == proof.index, Merkle.leafHash(body) == proof.leafHash,
                    proof.index > (proven.last?.index ?? 0),
                    checker.verify(leaf: proof.leafHash, index: proof.index - 1, proof: proof.proof)
                else {
                    report.fail(
                        entry: proof.index, "chain.jsonl: the entry is not the one proven at its index in the tree")
                    continue
                }
                report.inclusionProofs += 1
                proven.append((proof.index, body))
            }
            do {
                chain = try AuditKeyChain.from(proven) ?? chain
            } catch {
                report.fail("chain.jsonl: \(error)")
            }
        }
        return LocalVerifier.adopt(chain, origin: origin, verifier: verifier, report: &report)
    }

    /// Hashes written as lower-case hex, exactly as the appliance writes them (an upper-case digit
    /// is another byte string, so it is refused rather than read as the same hash).
    static func hashes(_ hex: [String]) -> [MerkleHash]? {
        var out: [MerkleHash] = []
        out.reserveCapacity(hex.count)
        for h in hex {
            guard let hash = MerkleHash(hex: h), hash.hex == h else { return nil }
            out.append(hash)
        }
        return out
    }

    static func lines(_ data: Data?) -> [[UInt8]] {
        guard let data else { return [] }
        // A plain scan: the generic `split` called a closure per byte, a fifth of a verification.
        return data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> [[UInt8]] in
            let bytes = raw.bindMemory(to: UInt8.self)
            var out: [[UInt8]] = []
            var start = 0
            while start < bytes.count {
                var end = start
                while end < bytes.count && bytes[end] != 0x0A { end += 1 }
                if end > start { out.append(Array(UnsafeBufferPointer(rebasing: bytes[start..<end]))) }
                start = end + 1
            }
            return out
        }
    }
}

/// One line of proofs.jsonl, read in the exact form the appliance writes
/// (`{"index":N,"leaf_hash":"<hex>","proof":["<hex>",...]}`, lower-case hex, no spaces): anything
/// else is refused, so no byte of the file can change without the verification noticing.
struct ProofLine {
    var index: UInt64
    var leafHash: MerkleHash
    var proof: [MerkleHash]

    init?(_ line: [UInt8]) {
        var i = 0
        func expect(_ s: StaticString) -> Bool {
            let bytes = UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount)
            guard i + bytes.count <= line.count else { return false }
            for b in bytes {
                guard line[i] == b else { return false }
                i += 1
            }
            return true
        }
        func hash() -> MerkleHash? {
            guard i + 66 <= line.count, line[i] == UInt8(ascii: "\""), line[i + 65] == UInt8(ascii: "\"") else {
                return nil
            }
            var valid = true
            let bytes = [UInt8](unsafeUninitializedCapacity: 32) { out, count in
                line.withUnsafeBufferPointer { l in
                    for k in 0..<32 {
                        let hi = Self.nibbles[Int(l[i + 1 + 2 * k])]
                        let lo = Self.nibbles[Int(l[i + 2 + 2 * k])]
                        valid = valid && hi != 0xFF && lo != 0xFF
                        out[k] = hi << 4 | (lo & 0x0F)
                    }
                }
                count = 32
            }
            guard valid else { return nil }
            i += 66
            return MerkleHash(bytes: bytes)
        }
        guard expect(#"{"index":"#) else { return nil }
        var index: UInt64 = 0
        let start = i
        while i < line.count, line[i] >= 0x30, line[i] <= 0x39, i - start < 19 {
            index = index * 10 + UInt64(line[i] - 0x30)
            i += 1
        }
        // Shortest form: digits present, no leading zero.
        guard i > start, line[start] != 0x30 || i == start + 1 else { return nil }
        guard expect(#","leaf_hash":"#), let leaf = hash(), expect(#","proof":["#) else { return nil }
        var proof: [MerkleHash] = []
        if i < line.count, line[i] != UInt8(ascii: "]") {
            while true {
                guard let h = hash() else { return nil }
                proof.append(h)
                if i < line.count, line[i] == UInt8(ascii: ",") {
                    i += 1
                } else {
                    break
                }
            }
        }
        guard expect("]}"), i == line.count else { return nil }
        self.index = index
        self.leafHash = leaf
        self.proof = proof
    }

    /// Lower-case hex digit values by byte; 0xFF for every other byte.
    private static let nibbles: [UInt8] = (0..<256).map { c in
        switch c {
        case 0x30...0x39: UInt8(c - 0x30)
        case 0x61...0x66: UInt8(c - 0x61 + 10)
        default: 0xFF
        }
    }
}

/// Checks many inclusion proofs against one root, remembering every node it has proven: a later
/// proof stops as soon as it reaches a node already known to lead to the root, so proving a whole
/// contiguous export costs about two hashes per entry instead of log2(n).
struct InclusionChecker: Sendable {
    let size: UInt64
    let root: MerkleHash
    /// Proven hashes of subtrees, keyed by (first leaf, leaf count).
    private var known: [Range<UInt64>: MerkleHash] = [:]

    init(size: UInt64, root: MerkleHash) {
        self.size = size
        self.root = root
    }

    /// RFC 9162 2.1.3.2, walking the subtree ranges as it goes so each node is named. Once the
    /// path reaches a node already proven, the rest of the proof must equal the proven siblings
    /// (no more hashing, but every element of every proof is still checked).
    mutating func verify(leaf: MerkleHash, index: UInt64, proof: [MerkleHash]) -> Bool {
        guard index < size else { return false }
        // The path's sibling subtrees, from the root down to the leaf.
        var siblings: [(range: Range<UInt64>, isLeft: Bool)] = []
        var lo: UInt64 = 0
        var hi = size
        while hi - lo > 1 {
            let k = Merkle.largestPowerOfTwo(below: hi - lo)
            if index < lo + k {
                siblings.append(((lo + k)..<hi, false))
                hi = lo + k
            } else {
                siblings.append((lo..<(lo + k), true))
                lo += k
            }
        }
        guard siblings.count == proof.count else { return false }
        siblings.reverse()  // leaf upwards, like the proof
        var hash = leaf
        var covered = index..<(index + 1)
        var seen: [(Range<UInt64>, MerkleHash)] = []
        for (step, sibling) in siblings.enumerated() {
            if let proven = known[covered] {
                guard proven == hash else { return false }
                for rest in step..<siblings.count where known[siblings[rest].range] != proof[rest] {
                    return false
                }
                remember(seen)
                return true
            }
            if let provenSibling = known[sibling.range], provenSibling != proof[step] { return false }
            seen.append((covered, hash))
            seen.append((sibling.range, proof[step]))
            hash = sibling.isLeft ? Merkle.nodeHash(proof[step], hash) : Merkle.nodeHash(hash, proof[step])
            covered =
                min(covered.lowerBound, sibling.range.lowerBound)..<max(covered.upperBound, sibling.range.upperBound)
        }
        guard hash == root else { return false }
        seen.append((covered, hash))
        remember(seen)
        return true
    }

    private mutating func remember(_ nodes: [(Range<UInt64>, MerkleHash)]) {
        for (range, hash) in nodes { known[range] = hash }
    }
}

extension BundleVerifier {
    /// Blobs: each file hashes to its name and is referenced by an exported entry; each referenced
    /// blob is in the bundle or counted as removed by retention in the signed manifest; and a
    /// recording's chunk says the session and position its entry says.
    static func checkBlobs(
        _ entries: [(UInt64, [String: AuditValue])], manifest: AuditBundle.Manifest, directory: URL,
        report: inout VerificationReport
    ) {
        let names = Set(
            (try? FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("blobs").path)) ?? []
        )
        var referenced: Set<String> = []
        var missing = 0
        for (index, m) in entries {
            guard case .string(let hash)? = m["blob"] else { continue }
            let firstReference = referenced.insert(hash).inserted
            guard names.contains(hash) else {
                if firstReference { missing += 1 }
                continue
            }
            guard let data = try? Data(contentsOf: directory.appendingPathComponent("blobs/\(hash)")) else {
                report.fail(entry: index, "blobs/\(hash) is unreadable")
                continue
            }
            guard MerkleHash.sha256(data).hex == hash else {
                report.fail(entry: index, "blobs/\(hash) does not hash to its name: the payload was changed")
                continue
            }
            if case .string(AuditKind.recording)? = m["kind"] {
                do {
                    let chunk = try RecordingChunk.parse([UInt8](data))
                    if case .string(let session)? = m["session"], chunk.header.session != session {
                        report.fail(entry: index, "its recording chunk is of session \(chunk.header.session)")
                    }
                    if let seq = m["seq"]?.uint64Value, chunk.header.seq != seq {
                        report.fail(
                            entry: index, "its recording chunk says it is chunk \(chunk.header.seq), not \(seq)")
                    }
                } catch {
                    report.fail(entry: index, "blobs/\(hash) is not a readable recording chunk: \(error)")
                }
            }
        }
        for name in names.subtracting(referenced).sorted() {
            report.fail("blobs/\(name) is referenced by no exported entry")
        }
        let present = referenced.count - missing
        if let blobs = manifest.blobs {
            if present != blobs || missing != (manifest.blobsPruned ?? 0) {
                report.fail(
                    "the bundle holds \(present) of the \(referenced.count) blobs its entries reference; the "
                        + "manifest says \(blobs), and \(manifest.blobsPruned ?? 0) removed by retention")
            } else if missing > 0 {
                report.notes.append("\(missing) recording chunk(s) were removed by retention; their entries verify")
            }
        } else if missing > 0 {
            report.fail("\(missing) blob(s) the entries reference are missing from the bundle")
        }
        if present > 0 { report.notes.append("\(present) blob(s) checked") }
    }
}
