import Audit
import Capture
import Control
import Foundation
import Logging
import Policy
import Synchronization

/// The daemon's shared state outside the per-connection path: the policy in force, the kernel
/// ruleset's health, the evidence log, and the operations the control socket offers.
///
/// The policy is swapped atomically on reload; connections read one snapshot when they are
/// admitted and keep it. Reload and the ruleset reconciler take the same lock, so a reconcile can
/// never "restore" the ruleset of a policy that was just replaced.
public final class Runtime: Sendable {
    public let audit: AuditLog
    public let counters = Counters()
    public let policyPath: String
    let accounts: any AccountDatabase
    let installer: any RulesetInstaller
    let logger: Logger
    let startedAt = Date()
    let listenAddresses: [String]
    /// The daemon's own `with: hash` key, used when the policy names none (`MaskKey`).
    let defaultMaskKey: [UInt8]

    private let policyState: Mutex<ActivePolicy>
    private let rulesetState = Mutex(RulesetStatus(health: "unknown"))
    /// Serializes reloads, reconciles and uninstall (they all touch the kernel ruleset).
    private let rulesetLock = Mutex(false)  // true once uninstalled: never restore again

    public init(
        policy: ActivePolicy, policyPath: String, audit: AuditLog, accounts: any AccountDatabase,
        installer: any RulesetInstaller, listenAddresses: [String], logger: Logger,
        defaultMaskKey: [UInt8] = MaskKey.ephemeral()
    ) {
        self.defaultMaskKey = defaultMaskKey
        self.policyState = Mutex(policy)
        self.policyPath = policyPath
        self.audit = audit
        self.accounts = accounts
        self.installer = installer
        self.listenAddresses = listenAddresses
        self.logger = logger
    }

    public var policy: ActivePolicy { policyState.withLock { $0 } }
    public var rulesetStatus: RulesetStatus { rulesetState.withLock { $0 } }

    // MARK: start and reload

    /// Installs the ruleset of the current policy and records it (daemon start).
    public func installInitialRuleset() throws {
        let policy = self.policy
        try rulesetLock.withLock { _ in
            try installer.install(policy.ruleset)
        }
        setRulesetStatus(RulesetStatus(health: "intact", lastCheck: Self.now()))
        record("ruleset.installed", ["uids": .array(policy.ruleset.capturedUIDs.map { .uint(UInt64($0)) })])
        logger.info("ruleset installed", metadata: ["captured_uids": "\(policy.ruleset.capturedUIDs)"])
    }

    /// Loads the policy file again. A file that does not load leaves the running policy in force;
    /// either way the outcome is recorded.
    @discardableResult
    public func reload(trigger: String) -> Result<ActivePolicy, ConfigError> {
        let result: Result<ActivePolicy, ConfigError>
        do {
            let next = try ActivePolicy.load(path: policyPath, accounts: accounts, defaultMaskKey: defaultMaskKey)
            try Self.checkReloadable(from: policy.config, to: next.config)
            result = try rulesetLock.withLock { uninstalled throws(ConfigError) -> Result<ActivePolicy, ConfigError> in
                if !uninstalled {
                    do {
                        try installer.install(next.ruleset)
                    } catch {
                        throw ConfigError(location: nil, key: "", message: "cannot install the ruleset: \(error)")
                    }
                }
                policyState.withLock { $0 = next }
                return .success(next)
            }
        } catch {
            result = .failure(error)
        }
        switch result {
        case .success(let p):
            logger.info("policy loaded", metadata: ["trigger": "\(trigger)", "sha256": "\(p.digest)"])
            recordPolicyLoaded(p, trigger: trigger)
        case .failure(let error):
            logger.error("policy rejected; the previous policy stays in force", metadata: ["error": "\(error)"])
            record(
                "policy.loaded",
                [
                    "path": .string(policyPath), "trigger": .string(trigger), "outcome": "rejected",
                    "error": .string("\(error)"),
                ])
        }
        return result
    }

    /// Settings the running daemon cannot change in place: a reload that changes them is refused
    /// (a new listen port, say, would redirect captured connections to a port nobody listens on).
    static func checkReloadable(from old: PolicyConfig, to new: PolicyConfig) throws(ConfigError) {
        let fixed: [(String, Bool)] = [
            ("daemon.user", old.daemon.user != new.daemon.user),
            ("daemon.listen_port", old.daemon.listenPort != new.daemon.listenPort),
            ("daemon.control_socket", old.daemon.controlSocket != new.daemon.controlSocket),
            ("daemon.upstream_mark", old.daemon.upstreamMark != new.daemon.upstreamMark),
            ("audit.database", old.audit.database != new.audit.database),
            ("audit.durability", old.audit.durability != new.audit.durability),
        ]
        if let (key, _) = fixed.first(where: { $0.1 }) {
            throw ConfigError(
                location: nil, key: key,
                message: "changing this needs a restart (systemctl restart interlockd); reload refused")
        }
    }

    public func recordPolicyLoaded(_ p: ActivePolicy, trigger: String) {
        record(
            "policy.loaded",
            [
                "path": .string(policyPath),
                "trigger": .string(trigger),
                "outcome": "ok",
                "sha256": .string(p.digest),
                "resources": .array(p.config.resources.map { .string($0.name) }),
                "captured": .array(
                    p.captured.map { a in
                        .object([
                            "uid": .uint(UInt64(a.uid)), "user": a.user.map { .string($0) } ?? .null,
                            "via": .array(a.via.map { .string($0) }),
                        ])
                    }),
                "unregistered": .string(p.config.capture.unregistered.rawValue),
                "dns": .string(p.config.capture.allowDNS ? "allow" : "deny"),
            ])
    }

    /// Re-resolves resource host names (addresses behind DNS names move).
    func refreshHostNames() {
        let current = policy
        guard !current.resources.hostNames.isEmpty else { return }
        let refreshed = current.reresolved()
        policyState.withLock { p in
            // Only if no reload replaced the policy meanwhile.
            if p.digest == current.digest && p.loadedAt == current.loadedAt { p = refreshed }
        }
    }

    // MARK: the ruleset reconciler

    /// Compares the kernel's table with the expected one and restores it when it was flushed,
    /// deleted or changed. Returns the health that was found.
    @discardableResult
    public func reconcile() -> RulesetHealth? {
        let expected = policy.ruleset
        let outcome: Result<RulesetHealth, any Error>? = rulesetLock.withLock { uninstalled in
            if uninstalled { return nil }
            do {
                let health = try installer.health(expected: expected)
                if health != .intact {
                    try installer.install(expected)
                }
                return .success(health)
            } catch {
                return .failure(error)
            }
        }
        guard let outcome else { return nil }
        switch outcome {
        case .success(.intact):
            rulesetState.withLock {
                $0.health = "intact"
                $0.detail = nil
                $0.lastCheck = Self.now()
            }
            return .intact
        case .success(let health):
            let (problem, detail): (String, String) =
                switch health {
                case .missing: ("missing", "table inet interlock was not in the kernel")
                case .drifted(let d): ("drifted", d)
                case .intact: ("intact", "")
                }
            logger.warning("ruleset restored", metadata: ["problem": "\(problem)", "detail": "\(detail)"])
            rulesetState.withLock {
                $0.health = "intact"
                $0.detail = "restored after it was found \(problem): \(detail)"
                $0.lastCheck = Self.now()
                $0.restores += 1
            }
            record("ruleset.restored", ["problem": .string(problem), "detail": .string(detail)])
            return health
        case .failure(let error):
            logger.error("ruleset check failed", metadata: ["error": "\(error)"])
            rulesetState.withLock {
                $0.health = "unknown"
                $0.detail = "check failed: \(error)"
                $0.lastCheck = Self.now()
            }
            return nil
        }
    }

    /// Compares the kernel's table with the expected one without changing anything (for readers).
    public func inspectRuleset() -> RulesetStatus {
        let expected = policy.ruleset
        let found: Result<RulesetHealth, any Error> = rulesetLock.withLock { _ in
            Result { try installer.health(expected: expected) }
        }
        var status = rulesetStatus
        switch found {
        case .success(.intact):
            status.health = "intact"
        case .success(.missing):
            status.health = "missing"
            status.detail = "table inet interlock is not in the kernel (the reconciler restores it)"
        case .success(.drifted(let d)):
            status.health = "drifted"
            status.detail = "\(d) (the reconciler restores it)"
        case .failure(let e):
            status.health = "unknown"
            status.detail = "check failed: \(e)"
        }
        status.lastCheck = Self.now()
        return status
    }

    /// Removes the table for good (until the next start); the reconciler stops restoring it.
    public func uninstall() throws {
        try rulesetLock.withLock { uninstalled in
            try installer.remove()
            uninstalled = true
        }
        setRulesetStatus(
            RulesetStatus(health: "missing", detail: "removed by interlock uninstall", lastCheck: Self.now()))
        record("ruleset.removed", ["reason": "interlock uninstall"])
        logger.notice("ruleset removed by uninstall")
    }

    private func setRulesetStatus(_ s: RulesetStatus) {
        rulesetState.withLock { $0 = s }
    }

    // MARK: evidence

    /// Records a daemon-level fact; failures are logged (the data path has its own, stricter handling).
    func record(_ kind: String, _ fields: [String: AuditValue]) {
        let logger = self.logger
        audit.append(kind: kind, subject: AuditSubject(user: nil, resource: nil, session: nil), fields: fields) {
            result in
            if case .failure(let error) = result {
                logger.critical("could not record evidence", metadata: ["kind": "\(kind)", "error": "\(error)"])
            }
        }
    }

    static func now() -> String {
        ISO8601DateFormatter().string(from: Date())
    }
}
