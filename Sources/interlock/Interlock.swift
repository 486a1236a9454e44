// interlock: the command-line client of interlockd's control socket, for operators, approvers and
// auditors. Every command takes --socket; every listing takes --json (one object per line, the
// field names documented in docs/operators.md and docs/evidence.md).

import ArgumentParser
import Capture
import Control
import Foundation
import Gateway
import Policy

#if canImport(Glibc)
import Glibc
#endif

let defaultConfigPath = "/etc/interlock/interlock.yaml"

struct SocketOption: ParsableArguments {
    @Option(
        name: .long,
        help:
            "The control socket (default: daemon.control_socket of \(defaultConfigPath), else /run/interlock/control.sock)."
    )
    var socket: String?

    var path: String {
        if let socket { return socket }
        if let text = try? ConfigLoader.readFile(defaultConfigPath),
            let config = try? ConfigLoader.parse(text, path: defaultConfigPath)
        {
            return config.daemon.controlSocket
        }
        return DaemonSettings().controlSocket
    }

    func send(_ request: ControlRequest) throws -> ControlResponse {
        let response = try answer(request)
        if !response.ok, let e = response.error {
            throw CLIError(e.message)
        }
        return response
    }

    /// The daemon's answer, a refusal included (for callers that act on its code).
    func answer(_ request: ControlRequest) throws -> ControlResponse {
        do {
            return try ControlClient(path: path).send(request)
        } catch {
            throw CLIError(error.message)
        }
    }
}

struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try e.encode(value), as: UTF8.self))
}

@main
struct Interlock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "interlock",
        abstract: "Operate, inspect and audit interlockd.",
        subcommands: [
            Status.self, Rules.self, AuditCommand.self, SessionsCommand.self, ApprovalsCommand.self, Reload.self,
            PolicyCommand.self,
            TLSCommand.self,
            Uninstall.self,
        ])
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The listener, captured accounts, counters and ruleset health.")
    @OptionGroup var socket: SocketOption
    @Flag(help: "One JSON object.") var json = false

    func run() throws {
        guard let s = try socket.send(ControlRequest(command: .status)).status else { throw CLIError("empty answer") }
        if json { return try printJSON(s) }
        print("interlockd \(s.version), pid \(s.pid), up \(s.uptimeSeconds) s")
        print("listening:  \(s.listen.joined(separator: ", "))")
        print("policy:     \(s.policyPath) (loaded \(s.policyLoadedAt))")
        print(
            "ruleset:    \(s.ruleset.health)\(s.ruleset.detail.map { " — \($0)" } ?? "")"
                + " (restored \(s.ruleset.restores) time(s), last check \(s.ruleset.lastCheck ?? "never"))")
        print("captured:   \(s.captured.isEmpty ? "nobody" : "")")
        for a in s.captured {
            print("  \(a.user ?? "?") (uid \(a.uid)) via \(a.via.joined(separator: ", "))")
        }
        print("resources:  \(s.resources.isEmpty ? "none" : "")")
        for r in s.resources { print("  \(r)") }
        let c = s.counters
        print("sessions:   \(c.active) active, \(c.accepted) accepted, \(c.forwarded) forwarded, \(c.refused) refused")
        print("bytes:      \(c.bytesUp) up, \(c.bytesDown) down (sessions that ended)")
        print("evidence:   \(s.auditDatabase), last index \(s.auditLastIndex)")
    }
}

struct Rules: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The nftables ruleset.", subcommands: [Show.self])

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the installed ruleset as nft text.")
        @OptionGroup var socket: SocketOption
        @Flag(help: "One JSON object.") var json = false

        func run() throws {
            guard let r = try socket.send(ControlRequest(command: .rulesShow)).rules else {
                throw CLIError("empty answer")
            }
            if json { return try printJSON(r) }
            print("# health: \(r.status.health)\(r.status.detail.map { " — \($0)" } ?? "")")
            print(r.nft, terminator: r.nft.hasSuffix("\n") ? "" : "\n")
        }
    }
}

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "The evidence log: list, export, verify, report.",
        subcommands: [
            List.self, PublicKey.self, Export.self, Verify.self, Report.self, InitKey.self, RotateKey.self,
        ])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List evidence entries, oldest first.")
        @OptionGroup var socket: SocketOption
        @Option(help: "Only entries at or after this time (RFC 3339, or 15m / 2h / 7d ago).") var since: String?
        @Option(help: "Only entries before this time.") var until: String?
        @Option(help: "Only entries of this user name.") var user: String?
        @Option(help: "Only entries of this resource.") var resource: String?
        @Option(help: "Only entries of this session (its id).") var session: String?
        @Option(help: "Only entries of this kind (`session.` for a prefix).") var kind: String?
        @Option(help: "At most this many (the newest).") var limit: Int?
        @Flag(help: "One canonical JSON entry per line.") var json = false

        func run() throws {
            let args = AuditQueryArgs(
                since: since, until: until, user: user, resource: resource, kind: kind, limit: limit, session: session)
            let entries = try socket.send(ControlRequest(command: .auditList, audit: args)).entries ?? []
            for e in entries {
                print(json ? e : EntryFormatter.line(e))
            }
        }
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Load the policy file again (live connections stay).")
    @OptionGroup var socket: SocketOption

    func run() throws {
        let r = try socket.send(ControlRequest(command: .reload))
        print(r.message ?? "reloaded")
    }
}

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "The policy file.", subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate a policy file without a daemon.")
        @Argument(help: "The file.") var file: String

        func run() throws {
            do {
                let p = try ActivePolicy.load(path: file, accounts: SystemAccounts())
                print("\(file): ok — \(p.captured.count) captured account(s), \(p.config.resources.count) resource(s)")
                for u in p.resources.unresolved {
                    print("\(file): warning: host name '\(u)' does not resolve now")
                }
            } catch {
                FileHandle.standardError.write(Data("\(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}

struct Uninstall: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove the nftables table (capture stops) and stop interlockd if it runs.")
    @OptionGroup var socket: SocketOption

    func run() throws {
        do {
            let r = try ControlClient(path: socket.path).send(ControlRequest(command: .uninstall))
            if r.ok {
                print(r.message ?? "removed")
                return
            }
            throw CLIError(r.error?.message ?? "uninstall refused")
        } catch let failure as ControlFailure where failure.code == "not_running" {
            // No daemon listens: remove the table ourselves (needs root / CAP_NET_ADMIN).
            do {
                try NetfilterRulesetInstaller().remove()
            } catch {
                throw CLIError("interlockd is not running and removing the table failed: \(error)")
            }
            print("interlockd is not running; table inet interlock removed")
        }
    }
}

/// One readable line per evidence entry.
enum EntryFormatter {
    static func line(_ text: String) -> String {
        guard let data = text.data(using: .utf8),
            let o = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return text }
        let index = o["index"].map { "\($0)" } ?? "?"
        let time = o["time"] as? String ?? ""
        let kind = o["kind"] as? String ?? ""
        var rest: [String] = []
        func endpoint(_ v: Any?) -> String {
            guard let e = v as? [String: Any], let a = e["address"] as? String else { return "?" }
            let p = e["port"].map { "\($0)" } ?? "?"
            return a.contains(":") ? "[\(a)]:\(p)" : "\(a):\(p)"
        }
        switch kind {
        case "session.open":
            if let i = o["identity"] as? [String: Any] {
                var who = "\(i["user"] as? String ?? "?")(uid \(i["uid"].map { "\($0)" } ?? "?"))"
                if let u = i["unit"] as? String { who += " unit=\(u)" }
                if let exe = i["executable"] as? String { who += " exe=\(exe)" }
                rest.append(who)
            } else {
                rest.append("owner unknown")
            }
            rest.append("\(endpoint(o["source"])) -> \(endpoint(o["destination"]))")
            rest.append("resource=\(o["resource"] as? String ?? "-")")
            rest.append("\(o["decision"] as? String ?? "?"): \(o["reason"] as? String ?? "")")
            rest.append("session=\(o["session"] as? String ?? "?")")
        case "session.close":
            rest.append("session=\(o["session"] as? String ?? "?")")
            rest.append("up=\(o["bytes_up"] ?? 0) down=\(o["bytes_down"] ?? 0) ms=\(o["duration_ms"] ?? 0)")
            rest.append("reason=\(o["reason"] as? String ?? "?")")
        default:
            let skip: Set<String> = ["index", "time", "kind", "v"]
            for k in o.keys.sorted() where !skip.contains(k) {
                if let s = o[k] as? String {
                    rest.append("\(k)=\(s)")
                } else if let n = o[k] as? NSNumber {
                    rest.append("\(k)=\(n)")
                } else if let who = o[k] as? [String: Any], let user = who["user"] as? String {
                    // An identity (`approver`, `requester`, `holder`, `by`): its name.
                    rest.append("\(k)=\(user)")
                }
            }
        }
        return "\(index)  \(time)  \(kind)  \(rest.joined(separator: "  "))"
    }
}
