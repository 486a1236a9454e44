import Foundation
import GRDB
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The keys a log has signed with, in order: the genesis key, then each `log.key_rotated` entry's
/// new key.
///
/// Exactly one key is in force for each tree size. A rotation entry at index r is committed alone,
/// in the same transaction as a checkpoint of size exactly r signed by the old key, so the old key
/// is in force up to and including size r and the new key for every larger size. A checkpoint of
/// any other size signed by the old key is not the log's, whoever holds that key now.
///
/// Why any key of the chain is a sound anchor for an auditor: a checkpoint signed by the key they
/// trust commits, through its root, to every entry before it, the genesis and the rotation entries
/// among them. Each rotation entry carries the new key signed by the old one, and the old key's
/// rotation checkpoint covers it; so walking forward from the trusted key's checkpoint proves each
/// next key, and the entries before it prove each earlier one. No key is taken from the bundle or
/// the database on its own word.
public struct AuditKeyChain: Sendable, Equatable {
    /// One `log.key_rotated` entry.
    public struct Rotation: Sendable, Equatable {
        /// The entry's index: the last tree size the old key signs.
        public var index: UInt64
        public var oldKey: String
        public var newKey: String
        public var reason: String
        /// The rotation statement (``AuditKeyChain/statementText(origin:oldKey:newKey:)``) signed by
        /// the old key, as a C2SP note.
        public var statement: String

        public init(index: UInt64, oldKey: String, newKey: String, reason: String, statement: String) {
            self.index = index
            self.oldKey = oldKey
            self.newKey = newKey
            self.reason = reason
            self.statement = statement
        }
    }

    /// The genesis entry's `public_key`.
    public var genesisKey: String
    /// Oldest first.
    public var rotations: [Rotation]

    public init(genesisKey: String, rotations: [Rotation] = []) {
        self.genesisKey = genesisKey
        self.rotations = rotations
    }

    /// Every key, oldest first: `keys[j]` is in force after `j` rotations.
    public var keys: [String] { [genesisKey] + rotations.map(\.newKey) }

    /// The key that signs new checkpoints.
    public var currentKey: String { rotations.last?.newKey ?? genesisKey }

    /// The position in ``keys`` of the key in force for a checkpoint of `size`: the number of
    /// rotations strictly below it (the rotation's own size is still the old key's).
    public func keyIndex(forSize size: UInt64) -> Int {
        rotations.prefix { $0.index < size }.count
    }

    /// The key in force for a checkpoint of `size`.
    public func key(forSize size: UInt64) -> String { keys[keyIndex(forSize: size)] }

    /// How a key of the chain is named in messages: "the genesis key" or "the key of rotation entry N".
    func describe(keyIndex j: Int) -> String {
        j == 0 ? "the genesis key" : "the key of rotation entry \(rotations[j - 1].index)"
    }

    /// The text the old key signs when it hands over: it names the log, so a statement cannot be
    /// replayed into another log that happens to share the old key.
    public static func statementText(origin: String, oldKey: String, newKey: String) -> String {
        "interlock key rotation\norigin \(origin)\nold \(oldKey)\nnew \(newKey)\n"
    }

    /// Problems with the chain itself, each with the rotation entry it is about: a rotation whose
    /// old key is not the key in force before it, or whose statement is not the old key's signature
    /// of exactly this hand-over.
    public func problems(origin: String) -> [(entry: UInt64, message: String)] {
        var out: [(UInt64, String)] = []
        var previous = genesisKey
        for rotation in rotations {
            defer { previous = rotation.newKey }
            if rotation.oldKey != previous {
                out.append(
                    (rotation.index, "the rotation retires \(rotation.oldKey), but the key in force was \(previous)"))
                continue
            }
            do {
                let old = try NoteVerifier(verifierKey: rotation.oldKey)
                _ = try NoteVerifier(verifierKey: rotation.newKey)
                let text = try old.verify(rotation.statement)
                let expected = Self.statementText(origin: origin, oldKey: rotation.oldKey, newKey: rotation.newKey)
                guard text.utf8.elementsEqual(expected.utf8) else {
                    out.append((rotation.index, "the old key signed another hand-over than this entry names"))
                    continue
                }
            } catch {
                out.append((rotation.index, "the old key's signature of the new key does not verify: \(error)"))
            }
        }
        return out
    }

    /// The chain from the genesis and rotation entries (canonical JSON bodies), in index order.
    /// Nil without a genesis or a rotation to start from.
    package static func from(_ entries: [(index: UInt64, body: [UInt8])]) throws(AuditError) -> AuditKeyChain? {
        var chain: AuditKeyChain?
        for (index, body) in entries {
            guard case .object(let m) = try CanonicalJSON.decode(body) else { continue }
            func text(_ key: String) -> String? {
                if case .string(let s)? = m[key] { return s }
                return nil
            }
            switch text("kind") {
            case AuditKind.genesis?:
                if let key = text("public_key"), chain == nil { chain = AuditKeyChain(genesisKey: key) }
            case AuditKind.keyRotated?:
                guard let old = text("old_key"), let new = text("new_key") else {
                    throw AuditError(.corrupt, "rotation entry \(index) has no old_key or new_key")
                }
                let rotation = Rotation(
                    index: index, oldKey: old, newKey: new, reason: text("reason") ?? "",
                    statement: text("statement") ?? "")
                if chain == nil { chain = AuditKeyChain(genesisKey: old) }
                chain?.rotations.append(rotation)
            default:
                continue
            }
        }
        return chain
    }

    /// The genesis and rotation entries of a log up to `size`, oldest first (through the partial
    /// kind index).
    static func chainEntries(_ db: Database, upTo size: UInt64 = UInt64(Int64.max)) throws -> [AuditRecord] {
        try Row.fetchAll(
            db,
            sql: "SELECT idx, time_us, kind, body FROM entries WHERE kind IN ('\(AuditKind.genesis)', "
                + "'\(AuditKind.keyRotated)') AND \(AuditSchema.indexedRows) AND idx <= ? ORDER BY idx",
            arguments: [Int64(clamping: size)]
        ).map(AuditLog.record(from:))
    }

    /// ``from(_:)`` over stored records.
    package static func from(_ records: [AuditRecord]) throws(AuditError) -> AuditKeyChain? {
        try from(records.map { (index: $0.index, body: $0.body) })
    }

    /// Whether `note` verifies with the key in force for `size`; otherwise a message naming the key
    /// that did sign it when it is one of the chain's (a retired key signing past its rotation).
    func checkSignature(_ note: String, size: UInt64) -> SignatureCheck {
        let j = keyIndex(forSize: size)
        let inForce = keys[j]
        do {
            return .verified(try NoteVerifier(verifierKey: inForce).verify(note))
        } catch {
            for (k, key) in keys.enumerated() where k != j {
                if let other = try? NoteVerifier(verifierKey: key), (try? other.verify(note)) != nil {
                    return .refused(
                        "signed by \(describe(keyIndex: k)) (\(key)), which is not the key in force for size \(size): "
                            + "\(describe(keyIndex: j)) (\(inForce)) is; a retired key signing outside its range is "
                            + "a forgery")
                }
            }
            return .refused("does not verify with \(describe(keyIndex: j)) (\(inForce)): \(error)")
        }
    }
}

/// A note checked against the key in force: its text, or why it is refused.
enum SignatureCheck {
    case verified(String)
    case refused(String)
}

/// What `interlock audit rotate-key` did.
public struct KeyRotationResult: Sendable, Equatable {
    public var oldKey: String
    public var newKey: String
    /// The `log.key_rotated` entry's index (and the size of the old key's last checkpoint).
    public var index: UInt64
}

/// The checkpoint key's files during a rotation: `checkpoint.key`, its public half, and the new
/// key waiting beside it (`checkpoint.key.new`) until the rotation entry is committed.
enum KeyFiles {
    static func pendingPath(for keyPath: String) -> String { keyPath + ".new" }

    /// Replaces the key at `keyPath` with the one at `pending` in one rename, then overwrites the old
    /// key's bytes: a rotation is often because the old key is suspected, and a log must never be
    /// able to sign with it again. The old file is opened before the rename and overwritten after
    /// it, so a crash at any moment leaves `keyPath` holding a whole key (old or new), never zeros.
    /// (The filesystem may keep copies of old blocks; overwriting is best effort, not a shredder.)
    static func install(pending: String, over keyPath: String, signer: NoteSigner) throws(AuditError) {
        let old = open(keyPath, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
        defer { if old >= 0 { close(old) } }
        guard rename(pending, keyPath) == 0 else {
            throw AuditError(
                .storage, "cannot move \(pending) over \(keyPath): \(String(cString: strerror(errno)))")
        }
        syncDirectory(of: keyPath)
        if old >= 0 {
            var info = stat()
            if fstat(old, &info) == 0, info.st_size > 0 {
                let zeros = [UInt8](repeating: 0, count: Int(info.st_size))
                _ = zeros.withUnsafeBytes { pwrite(old, $0.baseAddress, $0.count, 0) }
                _ = fsync(old)
            }
        }
        let publicPath = NoteKeyFile.publicPath(for: keyPath)
        do {
            try Data((signer.verifierKey + "\n").utf8).write(to: URL(fileURLWithPath: publicPath), options: .atomic)
            chmod(publicPath, 0o644)
        } catch {
            throw AuditError(.storage, "rotated the key, but cannot write \(publicPath): \(error)")
        }
    }

    static func syncDirectory(of path: String) {
        let fd = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    /// Decides which key a signed log opens with, finishing or discarding a rotation a crash
    /// interrupted. `logKey` is the key the log says is current (the last rotation's new key, else
    /// the genesis key), `retiredKey` the last rotation's old key.
    ///
    /// - the key file holds `logKey`: normal; a leftover pending file is from a rotation whose entry
    ///   never committed, and is removed;
    /// - the key file holds `retiredKey` and the pending file holds `logKey`: the rotation entry
    ///   committed but the key was not switched yet; the switch is finished now;
    /// - anything else: `keyMismatch`.
    static func reconcile(
        signer: NoteSigner, keyPath: String?, logKey: String, retiredKey: String?, databasePath: String
    ) throws(AuditError) -> NoteSigner {
        let mine = signer.verifierKey
        let pending = keyPath.map(pendingPath(for:))
        let pendingSigner = pending.flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
            .flatMap { try? NoteKeyFile.read(path: $0) }
        if mine == logKey {
            if let pending, FileManager.default.fileExists(atPath: pending) { unlink(pending) }
            return signer
        }
        if let keyPath, let pending, let next = pendingSigner, mine == retiredKey, next.verifierKey == logKey {
            try install(pending: pending, over: keyPath, signer: next)
            return next
        }
        let retired = mine == retiredKey ? " (the key it retired in its last rotation, and no new key is waiting)" : ""
        throw AuditError(
            .keyMismatch,
            "\(databasePath) is signed by \(logKey), not by the key given (\(mine))\(retired); "
                + "use that log's own key, or a new audit.database for a new key")
    }
}

extension AuditLog {
    /// The log's key chain (genesis key, then every rotation), read from its entries.
    public func keyChain() throws(AuditError) -> AuditKeyChain? {
        try AuditKeyChain.from(try keyChainRecords(upTo: UInt64(Int64.max)))
    }

    /// Replaces the checkpoint signing key, leaving a signed account of it in the log.
    ///
    /// 1. A new key with the same name (so the origin and signature lines stay) is written beside
    ///    the key file as `checkpoint.key.new` (0600).
    /// 2. A `log.key_rotated` entry names the old and new keys, the reason and who asked, and
    ///    carries the old key's signature of the hand-over. It is committed alone, with a checkpoint
    ///    of exactly its size signed by the old key, and `meta.verifier_key` moves to the new key in
    ///    the same transaction.
    /// 3. Then, before anything else is signed, the new key replaces `checkpoint.key` (one rename)
    ///    and `checkpoint.pub`, and the old key file's bytes are overwritten.
    ///
    /// A crash between any two steps leaves a log that opens: ``open(path:durability:signing:logger:)``
    /// discards a new key whose entry never committed, and finishes a switch whose entry did.
    /// Blocking: call it off the event loops.
    public func rotateKey(
        reason: String, requestedBy: (uid: UInt32, user: String?)
    ) throws(AuditError)
        -> KeyRotationResult
    {
        guard let keyPath = keyFile, let old = writer.currentSigner else {
            throw AuditError(.rotationFailed, "this log has no signing key file to rotate")
        }
        guard rotating.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            throw AuditError(.rotationFailed, "another key rotation is running")
        }
        defer { rotating.store(false, ordering: .releasing) }
        let pending = KeyFiles.pendingPath(for: keyPath)
        unlink(pending)  // a rotation that failed before its entry committed
        let new: NoteSigner
        let statement: String
        do {
            new = try NoteSigner.generate(name: old.name)
            try NoteKeyFile.write(new, to: pending)
            KeyFiles.syncDirectory(of: pending)
            statement = try old.sign(
                AuditKeyChain.statementText(origin: origin, oldKey: old.verifierKey, newKey: new.verifierKey))
        } catch {
            unlink(pending)
            throw AuditError(.rotationFailed, "cannot prepare the new key \(pending): \(error)")
        }
        var by: [String: AuditValue] = ["uid": .uint(UInt64(requestedBy.uid))]
        if let user = requestedBy.user { by["user"] = .string(user) }
        let fields: [String: AuditValue] = [
            "old_key": .string(old.verifierKey), "new_key": .string(new.verifierKey), "reason": .string(reason),
            "requested_by": .object(by), "statement": .string(statement),
        ]
        let record: AuditRecord
        do {
            let template = try EntryTemplate.make(kind: AuditKind.keyRotated, subject: AuditSubject(), fields: fields)
            let rotation = AuditWriter.Rotation(newSigner: new) { () throws(AuditError) in
                try KeyFiles.install(pending: pending, over: keyPath, signer: new)
            }
            record = try waitFor { done in
                writer.enqueue(kind: AuditKind.keyRotated, template: template, rotation: rotation, completion: done)
            }
        } catch {
            // Nothing committed: the old key stays, the new one goes.
            unlink(pending)
            throw error
        }
        logger.notice(
            "rotated the checkpoint signing key",
            metadata: [
                "audit.old_key": "\(old.verifierKey)", "audit.new_key": "\(new.verifierKey)",
                "audit.index": "\(record.index)",
            ])
        // The writer replaced the key file before it completed the entry; say so if it could not.
        guard (try? NoteKeyFile.read(path: keyPath))?.verifierKey == new.verifierKey else {
            throw AuditError(
                .rotationFailed,
                "the rotation is committed (entry \(record.index)) and the log signs with the new key "
                    + "\(new.verifierKey), but \(keyPath) could not be replaced: the new key waits in \(pending) "
                    + "and is installed when the log is next opened (see the daemon's log)")
        }
        return KeyRotationResult(oldKey: old.verifierKey, newKey: new.verifierKey, index: record.index)
    }
}

extension AuditLog {
    /// The genesis and `log.key_rotated` entries up to `size`, oldest first (for an export's chain).
    public func keyChainRecords(upTo size: UInt64) throws(AuditError) -> [AuditRecord] {
        try read("reading the key chain") { db in try AuditKeyChain.chainEntries(db, upTo: size) }
    }
}
