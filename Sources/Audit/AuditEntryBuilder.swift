/// Builds an entry's canonical JSON member by member, for entries written at every request (a
/// PostgreSQL statement and its end).
///
/// It exists because the general `append(kind:subject:fields:)` takes a dictionary, which it must
/// copy, hash and sort for every entry; on the per-statement path that was most of the cost of
/// recording. The caller adds its members in canonical order (by the bytes of their names) and the
/// builder writes them straight into the entry, slotting in `index`, `kind`, `time`, `v` and the
/// subject's `user`, `resource` and `session` where they belong. Adding a member out of order, or
/// one of those names, is a programming error and traps.
public struct AuditEntryBuilder: Sendable {
    let kind: String
    let subject: AuditSubject
    private var out: [UInt8]
    private var indexOffset = -1
    private var timeOffset = -1
    /// The reserved and subject members still to write, in canonical order.
    private var reserved: [(key: String, value: AuditValue?)]
    private var nextReserved = 0
    private var lastKey: String?
    private var count = 0

    public init(kind: String, subject: AuditSubject, capacity: Int = 384) {
        self.kind = kind
        self.subject = subject
        var reserved: [(key: String, value: AuditValue?)] = [("index", nil), ("kind", .string(kind))]
        if let resource = subject.resource { reserved.append(("resource", .string(resource))) }
        if let session = subject.session { reserved.append(("session", .string(session))) }
        reserved.append(("time", nil))
        if let user = subject.user { reserved.append(("user", .string(user))) }
        reserved.append(("v", .int(EntryTemplate.formatVersion)))
        self.reserved = reserved
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(capacity)
        self.out = out
    }

    public mutating func string(_ key: String, _ value: String) {
        begin(key)
        CanonicalJSON.writeString(value, into: &out)
    }

    public mutating func int(_ key: String, _ value: Int64) {
        begin(key)
        CanonicalJSON.writeInteger(value, into: &out)
    }

    public mutating func uint(_ key: String, _ value: UInt64) {
        begin(key)
        CanonicalJSON.writeInteger(value, into: &out)
    }

    public mutating func bool(_ key: String, _ value: Bool) {
        begin(key)
        out.append(contentsOf: (value ? "true" : "false").utf8)
    }

    public mutating func strings(_ key: String, _ values: [String]) {
        begin(key)
        out.append(UInt8(ascii: "["))
        for (n, value) in values.enumerated() {
            if n > 0 { out.append(UInt8(ascii: ",")) }
            CanonicalJSON.writeString(value, into: &out)
        }
        out.append(UInt8(ascii: "]"))
    }

    /// Any value (objects are sorted as usual).
    public mutating func value(_ key: String, _ value: AuditValue) {
        begin(key)
        CanonicalJSON.write(value, into: &out)
    }

    private mutating func begin(_ key: String) {
        precondition(
            lastKey.map { CanonicalJSON.precedes($0, key) } ?? true,
            "AuditEntryBuilder: member \(key) added out of canonical order")
        precondition(
            !["index", "kind", "time", "v", "user", "resource", "session"].contains(key),
            "AuditEntryBuilder: \(key) is set by the audit log or the subject")
        lastKey = key
        flushReserved(before: key)
        writeKey(key)
    }

    private mutating func flushReserved(before key: String?) {
        while nextReserved < reserved.count {
            let member = reserved[nextReserved]
            if let key, !CanonicalJSON.precedes(member.key, key) { return }
            nextReserved += 1
            writeKey(member.key)
            if let value = member.value {
                CanonicalJSON.write(value, into: &out)
            } else if member.key == "index" {
                indexOffset = out.count
            } else {
                timeOffset = out.count
            }
        }
    }

    private mutating func writeKey(_ key: String) {
        if count > 0 { out.append(UInt8(ascii: ",")) }
        count += 1
        CanonicalJSON.writeString(key, into: &out)
        out.append(UInt8(ascii: ":"))
    }

    /// The entry with its index and time holes.
    mutating func template() throws(AuditError) -> EntryTemplate {
        try EntryTemplate.validate(kind: kind)
        flushReserved(before: nil)
        out.append(UInt8(ascii: "}"))
        return EntryTemplate(bytes: out, indexOffset: indexOffset, timeOffset: timeOffset, subject: subject)
    }
}

extension AuditLog {
    /// Appends the entry `entry` built; otherwise like `append(kind:subject:fields:deferred:completion:)`.
    public func append(
        _ entry: AuditEntryBuilder,
        deferred: Bool = false,
        completion: @escaping @Sendable (Result<AuditRecord, AuditError>) -> Void
    ) {
        var entry = entry
        let template: EntryTemplate
        do {
            template = try entry.template()
        } catch {
            completion(.failure(error))
            return
        }
        enqueue(kind: entry.kind, template: template, deferred: deferred, completion: completion)
    }
}
