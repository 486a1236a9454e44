import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Policy

#if canImport(Glibc)
import Glibc
#endif

/// Opens the daemon's connection to a PostgreSQL server and settles TLS on it before anything
/// else is said, the way libpq does for `sslmode`.
///
/// PostgreSQL negotiates TLS in band: the client sends an 8-byte SSLRequest and the server answers
/// one byte, `S` (start the TLS handshake now) or `N` (continue in plain text). The connector does
/// exactly that and hands back a channel whose pipeline holds only the TLS handler (if any), with
/// `autoRead` untouched, so the caller adds its own handlers and then writes the startup message.
///
/// A server never speaks before it is asked to, so any byte after the answer and before the
/// caller's startup message is refused: after `S` it would be plaintext a man in the middle
/// injected to be read as if it came over TLS (CVE-2021-23222), after `N` an unsolicited reply.
public enum PostgresUpstreamConnector {
    /// The socket options of an upstream connection.
    public struct SocketSettings: Sendable {
        /// SO_MARK, which the ruleset exempts from capture (`daemon.upstream_mark`); nil: none
        /// (tests, which run without CAP_NET_ADMIN).
        public var mark: Int32?
        public var connectTimeout: TimeAmount
        public var tcpNoDelay: Bool
        public var allowRemoteHalfClosure: Bool

        public init(
            mark: Int32?, connectTimeout: TimeAmount, tcpNoDelay: Bool = true, allowRemoteHalfClosure: Bool = true
        ) {
            self.mark = mark
            self.connectTimeout = connectTimeout
            self.tcpNoDelay = tcpNoDelay
            self.allowRemoteHalfClosure = allowRemoteHalfClosure
        }
    }

    /// A connected upstream channel, TLS settled.
    public struct Connection: Sendable {
        public var channel: any Channel
        /// True when the TLS handshake completed (the pipeline holds a `NIOSSLClientHandler`);
        /// false for `disable` and for `prefer` answered with `N`.
        public var negotiatedTLS: Bool
    }

    /// The SSLRequest: length 8, then the code 1234 << 16 | 5679.
    static let sslRequestCode: UInt32 = 80_877_103

    /// Connects on `eventLoop` (the client channel's, so both legs share it) to `address`, then
    /// negotiates TLS per `tls`. On failure the channel, if any, is closed.
    ///
    /// - Parameter negotiationTimeout: how long the SSLRequest answer and the handshake together
    ///   may take; a server that accepts TCP and then says nothing would otherwise hold the
    ///   session forever. Defaults to the connect timeout.
    public static func connect(
        to address: SocketAddress, on eventLoop: any EventLoop, socket: SocketSettings, tls: UpstreamTLS,
        negotiationTimeout: TimeAmount? = nil
    ) -> EventLoopFuture<Connection> {
        let timeout = negotiationTimeout ?? socket.connectTimeout
        return bootstrap(on: eventLoop, socket: socket).connect(to: address).flatMap { channel in
            negotiateTLS(on: channel, tls: tls, timeout: timeout).map {
                Connection(channel: channel, negotiatedTLS: $0)
            }
        }
    }

    /// A client bootstrap with `socket`'s options: every upstream connection of the daemon (PostgreSQL
    /// sessions, their catalog and cancel connections, plain TCP resources) is made with one.
    public static func bootstrap(on eventLoop: any EventLoop, socket: SocketSettings) -> ClientBootstrap {
        var bootstrap = ClientBootstrap(group: eventLoop)
            .channelOption(.allowRemoteHalfClosure, value: socket.allowRemoteHalfClosure)
            .channelOption(.tcpOption(.tcp_nodelay), value: socket.tcpNoDelay ? 1 : 0)
            .connectTimeout(socket.connectTimeout)
        if let mark = socket.mark {
            bootstrap = bootstrap.channelOption(
                ChannelOptions.Types.SocketOption(
                    level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_MARK)),
                value: SocketOptionValue(mark))
        }
        return bootstrap
    }

    /// Negotiates TLS on a connected channel whose pipeline the caller has not used yet.
    ///
    /// - Returns: whether TLS is now on (see `Connection.negotiatedTLS`); fails with a
    ///   `GatewayTLSError` (and closes the channel) when the mode cannot be met.
    public static func negotiateTLS(
        on channel: any Channel, tls: UpstreamTLS, timeout: TimeAmount
    )
        -> EventLoopFuture<Bool>
    {
        if tls.mode == .disable { return channel.eventLoop.makeSucceededFuture(false) }
        let peer = describe(channel.remoteAddress, hostname: tls.serverHostname)
        guard let context = tls.context else {
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(
                GatewayTLSError(.issueFailed, "no TLS context for upstream: \(tls.mode.rawValue) to \(peer)"))
        }
        let promise = channel.eventLoop.makePromise(of: Bool.self)
        let deadline = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(
                GatewayTLSError(
                    .upstreamProtocol,
                    "\(peer) did not complete the TLS negotiation within \(timeout.nanoseconds / 1_000_000) ms "
                        + "(upstream: \(tls.mode.rawValue))"))
            channel.close(promise: nil)
        }
        promise.futureResult.whenComplete { _ in deadline.cancel() }
        let install: @Sendable () -> Void = {
            do {
                try channel.pipeline.syncOperations.addHandler(
                    SSLRequestHandler(
                        mode: tls.mode, context: context, serverHostname: tls.serverHostname, peer: peer,
                        promise: promise))
            } catch {
                promise.fail(error)
                channel.close(promise: nil)
            }
        }
        if channel.eventLoop.inEventLoop {
            install()
        } else {
            channel.eventLoop.execute(install)
        }
        return promise.futureResult
    }

    /// `the server at 198.18.0.10:5432` / `the server db.internal (198.18.0.10:5432)`.
    static func describe(_ address: SocketAddress?, hostname: String?) -> String {
        var where_ = "?"
        if let address, let ip = address.ipAddress, let port = address.port {
            where_ = address.protocol == .inet6 ? "[\(ip)]:\(port)" : "\(ip):\(port)"
        }
        return hostname.map { "the server \($0) (\(where_))" } ?? "the server at \(where_)"
    }
}

/// Sends the SSLRequest, reads the one-byte answer, and either leaves (plain text) or puts the
/// TLS handler in its place and waits for the handshake.
private final class SSLRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    let mode: UpstreamTLSMode
    let context: NIOSSLContext
    let serverHostname: String?
    let peer: String
    let promise: EventLoopPromise<Bool>
    var done = false
    /// The request goes out once: from `handlerAdded` when the channel is already active (it is by
    /// the time the connect future completes, before `channelActive` has travelled the pipeline),
    /// else from `channelActive`. A second SSLRequest would reach the server as unencrypted bytes
    /// after the first, which PostgreSQL rightly refuses.
    var requested = false

    init(
        mode: UpstreamTLSMode, context: NIOSSLContext, serverHostname: String?, peer: String,
        promise: EventLoopPromise<Bool>
    ) {
        self.mode = mode
        self.context = context
        self.serverHostname = serverHostname
        self.peer = peer
        self.promise = promise
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { sendRequest(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        sendRequest(context: context)
        context.fireChannelActive()
    }

    private func sendRequest(context: ChannelHandlerContext) {
        guard !requested else { return }
        requested = true
        var request = context.channel.allocator.buffer(capacity: 8)
        request.writeMultipleIntegers(UInt32(8), PostgresUpstreamConnector.sslRequestCode, endianness: .big)
        context.writeAndFlush(NIOAny(request), promise: nil)
        // With autoRead off nothing would read the answer; with it on this is a no-op.
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        guard !done, let answer = buffer.readInteger(as: UInt8.self) else { return }
        let extra = buffer.readableBytes
        switch answer {
        case UInt8(ascii: "S"):
            guard extra == 0 else {
                return fail(
                    context,
                    GatewayTLSError(
                        .upstreamProtocol,
                        "\(peer) sent \(extra) unencrypted byte(s) after agreeing to TLS and before the "
                            + "handshake; refused (a man in the middle may be injecting data, CVE-2021-23222)"))
            }
            startTLS(context: context)
        case UInt8(ascii: "N"):
            guard extra == 0 else {
                return fail(
                    context,
                    GatewayTLSError(
                        .upstreamProtocol,
                        "\(peer) declined TLS and then sent \(extra) unsolicited byte(s); refused"))
            }
            switch mode {
            case .prefer, .disable:
                done = true
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                promise.succeed(false)
            case .require, .verifyFull:
                fail(
                    context,
                    GatewayTLSError(.upstreamRefused, "\(peer) refused TLS (upstream: \(mode.rawValue))"))
            }
        case UInt8(ascii: "E"):
            fail(
                context,
                GatewayTLSError(
                    .upstreamProtocol,
                    "\(peer) answered the SSLRequest with an error (upstream: \(mode.rawValue)); "
                        + "it does not support TLS negotiation"))
        default:
            fail(
                context,
                GatewayTLSError(
                    .upstreamProtocol,
                    "\(peer) answered the SSLRequest with byte 0x\(String(answer, radix: 16)), not S or N; "
                        + "is it a PostgreSQL server?"))
        }
    }

    private func startTLS(context: ChannelHandlerContext) {
        done = true
        let channel = context.channel
        let pipeline = context.pipeline.syncOperations
        do {
            let tls = try NIOSSLClientHandler(context: self.context, serverHostname: serverHostname)
            pipeline.removeHandler(context: context, promise: nil)
            // The waiter first: the TLS handler starts the handshake as soon as it is added, and
            // whatever it reports must find the waiter in place.
            try pipeline.addHandler(HandshakeWaiter(mode: mode, peer: peer, promise: promise))
            try pipeline.addHandler(tls, position: .first)
            // The handshake needs reads; NIOSSL keeps reading itself once one has completed.
            if let autoRead = try? channel.syncOptions?.getOption(ChannelOptions.autoRead), !autoRead {
                channel.read()
            }
        } catch {
            promise.fail(
                GatewayTLSError(
                    .upstreamHandshake, "cannot start TLS with \(peer) (upstream: \(mode.rawValue)): \(error)"))
            channel.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(.inputClosed) = event as? ChannelEvent {
            fail(
                context,
                GatewayTLSError(.upstreamProtocol, "\(peer) closed the connection before answering the SSLRequest"))
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done {
            fail(
                context,
                GatewayTLSError(.upstreamProtocol, "\(peer) closed the connection before answering the SSLRequest"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !done else { return context.fireErrorCaught(error) }
        fail(
            context,
            GatewayTLSError(.upstreamProtocol, "connection to \(peer) failed during the SSLRequest: \(error)"))
    }

    private func fail(_ context: ChannelHandlerContext, _ error: GatewayTLSError) {
        guard !done else { return }
        done = true
        promise.fail(error)
        context.close(promise: nil)
    }
}

/// Sits behind the TLS handler until the handshake completes, then leaves.
private final class HandshakeWaiter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    let mode: UpstreamTLSMode
    let peer: String
    let promise: EventLoopPromise<Bool>
    var done = false

    init(mode: UpstreamTLSMode, peer: String, promise: EventLoopPromise<Bool>) {
        self.mode = mode
        self.peer = peer
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if !done, case .some(.handshakeCompleted) = event as? TLSUserEvent {
            done = true
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            promise.succeed(true)
            return
        }
        if !done, case .some(.inputClosed) = event as? ChannelEvent {
            return fail(context, "\(peer) closed the connection during the TLS handshake")
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // NIOSSL delivers application data only after the handshake, by which time this handler
        // has left; anything here is a server talking before the startup message.
        guard !done else { return context.fireChannelRead(data) }
        fail(context, "\(peer) sent data before the TLS handshake completed")
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done { fail(context, "\(peer) closed the connection during the TLS handshake") }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !done else { return context.fireErrorCaught(error) }
        fail(context, "TLS handshake with \(peer) failed (upstream: \(mode.rawValue)): \(error)")
    }

    private func fail(_ context: ChannelHandlerContext, _ message: String) {
        guard !done else { return }
        done = true
        promise.fail(GatewayTLSError(.upstreamHandshake, message))
        context.close(promise: nil)
    }
}
