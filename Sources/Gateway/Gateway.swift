import Audit
import Capture
import Logging
import NIOCore
import NIOPosix
import Policy
import Synchronization

/// The data plane: listeners on loopback that receive redirected connections, and the sessions
/// they become.
public final class Gateway: Sendable {
    public let runtime: Runtime
    let inspector: any ConnectionInspector
    let registry = ConnectionRegistry()
    /// Sessions' backend keys, so a `CancelRequest` reaches the right server for the right caller.
    let cancels: CancelRegistry
    /// Source columns of PostgreSQL results, for column masks.
    let catalog: PostgresCatalog
    /// SCRAM keys of injected logins, so each captured connection skips PBKDF2.
    let scramKeys = SCRAMKeyCache()
    /// Statements held for approval, decisions, grant windows.
    let approvals: ApprovalCenter
    let logger: Logger
    let group: any EventLoopGroup
    private let serverChannels = Mutex<[any Channel]>([])
    private let approvalSweep = Mutex<RepeatedTask?>(nil)

    var counters: Counters { runtime.counters }

    public init(runtime: Runtime, inspector: any ConnectionInspector, group: any EventLoopGroup, logger: Logger) {
        self.runtime = runtime
        self.inspector = inspector
        self.group = group
        self.logger = logger
        self.cancels = CancelRegistry()
        var webhookSettings = WebhookNotifier.Settings()
        webhookSettings.upstreamMark = runtime.policy.config.daemon.upstreamMark
        self.approvals = ApprovalCenter(
            audit: runtime.audit,
            webhook: WebhookNotifier(group: group, settings: webhookSettings, logger: logger), logger: logger)
        self.catalog = PostgresCatalog(logger: logger) { [runtime] address, tls, eventLoop in
            PostgresUpstreamConnector.connect(
                to: address, on: eventLoop, socket: Self.upstreamSocketSettings(runtime.policy.config.daemon), tls: tls
            ).map(\.channel)
        }
    }

    /// A client bootstrap for upstream connections: the daemon's mark (exempt from capture), the
    /// connect timeout, no Nagle, half-close allowed.
    func upstreamBootstrap(on eventLoop: any EventLoop) -> ClientBootstrap {
        PostgresUpstreamConnector.bootstrap(on: eventLoop, socket: upstreamSocketSettings)
    }

    /// The socket options of every upstream connection (`PostgresUpstreamConnector`).
    var upstreamSocketSettings: PostgresUpstreamConnector.SocketSettings {
        Self.upstreamSocketSettings(runtime.policy.config.daemon)
    }

    static func upstreamSocketSettings(_ settings: DaemonSettings) -> PostgresUpstreamConnector.SocketSettings {
        PostgresUpstreamConnector.SocketSettings(
            mark: Int32(bitPattern: settings.upstreamMark),
            connectTimeout: .nanoseconds(settings.connectTimeout.nanosecondsClamped))
    }

    /// An upstream connection with no handlers yet (the caller adds its own once it is connected).
    func connectUpstream(to target: SocketAddress, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        upstreamBootstrap(on: eventLoop).connect(to: target)
    }

    /// Binds the listeners (IPv4 and IPv6 loopback) on `port`; returns their addresses.
    public func start(port: UInt16, hosts: [String] = ["127.0.0.1", "::1"]) async throws -> [SocketAddress] {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AdmissionHandler(gateway: self))
                }
            }
        var bound: [SocketAddress] = []
        for host in hosts {
            let channel = try await bootstrap.bind(host: host, port: Int(port)).get()
            serverChannels.withLock { $0.append(channel) }
            if let a = channel.localAddress { bound.append(a) }
        }
        let approvals = self.approvals
        let sweep = group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            approvals.sweep()
        }
        approvalSweep.withLock { $0 = sweep }
        return bound
    }

    /// Records the approval requests the previous run left pending (lost with their connections).
    /// Call once at start, after `daemon.started`.
    public func recordApprovalsLostAtRestart() {
        approvals.recordLostAtStart()
    }

    /// Stops accepting, ends every live session (recorded with reason `shutdown`) and waits for
    /// their close entries to be queued.
    public func stop() async {
        let servers = serverChannels.withLock { s in
            defer { s = [] }
            return s
        }
        for s in servers { try? await s.close() }
        approvalSweep.withLock { task in
            task?.cancel()
            task = nil
        }
        let live = registry.all()
        for channel in live {
            channel.pipeline.fireUserInboundEventTriggered(GatewayShutdownEvent())
        }
        for channel in live {
            try? await channel.closeFuture.get()
        }
    }

    func sessionEnded(_ s: ProxySession) {
        if s.forwarded {
            counters.active.subtract(1, ordering: .relaxed)
        }
        counters.bytesUp.add(s.bytesUp, ordering: .relaxed)
        counters.bytesDown.add(s.bytesDown, ordering: .relaxed)
        registry.remove(s)
        let reason = s.reason ?? .error
        var fields: [String: AuditValue] = [
            "session": .string(s.id),
            "bytes_up": .uint(s.bytesUp),
            "bytes_down": .uint(s.bytesDown),
            "duration_ms": .int(s.durationMilliseconds),
            "reason": .string(reason.rawValue),
        ]
        if let d = s.detail { fields["detail"] = .string(d) }
        let logger = s.logger
        logger.debug(
            "session closed",
            metadata: ["reason": "\(reason.rawValue)", "up": "\(s.bytesUp)", "down": "\(s.bytesDown)"])
        runtime.audit.append(
            kind: "session.close",
            subject: AuditSubject(
                user: s.identity.user ?? "uid:\(s.identity.uid)", resource: s.resource?.name, session: s.id),
            fields: fields,
            // Nothing waits on a close: it rides with the next session.open's commit (or 50 ms).
            deferred: true
        ) { result in
            if case .failure(let error) = result {
                logger.critical("could not record session.close", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Sent down a live session's client pipeline when the daemon stops.
struct GatewayShutdownEvent {}

/// The client channels of live sessions, so shutdown can end them.
final class ConnectionRegistry: Sendable {
    private let channels = Mutex<[String: any Channel]>([:])

    func add(_ channel: any Channel, session: ProxySession) {
        session.forwarded = true
        channels.withLock { $0[session.id] = channel }
    }

    func remove(_ session: ProxySession) {
        _ = channels.withLock { $0.removeValue(forKey: session.id) }
    }

    func all() -> [any Channel] {
        channels.withLock { Array($0.values) }
    }
}
