/// An entry's canonical bytes with two holes: the index (known only inside the writer's transaction)
/// and the time (taken when the append is queued).
///
/// Callers encode their fields on their own thread; the writer thread only splices two numbers in.
/// Keys sort as `index` < `kind` < `time` < `v` by bytes, so the index hole always precedes the time
/// hole, whatever the caller's field names are.
struct EntryTemplate: Sendable {
    /// The entry without its index and time values (one buffer: it is made once per append).
    var bytes: [UInt8]
    /// Where the index value goes: just after `"index":`.
    var indexOffset: Int
    /// Where the time value goes: just after `"time":`.
    var timeOffset: Int
    /// The indexed columns, as found in the body.
    var subject: AuditSubject

    static let formatVersion: Int64 = 1

    /// Size of the entry without the digits of its index.
    var sizeWithoutIndex: Int { bytes.count + AuditTime.formattedLength + 2 }

    func size(index: UInt64) -> Int { sizeWithoutIndex + Self.decimalDigits(index) }

    func render(index: UInt64, micros: Int64) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(size(index: index))
        out.append(contentsOf: bytes[..<indexOffset])
        CanonicalJSON.writeInteger(index, into: &out)
        out.append(contentsOf: bytes[indexOffset..<timeOffset])
        out.append(UInt8(ascii: "\""))
        AuditTime.append(micros: micros, to: &out)
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: bytes[timeOffset...])
        return out
    }

    static func decimalDigits(_ value: UInt64) -> Int {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        return digits
    }

    /// Validates and encodes an entry.
    ///
    /// The indexed columns are, by definition, the body's top-level `user`, `resource` and `session`
    /// strings, so the body alone justifies them: a subject value missing from `fields` is added to
    /// the body; a string in `fields` with no subject value fills the column; `null` in `fields` means
    /// none; a field that differs from a subject value is an error.
    static func make(
        kind: String,
        subject: AuditSubject,
        fields: [String: AuditValue]
    ) throws(AuditError) -> EntryTemplate {
        try validate(kind: kind)
        // Members as (key, value) pairs; `index` and `time` are holes (nil), filled by the writer.
        var members: [(key: String, value: AuditValue?)] = []
        members.reserveCapacity(fields.count + 7)
        var resolved = subject
        for (key, value) in fields {
            switch key {
            case "index", "kind", "time", "v":
                throw AuditError(
                    .invalidEntry,
                    "\(kind): field \"\(key)\" is reserved (index, kind, time and v are set by the audit log)"
                )
            case "user": resolved.user = try subjectMember(kind, key, value, subject.user)
            case "resource": resolved.resource = try subjectMember(kind, key, value, subject.resource)
            case "session": resolved.session = try subjectMember(kind, key, value, subject.session)
            default: break
            }
            members.append((key, value))
        }
        if fields["user"] == nil, let user = subject.user { members.append(("user", .string(user))) }
        if fields["resource"] == nil, let resource = subject.resource {
            members.append(("resource", .string(resource)))
        }
        if fields["session"] == nil, let session = subject.session { members.append(("session", .string(session))) }
        members.append(("kind", .string(kind)))
        members.append(("v", .int(formatVersion)))
        members.append(("index", nil))
        members.append(("time", nil))
        members.sort { CanonicalJSON.precedes($0.key, $1.key) }

        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(512)
        var indexOffset = 0
        var timeOffset = 0
        for (n, member) in members.enumerated() {
            if n > 0 { out.append(UInt8(ascii: ",")) }
            CanonicalJSON.writeString(member.key, into: &out)
            out.append(UInt8(ascii: ":"))
            if let value = member.value {
                CanonicalJSON.write(value, into: &out)
            } else if member.key == "index" {
                indexOffset = out.count
            } else {
                timeOffset = out.count
            }
        }
        out.append(UInt8(ascii: "}"))
        return EntryTemplate(bytes: out, indexOffset: indexOffset, timeOffset: timeOffset, subject: resolved)
    }

    /// A top-level `user`, `resource` or `session` field: it fills the indexed column, so it must be a
    /// string equal to the subject's (or null when the subject has none). Returns the column value.
    private static func subjectMember(
        _ kind: String, _ key: String, _ field: AuditValue, _ value: String?
    )
        throws(AuditError) -> String?
    {
        switch (field, value) {
        case (.null, nil):
            return nil
        case (.string(let text), nil):
            return text
        case (.string(let text), let value?) where text == value:
            return value
        default:
            throw AuditError(
                .invalidEntry,
                "\(kind): top-level \"\(key)\" is \(field) but the subject's \(key) is "
                    + (value.map { "\"\($0)\"" } ?? "unset")
                    + "; it fills the indexed column, so it must be a string equal to the subject's "
                    + "(or null when unset)"
            )
        }
    }

    /// Kinds are dotted lowercase words (`session.open`), so a query for the prefix `session.` is exact.
    static func validate(kind: String) throws(AuditError) {
        let bytes = kind.utf8
        var valid = !bytes.isEmpty && bytes.count <= 64
        var previousWasDot = true
        for byte in bytes where valid {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"):
                previousWasDot = false
            case UInt8(ascii: "."):
                valid = !previousWasDot
                previousWasDot = true
            default:
                valid = false
            }
        }
        guard valid && !previousWasDot else {
            throw AuditError(
                .invalidEntry,
                "kind \"\(kind)\" must be dotted lowercase words like \"session.open\" (a-z, 0-9, _; at most 64 bytes)"
            )
        }
    }
}
