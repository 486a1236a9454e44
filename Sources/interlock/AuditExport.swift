import ArgumentParser
import Audit
import Control
import Foundation
import Policy

extension AuditCommand {
    struct PublicKey: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "public-key",
            abstract: "Print the key that verifies this appliance's checkpoints (give it to auditors).",
            discussion: """
                With --all: the key chain, oldest first: the genesis key, then each rotation's new key \
                with its log.key_rotated entry index. Any key of the chain verifies exports.
                """)
        @OptionGroup var socket: SocketOption
        @Flag(help: "Print every key the log has signed with, not only the current one.") var all = false
        @Flag(help: "One JSON object (with --all).") var json = false

        func run() throws {
            let response = try socket.send(
                ControlRequest(command: .auditPublicKey, key: KeyArgs(all: all ? true : nil)))
            guard all, let chain = response.chain else {
                print(response.message ?? "")
                return
            }
            if json { return try printJSON(chain) }
            print("genesis \(chain.genesisKey)")
            for rotation in chain.rotations {
                print(
                    "entry \(rotation.index) \(rotation.key)"
                        + (rotation.reason.isEmpty ? "" : "  (\(rotation.reason))"))
            }
        }
    }

    struct RotateKey: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-key",
            abstract: "Replace the checkpoint signing key (admin only); the old key signs the hand-over.",
            discussion: """
                The daemon writes a log.key_rotated entry signed under the old key, commits a checkpoint \
                over it with the old key, then installs the new key as checkpoint.key and checkpoint.pub \
                and overwrites the old private key. Give auditors the new public key; the old one still \
                verifies every export (docs/operators.md, "Rotating the signing key").
                """)
        @OptionGroup var socket: SocketOption
        @Option(help: "Why (recorded in the log.key_rotated entry).") var reason: String?
        @Flag(help: "One JSON object.") var json = false

        func run() throws {
            let response = try socket.send(ControlRequest(command: .auditRotateKey, key: KeyArgs(reason: reason)))
            guard let rotation = response.rotation else { throw CLIError("empty answer") }
            if json { return try printJSON(rotation) }
            print("old key: \(rotation.oldKey)")
            print("new key: \(rotation.newKey)")
            print("rotation entry: \(rotation.index)")
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write an export bundle: entries, a signed checkpoint, a proof for every entry, a CSV.")
        @OptionGroup var socket: SocketOption
        @Option(help: "The bundle directory (created; must not exist or be empty).") var out: String
        @Option(help: "Only entries at or after this time (RFC 3339, or 15m / 2h / 7d ago).") var since: String?
        @Option(help: "Only entries before this time.") var until: String?
        @Option(help: "Only entries of this user name.") var user: String?
        @Option(help: "Only entries of this resource.") var resource: String?
        @Option(help: "Only entries of this session (its id, from `interlock sessions list`).") var session: String?
        @Option(help: "Only entries of this kind (`approval.` for a prefix).") var kind: String?
        @Option(help: "A checkpoint you kept from an earlier export: the bundle proves it is consistent.")
        var trustedCheckpoint: String?

        func run() throws {
            let trusted = try trustedCheckpoint.map { try String(contentsOfFile: $0, encoding: .utf8) }
            let args = AuditQueryArgs(
                since: since, until: until, user: user, resource: resource, kind: kind, session: session)
            let export = try exportBundle(socket: socket, query: args, trustedCheckpoint: trusted, to: out)
            let blobs =
                export.blobs > 0 || export.blobsPruned > 0
                ? ", \(export.blobs) recording chunk(s)"
                    + (export.blobsPruned > 0 ? " (\(export.blobsPruned) removed by retention)" : "")
                : ""
            print(
                "wrote \(export.count) entries (\(export.firstIndex.map(String.init) ?? "-")…\(export.lastIndex.map(String.init) ?? "-"))\(blobs), "
                    + "proven against checkpoint \(export.checkpointSize) of \(export.origin) to \(out)")
        }
    }

    /// What an export wrote: enough to report it without reading the bundle again.
    struct ExportedBundle {
        var count: Int
        var firstIndex: UInt64?
        var lastIndex: UInt64?
        var origin: String
        var checkpointSize: UInt64
        /// The signed note every entry is proven against.
        var checkpoint: String
        var blobs = 0
        var blobsPruned = 0
    }

    /// Pages the entries `query` selects out of the daemon into a new bundle at `directory`, all
    /// proven against one checkpoint (the first page's), then has the daemon seal the manifest.
    /// `audit export` and `audit report` share it, so a report rests on exactly the bundle an
    /// export of the same period would have written.
    static func exportBundle(
        socket: SocketOption, query args: AuditQueryArgs, trustedCheckpoint trusted: String?, to directory: String
    ) throws -> ExportedBundle {
        var bundle: AuditBundle.Writer
        do {
            bundle = try AuditBundle.Writer(directory: directory)
        } catch {
            throw CLIError("\(error)")
        }
        var first: ExportPage?
        var after: UInt64?
        var firstIndex: UInt64?
        var lastIndex: UInt64?
        var blobs: [String] = []
        repeat {
            let request = ControlRequest(
                command: .auditExport, audit: args,
                export: ExportArgs(size: first?.checkpointSize, after: after, trustedCheckpoint: trusted))
            guard let page = try socket.send(request).export else { throw CLIError("empty answer") }
            if first == nil {
                first = page
                for e in page.chain ?? [] {
                    try bundle.appendChain(
                        index: e.index, leafHash: e.leafHash, proof: e.proof, entry: Array(e.entry.utf8))
                }
            }
            for e in page.entries {
                try bundle.append(index: e.index, leafHash: e.leafHash, proof: e.proof, entry: Array(e.entry.utf8))
                if case .object(let m)? = try? CanonicalJSON.decode(Array(e.entry.utf8)),
                    case .string(let h)? = m["blob"]
                {
                    blobs.append(h)
                }
                firstIndex = firstIndex ?? e.index
                lastIndex = e.index
            }
            after = page.next
        } while after != nil
        guard let first else { throw CLIError("empty answer") }
        var written: Set<String> = []
        var pruned: Set<String> = []
        for hash in blobs where !written.contains(hash) && !pruned.contains(hash) {
            let answer = try socket.answer(ControlRequest(command: .auditBlob, blob: hash))
            if answer.error?.code == "not_found" {
                pruned.insert(hash)
                continue
            }
            guard answer.ok, let text = answer.blob, let data = Data(base64Encoded: text) else {
                throw CLIError(answer.error?.message ?? "the daemon sent no blob \(hash)")
            }
            do {
                try bundle.addBlob(hash: hash, data: data)
            } catch {
                throw CLIError("\(error)")
            }
            written.insert(hash)
        }
        let sealed = try socket.send(
            ControlRequest(
                command: .auditExport, audit: args, export: ExportArgs(size: first.checkpointSize, seal: true)))
        guard let manifest = sealed.message else { throw CLIError("the daemon did not seal the export") }
        try bundle.finish(
            checkpoint: first.checkpoint, olderCheckpoints: first.olderCheckpoints,
            consistency: first.consistency.map {
                AuditBundle.Consistency(from: $0.from, to: $0.to, proof: $0.proof)
            },
            verifierKey: first.verifierKey, manifest: manifest)
        return ExportedBundle(
            count: bundle.count, firstIndex: firstIndex, lastIndex: lastIndex, origin: first.origin,
            checkpointSize: first.checkpointSize, checkpoint: first.checkpoint, blobs: written.count,
            blobsPruned: pruned.count)
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify an export bundle offline (or, with --local, this appliance's own database).",
            discussion: """
                Exit status 0: everything verified. 1: something did not; each failure names the entry or \
                checkpoint. Needs no daemon.
                """)
        @Argument(help: "The bundle directory.") var directory: String?
        @Option(help: "A file holding the verifier key (from `interlock audit public-key`).") var key: String?
        @Option(help: "A checkpoint you kept from an earlier export: the log must have grown from it.")
        var trustedCheckpoint: String?
        @Flag(help: "Verify the appliance's own database against its checkpoints.") var local = false
        @Option(help: "With --local: the database (default: audit.database of the policy file).") var database: String?
        @Option(help: "With --local: the policy file.") var config: String = defaultConfigPath

        func run() throws {
            let report: VerificationReport
            let verifier: NoteVerifier
            if local {
                let path: String
                if let database {
                    path = database
                } else {
                    path = try ConfigLoader.load(path: config).audit.database
                }
                let keyPath = key ?? (path as NSString).deletingLastPathComponent + "/checkpoint.pub"
                verifier = try Self.verifier(keyPath)
                report = LocalVerifier.verify(databasePath: path, verifier: verifier)
                print("database \(path), key \(verifier.name)")
            } else {
                guard let directory else { throw CLIError("name a bundle directory, or use --local") }
                guard let key else { throw CLIError("--key FILE is required: the verifier key you trust") }
                verifier = try Self.verifier(key)
                let trusted = try trustedCheckpoint.map { try String(contentsOfFile: $0, encoding: .utf8) }
                report = BundleVerifier.verify(directory: directory, verifier: verifier, trustedCheckpoint: trusted)
                print("bundle \(directory), key \(verifier.name)")
            }
            if let latest = report.latest {
                print("  checkpoint: size \(latest.size), root \(latest.root.hex)")
            }
            print(
                "  entries: \(report.entries), inclusion proofs: \(report.inclusionProofs), checkpoints: "
                    + "\(report.checkpoints), consistency proofs: \(report.consistencyProofs)")
            print("  sessions open at the checkpoint: \(report.sessionsOpenAtCheckpoint)")
            for note in report.notes { print("  note: \(note)") }
            if report.passed {
                print("PASS")
                return
            }
            print("FAIL: \(report.failures.count) problem(s)")
            for failure in report.failures { print("  \(failure)") }
            throw ExitCode(1)
        }

        static func verifier(_ path: String) throws -> NoteVerifier {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                let line = text.split(whereSeparator: \.isNewline).first
            else {
                throw CLIError("cannot read the verifier key \(path)")
            }
            do {
                return try NoteVerifier(verifierKey: String(line).trimmingCharacters(in: .whitespaces))
            } catch {
                throw CLIError("\(path) is not a verifier key: \(error)")
            }
        }
    }
}

extension AuditCommand {
    struct InitKey: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init-key",
            abstract:
                "Create the checkpoint signing key (at install; interlockd creates it at its first start otherwise).",
            discussion: """
                Writes the Ed25519 key as mode 0600, owned by the daemon's user, and its public half \
                beside it (.pub, mode 0644). An existing key is kept: a log opens only with the key it \
                was started with.
                """)
        @Option(
            help: "The key file (default: audit.signing_key of the policy, else checkpoint.key beside audit.database).")
        var path: String?
        @Option(help: "The policy file.") var config: String = defaultConfigPath
        @Option(help: "The daemon's user, owner of the key.") var user = DaemonSettings().user

        func run() throws {
            let settings = (try? ConfigLoader.load(path: config))?.audit ?? AuditSettings()
            let keyPath =
                path ?? settings.signingKey ?? (settings.database as NSString).deletingLastPathComponent
                + "/checkpoint.key"
            let (signer, created) = try NoteKeyFile.loadOrCreate(path: keyPath)
            guard created else {
                print("\(keyPath) exists; kept. Public key: \(signer.verifierKey)")
                return
            }
            if let pw = getpwnam(user) {
                guard chown(keyPath, pw.pointee.pw_uid, pw.pointee.pw_gid) == 0 else {
                    throw CLIError("cannot give \(keyPath) to \(user): \(String(cString: strerror(errno)))")
                }
            }
            print("\(keyPath): mode 0600, owner \(getpwnam(user) == nil ? "root" : user)")
            print("\(NoteKeyFile.publicPath(for: keyPath)): \(signer.verifierKey)")
            print("Give auditors the public key (interlock audit public-key prints it once interlockd runs).")
        }
    }
}
