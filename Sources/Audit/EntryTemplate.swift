/// An entry's canonical bytes with two holes: the index (known only inside the writer's transaction)
/// and the time (taken when the append is queued).
///
/// Callers encode their fields on their own thread; the writer thread only splices two numbers in.
/// Keys sort as `index` < `kind` < `time` < `v` by bytes, so the index hole always precedes the time
/// hole, whatever the caller's field names are.
struct EntryTemplate: Sendable {
    /// Everything up to and including `"index":`.
    var head: [UInt8]
    /// Everything after the index value up to and including `"time":`.
    var middle: [UInt8]
    /// Everything after the time value.
    var tail: [UInt8]
    /// The indexed columns, as found in the body.
    var subject: AuditSubject

    static let formatVersion: Int64 = 1
    static let reservedKeys: Set<String> = ["index", "kind", "time", "v"]
    static var subjectKeys: [(String, WritableKeyPath<AuditSubject, String?>)] {
        [("user", \.user), ("resource", \.resource), ("session", \.session)]
    }

    /// Size of the entry without the digits of its index.
    var sizeWithoutIndex: Int { head.count + middle.count + tail.count + AuditTime.formattedLength + 2 }

    func size(index: UInt64) -> Int { sizeWithoutIndex + Self.decimalDigits(index) }

    func render(index: UInt64, micros: Int64) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(size(index: index))
        out.append(contentsOf: head)
        CanonicalJSON.writeInteger(index, into: &out)
        out.append(contentsOf: middle)
        out.append(UInt8(ascii: "\""))
        AuditTime.append(micros: micros, to: &out)
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: tail)
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
        var members = fields
        for key in fields.keys where reservedKeys.contains(key) {
            throw AuditError(
                .invalidEntry,
                "\(kind): field \"\(key)\" is reserved (index, kind, time and v are set by the audit log)"
            )
        }
        var resolved = subject
        for (key, path) in subjectKeys {
            switch (fields[key], subject[keyPath: path]) {
            case (nil, nil), (.null?, nil):
                break
            case (nil, let value?):
                members[key] = .string(value)
            case (.string(let value)?, nil):
                resolved[keyPath: path] = value
            case (let field?, let value):
                guard let value, field == .string(value) else {
                    throw AuditError(
                        .invalidEntry,
                        "\(kind): top-level \"\(key)\" is \(field) but the subject's \(key) is "
                            + (value.map { "\"\($0)\"" } ?? "unset")
                            + "; it fills the indexed column, so it must be a string equal to the subject's "
                            + "(or null when unset)"
                    )
                }
            }
        }
        var template = EntryTemplate(head: [], middle: [], tail: [], subject: resolved)
        members["kind"] = .string(kind)
        members["v"] = .int(formatVersion)

        var keys = Array(members.keys)
        keys.append("index")
        keys.append("time")
        keys = CanonicalJSON.sortedKeys(keys)

        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(512)
        for (n, key) in keys.enumerated() {
            if n > 0 { out.append(UInt8(ascii: ",")) }
            CanonicalJSON.writeString(key, into: &out)
            out.append(UInt8(ascii: ":"))
            switch key {
            case "index":
                template.head = out
                out.removeAll(keepingCapacity: true)
            case "time":
                template.middle = out
                out.removeAll(keepingCapacity: true)
            default:
                CanonicalJSON.write(members[key]!, into: &out)
            }
        }
        out.append(UInt8(ascii: "}"))
        template.tail = out
        return template
    }

    /// Kinds are dotted lowercase words (`session.open`), so a query for the prefix `session.` is exact.
    static func validate(kind: String) throws(AuditError) {
        let bytes = Array(kind.utf8)
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
