import ArgumentParser
import Control
import Foundation

/// `interlock approvals`: what approvers use. Who may decide is the rules' business: the daemon
/// checks the caller's uid and groups (from the socket, not from anything the CLI says) against the
/// rule's `approvers:`, and refuses the requester's own requests.
struct ApprovalsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approvals",
        abstract: "Statements held for approval: list, approve, deny, watch; grant windows.",
        subcommands: [List.self, Approve.self, Deny.self, Watch.self, Grants.self, Revoke.self])

    /// Sends an approvals request; a refusal becomes an error naming its code (`own_request`, ...).
    static func send(
        _ socket: SocketOption, _ command: ControlCommand, _ args: ApprovalArgs = ApprovalArgs()
    )
        throws -> ControlResponse
    {
        let response: ControlResponse
        do {
            var client = ControlClient(path: socket.path)
            client.timeoutSeconds = 75
            response = try client.send(ControlRequest(command: command, approval: args))
        } catch {
            throw CLIError(error.message)
        }
        if !response.ok, let e = response.error {
            throw CLIError("\(e.message) [\(e.code)]")
        }
        return response
    }

    static func duration(_ seconds: Int) -> String {
        if seconds >= 3600 { return "\(seconds / 3600)h\(seconds % 3600 / 60)m" }
        if seconds >= 60 { return "\(seconds / 60)m\(seconds % 60)s" }
        return "\(seconds)s"
    }

    static func who(_ r: RequesterInfo) -> String {
        var s = r.user ?? "uid \(r.uid)"
        if let unit = r.unit { s += " (\(unit))" }
        if let pid = r.pid { s += " pid \(pid)" }
        if let exe = r.executable { s += " \(exe)" }
        return s
    }

    static func show(_ a: ApprovalInfo) {
        print("\(a.id)  \(a.resource)  rule \(a.rule)  age \(duration(a.ageSeconds)), \(duration(a.secondsLeft)) left")
        print("  requester: \(who(a.requester))  session \(a.session)")
        print("  statement: \(a.statement)")
        print("  digest:    \(a.digest)")
        let so = a.approvedBy.isEmpty ? "" : "; approved so far by \(a.approvedBy.joined(separator: ", "))"
        print("  approvers: \(a.approvers), \(a.required) needed\(so)")
        if let g = a.maximumGrantSeconds { print("  grant:     up to \(duration(g)) (--grant)") }
        if a.mayDecide {
            print("  decide:    interlock approvals approve \(a.id) | interlock approvals deny \(a.id) --reason TEXT")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pending requests you may decide (auditors and admins see all).")
        @OptionGroup var socket: SocketOption
        @Flag(help: "One JSON object per line.") var json = false

        func run() throws {
            let list = try ApprovalsCommand.send(socket, .approvalsList).approvals ?? []
            if json { return try list.forEach { try printJSON($0) } }
            if list.isEmpty { print("no pending approval requests") }
            for a in list { ApprovalsCommand.show(a) }
        }
    }

    struct Approve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Approve a held statement: it runs once enough approvers agree.")
        @OptionGroup var socket: SocketOption
        @Argument(help: "The request id (apr-...).") var id: String
        @Option(help: "Why (recorded with your approval).") var reason: String?
        @Option(help: "Also open a window (30m, 1h) in which this identity's statements under the same rule run.")
        var grant: String?
        @Option(
            help:
                "The digest of the statement you approve (from `list`); without it the pending request is looked up and shown first."
        )
        var digest: String?

        func run() throws {
            var digest = self.digest
            if digest == nil {
                let list = try ApprovalsCommand.send(socket, .approvalsList).approvals ?? []
                guard let request = list.first(where: { $0.id == id.lowercased() }) else {
                    throw CLIError("no pending approval request \(id) that you can see [unknown_request]")
                }
                // Unbuffered, so it shows before a refusal on stderr.
                FileHandle.standardOutput.write(
                    Data(
                        ("approving \(request.id): \(request.statement)\n"
                            + "  from \(ApprovalsCommand.who(request.requester)) on \(request.resource)\n").utf8))
                digest = request.digest
            }
            let response = try ApprovalsCommand.send(
                socket, .approvalsApprove, ApprovalArgs(id: id, digest: digest, reason: reason, grant: grant))
            print(response.message ?? "approved")
        }
    }

    struct Deny: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deny a held statement: it fails with your name and reason.")
        @OptionGroup var socket: SocketOption
        @Argument(help: "The request id (apr-...).") var id: String
        @Option(help: "Why (the requester sees it).") var reason: String

        func run() throws {
            let response = try ApprovalsCommand.send(socket, .approvalsDeny, ApprovalArgs(id: id, reason: reason))
            print(response.message ?? "denied")
        }
    }

    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Follow requests, decisions and grant windows as they happen.")
        @OptionGroup var socket: SocketOption
        @Flag(help: "One JSON object per event.") var json = false
        @Option(help: "Stop after this many events.") var count: Int?
        @Option(help: "Stop after this many seconds.") var seconds: Int?

        func run() throws {
            let end = seconds.map { Date().addingTimeInterval(Double($0)) }
            var after: UInt64?
            var seen = 0
            while end.map({ Date() < $0 }) ?? true {
                let wait = end.map { max(1, min(25, Int($0.timeIntervalSinceNow.rounded(.up)))) } ?? 25
                let response = try ApprovalsCommand.send(
                    socket, .approvalsWatch, ApprovalArgs(after: after, waitSeconds: wait))
                for e in response.events ?? [] {
                    // Written at once, unbuffered: a pipe reader sees each event as it happens.
                    func emit(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
                    if json {
                        let encoder = JSONEncoder()
                        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                        emit(String(decoding: try encoder.encode(e), as: UTF8.self))
                    } else {
                        var line = "\(e.at)  \(e.event)"
                        if let r = e.request {
                            line +=
                                "  \(r.id)  \(r.requester.user ?? "uid \(r.requester.uid)")@\(r.resource)  \(r.rule)"
                            if e.event == "requested" { line += "  \(r.statement)" }
                        }
                        if let g = e.grant {
                            line += "  \(g.id)  \(g.holder.user ?? "uid \(g.holder.uid)")@\(g.resource)"
                        }
                        if let by = e.by { line += "  by \(by)" }
                        if let reason = e.reason { line += ": \(reason)" }
                        emit(line)
                    }
                    seen += 1
                    if let count, seen >= count { return }
                }
                after = response.sequence ?? after
            }
        }
    }

    struct Grants: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Open grant windows.")
        @OptionGroup var socket: SocketOption
        @Flag(help: "One JSON object per line.") var json = false

        func run() throws {
            let list = try ApprovalsCommand.send(socket, .approvalsGrants).grants ?? []
            if json { return try list.forEach { try printJSON($0) } }
            if list.isEmpty { print("no open grant windows") }
            for g in list {
                print(
                    "\(g.id)  \(ApprovalsCommand.who(g.holder))@\(g.resource)  rule \(g.rule)  until \(g.until) "
                        + "(\(ApprovalsCommand.duration(g.secondsLeft)) left), \(g.uses) use(s)")
                print("  opened by \(g.approvedBy.joined(separator: ", ")) approving \(g.request)")
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End a grant window now.")
        @OptionGroup var socket: SocketOption
        @Argument(help: "The grant id (grt-...).") var id: String

        func run() throws {
            print(try ApprovalsCommand.send(socket, .approvalsRevoke, ApprovalArgs(id: id)).message ?? "revoked")
        }
    }
}
