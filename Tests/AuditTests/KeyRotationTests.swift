import Foundation
import GRDB
import Logging
import Testing

@testable import Audit

/// Signing-key rotation on real database files: the hand-over is signed under the old key, both
/// ends of the chain verify a log and a bundle, a retired key signing past its rotation is named,
/// a crash at any step leaves a log that opens, and any other key is still refused.
@Suite struct KeyRotationTests {
    static let logger = Logger(label: "t", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A directory holding `checkpoint.key` (0600) and the log beside it, as the daemon lays them out.
    struct Appliance {
        let dir: String
        var keyPath: String { dir + "/checkpoint.key" }
        var databasePath: String { dir + "/audit.db" }

        func open(_ signer: NoteSigner) throws -> AuditLog {
            try AuditLog.open(
                path: databasePath, durability: .crash,
                signing: AuditSigning(signer: signer, genesis: ["version": .string("test")], keyFile: keyPath),
                logger: KeyRotationTests.logger)
        }

        /// Opens with whatever key the key file holds now (what the daemon does at start).
        func reopen() throws -> AuditLog { try open(try NoteKeyFile.read(path: keyPath)) }
    }

    static func withAppliance(_ body: (Appliance, NoteSigner) throws -> Void) throws {
        try EvidenceVerificationTests.withDir { dir in
            let signer = try NoteSigner.generate(name: "test-appliance")
            try NoteKeyFile.write(signer, to: dir + "/checkpoint.key")
            try body(Appliance(dir: dir), signer)
        }
    }

    static func append(_ log: AuditLog, _ count: Int, from start: Int = 0) throws {
        for i in start..<(start + count) {
            _ = try log.appendAndWait(
                kind: "statement", subject: AuditSubject(user: "svc-ci", resource: "orders-db", session: "s1"),
                fields: ["n": .int(Int64(i)), "text": .string("SELECT \(i)")])
        }
        log.checkpointNow()
        try EvidenceVerificationTests.waitForCheckpoint(log)
    }

    static func verifier(_ key: String) throws -> NoteVerifier { try NoteVerifier(verifierKey: key) }

    static func local(_ app: Appliance, _ key: String) throws -> VerificationReport {
        LocalVerifier.verify(databasePath: app.databasePath, verifier: try verifier(key))
    }

    /// A bundle of the whole log, with the key chain, built the way the daemon's export builds it.
    static func makeBundle(_ log: AuditLog, into dir: String) throws {
        try EvidenceVerificationTests.writeBundle(log, into: dir, chain: true)
    }

    /// Commits a rotation entry the way ``AuditLog/rotateKey(reason:requestedBy:)`` does, but with
    /// the statement and the key-file step given: for a broken signature, or a crash before the
    /// key file is replaced.
    static func commitRotation(
        _ log: AuditLog, old: NoteSigner, new: NoteSigner, statementSigner: NoteSigner
    ) throws -> AuditRecord {
        let statement = try statementSigner.sign(
            AuditKeyChain.statementText(origin: log.origin, oldKey: old.verifierKey, newKey: new.verifierKey))
        let template = try EntryTemplate.make(
            kind: AuditKind.keyRotated, subject: AuditSubject(),
            fields: [
                "old_key": .string(old.verifierKey), "new_key": .string(new.verifierKey), "reason": .string(""),
                "requested_by": .object(["uid": .uint(0)]), "statement": .string(statement),
            ])
        // The key file is left alone, as if the process died right after the commit.
        let rotation = AuditWriter.Rotation(newSigner: new) { () throws(AuditError) in }
        return try log.waitFor { done in
            log.writer.enqueue(kind: AuditKind.keyRotated, template: template, rotation: rotation, completion: done)
        }
    }

    static func bundle(_ dir: String, _ key: String) throws -> VerificationReport {
        BundleVerifier.verify(directory: dir, verifier: try verifier(key))
    }

    /// The database, and the bundle when given, verify with each of `keys`.
    static func expectVerifies(_ app: Appliance, bundle: String? = nil, with keys: [String]) throws {
        for key in keys {
            let report = try local(app, key)
            #expect(report.passed, "\(report.failures)")
            if let bundle {
                let offline = try self.bundle(bundle, key)
                #expect(offline.passed, "\(offline.failures)")
            }
        }
    }

    // MARK: rotation

    @Test func aRotatedLogVerifiesLocallyAndAsABundleWithTheOldKeyAndWithTheNewOne() throws {
        try Self.withAppliance { app, old in
            let log = try app.open(old)
            try Self.append(log, 5)
            let rotation = try log.rotateKey(reason: "yearly", requestedBy: (1000, "opal"))
            #expect(rotation.oldKey == old.verifierKey && rotation.newKey != old.verifierKey)
            #expect(log.verifierKey == rotation.newKey)
            // The old key signed exactly the rotation's size; the files hold the new key only.
            let handOver = try #require(try log.checkpoints(sizes: rotation.index...rotation.index).first)
            #expect((try? Self.verifier(old.verifierKey).verify(handOver.note)) != nil)
            let installed = try NoteKeyFile.read(path: app.keyPath)
            #expect(installed.verifierKey == rotation.newKey && installed.name == old.name)
            #expect(try String(contentsOfFile: app.dir + "/checkpoint.pub", encoding: .utf8) == rotation.newKey + "\n")
            #expect(!FileManager.default.fileExists(atPath: app.keyPath + ".new"))
            let entry = try #require(try log.entries(from: rotation.index, count: 1).first)
            #expect(entry.kind == "log.key_rotated")
            #expect(entry.text.contains(#""reason":"yearly""#) && entry.text.contains(#""user":"opal""#))
            // Statements go on, under the new key.
            try Self.append(log, 5, from: 5)
            let newest = try #require(try log.latestCheckpoint())
            #expect(newest.size > rotation.index)
            #expect((try? Self.verifier(rotation.newKey).verify(newest.note)) != nil)
            #expect((try? Self.verifier(old.verifierKey).verify(newest.note)) == nil)
            let chain = try #require(try log.keyChain())
            #expect(chain.keys == [old.verifierKey, rotation.newKey])
            try Self.makeBundle(log, into: app.dir + "/bundle")
            // 12 entries, and the heartbeat that follows a rotation when the writer found nothing queued.
            let total = Int(try log.lastIndex)
            #expect(total == 12 || total == 13)
            log.close()

            for key in [old.verifierKey, rotation.newKey] {
                let report = try Self.local(app, key)
                #expect(report.passed, "\(report.failures)")
                #expect(report.keyChain?.rotations.map(\.index) == [rotation.index])
                let offline = try Self.bundle(app.dir + "/bundle", key)
                #expect(offline.passed, "\(offline.failures)")
                #expect(offline.entries == total && offline.consistencyProofs >= 1)
            }
            let stranger = try NoteSigner.generate(name: "test-appliance").verifierKey
            #expect(try !Self.local(app, stranger).passed)
            #expect(try !Self.bundle(app.dir + "/bundle", stranger).passed)
        }
    }

    @Test func retentionKeepsTheKeyChainSoAPrunedRotatedLogStillVerifiesWithEitherKey() throws {
        try Self.withAppliance { app, old in
            let log = try app.open(old)
            try Self.append(log, 5)
            let rotation = try log.rotateKey(reason: "yearly", requestedBy: (0, "root"))
            try Self.append(log, 5, from: 5)
            let result = try #require(try log.prune(before: Date().addingTimeInterval(1), policy: "entries: 0d"))
            // Everything before the prune went, but the genesis and the rotation entry.
            #expect(result.removed == Int(result.prunedBelow) - 1 - 2)
            let left = try log.entries(from: 1, count: 100)
            #expect(left.prefix(2).map(\.kind) == ["log.genesis", "log.key_rotated"])
            #expect(left.dropFirst(2).first?.index == result.prunedBelow)
            #expect(try log.keyChain()?.keys == [old.verifierKey, rotation.newKey])
            // An unfiltered selection starts at the cut (gap-free); a filtered one finds the chain.
            #expect(try log.query(AuditQuery(limit: 100)).first?.index == result.prunedBelow)
            #expect(try log.query(AuditQuery(kind: AuditKind.keyRotated)).map(\.index) == [rotation.index])
            try Self.append(log, 3, from: 10)
            try Self.makeBundle(log, into: app.dir + "/bundle")
            // A second prune counts from the first kept index, not from the genesis.
            let second = try #require(try log.prune(before: Date().addingTimeInterval(1), policy: "entries: 0d"))
            #expect(second.removed == Int(second.prunedBelow - result.prunedBelow) - 0)
            log.close()
            try Self.expectVerifies(app, bundle: app.dir + "/bundle", with: [old.verifierKey, rotation.newKey])
            // The kept chain is still checked against its leaves.
            let changed = try EvidenceVerificationTests.tampered(app.databasePath, "changed") { db in
                try db.execute(
                    sql: "UPDATE entries SET body = replace(body, 'yearly', 'weekly') WHERE idx = ?",
                    arguments: [Int64(rotation.index)])
            }
            let failures = LocalVerifier.verify(databasePath: changed, verifier: try Self.verifier(old.verifierKey))
                .failures
            #expect(failures.contains { $0.entry == rotation.index }, "\(failures)")
        }
    }

    @Test func aBundleExportedRightAfterARotationVerifiesWithTheNewKeyThroughItsManifest() throws {
        try Self.withAppliance { app, old in
            let log = try app.open(old)
            try Self.append(log, 3)
            let rotation = try log.rotateKey(reason: "", requestedBy: (0, "root"))
            // Nothing since: the newest checkpoint is the old key's hand-over.
            #expect(try log.latestCheckpoint()?.size == rotation.index)
            try Self.makeBundle(log, into: app.dir + "/bundle")
            log.close()
            for key in [old.verifierKey, rotation.newKey] {
                let report = try Self.bundle(app.dir + "/bundle", key)
                #expect(report.passed, "\(report.failures)")
            }
        }
    }

    @Test func twoRotationsInARowVerifyWithEveryKeyOfTheChain() throws {
        try Self.withAppliance { app, first in
            var log = try app.open(first)
            try Self.append(log, 3)
            let one = try log.rotateKey(reason: "one", requestedBy: (0, "root"))
            try Self.append(log, 3, from: 3)
            log.close()
            // A restart between them: the daemon opens with the installed key.
            log = try app.reopen()
            let two = try log.rotateKey(reason: "two", requestedBy: (0, "root"))
            #expect(two.oldKey == one.newKey)
            try Self.append(log, 3, from: 6)
            #expect(try log.keyChain()?.keys == [first.verifierKey, one.newKey, two.newKey])
            try Self.makeBundle(log, into: app.dir + "/bundle")
            log.close()
            try Self.expectVerifies(
                app, bundle: app.dir + "/bundle", with: [first.verifierKey, one.newKey, two.newKey])
        }
    }

    // MARK: refusals

    @Test func aCheckpointSignedByTheRetiredKeyAfterTheRotationIsRefusedAndNamed() throws {
        try Self.withAppliance { app, old in
            let log = try app.open(old)
            try Self.append(log, 3)
            let rotation = try log.rotateKey(reason: "compromise", requestedBy: (0, "root"))
            try Self.append(log, 3, from: 3)
            let newest = try #require(try log.latestCheckpoint())
            try Self.makeBundle(log, into: app.dir + "/bundle")
            log.close()
            // Whoever stole the old key signs the real newest tree head with it.
            let text = try SignedNote.parse(newest.note).text
            let forged = try old.sign(text)
            let copy = try EvidenceVerificationTests.tampered(app.databasePath, "forged") { db in
                try db.execute(
                    sql: "UPDATE checkpoints SET note = ? WHERE size = ?", arguments: [forged, Int64(newest.size)])
            }
            for key in [old.verifierKey, rotation.newKey] {
                let report = LocalVerifier.verify(databasePath: copy, verifier: try Self.verifier(key))
                #expect(!report.passed)
                #expect(
                    report.failures.contains {
                        $0.checkpoint == newest.size && $0.message.contains("not the key in force")
                    }, "\(report.failures)")
            }
            try Data(forged.utf8).write(to: URL(fileURLWithPath: app.dir + "/bundle/checkpoint"))
            for key in [old.verifierKey, rotation.newKey] {
                let report = try Self.bundle(app.dir + "/bundle", key)
                #expect(
                    report.failures.contains {
                        $0.checkpoint == newest.size && $0.message.contains("not the key in force")
                    }, "\(report.failures)")
            }
        }
    }

    @Test func aRotationEntryWhoseOldKeySignatureIsBrokenIsRefused() throws {
        try Self.withAppliance { app, old in
            let log = try app.open(old)
            try Self.append(log, 3)
            // A hand-over statement signed by someone else, committed the way a real rotation is.
            let new = try NoteSigner.generate(name: old.name)
            let intruder = try NoteSigner.generate(name: old.name)
            let record = try Self.commitRotation(log, old: old, new: new, statementSigner: intruder)
            try Self.append(log, 2, from: 3)
            try Self.makeBundle(log, into: app.dir + "/bundle")
            log.close()
            for key in [old.verifierKey, new.verifierKey] {
                let report = try Self.local(app, key)
                #expect(
                    report.failures.contains { $0.entry == record.index && $0.message.contains("signature") },
                    "\(report.failures)")
                let offline = try Self.bundle(app.dir + "/bundle", key)
                #expect(
                    offline.failures.contains { $0.entry == record.index && $0.message.contains("signature") },
                    "\(offline.failures)")
            }
        }
    }

    @Test func aThirdKeyOrTheRetiredKeyAloneIsStillAKeyMismatch() throws {
        try Self.withAppliance { app, old in
            let log = try app.open(old)
            try Self.append(log, 2)
            _ = try log.rotateKey(reason: "", requestedBy: (0, "root"))
            log.close()
            for signer in [try NoteSigner.generate(name: "test-appliance"), old] {
                do {
                    _ = try app.open(signer)
                    Issue.record("opened with \(signer)")
                } catch {
                    #expect((error as? AuditError)?.code == .keyMismatch, "\(error)")
                }
            }
            let reopened = try app.reopen()
            reopened.close()
        }
    }

    @Test func theNewKeySignsWithinASecondOnAnIdleLogSoItVerifiesAlone() throws {
        try Self.withAppliance { app, old in
            let log = try app.open(old)
            try Self.append(log, 3)
            let rotation = try log.rotateKey(reason: "idle", requestedBy: (0, "root"))
            // Nothing else is appended: the writer's heartbeat after the rotation gets the new
            // key's first checkpoint.
            var newest = try log.latestCheckpoint()
            for _ in 0..<300 where (newest?.size ?? 0) <= rotation.index {
                Thread.sleep(forTimeInterval: 0.01)
                newest = try log.latestCheckpoint()
            }
            let signed = try #require(newest)
            #expect(signed.size == rotation.index + 1)
            #expect((try? Self.verifier(rotation.newKey).verify(signed.note)) != nil)
            let beat = try #require(try log.entries(from: rotation.index + 1, count: 1).first)
            #expect(beat.kind == AuditKind.heartbeat && beat.text.contains(#""reason":"key_rotated""#))
            log.close()
            let report = try Self.local(app, rotation.newKey)
            #expect(report.passed, "\(report.failures)")
        }
    }

    @Test func aKeyFileThatCannotBeReplacedFailsTheCommandButNotTheLog() throws {
        try Self.withAppliance { app, old in
            let log = try app.open(old)
            defer { log.close() }
            try Self.append(log, 3)
            // The rename over the key file fails: a directory stands where the file was.
            try FileManager.default.removeItem(atPath: app.keyPath)
            try FileManager.default.createDirectory(atPath: app.keyPath + "/x", withIntermediateDirectories: true)
            do {
                _ = try log.rotateKey(reason: "test", requestedBy: (0, "root"))
                Issue.record("rotate-key reported success")
            } catch let error as AuditError {
                #expect(error.code == .rotationFailed && error.message.contains("is committed"), "\(error)")
            }
            // The log goes on under the new key, which waits beside the key file.
            #expect(log.verifierKey != old.verifierKey)
            let waiting = try NoteKeyFile.read(path: app.keyPath + ".new")
            #expect(waiting.verifierKey == log.verifierKey)
            try Self.append(log, 2, from: 3)
        }
    }

    // MARK: crashes

    @Test func aCrashAfterTheRotationEntryCommittedFinishesTheSwitchAtOpen() throws {
        try Self.withAppliance { app, old in
            let log = try app.open(old)
            try Self.append(log, 3)
            // Steps 1 and 2 happen, step 3 (replacing the key file) never does.
            let new = try NoteSigner.generate(name: old.name)
            try NoteKeyFile.write(new, to: app.keyPath + ".new")
            let record = try Self.commitRotation(log, old: old, new: new, statementSigner: old)
            log.close()
            #expect(try NoteKeyFile.read(path: app.keyPath).verifierKey == old.verifierKey)

            // The daemon restarts with the old key in the file: the open finishes the switch.
            let reopened = try app.reopen()
            #expect(reopened.verifierKey == new.verifierKey)
            #expect(try NoteKeyFile.read(path: app.keyPath).verifierKey == new.verifierKey)
            #expect(!FileManager.default.fileExists(atPath: app.keyPath + ".new"))
            try Self.append(reopened, 2, from: 3)
            #expect(try reopened.latestCheckpoint()?.size ?? 0 > record.index)
            reopened.close()
            try Self.expectVerifies(app, with: [old.verifierKey, new.verifierKey])
        }
    }

    @Test func aNewKeyLeftWithoutItsRotationEntryIsDiscardedAtOpen() throws {
        try Self.withAppliance { app, old in
            var log = try app.open(old)
            try Self.append(log, 3)
            log.close()
            // Step 1 happened, the entry was never committed.
            try NoteKeyFile.write(try NoteSigner.generate(name: old.name), to: app.keyPath + ".new")
            log = try app.reopen()
            #expect(log.verifierKey == old.verifierKey)
            #expect(!FileManager.default.fileExists(atPath: app.keyPath + ".new"))
            try Self.append(log, 2, from: 3)
            log.close()
            try Self.expectVerifies(app, with: [old.verifierKey])
        }
    }

    // MARK: bundle integrity

    @Test func everyBitFlipOfARotatedBundleIsCaught() throws {
        try Self.withAppliance { app, old in
            let log = try app.open(old)
            try Self.append(log, 1)
            let rotation = try log.rotateKey(reason: "", requestedBy: (0, "root"))
            try Self.append(log, 1, from: 1)
            let bundle = app.dir + "/bundle"
            try Self.makeBundle(log, into: bundle)
            log.close()
            let keys = [old.verifierKey, rotation.newKey]
            for key in keys {
                let clean = try Self.bundle(bundle, key)
                #expect(clean.passed, "\(clean.failures)")
            }
            let fm = FileManager.default
            let files = try #require(fm.enumerator(atPath: bundle)).compactMap { $0 as? String }.filter { name in
                var isDirectory: ObjCBool = false
                return fm.fileExists(atPath: bundle + "/" + name, isDirectory: &isDirectory) && !isDirectory.boolValue
            }.sorted()
            #expect(files.contains("chain.jsonl") && files.contains("chain-proofs.jsonl"), "\(files)")
            #expect(files.contains("checkpoints/\(rotation.index).note"), "\(files)")
            // Every bit of every seventh byte, alternating the key verified with.
            var missed: [String] = []
            var flips = 0
            for name in files {
                let url = URL(fileURLWithPath: bundle + "/" + name)
                let original = try Data(contentsOf: url)
                var bytes = [UInt8](original)
                for i in bytes.indices where i % 7 == 0 {
                    for bit in 0..<8 {
                        bytes[i] ^= 1 << bit
                        try Data(bytes).write(to: url)
                        if try Self.bundle(bundle, keys[flips % 2]).passed {
                            missed.append("\(name) byte \(i) bit \(bit)")
                        }
                        bytes[i] ^= 1 << bit
                        flips += 1
                    }
                }
                try original.write(to: url)
            }
            #expect(flips > 1500, "\(flips) flips")
            #expect(missed.isEmpty, "\(missed.count) of \(flips) flips went unnoticed: \(missed.prefix(10))")
            // Without its chain, the bundle no longer verifies: the manifest counts it.
            try fm.removeItem(atPath: bundle + "/chain.jsonl")
            try fm.removeItem(atPath: bundle + "/chain-proofs.jsonl")
            #expect(try !Self.bundle(bundle, rotation.newKey).passed)
        }
    }
}
