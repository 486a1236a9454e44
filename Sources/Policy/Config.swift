/// The one policy file, as a value. `ConfigLoader` builds it from YAML and rejects anything it does
/// not understand with the file, line and key; every field here has a documented default
/// (docs/operators.md) so a minimal file stays minimal.
public struct PolicyConfig: Sendable, Equatable {
    /// The file this was loaded from (for `policy.loaded` and error messages).
    public var path: String
    public var daemon: DaemonSettings
    public var audit: AuditSettings
    public var capture: CaptureSettings
    public var postgres: PostgresSettings
    public var masking: MaskingSettings
    /// The appliance's own CA, which signs the certificates shown to clients of `client: offer` resources.
    public var tls: ApplianceTLSSettings
    public var resources: [Resource]
    /// The `rules:` list in file order; compile it once with `CompiledRules(_:)`.
    public var rules: [Rule]

    public init(
        path: String, daemon: DaemonSettings = .init(), audit: AuditSettings = .init(),
        capture: CaptureSettings = .init(), postgres: PostgresSettings = .init(), masking: MaskingSettings = .init(),
        tls: ApplianceTLSSettings = .init(), resources: [Resource] = [], rules: [Rule] = []
    ) {
        self.path = path
        self.daemon = daemon
        self.audit = audit
        self.capture = capture
        self.postgres = postgres
        self.masking = masking
        self.tls = tls
        self.resources = resources
        self.rules = rules
    }

    /// The largest PostgreSQL protocol message accepted on a session to `resource`, either
    /// direction: the resource's own `max_message_size`, else `postgres.max_message_size`.
    public func maxMessageSize(for resource: Resource) -> Int {
        resource.maxMessageSize ?? postgres.maxMessageSize
    }

    /// Whether sessions to `resource` are recorded: its own `recording`, else `audit.recording`.
    public func recording(for resource: Resource) -> RecordingSetting {
        resource.recording ?? audit.recording
    }
}

/// Daemon-wide settings of the PostgreSQL gateway (`postgres:` in the file); a resource may
/// override them.
public struct PostgresSettings: Sendable, Equatable {
    /// 64 MiB: the default cap on one protocol message (length word included), either direction.
    public static let defaultMaxMessageSize = 64 << 20
    /// What `max_message_size` may be set to: a startup packet must fit, and PostgreSQL itself
    /// never sends or accepts more than 1 GiB in one message.
    public static let maxMessageSizeRange = (8 << 10)...(1 << 30)

    /// A bigger message (length word included) ends the session with an `ErrorResponse`.
    public var maxMessageSize: Int = defaultMaxMessageSize

    public init() {}
}

/// Where something was written in the policy file, so later checks (an unknown user, say) can
/// still point at the line.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// A value from the file with the place it came from.
public struct Located<Value: Sendable & Hashable>: Sendable, Hashable {
    public var value: Value
    public var location: SourceLocation?

    public init(_ value: Value, at location: SourceLocation? = nil) {
        self.value = value
        self.location = location
    }
}

public struct DaemonSettings: Sendable, Equatable {
    /// The daemon's own account: never captured, owner of its upstream sockets.
    public var user: String = "interlock"
    public var listenPort: UInt16 = 15001
    public var controlSocket: String = "/run/interlock/control.sock"
    /// Members may change things through the control socket (root always may).
    public var adminGroup: String = "interlock-admin"
    /// Members may read status and evidence.
    public var auditorGroup: String = "interlock-auditors"
    /// SO_MARK on upstream sockets; the ruleset exempts it.
    public var upstreamMark: UInt32 = 0x1F0C_0001
    public var connectTimeout: Duration = .seconds(5)
    public var idleTimeout: Duration = .seconds(3600)
    /// How often the kernel ruleset is compared with the expected one.
    public var rulesetCheckInterval: Duration = .seconds(2)
    /// How often host-name resources are resolved again.
    public var resolveInterval: Duration = .seconds(60)
    /// Accepted connections beyond this are refused (and recorded).
    public var maxConnections: Int = 4096

    public init() {}
}

public enum AuditDurabilitySetting: String, Sendable, Equatable, CaseIterable {
    /// WAL with synchronous=NORMAL: a committed entry survives a daemon crash.
    case crash
    /// synchronous=FULL: a committed entry survives power loss.
    case powerLoss = "power-loss"
}

public struct AuditSettings: Sendable, Equatable {
    public var database: String = "/var/lib/interlock/audit.db"
    public var durability: AuditDurabilitySetting = .crash
    /// How much of each statement the evidence keeps (`audit.statement_text`).
    public var statementText: StatementTextSetting = .full
    /// The Ed25519 key that signs checkpoints (`audit.signing_key`); nil: `checkpoint.key` beside
    /// the database, created at the first start. Its public half is written beside it as
    /// `checkpoint.pub`.
    public var signingKey: String?
    /// `audit.retention.entries`: entry bodies older than this are pruned (their leaf hashes,
    /// the tree and the checkpoints stay); nil: kept forever.
    public var retentionEntries: Duration?
    /// `audit.retention.recordings`: recordings (their blobs) older than this are removed; the
    /// entries that named them stay. nil: kept as long as the entries.
    public var retentionRecordings: Duration?
    /// `audit.recording`: whether sessions are recorded (the exchange as the client saw it, masked).
    /// Defaults to `full`, or `off` under `statement_text: redacted` (a recording holds statements
    /// and parameters as sent).
    public var recording: RecordingSetting = .full
    /// `audit.recording_limit`: the most one session's recording keeps; past it the recording stops
    /// (and says how much it dropped) while the session and its statement evidence go on.
    public var recordingLimit: Int = 64 << 20

    public init() {}
}

/// `audit.recording`.
public enum RecordingSetting: String, Sendable, Equatable, CaseIterable {
    /// Every frame the client sent and every frame it received (after masking), with timings.
    case full
    case off
}

/// `audit.statement_text`: whether statement entries keep the text as sent or with its literals
/// (and bound parameter values) replaced, for databases whose queries carry personal data inline.
public enum StatementTextSetting: String, Sendable, Equatable, CaseIterable {
    /// The statement as the client sent it; parameter values masked by the session's detectors.
    case full
    /// String and numeric constants replaced by `'?'` and `?`, every parameter value by `?`.
    case redacted
}

/// The `masking:` section: settings shared by every mask rule.
public struct MaskingSettings: Sendable, Equatable {
    /// The HMAC key of `with: hash` (so equal values stay joinable across sessions and restarts).
    /// nil: the daemon's own key, created once in the state directory beside the evidence log.
    public var hashKey: SecretReference?

    public init(hashKey: SecretReference? = nil) {
        self.hashKey = hashKey
    }
}

public enum UnregisteredDestination: String, Sendable, Equatable, CaseIterable {
    /// Refuse captured connections to destinations no resource names (and record the refusal).
    case deny
    /// Forward them as plain TCP and record them.
    case record
}

public struct CaptureSettings: Sendable, Equatable {
    public var users: [Located<String>] = []
    /// Every member is captured: primary-group members and supplementary members alike.
    public var groups: [Located<String>] = []
    public var unregistered: UnregisteredDestination = .deny
    /// Whether captured accounts may send UDP to port 53.
    public var allowDNS: Bool = true

    public init() {}
}

public enum ResourceProtocol: String, Sendable, Equatable, CaseIterable {
    case postgres
    case tcp
}

public struct PortRange: Sendable, Hashable, CustomStringConvertible {
    public var lower: UInt16
    public var upper: UInt16

    public init(_ lower: UInt16, _ upper: UInt16) {
        self.lower = lower
        self.upper = upper
    }

    public static let any = PortRange(1, 65535)

    public func contains(_ port: UInt16) -> Bool { lower <= port && port <= upper }
    public var width: Int { Int(upper) - Int(lower) }

    public var description: String {
        if lower == upper { return "\(lower)" }
        if self == .any { return "*" }
        return "\(lower)-\(upper)"
    }
}

/// Where a resource lives: one address, a network, or a host name resolved at load and refreshed.
public enum ResourceTarget: Sendable, Hashable, CustomStringConvertible {
    case address(IPAddress, PortRange)
    case network(IPAddress, prefixLength: Int, PortRange)
    case host(String, PortRange)

    public var ports: PortRange {
        switch self {
        case .address(_, let p), .network(_, _, let p), .host(_, let p): p
        }
    }

    public var description: String {
        func hostPart(_ a: IPAddress) -> String { a.isIPv6 ? "[\(a)]" : "\(a)" }
        switch self {
        case .address(let a, let p): return "\(hostPart(a)):\(p)"
        case .network(let a, let len, let p):
            return a.isIPv6 ? "[\(a)/\(len)]:\(p)" : "\(a)/\(len):\(p)"
        case .host(let h, let p): return "\(h):\(p)"
        }
    }
}

/// Something captured connections may be going to, named so policy and evidence can refer to it.
public struct Resource: Sendable, Equatable {
    public var name: String
    public var `protocol`: ResourceProtocol
    public var target: ResourceTarget
    /// Upstream credentials the daemon injects (postgres only); nil: the client's own
    /// authentication passes through unchanged.
    public var credentials: UpstreamCredentials?
    /// TLS on both legs (postgres only).
    public var tls: TLSSettings
    /// Overrides `postgres.max_message_size` for this resource (postgres only).
    public var maxMessageSize: Int?
    /// Overrides `audit.recording` for this resource (postgres only): `off` for a resource whose
    /// sessions are bulk exports, say.
    public var recording: RecordingSetting?
    public var location: SourceLocation?

    public init(
        name: String, protocol: ResourceProtocol, target: ResourceTarget, credentials: UpstreamCredentials? = nil,
        tls: TLSSettings = .init(), maxMessageSize: Int? = nil, location: SourceLocation? = nil
    ) {
        self.name = name
        self.protocol = `protocol`
        self.target = target
        self.credentials = credentials
        self.tls = tls
        self.maxMessageSize = maxMessageSize
        self.location = location
    }
}

/// The account the daemon logs in as upstream, so that the secret stays in the appliance: the
/// client may send any user name and password (or none) and never sees this one.
///
/// Only where to read the password is stored, never the password: call `password?.read()` when
/// it is needed (at policy compile or per connection) and drop the `Secret` afterwards.
public struct UpstreamCredentials: Sendable, Hashable {
    /// The upstream role name sent in the startup message.
    public var user: String
    /// Where the password is; nil when the server needs none for this user (trust, cert, peer).
    public var password: SecretReference?
    public var location: SourceLocation?

    public init(user: String, password: SecretReference?, location: SourceLocation? = nil) {
        self.user = user
        self.password = password
        self.location = location
    }
}

/// Whether clients may negotiate TLS with the appliance on a resource's sessions.
public enum ClientTLSMode: String, Sendable, Equatable, CaseIterable {
    /// Answer `SSLRequest` with `N` (clients with `sslmode=require` then refuse to connect).
    case disable
    /// Answer `S` and terminate TLS with the appliance's certificate.
    case offer
}

/// TLS from the daemon to the real server; the meanings are libpq's `sslmode`.
public enum UpstreamTLSMode: String, Sendable, Equatable, CaseIterable {
    /// Never ask for TLS.
    case disable
    /// Ask for TLS, continue in plain text when the server declines; no certificate check.
    case prefer
    /// TLS or no session; the certificate is not checked (encryption without authentication).
    case require
    /// TLS, certificate chained to `ca_file`, host name (or IP) of the resource in the certificate.
    case verifyFull = "verify-full"
}

/// The `tls:` of a resource. Defaults: `client: disable`, `upstream: prefer` (libpq's default, so
/// an unconfigured resource behaves like a direct connection did).
public struct TLSSettings: Sendable, Hashable {
    public var client: ClientTLSMode = .disable
    public var upstream: UpstreamTLSMode = .prefer
    /// Absolute path of the PEM CA bundle; required by, and only allowed with, `verify-full`.
    public var caFile: Located<String>?

    public init(client: ClientTLSMode = .disable, upstream: UpstreamTLSMode = .prefer, caFile: Located<String>? = nil) {
        self.client = client
        self.upstream = upstream
        self.caFile = caFile
    }
}

/// Where the appliance's CA is (`tls:` at the top of the file). `interlock tls init` creates it at
/// install; the daemon reads it to issue, in memory, the certificate each `client: offer` resource
/// presents, so clients with `sslmode=verify-full` trust the appliance through this one CA.
public struct ApplianceTLSSettings: Sendable, Equatable {
    public static let defaultCACertificate = "/etc/interlock/tls/ca.crt"
    public static let defaultCAKey = "/etc/interlock/tls/ca.key"

    /// PEM certificate of the CA; clients are given this file as `sslrootcert`.
    public var caCertificate: Located<String> = Located(defaultCACertificate)
    /// PEM private key of the CA; readable by the daemon's user only (no group or other bits).
    public var caKey: Located<String> = Located(defaultCAKey)

    public init() {}

    public init(caCertificate: Located<String>, caKey: Located<String>) {
        self.caCertificate = caCertificate
        self.caKey = caKey
    }
}
