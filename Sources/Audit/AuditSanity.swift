/// What the entries say happened, checked for things that must never happen, whatever the hashes
/// say: a valid signature over a log that shows a blocked statement running, or an approval by the
/// requester, is still a finding.
///
/// Some checks need the whole story: a `session.close` whose `session.open` is before the export's
/// range is not missing. Those are failures only when the bundle is the whole log from entry 1;
/// otherwise they are notes.
enum Sanity {
    static func check(_ entries: [(UInt64, [String: AuditValue])], filtered: Bool, report: inout VerificationReport) {
        let whole = !filtered && entries.first?.0 == 1
        func text(_ m: [String: AuditValue], _ key: String) -> String? {
            if case .string(let s)? = m[key] { return s }
            return nil
        }
        func number(_ m: [String: AuditValue], _ key: String) -> UInt64? {
            switch m[key] {
            case .uint(let v)?: return v
            case .int(let v)? where v >= 0: return UInt64(v)
            default: return nil
            }
        }
        func uid(_ m: [String: AuditValue], _ key: String) -> UInt64? {
            if case .object(let o)? = m[key] { return number(o, "uid") }
            return nil
        }
        func incomplete(_ index: UInt64, _ message: String) {
            if whole {
                report.fail(entry: index, message)
            } else if report.notes.count < 20 {
                report.notes.append("entry \(index): \(message) (it may be outside the export's range)")
            }
        }

        var openSessions: Set<String> = []
        var blocked: [String: UInt64] = [:]  // "session/statement" → entry index
        var held: [String: UInt64] = [:]
        var requests: [String: UInt64] = [:]  // request id → requester uid
        var released: Set<String> = []  // sessions with a completed approval or grant use since
        for (index, m) in entries {
            guard let kind = text(m, "kind") else {
                report.fail(entry: index, "has no kind")
                continue
            }
            let session = text(m, "session")
            switch kind {
            case "session.open":
                if let session { openSessions.insert(session) }
            case "session.close":
                if let session, openSessions.remove(session) == nil {
                    incomplete(index, "closes session \(session), which was never opened")
                }
            case "statement":
                guard let session, let n = number(m, "statement") else { break }
                switch text(m, "decision") {
                case "block": blocked["\(session)/\(n)"] = index
                case "approve": held["\(session)/\(n)"] = index
                default: break
                }
            case "statement.end":
                guard let session, let n = number(m, "statement") else { break }
                let key = "\(session)/\(n)"
                let result = text(m, "result") ?? ""
                if let at = blocked[key], result != "not_approved" {
                    report.fail(
                        entry: index,
                        "statement \(n) of session \(session) was blocked (entry \(at)) but has a result: \(result)")
                }
                if held[key] != nil, result == "completed" || result == "failed", !released.contains(session) {
                    incomplete(index, "statement \(n) of session \(session) ran without an approval or grant before it")
                }
            case "approval.requested":
                if let id = text(m, "request") {
                    requests[id] = uid(m, "requester")
                }
            case "approval.approved", "approval.denied":
                guard let id = text(m, "request") else { break }
                guard let requester = requests[id] else {
                    incomplete(index, "decides request \(id), which was never requested")
                    break
                }
                if let approver = uid(m, "approver"), approver == requester {
                    report.fail(entry: index, "uid \(approver) decided its own request \(id)")
                }
                if kind == "approval.approved", case .bool(true)? = m["complete"], let session {
                    released.insert(session)
                }
            case "approval.timed_out", "approval.withdrawn", "approval.executed", "approval.notified":
                if let id = text(m, "request"), requests[id] == nil {
                    incomplete(index, "refers to request \(id), which was never requested")
                }
            case "grant.used":
                // A window's statement follows in its session; grant entries carry no session, so
                // any later held statement of the holder may have used it.
                for key in held.keys {
                    if let s = key.split(separator: "/").first { released.insert(String(s)) }
                }
            default:
                break
            }
        }
        report.sessionsOpenAtCheckpoint = openSessions.count
    }
}
