import Yams

#if canImport(Glibc)
import Glibc
#endif

/// A policy file that cannot be used, with the place and the key, in the form editors and CI
/// annotate: `FILE:LINE:COL: KEY: MESSAGE`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var location: SourceLocation?
    /// The dotted key path, e.g. `resources[1].address`; empty for the whole file.
    public var key: String
    public var message: String

    public init(location: SourceLocation?, key: String, message: String) {
        self.location = location
        self.key = key
        self.message = message
    }

    public var description: String {
        let place = location.map { "\($0): " } ?? ""
        return key.isEmpty ? "\(place)\(message)" : "\(place)\(key): \(message)"
    }
}

/// Reads and validates the policy file.
///
/// The file is walked as a YAML node tree rather than decoded with `Codable` so that every error
/// names the line and the key, and unknown keys are refused (a misspelt `unregistred: record`
/// must not silently keep the default).
public enum ConfigLoader {
    /// The largest policy file accepted: a guard against pointing the daemon at the wrong file.
    public static let maxFileSize = 4 << 20

    public static func load(path: String) throws(ConfigError) -> PolicyConfig {
        let text = try readFile(path)
        return try parse(text, path: path)
    }

    /// Reads a file whole; errors say what went wrong in words.
    public static func readFile(_ path: String) throws(ConfigError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ConfigError(
                location: nil, key: "", message: "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ConfigError(
                    location: nil, key: "", message: "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
            if bytes.count > maxFileSize {
                throw ConfigError(location: nil, key: "", message: "\(path) is larger than \(maxFileSize) bytes")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError(location: nil, key: "", message: "\(path) is not UTF-8 text")
        }
        return text
    }

    public static func parse(_ text: String, path: String) throws(ConfigError) -> PolicyConfig {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw yamlError(error, path: path)
        } catch {
            throw ConfigError(location: nil, key: "", message: "\(path): \(error)")
        }
        var config = PolicyConfig(path: path)
        guard let root else { return config }  // an empty file is the defaults: nothing captured
        let doc = Walker(path: path)
        let top = try doc.mapping(
            root, key: "",
            allowed: ["daemon", "audit", "capture", "postgres", "masking", "tls", "resources", "rules"])
        if let node = top["daemon"] { config.daemon = try doc.daemon(node) }
        if let node = top["audit"] { config.audit = try doc.audit(node) }
        if let node = top["capture"] { config.capture = try doc.capture(node) }
        if let node = top["postgres"] { config.postgres = try doc.postgres(node) }
        if let node = top["masking"] { config.masking = try doc.masking(node) }
        if let node = top["tls"] { config.tls = try doc.applianceTLS(node) }
        if let node = top["resources"] {
            config.resources = try doc.resources(node, statementText: config.audit.statementText)
        }
        // After resources: rules name them.
        if let node = top["rules"] { config.rules = try doc.rules(node, resources: config.resources) }
        return config
    }

    private static func yamlError(_ error: YamlError, path: String) -> ConfigError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
            .composer(_, let problem, let mark, _):
            return ConfigError(
                location: SourceLocation(file: path, line: mark.line, column: mark.column),
                key: "", message: "invalid YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ConfigError(
                location: SourceLocation(file: path, line: context.mark.line, column: context.mark.column),
                key: "", message: "duplicate key: \(duplicates.joined(separator: ", "))")
        default:
            return ConfigError(location: nil, key: "", message: "invalid YAML in \(path): \(error)")
        }
    }
}

/// Walks the node tree of one file, turning every mismatch into a ConfigError at that node.
struct Walker {
    let path: String

    func location(_ node: Node) -> SourceLocation? {
        node.mark.map { SourceLocation(file: path, line: $0.line, column: $0.column) }
    }

    func fail(_ node: Node, _ key: String, _ message: String) -> ConfigError {
        ConfigError(location: location(node), key: key, message: message)
    }

    /// A mapping with only `allowed` keys, as an ordered dictionary of key → value node.
    func mapping(_ node: Node, key: String, allowed: Set<String>) throws(ConfigError) -> [String: Node] {
        guard case .mapping(let m) = node else {
            throw fail(node, key, "expected a mapping of \(allowed.sorted().joined(separator: ", "))")
        }
        var out: [String: Node] = [:]
        for (k, v) in m {
            guard case .scalar(let s) = k else { throw fail(k, key, "keys must be plain words") }
            let name = s.string
            let full = key.isEmpty ? name : "\(key).\(name)"
            guard allowed.contains(name) else {
                throw fail(k, full, "unknown key (expected one of: \(allowed.sorted().joined(separator: ", ")))")
            }
            guard out[name] == nil else { throw fail(k, full, "given twice") }
            out[name] = v
        }
        return out
    }

    func string(_ node: Node, _ key: String) throws(ConfigError) -> String {
        guard case .scalar(let s) = node, !s.string.isEmpty else {
            throw fail(node, key, "expected a non-empty string")
        }
        return s.string
    }

    func strings(_ node: Node, _ key: String) throws(ConfigError) -> [Located<String>] {
        guard case .sequence(let seq) = node else { throw fail(node, key, "expected a list") }
        var out: [Located<String>] = []
        for (i, item) in seq.enumerated() {
            out.append(Located(try string(item, "\(key)[\(i)]"), at: location(item)))
        }
        return out
    }

    func integer<T: FixedWidthInteger>(_ node: Node, _ key: String, _ range: ClosedRange<T>) throws(ConfigError) -> T {
        let text = try string(node, key)
        let value: T?
        if text.hasPrefix("0x") || text.hasPrefix("0X") {
            value = T(text.dropFirst(2), radix: 16)
        } else {
            value = T(text)
        }
        guard let value, range.contains(value) else {
            throw fail(node, key, "expected an integer from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
        }
        return value
    }

    func bool(_ node: Node, _ key: String) throws(ConfigError) -> Bool {
        let text = try string(node, key)
        switch text {
        case "true": return true
        case "false": return false
        default: throw fail(node, key, "expected true | false, got '\(text)'")
        }
    }

    func absolutePath(_ node: Node, _ key: String) throws(ConfigError) -> String {
        let text = try string(node, key)
        guard text.hasPrefix("/") else { throw fail(node, key, "expected an absolute path, got '\(text)'") }
        guard !text.utf8.contains(0) else { throw fail(node, key, "path contains a NUL byte") }
        return text
    }

    /// A byte count: `65536`, `512KiB`, `64MiB`, `1GiB`.
    func size(_ node: Node, _ key: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let text = try string(node, key)
        guard let n = parseSize(text) else {
            throw fail(node, key, "expected a size such as 65536, 512KiB, 64MiB or 1GiB, got '\(text)'")
        }
        guard range.contains(n) else {
            throw fail(
                node, key, "expected a size from \(formatSize(range.lowerBound)) to \(formatSize(range.upperBound))")
        }
        return n
    }

    func duration(_ node: Node, _ key: String) throws(ConfigError) -> Duration {
        let text = try string(node, key)
        guard let d = parseDuration(text), d > .zero else {
            throw fail(node, key, "expected a duration such as 500ms, 5s, 10m, 1h, got '\(text)'")
        }
        return d
    }

    func choice<E: RawRepresentable & CaseIterable>(_ node: Node, _ key: String, _: E.Type) throws(ConfigError) -> E
    where E.RawValue == String {
        let text = try string(node, key)
        guard let v = E(rawValue: text) else {
            let options = E.allCases.map(\.rawValue).joined(separator: " | ")
            throw fail(node, key, "expected \(options), got '\(text)'")
        }
        return v
    }

    func daemon(_ node: Node) throws(ConfigError) -> DaemonSettings {
        let m = try mapping(
            node, key: "daemon",
            allowed: [
                "user", "listen_port", "control_socket", "admin_group", "auditor_group", "upstream_mark",
                "connect_timeout", "idle_timeout", "ruleset_check_interval", "resolve_interval", "max_connections",
            ])
        var d = DaemonSettings()
        if let n = m["user"] { d.user = try string(n, "daemon.user") }
        if let n = m["listen_port"] { d.listenPort = try integer(n, "daemon.listen_port", 1...65535) }
        if let n = m["control_socket"] {
            d.controlSocket = try string(n, "daemon.control_socket")
            guard d.controlSocket.hasPrefix("/") else {
                throw fail(n, "daemon.control_socket", "expected an absolute path")
            }
            guard d.controlSocket.utf8.count < 108 else {
                throw fail(n, "daemon.control_socket", "path longer than 107 bytes")
            }
        }
        if let n = m["admin_group"] { d.adminGroup = try string(n, "daemon.admin_group") }
        if let n = m["auditor_group"] { d.auditorGroup = try string(n, "daemon.auditor_group") }
        if let n = m["upstream_mark"] {
            d.upstreamMark = try integer(n, "daemon.upstream_mark", 1...UInt32.max)
        }
        if let n = m["connect_timeout"] { d.connectTimeout = try duration(n, "daemon.connect_timeout") }
        if let n = m["idle_timeout"] { d.idleTimeout = try duration(n, "daemon.idle_timeout") }
        if let n = m["ruleset_check_interval"] {
            d.rulesetCheckInterval = try duration(n, "daemon.ruleset_check_interval")
        }
        if let n = m["resolve_interval"] { d.resolveInterval = try duration(n, "daemon.resolve_interval") }
        if let n = m["max_connections"] { d.maxConnections = try integer(n, "daemon.max_connections", 1...1_000_000) }
        return d
    }

    func audit(_ node: Node) throws(ConfigError) -> AuditSettings {
        let m = try mapping(
            node, key: "audit",
            allowed: [
                "database", "durability", "statement_text", "signing_key", "retention", "recording", "recording_limit",
            ])
        var a = AuditSettings()
        if let n = m["database"] {
            a.database = try string(n, "audit.database")
            guard a.database.hasPrefix("/") else { throw fail(n, "audit.database", "expected an absolute path") }
        }
        if let n = m["durability"] { a.durability = try choice(n, "audit.durability", AuditDurabilitySetting.self) }
        if let n = m["statement_text"] {
            a.statementText = try choice(n, "audit.statement_text", StatementTextSetting.self)
        }
        if let n = m["signing_key"] { a.signingKey = try absolutePath(n, "audit.signing_key") }
        if let n = m["retention"] {
            let r = try mapping(n, key: "audit.retention", allowed: ["entries", "recordings"])
            if let e = r["entries"] {
                let d = try duration(e, "audit.retention.entries")
                guard d >= .seconds(86_400) else {
                    throw fail(e, "audit.retention.entries", "at least 1d: evidence is kept for audits")
                }
                a.retentionEntries = d
            }
            if let e = r["recordings"] {
                let d = try duration(e, "audit.retention.recordings")
                guard d >= .seconds(3_600) else {
                    throw fail(e, "audit.retention.recordings", "at least 1h")
                }
                a.retentionRecordings = d
            }
        }
        if let n = m["recording"] {
            a.recording = try choice(n, "audit.recording", RecordingSetting.self)
            if a.recording == .full && a.statementText == .redacted {
                throw fail(
                    n, "audit.recording",
                    "full recordings keep statements and parameters as sent, which statement_text: redacted "
                        + "keeps out of the evidence; use recording: off")
            }
        } else if a.statementText == .redacted {
            a.recording = .off
        }
        if let n = m["recording_limit"] {
            a.recordingLimit = try size(n, "audit.recording_limit", (1 << 20)...(1 << 34))
        }
        return a
    }

    func capture(_ node: Node) throws(ConfigError) -> CaptureSettings {
        let m = try mapping(node, key: "capture", allowed: ["users", "groups", "unregistered", "dns"])
        var c = CaptureSettings()
        if let n = m["users"] { c.users = try strings(n, "capture.users") }
        if let n = m["groups"] { c.groups = try strings(n, "capture.groups") }
        if let n = m["unregistered"] {
            c.unregistered = try choice(n, "capture.unregistered", UnregisteredDestination.self)
        }
        if let n = m["dns"] {
            let v = try string(n, "capture.dns")
            switch v {
            case "allow": c.allowDNS = true
            case "deny": c.allowDNS = false
            default: throw fail(n, "capture.dns", "expected allow | deny, got '\(v)'")
            }
        }
        return c
    }

    func resources(_ node: Node, statementText: StatementTextSetting = .full) throws(ConfigError) -> [Resource] {
        guard case .sequence(let seq) = node else { throw fail(node, "resources", "expected a list of resources") }
        var out: [Resource] = []
        var seen: [String: SourceLocation?] = [:]
        for (i, item) in seq.enumerated() {
            let key = "resources[\(i)]"
            let m = try mapping(
                item, key: key,
                allowed: ["name", "protocol", "address", "credentials", "tls", "max_message_size", "recording"])
            guard let nameNode = m["name"] else { throw fail(item, "\(key).name", "missing") }
            guard let addressNode = m["address"] else { throw fail(item, "\(key).address", "missing") }
            let name = try string(nameNode, "\(key).name")
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
                throw fail(nameNode, "\(key).name", "use letters, digits, '-', '_' and '.' only")
            }
            if let previous = seen[name] {
                let at = previous.map { " (first at line \($0.line))" } ?? ""
                throw fail(nameNode, "\(key).name", "resource '\(name)' is defined twice\(at)")
            }
            seen[name] = location(item)
            let proto: ResourceProtocol =
                if let n = m["protocol"] { try choice(n, "\(key).protocol", ResourceProtocol.self) } else { .tcp }
            let text = try string(addressNode, "\(key).address")
            guard let target = ResourceTarget(parsing: text) else {
                throw fail(
                    addressNode, "\(key).address",
                    "expected HOST:PORT, IP:PORT, [IPv6]:PORT or CIDR:PORT (PORT may be N, N-M or *), got '\(text)'")
            }
            var resource = Resource(name: name, protocol: proto, target: target, location: location(item))
            for k in ["credentials", "tls", "max_message_size", "recording"] where proto != .postgres {
                if let n = m[k] { throw fail(n, "\(key).\(k)", "only for protocol: postgres") }
            }
            if let n = m["credentials"] { resource.credentials = try credentials(n, "\(key).credentials") }
            if let n = m["tls"] { resource.tls = try tls(n, "\(key).tls") }
            if let n = m["max_message_size"] {
                resource.maxMessageSize = try size(
                    n, "\(key).max_message_size", PostgresSettings.maxMessageSizeRange)
            }
            if let n = m["recording"] {
                resource.recording = try choice(n, "\(key).recording", RecordingSetting.self)
                if resource.recording == .full && statementText == .redacted {
                    throw fail(
                        n, "\(key).recording",
                        "full recordings keep statements and parameters as sent, which audit.statement_text: "
                            + "redacted keeps out of the evidence")
                }
            }
            out.append(resource)
        }
        return out
    }
}

/// `65536`, `512KiB`, `64MiB`, `1GiB` (binary units; the suffix is case-insensitive).
public func parseSize(_ text: String) -> Int? {
    let units: [(String, Int)] = [("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30)]
    let lower = text.lowercased()
    for (suffix, factor) in units where lower.hasSuffix(suffix) {
        guard let n = Int(lower.dropLast(suffix.count)), n >= 0, n <= Int.max / factor else { return nil }
        return n * factor
    }
    guard let n = Int(text), n >= 0 else { return nil }
    return n
}

func formatSize(_ n: Int) -> String {
    for (suffix, factor) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] where n % factor == 0 && n > 0 {
        return "\(n / factor)\(suffix)"
    }
    return "\(n)"
}

/// `500ms`, `5s`, `10m`, `1h`, `2d`, or a bare number of seconds.
public func parseDuration(_ text: String) -> Duration? {
    let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    for (suffix, millis) in units where text.hasSuffix(suffix) {
        let number = text.dropLast(suffix.count)
        // "ms" must not be read as "m" + "s"
        if suffix == "s", number.hasSuffix("m") { continue }
        guard let n = Int64(number), n >= 0, n < Int64.max / millis else { return nil }
        return .milliseconds(n * millis)
    }
    guard let n = Int64(text), n >= 0 else { return nil }
    return .seconds(n)
}

extension ResourceTarget {
    /// Parses the `address` of a resource: `198.18.0.10:5432`, `[2001:db8::10]:5432`,
    /// `198.18.0.0/24:5432`, `[2001:db8::/64]:5432`, `db.internal:5432`; the port may be a range
    /// `5432-5440` or `*`.
    public init?(parsing text: String) {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return nil
            }
            hostPart = text[text.index(after: text.startIndex)..<close]
            portPart = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            if hostPart.contains(":") { return nil }  // bare IPv6 needs brackets
        }
        guard let ports = PortRange(parsing: portPart), !hostPart.isEmpty else { return nil }
        if let slash = hostPart.firstIndex(of: "/") {
            guard let base = IPAddress(hostPart[..<slash]), let len = Int(hostPart[hostPart.index(after: slash)...]),
                len >= 0, len <= (base.isIPv6 ? 128 : 32)
            else { return nil }
            self = .network(base, prefixLength: len, ports)
        } else if let a = IPAddress(hostPart) {
            self = .address(a, ports)
        } else {
            let labels = hostPart.split(separator: ".", omittingEmptySubsequences: false)
            let valid =
                hostPart.count <= 253
                && labels.allSatisfy { label in
                    !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                        && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
                }
            // All-numeric dotted text is a mistyped IPv4 address, not a host name.
            guard valid, !labels.allSatisfy({ $0.allSatisfy(\.isNumber) }) else { return nil }
            self = .host(String(hostPart).lowercased(), ports)
        }
    }
}

extension PortRange {
    init?(parsing text: Substring) {
        if text == "*" {
            self = .any
            return
        }
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        switch parts.count {
        case 1:
            guard let p = UInt16(parts[0]), p > 0 else { return nil }
            self.init(p, p)
        case 2:
            guard let a = UInt16(parts[0]), let b = UInt16(parts[1]), a > 0, a <= b else { return nil }
            self.init(a, b)
        default:
            return nil
        }
    }
}
