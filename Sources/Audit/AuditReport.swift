import Foundation

/// A summary of an audit period for people who will not read entries: who reached which resource,
/// what ran, what was blocked, held, approved or masked, and which signed checkpoint it all rests
/// on. Rendered as Markdown (for tickets and repositories) and as a self-contained HTML page (for
/// an auditor's browser), both from one model, so the two can never disagree.
///
/// Reports circulate far beyond the people entitled to the evidence itself, so the report holds
/// counts and names only: it never reads an entry's `text`, `parameters`, `command_line`, column
/// values, or any other member that could carry data. Everything it prints is escaped for the
/// format it is printed in, because user names, rule names and approvers' reasons are not ours.
///
/// It is pure: the same entries give the same bytes (rows sorted by user, then resource; names
/// within a row sorted), so a report can be regenerated from a bundle and compared.
public struct AuditReport {
    /// A user and a resource: the row every count belongs to. `resource` is empty for entries
    /// about an unregistered destination (no resource).
    struct Subject: Hashable, Comparable {
        var user: String
        var resource: String

        static func < (a: Subject, b: Subject) -> Bool {
            (a.user, a.resource) < (b.user, b.resource)
        }
    }

    /// An approver's refusal, with the reason they gave (their words, not the statement's).
    struct Denial {
        var index: UInt64
        var request: String
        var approver: String
        var reason: String
    }

    /// Everything counted for one subject.
    struct Activity {
        var sessionsOpened = 0
        var sessionsRefused = 0
        var statementsRun = 0
        var statementsBlocked = 0
        var statementsHeld = 0
        /// Blocked statements per rule name.
        var blockedByRule: [String: Int] = [:]
        /// Held statements per rule name.
        var heldByRule: [String: Int] = [:]
        /// `statement.end` results: `completed`, `failed`, `not_approved`, and the rest.
        var results: [String: Int] = [:]
        /// Values masked per source column.
        var maskedColumns: [String: Int] = [:]
        var detectorValuesMasked = 0
        /// Detector matches per detector name.
        var detectorMatches: [String: Int] = [:]
        var unresolvedColumnValues = 0
        var approvalsRequested = 0
        /// Requests whose last required approval arrived (`complete: true`).
        var approvalsCompleted = 0
        /// Approvals given, per approver (a request needing two approvals counts two).
        var approvers: [String: Int] = [:]
        var denials: [Denial] = []
        var approvalsTimedOut = 0
        var approvalsWithdrawn = 0
        var grantsOpened = 0
        var grantsUsed = 0
        var grantsRevoked = 0
        var grantsExpired = 0
        var cancelsAllowed = 0
        var cancelsDenied = 0
    }

    /// One `policy.loaded` entry.
    struct PolicyLoad {
        var index: UInt64
        var time: String
        var trigger: String
        var outcome: String
        var sha256: String?
    }

    /// One `ruleset.restored` entry (what was wrong, not the detail text).
    struct Restore {
        var index: UInt64
        var time: String
        var problem: String
    }

    let period: (since: String, until: String)
    let checkpoint: (origin: String, size: UInt64, root: String)
    let verification: VerificationReport?
    private(set) var activity: [Subject: Activity] = [:]
    private(set) var entryCount = 0
    private(set) var unreadable = 0
    private(set) var first: (index: UInt64, time: String)?
    private(set) var last: (index: UInt64, time: String)?
    private(set) var kinds: [String: Int] = [:]
    private(set) var heartbeats = 0
    private(set) var daemonStarts = 0
    private(set) var daemonStops = 0
    private(set) var policyLoads: [PolicyLoad] = []
    private(set) var restores: [Restore] = []

    /// Which key the bundle was verified with, in words (for instance that it was the key the
    /// appliance itself named, not the auditor's own copy). Printed beside the verdict, because a
    /// PASS means only as much as the key behind it.
    public var keyNote: String?

    /// - Parameters:
    ///   - entries: canonical JSON entries in index order (an export's `entries.jsonl`).
    ///   - period: the `since` and `until` the entries were selected with, as printed.
    ///   - checkpoint: the signed checkpoint the entries are proven against; `root` as printed.
    ///   - verification: the bundle's verification, or nil when it was not verified.
    public init(
        entries: [[UInt8]], period: (since: String, until: String),
        checkpoint: (origin: String, size: UInt64, root: String),
        verification: VerificationReport?
    ) {
        self.period = period
        self.checkpoint = checkpoint
        self.verification = verification
        for body in entries {
            add(body)
        }
    }

    // MARK: Aggregation

    private mutating func add(_ body: [UInt8]) {
        entryCount += 1
        guard case .object(let m)? = try? CanonicalJSON.decode(body), let kind = m["kind"]?.stringValue else {
            // Verification names the entry; the report only says that some could not be counted.
            unreadable += 1
            return
        }
        let index = m["index"]?.uint64Value ?? 0
        let time = m["time"]?.stringValue ?? ""
        if first == nil { first = (index, time) }
        last = (index, time)
        kinds[kind, default: 0] += 1

        let subject = Subject(user: m["user"]?.stringValue ?? "", resource: m["resource"]?.stringValue ?? "")
        func text(_ key: String) -> String? { m[key]?.stringValue }
        func update(_ change: (inout Activity) -> Void) {
            change(&activity[subject, default: Activity()])
        }

        switch kind {
        case "session.open":
            switch text("decision") {
            case "allow": update { $0.sessionsOpened += 1 }
            case "deny": update { $0.sessionsRefused += 1 }
            default: break
            }
        case "statement":
            let rule = text("rule") ?? "(no rule named)"
            switch text("decision") {
            case "allow":
                update { $0.statementsRun += 1 }
            case "block":
                update {
                    $0.statementsBlocked += 1
                    $0.blockedByRule[rule, default: 0] += 1
                }
            case "approve":
                update {
                    $0.statementsHeld += 1
                    $0.heldByRule[rule, default: 0] += 1
                }
            default: break
            }
        case "statement.end":
            let result = text("result") ?? "unknown"
            let masking = m["masking"]?.objectValue ?? [:]
            update { a in
                a.results[result, default: 0] += 1
                for (column, count) in masking["columns"]?.objectValue ?? [:] {
                    a.maskedColumns[column, default: 0] += Self.count(count)
                }
                a.unresolvedColumnValues += Self.count(masking["unresolved_column_values"])
                if let detectors = masking["detectors"]?.objectValue {
                    a.detectorValuesMasked += Self.count(detectors["values_masked"])
                    for (name, count) in detectors["matches"]?.objectValue ?? [:] {
                        a.detectorMatches[name, default: 0] += Self.count(count)
                    }
                }
            }
        case "postgres.cancel":
            switch text("decision") {
            case "allow": update { $0.cancelsAllowed += 1 }
            case "deny": update { $0.cancelsDenied += 1 }
            default: break
            }
        case "approval.requested":
            update { $0.approvalsRequested += 1 }
        case "approval.approved":
            let approver = Self.name(m["approver"])
            let complete = m["complete"]?.boolValue ?? false
            update {
                $0.approvers[approver, default: 0] += 1
                if complete { $0.approvalsCompleted += 1 }
            }
        case "approval.denied":
            let denial = Denial(
                index: index, request: text("request") ?? "", approver: Self.name(m["approver"]),
                reason: text("reason") ?? "")
            update { $0.denials.append(denial) }
        case "approval.timed_out":
            update { $0.approvalsTimedOut += 1 }
        case "approval.withdrawn":
            update { $0.approvalsWithdrawn += 1 }
        case "grant.opened":
            update { $0.grantsOpened += 1 }
        case "grant.used":
            update { $0.grantsUsed += 1 }
        case "grant.revoked":
            update { $0.grantsRevoked += 1 }
        case "grant.expired":
            update { $0.grantsExpired += 1 }
        case "log.heartbeat":
            heartbeats += 1
        case "daemon.started":
            daemonStarts += 1
        case "daemon.stopped":
            daemonStops += 1
        case "policy.loaded":
            policyLoads.append(
                PolicyLoad(
                    index: index, time: time, trigger: text("trigger") ?? "", outcome: text("outcome") ?? "",
                    sha256: text("sha256")))
        case "ruleset.restored":
            restores.append(Restore(index: index, time: time, problem: text("problem") ?? ""))
        default:
            break
        }
    }

    /// A non-negative count from an entry; anything else counts as nothing rather than trapping
    /// (entries come from a file the auditor was handed).
    private static func count(_ value: AuditValue?) -> Int {
        guard let n = value?.int64Value, n > 0 else { return 0 }
        return Int(clamping: n)
    }

    /// An identity object's user name, else `uid:N`, as the rest of the evidence names people.
    private static func name(_ value: AuditValue?) -> String {
        if let user = value?["user"]?.stringValue { return user }
        if let uid = value?["uid"]?.uint64Value { return "uid:\(uid)" }
        return "(unknown)"
    }

    // MARK: The document

    /// One piece of the report, rendered by both formats.
    enum Block {
        case heading(Int, String)
        case paragraph(String)
        /// The verification verdict: passed, and its line.
        case verdict(Bool?, String)
        case bullets([String])
        /// Columns, rows; numeric columns are right-aligned.
        case table([String], [[String]], numeric: Set<Int>)
    }

    private static func label(_ subject: Subject) -> (String, String) {
        (
            subject.user.isEmpty ? "(unknown)" : subject.user,
            subject.resource.isEmpty ? "(unregistered)" : subject.resource
        )
    }

    private static func list(_ counts: [String: Int]) -> String {
        counts.keys.sorted().map { "\($0) ×\(counts[$0] ?? 0)" }.joined(separator: ", ")
    }

    var blocks: [Block] {
        var out: [Block] = []
        let subjects = activity.keys.sorted()
        func rows(_ include: (Activity) -> Bool, _ row: (Subject, Activity) -> [String]) -> [[String]] {
            subjects.compactMap { s in
                guard let a = activity[s], include(a) else { return nil }
                let (user, resource) = Self.label(s)
                return [user, resource] + row(s, a)
            }
        }
        /// A per-subject table; every column after user and resource is a count unless named in `text`.
        func table(_ title: String, _ columns: [String], text: Set<Int> = [], _ body: [[String]], empty: String) {
            out.append(.heading(2, title))
            if body.isEmpty {
                out.append(.paragraph(empty))
            } else {
                let all = ["User", "Resource"] + columns
                out.append(.table(all, body, numeric: Set(2..<all.count).subtracting(text)))
            }
        }

        out.append(.heading(1, "Interlock evidence report"))
        out.append(
            .paragraph(
                "Period: from \(period.since) (inclusive) until \(period.until) (exclusive). "
                    + "Counts and names only: no statement text or parameter value is included."))

        out.append(.heading(2, "Verification"))
        if let verification {
            if verification.passed {
                out.append(
                    .verdict(
                        true,
                        "PASS: \(verification.entries) entries, \(verification.inclusionProofs) inclusion proofs, "
                            + "\(verification.checkpoints) checkpoints, \(verification.consistencyProofs) consistency proofs"
                    ))
            } else {
                out.append(.verdict(false, "FAIL: \(verification.failures.count) problem(s)"))
                let shown = verification.failures.prefix(20).map(\.description)
                let more = verification.failures.count - shown.count
                out.append(.bullets(shown + (more > 0 ? ["… and \(more) more"] : [])))
            }
        } else {
            out.append(.verdict(nil, "NOT VERIFIED: the numbers below are unproven"))
        }
        if let keyNote { out.append(.paragraph(keyNote)) }
        if let notes = verification?.notes, !notes.isEmpty {
            out.append(.bullets(notes.prefix(20).map { "note: \($0)" }))
        }

        table(
            "Sessions and statements",
            [
                "Sessions opened", "Sessions refused", "Statements run", "Blocked", "Held for approval", "Completed",
                "Failed", "Not approved", "Other results", "Cancels allowed", "Cancels denied",
            ],
            rows(
                {
                    $0.sessionsOpened + $0.sessionsRefused + $0.statementsRun + $0.statementsBlocked
                        + $0.statementsHeld + $0.results.count + $0.cancelsAllowed + $0.cancelsDenied > 0
                },
                { _, a in
                    let named = ["completed", "failed", "not_approved"]
                    let other = a.results.filter { !named.contains($0.key) }.values.reduce(0, +)
                    return [
                        a.sessionsOpened, a.sessionsRefused, a.statementsRun, a.statementsBlocked, a.statementsHeld,
                        a.results["completed"] ?? 0, a.results["failed"] ?? 0, a.results["not_approved"] ?? 0, other,
                        a.cancelsAllowed, a.cancelsDenied,
                    ].map(String.init)
                }),
            empty: "No sessions or statements in the period.")

        var ruleRows: [[String]] = []
        for s in subjects {
            guard let a = activity[s] else { continue }
            let (user, resource) = Self.label(s)
            for rule in a.blockedByRule.keys.sorted() {
                ruleRows.append([user, resource, rule, "blocked", String(a.blockedByRule[rule] ?? 0)])
            }
            for rule in a.heldByRule.keys.sorted() {
                ruleRows.append([user, resource, rule, "held for approval", String(a.heldByRule[rule] ?? 0)])
            }
        }
        out.append(.heading(2, "Rules that blocked or held statements"))
        if ruleRows.isEmpty {
            out.append(.paragraph("No statement was blocked or held."))
        } else {
            out.append(.table(["User", "Resource", "Rule", "Decision", "Statements"], ruleRows, numeric: [4]))
        }

        out.append(.heading(2, "Masking"))
        var columnRows: [[String]] = []
        for s in subjects {
            guard let a = activity[s] else { continue }
            let (user, resource) = Self.label(s)
            for column in a.maskedColumns.keys.sorted() {
                columnRows.append([user, resource, column, String(a.maskedColumns[column] ?? 0)])
            }
        }
        if columnRows.isEmpty {
            out.append(.paragraph("No column values were masked."))
        } else {
            out.append(.table(["User", "Resource", "Column", "Values masked"], columnRows, numeric: [3]))
        }
        let detectorRows = rows(
            { $0.detectorValuesMasked + $0.unresolvedColumnValues + $0.detectorMatches.count > 0 },
            { _, a in
                [String(a.detectorValuesMasked), Self.list(a.detectorMatches), String(a.unresolvedColumnValues)]
            })
        if detectorRows.isEmpty {
            out.append(.paragraph("No values were masked by content detectors or for an unresolved source column."))
        } else {
            out.append(
                .table(
                    ["User", "Resource", "Values masked by detectors", "Detector matches", "Unresolved column values"],
                    detectorRows, numeric: [2, 4]))
        }

        table(
            "Approvals",
            ["Requested", "Approved", "Denied", "Timed out", "Withdrawn", "Approvers"], text: [7],
            rows(
                {
                    $0.approvalsRequested + $0.approvers.count + $0.denials.count + $0.approvalsTimedOut
                        + $0.approvalsWithdrawn > 0
                },
                { _, a in
                    [
                        a.approvalsRequested, a.approvalsCompleted, a.denials.count, a.approvalsTimedOut,
                        a.approvalsWithdrawn,
                    ].map(String.init) + [Self.list(a.approvers)]
                }),
            empty: "No approval requests in the period.")
        var denialRows: [[String]] = []
        for s in subjects {
            guard let a = activity[s] else { continue }
            let (user, resource) = Self.label(s)
            for d in a.denials {
                denialRows.append([user, resource, String(d.index), d.request, d.approver, d.reason])
            }
        }
        if !denialRows.isEmpty {
            out.append(.heading(3, "Denials"))
            out.append(
                .table(["User", "Resource", "Entry", "Request", "Approver", "Reason"], denialRows, numeric: [2]))
        }

        table(
            "Grant windows",
            ["Opened", "Used", "Revoked", "Expired"],
            rows(
                { $0.grantsOpened + $0.grantsUsed + $0.grantsRevoked + $0.grantsExpired > 0 },
                { _, a in [a.grantsOpened, a.grantsUsed, a.grantsRevoked, a.grantsExpired].map(String.init) }),
            empty: "No grant windows in the period.")

        out.append(.heading(2, "Log"))
        var facts = [
            "checkpoint: origin \(checkpoint.origin), size \(checkpoint.size), root \(checkpoint.root)",
            "entries in the period: \(entryCount)",
        ]
        if let first, let last {
            facts.append("first entry: \(first.index) at \(first.time)")
            facts.append("last entry: \(last.index) at \(last.time)")
        }
        if unreadable > 0 { facts.append("entries that could not be read: \(unreadable)") }
        facts += [
            "heartbeats: \(heartbeats)",
            "daemon starts: \(daemonStarts), stops: \(daemonStops)",
            "ruleset restores: \(restores.count)",
            "policy loads: \(policyLoads.count)",
        ]
        out.append(.bullets(facts))
        if !policyLoads.isEmpty {
            out.append(.heading(3, "Policy loads"))
            out.append(
                .table(
                    ["Entry", "Time", "Trigger", "Outcome", "SHA-256"],
                    policyLoads.map { [String($0.index), $0.time, $0.trigger, $0.outcome, $0.sha256 ?? "-"] },
                    numeric: [0]))
        }
        if !restores.isEmpty {
            out.append(.heading(3, "Ruleset restores"))
            out.append(
                .table(
                    ["Entry", "Time", "Problem"], restores.map { [String($0.index), $0.time, $0.problem] },
                    numeric: [0]))
        }
        if !kinds.isEmpty {
            out.append(.heading(3, "Entries by kind"))
            out.append(
                .table(["Kind", "Entries"], kinds.keys.sorted().map { [$0, String(kinds[$0] ?? 0)] }, numeric: [1]))
        }
        return out
    }

    // MARK: Markdown

    /// GitHub-flavoured Markdown: headings, bullet lists, pipe tables.
    public func markdown() -> String {
        var out = ""
        for block in blocks {
            switch block {
            case .heading(let level, let text):
                out += String(repeating: "#", count: level) + " " + Self.markdownEscape(text) + "\n\n"
            case .paragraph(let text):
                out += Self.markdownEscape(text) + "\n\n"
            case .verdict(_, let text):
                out += "**" + Self.markdownEscape(text) + "**\n\n"
            case .bullets(let items):
                out += items.map { "- " + Self.markdownEscape($0) + "\n" }.joined() + "\n"
            case .table(let columns, let rows, let numeric):
                out += "| " + columns.map(Self.markdownEscape).joined(separator: " | ") + " |\n"
                out += "|" + columns.indices.map { numeric.contains($0) ? " ---: |" : " --- |" }.joined() + "\n"
                for row in rows {
                    out +=
                        "| " + row.map { $0.isEmpty ? " " : Self.markdownEscape($0) }.joined(separator: " | ") + " |\n"
                }
                out += "\n"
            }
        }
        return out
    }

    /// Escapes what Markdown would otherwise read as formatting, a table cell's end, raw HTML or
    /// an entity, and folds line breaks: a user or rule name must print as itself, not restructure
    /// the report.
    static func markdownEscape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\", "`", "*", "_", "[", "]", "<", ">", "|", "&", "~", "#", "!":
                out += "\\" + String(scalar)
            case "\n", "\r", "\t", "\u{0B}", "\u{0C}", "\u{85}", "\u{2028}", "\u{2029}":
                out += " "
            default:
                if scalar.properties.generalCategory == .control {
                    out += " "
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    // MARK: HTML

    /// One self-contained page: inline CSS, no scripts, no external resources, so it opens the
    /// same offline, from a mail attachment or a ticket, years later.
    public func html() -> String {
        var out = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(Self.htmlEscape("Interlock evidence report \(period.since) – \(period.until)"))</title>
            <style>
            body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem; \
            padding: 0 1rem; color: #1b1f23; line-height: 1.45; }
            h1 { font-size: 1.6rem; border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
            h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
            h3 { font-size: 1.05rem; margin-top: 1.4rem; }
            table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; }
            th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; }
            th { background: #f6f8fa; }
            td.n { text-align: right; font-variant-numeric: tabular-nums; }
            .verdict { font-weight: bold; padding: .5rem .8rem; border-radius: 4px; display: inline-block; }
            .pass { background: #dafbe1; color: #116329; }
            .fail { background: #ffebe9; color: #a40e26; }
            .none { background: #fff8c5; color: #7d4e00; }
            td, li { overflow-wrap: anywhere; }
            </style>
            </head>
            <body>

            """
        for block in blocks {
            switch block {
            case .heading(let level, let text):
                out += "<h\(level)>\(Self.htmlEscape(text))</h\(level)>\n"
            case .paragraph(let text):
                out += "<p>\(Self.htmlEscape(text))</p>\n"
            case .verdict(let passed, let text):
                let style = passed.map { $0 ? "pass" : "fail" } ?? "none"
                out += "<p class=\"verdict \(style)\">\(Self.htmlEscape(text))</p>\n"
            case .bullets(let items):
                out += "<ul>\n" + items.map { "<li>\(Self.htmlEscape($0))</li>\n" }.joined() + "</ul>\n"
            case .table(let columns, let rows, let numeric):
                out += "<table>\n<thead><tr>"
                out += columns.map { "<th>\(Self.htmlEscape($0))</th>" }.joined()
                out += "</tr></thead>\n<tbody>\n"
                for row in rows {
                    out += "<tr>"
                    for (n, cell) in row.enumerated() {
                        out += (numeric.contains(n) ? "<td class=\"n\">" : "<td>") + Self.htmlEscape(cell) + "</td>"
                    }
                    out += "</tr>\n"
                }
                out += "</tbody>\n</table>\n"
            }
        }
        out += "</body>\n</html>\n"
        return out
    }

    /// Escapes the five characters that could end an element or an attribute, and drops control
    /// characters a browser would not show anyway.
    static func htmlEscape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default:
                if scalar.properties.generalCategory == .control {
                    out += " "
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}
