import Audit
import Capture
import Logging
import NIOCore
import NIOPosix
import Policy

#if canImport(Glibc)
import Glibc
#endif

/// Finds where a captured connection was going and who opened it. The real one asks the kernel
/// (`SO_ORIGINAL_DST`, `NETLINK_SOCK_DIAG`); tests substitute their own.
public protocol ConnectionInspector: Sendable {
    func originalDestination(of channel: any Channel) -> EventLoopFuture<Endpoint>
    /// The client's own endpoint. Usually the accepted peer address, but NAT may have given a
    /// redirected connection another source port (when its reply tuple would clash with another
    /// connection's); the client's socket still has the original one.
    func clientEndpoint(peer: Endpoint, listener: Endpoint, destination: Endpoint) throws -> Endpoint
    func owner(client: Endpoint, destination: Endpoint) throws -> SocketOwner
    func identity(of owner: SocketOwner) -> Identity
}

/// The kernel-backed inspector used by the daemon.
public struct KernelInspector: ConnectionInspector {
    let sockDiag: SockDiag
    let conntrack: Conntrack
    let resolver: IdentityResolver

    public init(sockDiag: SockDiag, conntrack: Conntrack, resolver: IdentityResolver) {
        self.sockDiag = sockDiag
        self.conntrack = conntrack
        self.resolver = resolver
    }

    public func clientEndpoint(peer: Endpoint, listener: Endpoint, destination: Endpoint) throws -> Endpoint {
        let original = try conntrack.originalTuple(replySource: listener, replyDestination: peer)
        guard original.destination == destination else {
            throw CaptureError(
                code: .notFound,
                message: "conntrack says \(original.source) -> \(original.destination), "
                    + "but the original destination is \(destination)")
        }
        return original.source
    }

    public func originalDestination(of channel: any Channel) -> EventLoopFuture<Endpoint> {
        OriginalDestination.query(channel)
    }

    public func owner(client: Endpoint, destination: Endpoint) throws -> SocketOwner {
        try sockDiag.owner(client: client, destination: destination)
    }

    public func identity(of owner: SocketOwner) -> Identity {
        resolver.resolve(owner)
    }
}

extension Endpoint {
    init?(_ address: SocketAddress?) {
        guard let address, let port = address.port else { return nil }
        switch address {
        case .v4(let a):
            self.init(address: .v4(UInt32(bigEndian: a.address.sin_addr.s_addr)), port: UInt16(port))
        case .v6(let a):
            let bytes = withUnsafeBytes(of: a.address.sin6_addr) { Array($0) }
            self.init(address: IPAddress(ipv6Bytes: bytes), port: UInt16(port))
        case .unixDomainSocket:
            return nil
        }
    }

    var socketAddress: SocketAddress {
        get throws { try SocketAddress(ipAddress: address.description, port: Int(port)) }
    }
}

/// The first handler of every accepted connection: it decides, records, and only then connects
/// upstream and hands the connection to a pair of `GlueHandler`s.
///
/// The accepted channel is created with `autoRead` off, so not one byte of the client's is read,
/// let alone forwarded, before the `session.open` entry is durable (DESIGN.md, property 1).
final class AdmissionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let gateway: Gateway
    private var logger: Logger
    /// Bytes read before the session is forwarded. With `autoRead` off NIO still reads when the
    /// client half-closes early (it drains the socket on EOF), so data and the EOF are kept here,
    /// never forwarded early, and replayed to the glue once the upstream connection exists.
    private var early: [NIOAny] = []
    private var earlyInputClosed = false

    init(gateway: Gateway) {
        self.gateway = gateway
        self.logger = gateway.logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        early.append(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            earlyInputClosed = true
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        gateway.counters.accepted.add(1, ordering: .relaxed)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        guard let source = Endpoint(context.channel.remoteAddress) else {
            refuse(context: context, session: nil, reason: "no peer address")
            return
        }
        logger[metadataKey: "peer"] = "\(source)"
        gateway.inspector.originalDestination(of: context.channel).hop(to: context.eventLoop).whenComplete { result in
            let (this, context) = bound.value
            switch result {
            case .success(let destination):
                this.admit(context: context, source: source, destination: destination, redirected: true)
            case .failure(let error):
                // Not redirected by our rules: someone connected to the listener directly.
                this.logger.debug("no original destination", metadata: ["error": "\(error)"])
                let local = Endpoint(context.channel.localAddress) ?? source
                this.admit(context: context, source: source, destination: local, redirected: false)
            }
        }
    }

    private func admit(context: ChannelHandlerContext, source peer: Endpoint, destination: Endpoint, redirected: Bool) {
        let policy = gateway.runtime.policy
        let owner: SocketOwner
        let source: Endpoint
        do {
            if redirected, let listener = Endpoint(context.channel.localAddress) {
                source = try gateway.inspector.clientEndpoint(peer: peer, listener: listener, destination: destination)
            } else {
                source = peer
            }
            owner = try gateway.inspector.owner(client: source, destination: destination)
        } catch {
            // Fail closed: a connection whose owner the kernel cannot name is not forwarded.
            logger.warning("socket owner lookup failed; refusing", metadata: ["error": "\(error)"])
            recordRefusalWithoutOwner(context: context, source: peer, destination: destination, error: "\(error)")
            return
        }
        let identity = gateway.inspector.identity(of: owner)
        let resource = policy.resources.match(destination)
        var decision = "allow"
        var reason = resource == nil ? "unregistered destination recorded" : "registered resource"
        if !redirected {
            decision = "deny"
            reason = "connection to the listener itself (not redirected)"
        } else if destination.address.isLoopback && destination.port == policy.config.daemon.listenPort {
            decision = "deny"
            reason = "connection to the listener itself"
        } else if resource == nil && policy.config.capture.unregistered == .deny {
            decision = "deny"
            reason = "unregistered destination"
        } else if gateway.counters.active.load(ordering: .relaxed) >= UInt64(policy.config.daemon.maxConnections) {
            decision = "deny"
            reason = "daemon.max_connections reached"
        }
        let session = ProxySession(
            id: SessionID.make(), identity: identity, resource: resource, source: source, destination: destination,
            logger: logger)
        session.onEnd = { [gateway] in gateway.sessionEnded($0) }
        let fields: [String: AuditValue] = [
            "session": .string(session.id),
            "identity": Evidence.identity(identity),
            "source": Evidence.endpoint(source),
            "destination": Evidence.endpoint(destination),
            "resource": resource.map { .string($0.name) } ?? .null,
            "protocol": .string(resource?.protocol.rawValue ?? "tcp"),
            "decision": .string(decision),
            "reason": .string(reason),
        ]
        let bound = NIOLoopBound((self, context, session), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let (decided, why) = (decision, reason)
        gateway.runtime.audit.append(
            kind: "session.open",
            subject: AuditSubject(
                user: identity.user ?? "uid:\(identity.uid)", resource: resource?.name, session: session.id),
            fields: fields
        ) { result in
            eventLoop.execute {
                let (this, context, session) = bound.value
                let (decision, reason) = (decided, why)
                switch result {
                case .failure(let error):
                    session.logger.critical(
                        "evidence store failed; refusing connection", metadata: ["error": "\(error)"])
                    this.refuse(context: context, session: nil, reason: "audit store unavailable")
                case .success:
                    if decision == "allow", let resource = session.resource, resource.protocol == .postgres {
                        this.startPostgres(context: context, session: session, resource: resource, policy: policy)
                    } else if decision == "allow" {
                        this.connectUpstream(context: context, session: session, policy: policy)
                    } else {
                        session.logger.info(
                            "refused", metadata: ["reason": "\(reason)", "user": "\(identity.displayName)"])
                        this.refuse(context: context, session: nil, reason: reason)
                    }
                }
            }
        }
    }

    private func recordRefusalWithoutOwner(
        context: ChannelHandlerContext, source: Endpoint, destination: Endpoint, error: String
    ) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        gateway.runtime.audit.append(
            kind: "session.open",
            subject: AuditSubject(user: nil, resource: nil, session: nil),
            fields: [
                "session": .string(SessionID.make()),
                "identity": .null,
                "source": Evidence.endpoint(source),
                "destination": Evidence.endpoint(destination),
                "resource": .null,
                "protocol": "tcp",
                "decision": "deny",
                "reason": .string("socket owner unknown: \(error)"),
            ]
        ) { _ in
            eventLoop.execute {
                let (this, context) = bound.value
                this.refuse(context: context, session: nil, reason: "owner unknown")
            }
        }
    }

    /// Ends the client connection with a TCP reset: the clearest "refused" a plain TCP client can
    /// get once the handshake has completed.
    private func refuse(context: ChannelHandlerContext, session: ProxySession?, reason: String) {
        gateway.counters.refused.add(1, ordering: .relaxed)
        let channel = context.channel
        if let provider = channel as? SocketOptionProvider {
            provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
        } else {
            channel.close(promise: nil)
        }
    }

    private func connectUpstream(context: ChannelHandlerContext, session: ProxySession, policy: ActivePolicy) {
        let settings = policy.config.daemon
        guard context.channel.isActive else {
            session.noteReason(.clientClosed)
            session.end()
            return
        }
        let target: SocketAddress
        do {
            target = try session.destination.socketAddress
        } catch {
            fail(context: context, session: session, reason: .connectFailed, error: error)
            return
        }
        let (clientGlue, upstreamGlue) = GlueHandler.matchedPair(session: session)
        let bound = NIOLoopBound((self, context, session, clientGlue), eventLoop: context.eventLoop)
        gateway.upstreamBootstrap(on: context.eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(upstreamGlue)
                }
            }
            .connect(to: target)
            .whenComplete { result in
                let (this, context, session, clientGlue) = bound.value
                switch result {
                case .failure(let error):
                    this.fail(context: context, session: session, reason: .connectFailed, error: error)
                case .success(let upstream):
                    guard context.channel.isActive else {
                        // The client left while we were connecting.
                        session.noteReason(.clientClosed)
                        upstream.close(promise: nil)
                        session.end()
                        return
                    }
                    this.gateway.counters.forwarded.add(1, ordering: .relaxed)
                    this.gateway.counters.active.add(1, ordering: .relaxed)
                    this.gateway.registry.add(context.channel, session: session)
                    let pipeline = context.pipeline.syncOperations
                    clientGlue.idleTimeout = .nanoseconds(settings.idleTimeout.nanosecondsClamped)
                    do {
                        try pipeline.addHandler(clientGlue)
                    } catch {
                        upstream.close(promise: nil)
                        this.fail(context: context, session: session, reason: .error, error: error)
                        return
                    }
                    this.replayEarlyInput(context: context)
                    pipeline.removeHandler(this, promise: nil)
                    context.channel.setOption(.autoRead, value: true).whenFailure { _ in context.close(promise: nil) }
                    session.logger.debug("forwarding", metadata: ["destination": "\(session.destination)"])
                }
            }
    }

    /// A PostgreSQL resource: the session speaks the protocol itself, so the upstream connection is
    /// opened by `PostgresProxy` when the client's startup packet asks for it (an `SSLRequest` is
    /// answered first, and a `CancelRequest` never needs one).
    private func startPostgres(
        context: ChannelHandlerContext, session: ProxySession, resource: Resource, policy: ActivePolicy
    ) {
        guard context.channel.isActive else {
            session.noteReason(.clientClosed)
            session.end()
            return
        }
        let proxy = PostgresProxy(
            gateway: gateway, session: session, resource: resource, policy: policy, eventLoop: context.eventLoop)
        gateway.counters.forwarded.add(1, ordering: .relaxed)
        gateway.counters.active.add(1, ordering: .relaxed)
        gateway.registry.add(context.channel, session: session)
        let pipeline = context.pipeline.syncOperations
        do {
            try pipeline.addHandler(PostgresSideHandler(.client, proxy: proxy))
        } catch {
            fail(context: context, session: session, reason: .error, error: error)
            return
        }
        replayEarlyInput(context: context)
        pipeline.removeHandler(self, promise: nil)
        context.channel.setOption(.autoRead, value: true).whenFailure { _ in context.close(promise: nil) }
    }

    private func replayEarlyInput(context: ChannelHandlerContext) {
        let data = early
        early = []
        for d in data { context.fireChannelRead(d) }
        if !data.isEmpty { context.fireChannelReadComplete() }
        if earlyInputClosed {
            earlyInputClosed = false
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
    }

    private func fail(context: ChannelHandlerContext, session: ProxySession, reason: CloseReason, error: any Error) {
        session.noteReason(reason)
        session.logger.info("upstream connect failed", metadata: ["error": "\(error)"])
        session.detail = "\(error)"
        refuse(context: context, session: session, reason: reason.rawValue)
        session.end()
    }
}

/// Moves bytes between the client and the upstream channel of one session, both on one event
/// loop: reads on one side wait while the other side cannot take writes (backpressure), and a
/// half-close on one side becomes a half-close on the other.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Side { case client, upstream }

    let side: Side
    let session: ProxySession
    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var inputClosed = false

    /// Set on the client side: the session ends after this long without a byte either way.
    var idleTimeout: TimeAmount?
    private var idle: IdleWatch?

    private init(side: Side, session: ProxySession) {
        self.side = side
        self.session = session
    }

    static func matchedPair(session: ProxySession) -> (client: GlueHandler, upstream: GlueHandler) {
        let c = GlueHandler(side: .client, session: session)
        let u = GlueHandler(side: .upstream, session: session)
        c.partner = u
        u.partner = c
        return (c, u)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // The upstream side may have wanted to read (a server that speaks first) before the
        // client side existed: let it read now.
        partner?.partnerBecameWritable()
        if let idleTimeout {
            let session = self.session
            idle = IdleWatch(timeout: idleTimeout, on: context.eventLoop) { [weak self] in
                self?.context == nil ? nil : session.bytesUp &+ session.bytesDown
            } expired: {
                session.noteReason(.idleTimeout)
                session.logger.info("idle timeout")
                context.close(promise: nil)
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idle?.cancel()
        idle = nil
        self.context = nil
        self.partner = nil
    }

    // MARK: what the partner asks of this side

    private func partnerWrite(_ data: NIOAny) {
        context?.write(data, promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    private func partnerWriteEOF() {
        context?.close(mode: .output, promise: nil)
    }

    private func partnerCloseFull() {
        context?.close(promise: nil)
    }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    private var partnerWritable: Bool { context?.channel.isWritable ?? false }

    // MARK: events on this side

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let n = UInt64(unwrapInboundIn(data).readableBytes)
        // Per session only: the process-wide counters are shared by every event loop, and an
        // atomic add per read made both cores fight over one cache line. They are added at close.
        switch side {
        case .client: session.bytesUp += n
        case .upstream: session.bytesDown += n
        }
        partner?.partnerWrite(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        session.noteReason(side == .client ? .clientClosed : .upstreamClosed)
        partner?.partnerCloseFull()
        if session.channelClosed() {
            session.end()
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            inputClosed = true
            session.noteReason(side == .client ? .clientClosed : .upstreamClosed)
            partner?.partnerWriteEOF()
            if partner?.inputClosed ?? true {
                context.close(promise: nil)
                partner?.partnerCloseFull()
            }
        } else if event is GatewayShutdownEvent {
            session.noteReason(.shutdown)
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        session.noteReason(.error)
        session.logger.debug("connection error", metadata: ["side": "\(side)", "error": "\(error)"])
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            partner?.partnerBecameWritable()
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if partner?.partnerWritable ?? false {
            context.read()
        } else {
            pendingRead = true
        }
    }
}

extension Duration {
    var nanosecondsClamped: Int64 {
        let (s, atto) = components
        if s >= Int64.max / 1_000_000_000 { return Int64.max }
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
}
