import Capture
import Crypto
import Foundation
import Masking
import Policy
import PostgresWire

/// A policy file turned into what the data path needs: resolved accounts, resolved host names,
/// the resource table, and the kernel ruleset that goes with it.
///
/// Compiling is where a file that parsed can still be wrong for this host (an unknown user, a
/// group that does not exist, the daemon's own account in the capture list); those errors carry
/// the file and line of the offending entry, like parse errors.
public struct ActivePolicy: Sendable {
    public struct CapturedAccount: Sendable, Equatable {
        public var uid: UInt32
        public var user: String?
        public var via: [String]
    }

    public var config: PolicyConfig
    public var resources: ResourceTable
    public var captured: [CapturedAccount]
    public var ruleset: CaptureRuleset
    public var daemonUID: UInt32
    /// Hex SHA-256 of the policy file's bytes, recorded in `policy.loaded`.
    public var digest: String
    public var loadedAt: Date
    /// The `rules:`, indexed for the per-session lookup.
    public var rules: CompiledRules
    /// Applies mask methods; holds the HMAC key of `with: hash`.
    public var masker: Masker
    /// The upstream logins of postgres resources with `credentials:`, by resource name. Read when the
    /// policy is compiled (start, reload), so a password file the daemon cannot read is a policy
    /// error, not a failed session; never logged (their descriptions hide the password).
    var postgresCredentials: [String: PostgresInjectedCredentials]
    /// Per resource with credentials: what the SCRAM key cache files its keys under (resource, user and
    /// a digest of the password: a changed password never reuses keys derived from the old one).
    var scramCacheKeys: [String: String] = [:]
    /// The HMAC keys of `approve.webhook`s, by rule name; read at compile like passwords.
    var webhookSecrets: [String: [UInt8]] = [:]
    /// The appliance CA, loaded when a postgres resource offers TLS to its clients (`tls.client: offer`).
    public var applianceCA: ApplianceCA?
    /// Upstream TLS contexts of this policy; made anew per load, so a reload reads changed CA files.
    public var upstreamTLS: UpstreamTLSContexts

    public var capturedUIDs: Set<UInt32> { Set(captured.map(\.uid)) }

    /// Compiles a parsed file for this host.
    ///
    /// - Parameters:
    ///   - resolveHosts: resolves resource host names (blocking); tests pass a fake.
    public static func compile(
        _ config: PolicyConfig,
        text: String,
        accounts: any AccountDatabase,
        resolveHosts: ([Resource]) -> [String: [IPAddress]] = HostResolver.resolveAll,
        defaultMaskKey: [UInt8] = MaskKey.ephemeral(),
        readSecret: (SecretReference) throws(ConfigError) -> Secret = { reference throws(ConfigError) in
            try reference.read()
        },
        now: Date = Date()
    ) throws(ConfigError) -> ActivePolicy {
        guard let daemonUID = accounts.uid(ofUser: config.daemon.user) else {
            throw ConfigError(
                location: nil, key: "daemon.user",
                message: "no such user '\(config.daemon.user)' (create it: useradd --system \(config.daemon.user))")
        }
        var reasons: [UInt32: [String]] = [:]
        for user in config.capture.users {
            guard let uid = accounts.uid(ofUser: user.value) else {
                throw ConfigError(
                    location: user.location, key: "capture.users", message: "no such user '\(user.value)'")
            }
            reasons[uid, default: []].append("user:\(user.value)")
        }
        for group in config.capture.groups {
            guard let members = accounts.memberUIDs(ofGroup: group.value) else {
                throw ConfigError(
                    location: group.location, key: "capture.groups", message: "no such group '\(group.value)'")
            }
            for uid in members { reasons[uid, default: []].append("group:\(group.value)") }
        }
        if let why = reasons[daemonUID] {
            throw ConfigError(
                location: config.capture.users.first { $0.value == config.daemon.user }?.location
                    ?? config.capture.groups.first?.location,
                key: "capture",
                message:
                    "the daemon's own account '\(config.daemon.user)' cannot be captured (via \(why.joined(separator: ", ")))"
            )
        }
        let captured = reasons.keys.sorted().map { uid in
            CapturedAccount(uid: uid, user: accounts.user(uid: uid)?.name, via: reasons[uid]!)
        }
        let table = ResourceTable(resources: config.resources, resolved: resolveHosts(config.resources))
        let ruleset = CaptureRuleset(
            capturedUIDs: captured.map(\.uid), daemonUID: daemonUID, listenPort: config.daemon.listenPort,
            upstreamMark: config.daemon.upstreamMark, allowDNS: config.capture.allowDNS)
        let digest = SHA256.hash(data: Array(text.utf8)).map { String(format: "%02x", $0) }.joined()
        let rules = CompiledRules(config.rules)
        try checkColumnMasksHaveCatalogAccess(config)
        var credentials: [String: PostgresInjectedCredentials] = [:]
        for resource in config.resources where resource.protocol == .postgres {
            guard let c = resource.credentials else { continue }
            var password = ""
            if let reference = c.password {
                let secret = try readSecret(reference)
                guard let text = secret.string else {
                    throw ConfigError(
                        location: reference.location, key: reference.key, message: "the password is not UTF-8")
                }
                password = text
            }
            credentials[resource.name] = PostgresInjectedCredentials(
                user: c.user, password: password,
                allowedMethods: c.password == nil ? [.none] : Set(UpstreamAuthenticator.Method.allCases))
        }
        var maskKey = defaultMaskKey
        if let reference = config.masking.hashKey {
            maskKey = try readSecret(reference).bytes
            guard maskKey.count >= MaskKey.minimumLength else {
                throw ConfigError(
                    location: reference.location, key: reference.key,
                    message: "the hash key must be at least \(MaskKey.minimumLength) bytes "
                        + "(create one: head -c 32 /dev/urandom > FILE)")
            }
        }
        let (applianceCA, upstreamTLS) = try loadTLS(config)
        var scramCacheKeys: [String: String] = [:]
        for (name, login) in credentials {
            let passwordDigest = SHA256.hash(data: Array(login.password.utf8)).map { String(format: "%02x", $0) }
            scramCacheKeys[name] = "\(name)\u{0}\(login.user)\u{0}\(passwordDigest.joined())"
        }
        var webhookSecrets: [String: [UInt8]] = [:]
        for rule in config.rules {
            guard let webhook = rule.approve?.webhook else { continue }
            webhookSecrets[rule.name] = try readSecret(webhook.secret).bytes
        }
        var policy = ActivePolicy(
            config: config, resources: table, captured: captured, ruleset: ruleset, daemonUID: daemonUID,
            digest: digest, loadedAt: now, rules: rules, masker: Masker(hashKey: maskKey),
            postgresCredentials: credentials, scramCacheKeys: scramCacheKeys, applianceCA: applianceCA,
            upstreamTLS: upstreamTLS)
        policy.webhookSecrets = webhookSecrets
        return policy
    }

    /// The CA (only when a resource offers TLS to clients: otherwise its files need not exist) and
    /// every resource's upstream context, so a missing or bad file is a policy error at load, with
    /// its line, not a failed session later.
    private static func loadTLS(_ config: PolicyConfig) throws(ConfigError) -> (ApplianceCA?, UpstreamTLSContexts) {
        let contexts = UpstreamTLSContexts()
        var ca: ApplianceCA?
        for resource in config.resources where resource.protocol == .postgres {
            do {
                _ = try contexts.settings(for: resource)
            } catch {
                throw ConfigError(
                    location: resource.tls.caFile?.location ?? resource.location,
                    key: "resources[\(resource.name)].tls", message: error.message)
            }
            if resource.tls.client == .offer && resource.credentials == nil && resource.tls.upstream != .disable {
                // The client's SCRAM would be bound to our TLS, the server's to its own: a client that supports
                // channel binding says so, and a server that supports it then refuses the login (downgrade guard).
                throw ConfigError(
                    location: resource.location, key: "resources[\(resource.name)].tls.client",
                    message: "client: offer with the client's own password cannot work over TLS upstream "
                        + "(SCRAM channel binding is per connection); give the resource credentials, "
                        + "or set upstream: disable")
            }
            if resource.tls.client == .offer && ca == nil {
                do {
                    ca = try ApplianceCA(
                        certificatePEMFile: config.tls.caCertificate.value, keyPEMFile: config.tls.caKey.value)
                } catch {
                    throw ConfigError(
                        location: config.tls.caKey.location ?? resource.location, key: "tls",
                        message: "resource '\(resource.name)' offers TLS to clients, but the appliance CA "
                            + "cannot be used: \(error.message) (create it: interlock tls init)")
                }
            }
        }
        return (ca, contexts)
    }

    /// Column masks need the catalog (a result column names its table by OID), which the daemon reads
    /// on a side connection logged in as the resource's `credentials:`. Without them it could only
    /// mask every column it cannot name, so such a file is refused with the rule's line.
    private static func checkColumnMasksHaveCatalogAccess(_ config: PolicyConfig) throws(ConfigError) {
        for rule in config.rules {
            guard let mask = rule.mask, !mask.columns.isEmpty else { continue }
            let names = rule.resources.map { Set($0.map(\.value)) }
            for resource in config.resources where resource.protocol == .postgres && resource.credentials == nil {
                guard names?.contains(resource.name) ?? true else { continue }
                throw ConfigError(
                    location: rule.location, key: "rules[\(rule.name)].mask.columns",
                    message: "resource '\(resource.name)' has no credentials: column masks need them "
                        + "(the catalog that names a result's source columns is read as that user); "
                        + "add credentials to the resource, or mask by detectors only")
            }
        }
    }

    /// Uses `key` for `with: hash` unless the file names its own key (`masking.hash_key_file`): the
    /// daemon's key file lives in its state directory, which exists only after the first load.
    public mutating func useDefaultMaskKey(_ key: [UInt8]) {
        if config.masking.hashKey == nil { masker = Masker(hashKey: key) }
    }

    /// Reads, parses and compiles the file at `path`.
    public static func load(
        path: String, accounts: any AccountDatabase, defaultMaskKey: [UInt8] = MaskKey.ephemeral()
    ) throws(ConfigError) -> ActivePolicy {
        let text = try ConfigLoader.readFile(path)
        let config = try ConfigLoader.parse(text, path: path)
        return try compile(config, text: text, accounts: accounts, defaultMaskKey: defaultMaskKey)
    }

    /// The same policy with host names resolved again (addresses of DNS-named resources change).
    public func reresolved(
        resolveHosts: ([Resource]) -> [String: [IPAddress]] = HostResolver.resolveAll
    ) -> ActivePolicy {
        var copy = self
        copy.resources = ResourceTable(resources: config.resources, resolved: resolveHosts(config.resources))
        return copy
    }
}
