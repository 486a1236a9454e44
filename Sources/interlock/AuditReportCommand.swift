import ArgumentParser
import Audit
import Control
import Foundation

extension AuditCommand {
    struct Report: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Summarise an audit period as report.md and report.html (counts and names, no statement text).",
            discussion: """
                Exports the period exactly as `audit export` would, into a temporary bundle, verifies it, \
                and writes a summary of what it holds: sessions, statements, blocks, approvals, grants, masking \
                and the log's own health, anchored to the signed checkpoint. Needs the same access as export \
                (interlock-auditors). Exit status 0: the bundle verified. 1: it did not (the report is still \
                written, and says FAIL).
                """)
        @OptionGroup var socket: SocketOption
        @Option(help: "The period's start, inclusive (RFC 3339, a date, or 15m / 2h / 7d ago).") var since: String
        @Option(help: "The period's end, exclusive (RFC 3339, a date, `now`, or an age).") var until: String
        @Option(help: "The directory for report.md and report.html (default: ./interlock-report-SINCE-UNTIL).")
        var out: String?
        @Option(
            help: "A file holding the verifier key you trust (default: the key the appliance names in the bundle).")
        var key: String?

        func run() throws {
            // Resolve the period once, here: an age such as `7d` would otherwise mean a slightly
            // different instant to the daemon's query and to the report's heading, and the report
            // must name the instants it covers, not "7 days before whenever this was read".
            guard let start = AuditLog.parseTime(since) else {
                throw CLIError("--since: cannot read time '\(since)' (RFC 3339, a date, now, or an age like 7d)")
            }
            guard let end = AuditLog.parseTime(until) else {
                throw CLIError("--until: cannot read time '\(until)' (RFC 3339, a date, now, or an age like 7d)")
            }
            guard start < end else {
                throw CLIError(
                    "--since (\(AuditLog.formatTime(start))) must be before --until (\(AuditLog.formatTime(end)))")
            }
            let period = (since: AuditLog.formatTime(start), until: AuditLog.formatTime(end))

            // Check everything that can fail without the daemon before asking it for anything.
            let ownKey = try key.map { try Verify.verifier($0) }
            let directory = out ?? Self.defaultDirectory(since: since, until: until)
            let markdownPath = (directory as NSString).appendingPathComponent("report.md")
            let htmlPath = (directory as NSString).appendingPathComponent("report.html")
            for path in [markdownPath, htmlPath] where FileManager.default.fileExists(atPath: path) {
                throw CLIError("\(path) exists: remove it or pass another --out (a report is never overwritten)")
            }

            let temporary = (NSTemporaryDirectory() as NSString).appendingPathComponent(
                "interlock-report-\(UUID().uuidString)")
            // The bundle holds statement texts and parameters the report leaves out: only its
            // owner may read it while it exists.
            do {
                try FileManager.default.createDirectory(
                    atPath: temporary, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            } catch {
                throw CLIError("cannot create a temporary directory \(temporary): \(error.localizedDescription)")
            }
            defer { try? FileManager.default.removeItem(atPath: temporary) }
            let bundle = (temporary as NSString).appendingPathComponent("bundle")
            let query = AuditQueryArgs(since: period.since, until: period.until)
            let export = try exportBundle(socket: socket, query: query, trustedCheckpoint: nil, to: bundle)

            let verification: VerificationReport?
            var keyNote: String
            if let ownKey {
                verification = BundleVerifier.verify(directory: bundle, verifier: ownKey)
                keyNote = "Verified against your own copy of the key, \(ownKey.name) (--key)."
            } else {
                let named = (bundle as NSString).appendingPathComponent("public.key")
                do {
                    let verifier = try Verify.verifier(named)
                    verification = BundleVerifier.verify(directory: bundle, verifier: verifier)
                    keyNote =
                        "Verified against the key the appliance named (\(verifier.name)); "
                        + "pass --key to verify against your own copy."
                } catch {
                    verification = nil
                    keyNote = "Not verified: the key the appliance named is unreadable (\(error)); pass --key."
                }
            }

            let checkpoint = Self.checkpoint(export)
            var report = AuditReport(
                entries: try Self.entries(bundle), period: period, checkpoint: checkpoint, verification: verification)
            report.keyNote = keyNote

            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                try Data(report.markdown().utf8).write(
                    to: URL(fileURLWithPath: markdownPath), options: .withoutOverwriting)
                try Data(report.html().utf8).write(to: URL(fileURLWithPath: htmlPath), options: .withoutOverwriting)
            } catch {
                throw CLIError("cannot write the report to \(directory): \(error.localizedDescription)")
            }

            print("wrote \(markdownPath)")
            print("wrote \(htmlPath)")
            print(
                "\(export.count) entries (\(export.firstIndex.map(String.init) ?? "-")…"
                    + "\(export.lastIndex.map(String.init) ?? "-")) from \(period.since) until \(period.until), "
                    + "checkpoint \(checkpoint.size) of \(checkpoint.origin)")
            print(keyNote)
            guard let verification else {
                print("NOT VERIFIED")
                throw ExitCode(1)
            }
            if verification.passed {
                print("PASS")
                return
            }
            print("FAIL: \(verification.failures.count) problem(s)")
            for failure in verification.failures.prefix(20) { print("  \(failure)") }
            throw ExitCode(1)
        }

        /// `./interlock-report-<since>-<until>` with anything but ASCII letters, digits, `_` and `-`
        /// replaced: times carry `:` and `+`, and an argument must not be able to climb out of the
        /// current directory with `/` or `..`.
        static func defaultDirectory(since: String, until: String) -> String {
            func clean(_ s: String) -> String {
                var out = String(
                    s.unicodeScalars.map { c -> Character in
                        let safe =
                            c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c == "-")
                        return safe ? Character(c) : "-"
                    })
                while out.contains("--") { out = out.replacingOccurrences(of: "--", with: "-") }
                let trimmed = out.trimmingCharacters(in: CharacterSet(charactersIn: "-"))
                return trimmed.isEmpty ? "x" : trimmed
            }
            return "./interlock-report-\(clean(since))-\(clean(until))"
        }

        /// The bundle's entries, one canonical JSON per line, as the verifier read them.
        static func entries(_ bundle: String) throws -> [[UInt8]] {
            let path = (bundle as NSString).appendingPathComponent("entries.jsonl")
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CLIError("cannot read \(path)")
            }
            return [UInt8](data).split(separator: 0x0A, omittingEmptySubsequences: true).map(Array.init)
        }

        /// Origin, size and root (hex, as `audit verify` prints it) of the checkpoint the export is
        /// proven against. Read from the note's text without checking its signature: that is the
        /// verifier's job, and its verdict is printed beside these values.
        static func checkpoint(_ export: ExportedBundle) -> (origin: String, size: UInt64, root: String) {
            guard let note = try? SignedNote.parse(export.checkpoint), let c = try? Checkpoint.parse(note.text) else {
                return (export.origin, export.checkpointSize, "(unreadable)")
            }
            let root = MerkleHash(bytes: c.rootHash)?.hex ?? "(not 32 bytes)"
            return (c.origin, c.size, root)
        }
    }
}
