import Yams

/// The `postgres:` section, resource credentials and TLS, and the `rules:` list.
extension Walker {
    func postgres(_ node: Node) throws(ConfigError) -> PostgresSettings {
        let m = try mapping(node, key: "postgres", allowed: ["max_message_size"])
        var p = PostgresSettings()
        if let n = m["max_message_size"] {
            p.maxMessageSize = try size(n, "postgres.max_message_size", PostgresSettings.maxMessageSizeRange)
        }
        return p
    }

    func masking(_ node: Node) throws(ConfigError) -> MaskingSettings {
        let m = try mapping(node, key: "masking", allowed: ["hash_key_file"])
        var settings = MaskingSettings()
        if let n = m["hash_key_file"] {
            let k = "masking.hash_key_file"
            settings.hashKey = SecretReference(.file(try absolutePath(n, k)), key: k, location: location(n))
        }
        return settings
    }

    func credentials(_ node: Node, _ key: String) throws(ConfigError) -> UpstreamCredentials {
        let m = try mapping(node, key: key, allowed: ["user", "password_file", "systemd_credential"])
        guard let userNode = m["user"] else { throw fail(node, "\(key).user", "missing: the upstream role name") }
        let user = try string(userNode, "\(key).user")
        guard user.utf8.count <= 63, !user.utf8.contains(0) else {
            throw fail(userNode, "\(key).user", "PostgreSQL role names are at most 63 bytes")
        }
        var password: SecretReference?
        switch (m["password_file"], m["systemd_credential"]) {
        case (.some, .some(let c)):
            throw fail(c, "\(key).systemd_credential", "give password_file or systemd_credential, not both")
        case (.some(let f), nil):
            let k = "\(key).password_file"
            password = SecretReference(.file(try absolutePath(f, k)), key: k, location: location(f))
        case (nil, .some(let c)):
            let k = "\(key).systemd_credential"
            let name = try string(c, k)
            guard name != ".", name != "..", !name.contains("/"), name.utf8.count <= 255 else {
                throw fail(c, k, "expected a credential name (as in LoadCredential=NAME:...), got '\(name)'")
            }
            password = SecretReference(.systemdCredential(name), key: k, location: location(c))
        case (nil, nil):
            password = nil
        }
        return UpstreamCredentials(user: user, password: password, location: location(node))
    }

    func tls(_ node: Node, _ key: String) throws(ConfigError) -> TLSSettings {
        let m = try mapping(node, key: key, allowed: ["client", "upstream", "ca_file"])
        var t = TLSSettings()
        if let n = m["client"] { t.client = try choice(n, "\(key).client", ClientTLSMode.self) }
        if let n = m["upstream"] { t.upstream = try choice(n, "\(key).upstream", UpstreamTLSMode.self) }
        if let n = m["ca_file"] {
            t.caFile = Located(try absolutePath(n, "\(key).ca_file"), at: location(n))
            guard t.upstream == .verifyFull else {
                throw fail(
                    n, "\(key).ca_file",
                    "only used with upstream: verify-full (upstream is \(t.upstream.rawValue), "
                        + "which does not check the certificate)")
            }
        } else if t.upstream == .verifyFull {
            throw fail(m["upstream"] ?? node, "\(key).ca_file", "upstream: verify-full needs ca_file")
        }
        return t
    }

    /// The top-level `tls:`: where the appliance's CA certificate and key are.
    func applianceTLS(_ node: Node) throws(ConfigError) -> ApplianceTLSSettings {
        let m = try mapping(node, key: "tls", allowed: ["ca_certificate", "ca_key"])
        var t = ApplianceTLSSettings()
        if let n = m["ca_certificate"] {
            t.caCertificate = Located(try absolutePath(n, "tls.ca_certificate"), at: location(n))
        }
        if let n = m["ca_key"] { t.caKey = Located(try absolutePath(n, "tls.ca_key"), at: location(n)) }
        if t.caKey.value == t.caCertificate.value {
            throw fail(
                m["ca_key"] ?? m["ca_certificate"] ?? node, "tls.ca_key",
                "the key must be its own file (the certificate is shown to clients, the key to nobody)")
        }
        return t
    }

    func rules(_ node: Node, resources: [Resource]) throws(ConfigError) -> [Rule] {
        guard case .sequence(let seq) = node else { throw fail(node, "rules", "expected a list of rules") }
        let byName = Dictionary(resources.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var out: [Rule] = []
        var seen: [String: SourceLocation?] = [:]
        for (i, item) in seq.enumerated() {
            let key = "rules[\(i)]"
            let m = try mapping(
                item, key: key, allowed: ["name", "identities", "resources", "block", "mask", "approve"])
            guard let nameNode = m["name"] else { throw fail(item, "\(key).name", "missing") }
            let name = try string(nameNode, "\(key).name")
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
                throw fail(nameNode, "\(key).name", "use letters, digits, '-', '_' and '.' only")
            }
            if let previous = seen[name] {
                let at = previous.map { " (first at line \($0.line))" } ?? ""
                throw fail(nameNode, "\(key).name", "rule '\(name)' is defined twice\(at)")
            }
            seen[name] = location(item)
            var rule = Rule(name: name, location: location(item))
            if let n = m["identities"] {
                rule.identities = IdentityMatcher(try identityList(n, "\(key).identities", approvers: false))
            }
            if let n = m["resources"] {
                let names = try nonEmptyStrings(n, "\(key).resources", absentMeans: "every resource")
                for (j, r) in names.enumerated() {
                    guard let resource = byName[r.value] else {
                        let known = resources.map(\.name).joined(separator: ", ")
                        throw ConfigError(
                            location: r.location, key: "\(key).resources[\(j)]",
                            message: "no resource named '\(r.value)' (resources: \(known.isEmpty ? "none" : known))")
                    }
                    guard resource.protocol == .postgres else {
                        throw ConfigError(
                            location: r.location, key: "\(key).resources[\(j)]",
                            message: "resource '\(r.value)' is protocol \(resource.protocol.rawValue): "
                                + "rules apply to postgres resources only")
                    }
                }
                rule.resources = names
            }
            if let n = m["block"] { rule.block = try block(n, "\(key).block") }
            if let n = m["mask"] { rule.mask = try mask(n, "\(key).mask") }
            if let n = m["approve"] { rule.approve = try approve(n, "\(key).approve") }
            guard rule.block != nil || rule.mask != nil || rule.approve != nil else {
                throw fail(item, key, "a rule needs at least one action: block, mask or approve")
            }
            out.append(rule)
        }
        return out
    }

    /// A list that must not be empty: leaving the key out is how a rule says "all".
    func nonEmptyStrings(_ node: Node, _ key: String, absentMeans: String) throws(ConfigError) -> [Located<String>] {
        let list = try strings(node, key)
        guard !list.isEmpty else {
            throw fail(node, key, "empty list matches nothing; leave the key out to mean \(absentMeans)")
        }
        return list
    }

    func identityList(_ node: Node, _ key: String, approvers: Bool) throws(ConfigError) -> [IdentityPattern] {
        let list = try nonEmptyStrings(node, key, absentMeans: approvers ? "(approvers are required)" : "everyone")
        var out: [IdentityPattern] = []
        for (j, entry) in list.enumerated() {
            let k = "\(key)[\(j)]"
            let pattern = try parsed(IdentityPattern.parse(entry.value), entry, k)
            if approvers {
                switch pattern {
                case .user, .group: break
                case .uid, .unit:
                    throw ConfigError(
                        location: entry.location, key: k,
                        message: "approvers are people: use group:NAME or user:NAME, got '\(entry.value)'")
                }
            }
            out.append(pattern)
        }
        return out
    }

    func parsed<T>(
        _ result: Result<T, SyntaxProblem>, _ entry: Located<String>, _ key: String
    ) throws(ConfigError)
        -> T
    {
        switch result {
        case .success(let v): return v
        case .failure(let p): throw ConfigError(location: entry.location, key: key, message: p.message)
        }
    }

    static let matcherKeys: Set<String> = ["statements", "functions", "unbounded_writes", "patterns"]

    func matcher(_ m: [String: Node], _ node: Node, _ key: String) throws(ConfigError) -> StatementMatcher {
        var s = StatementMatcher()
        if let n = m["statements"] {
            for (j, e) in try strings(n, "\(key).statements").enumerated() {
                s.statements.append(try parsed(StatementName.parse(e.value), e, "\(key).statements[\(j)]"))
            }
        }
        if let n = m["functions"] {
            for (j, e) in try strings(n, "\(key).functions").enumerated() {
                s.functions.append(try parsed(FunctionPattern.parse(e.value), e, "\(key).functions[\(j)]"))
            }
        }
        if let n = m["unbounded_writes"] { s.unboundedWrites = try bool(n, "\(key).unbounded_writes") }
        if let n = m["patterns"] {
            for (j, e) in try strings(n, "\(key).patterns").enumerated() {
                guard let p = TextPattern(e.value) else {
                    throw ConfigError(location: e.location, key: "\(key).patterns[\(j)]", message: "blank pattern")
                }
                s.patterns.append(p)
            }
        }
        guard !s.isEmpty else {
            throw fail(
                node, key, "matches no statement: give statements, functions, unbounded_writes: true or patterns")
        }
        return s
    }

    func block(_ node: Node, _ key: String) throws(ConfigError) -> BlockSpec {
        let m = try mapping(node, key: key, allowed: Self.matcherKeys.union(["message"]))
        var b = BlockSpec(match: try matcher(m, node, key))
        if let n = m["message"] {
            let text = try string(n, "\(key).message")
            guard text.utf8.count <= 1000, !text.utf8.contains(0) else {
                throw fail(n, "\(key).message", "at most 1000 bytes of text")
            }
            b.message = text
        }
        return b
    }

    func mask(_ node: Node, _ key: String) throws(ConfigError) -> MaskSpec {
        let m = try mapping(node, key: key, allowed: ["columns", "detectors", "with"])
        var spec = MaskSpec()
        if let n = m["columns"] {
            for (j, e) in try strings(n, "\(key).columns").enumerated() {
                spec.columns.append(try parsed(ColumnPattern.parse(e.value), e, "\(key).columns[\(j)]"))
            }
        }
        if let n = m["detectors"] {
            guard case .sequence(let seq) = n else { throw fail(n, "\(key).detectors", "expected a list") }
            for (j, item) in seq.enumerated() {
                let d = try choice(item, "\(key).detectors[\(j)]", DetectorName.self)
                if !spec.detectors.contains(d) { spec.detectors.append(d) }
            }
        }
        if let n = m["with"] { spec.method = try choice(n, "\(key).with", MaskMethodName.self) }
        guard !spec.columns.isEmpty || !spec.detectors.isEmpty else {
            throw fail(node, key, "masks nothing: give columns, detectors or both")
        }
        return spec
    }

    func approve(_ node: Node, _ key: String) throws(ConfigError) -> ApproveSpec {
        let m = try mapping(
            node, key: key,
            allowed: Self.matcherKeys.union(["approvers", "required", "timeout", "grant", "webhook"]))
        let match = try matcher(m, node, key)
        guard let approversNode = m["approvers"] else {
            throw fail(node, "\(key).approvers", "missing: who may approve (group:NAME or user:NAME)")
        }
        let approvers = try identityList(approversNode, "\(key).approvers", approvers: true)
        var spec = ApproveSpec(match: match, approvers: IdentityMatcher(approvers))
        if let n = m["required"] {
            spec.required = try integer(n, "\(key).required", 1...5)
            // Only named users: their number bounds how many distinct approvers can ever exist.
            let users = Set(approvers.compactMap { if case .user(let u) = $0 { u } else { nil } })
            if users.count == approvers.count, spec.required > users.count {
                throw fail(
                    n, "\(key).required",
                    "\(spec.required) distinct approvers needed but only \(users.count) user(s) may approve")
            }
        }
        if let n = m["timeout"] {
            spec.timeout = try duration(n, "\(key).timeout")
            guard spec.timeout <= ApproveSpec.maxDuration else { throw fail(n, "\(key).timeout", "at most 24h") }
        }
        if let n = m["grant"] {
            let g = try duration(n, "\(key).grant")
            guard g <= ApproveSpec.maxDuration else { throw fail(n, "\(key).grant", "at most 24h") }
            spec.grant = g
        }
        if let n = m["webhook"] { spec.webhook = try webhook(n, "\(key).webhook") }
        return spec
    }

    func webhook(_ node: Node, _ key: String) throws(ConfigError) -> WebhookSpec {
        let m = try mapping(node, key: key, allowed: ["url", "secret_file"])
        guard let urlNode = m["url"] else { throw fail(node, "\(key).url", "missing") }
        let url = try string(urlNode, "\(key).url")
        let rest: Substring? =
            url.hasPrefix("https://") ? url.dropFirst(8) : url.hasPrefix("http://") ? url.dropFirst(7) : nil
        guard let rest, let host = rest.split(separator: "/", omittingEmptySubsequences: false).first, !host.isEmpty,
            !url.contains(where: { $0.isWhitespace })
        else {
            throw fail(urlNode, "\(key).url", "expected an https:// (or http://) URL, got '\(url)'")
        }
        guard let secretNode = m["secret_file"] else {
            throw fail(node, "\(key).secret_file", "missing: the HMAC key that signs each notification")
        }
        let k = "\(key).secret_file"
        let secret = SecretReference(.file(try absolutePath(secretNode, k)), key: k, location: location(secretNode))
        return WebhookSpec(url: url, secret: secret)
    }
}
