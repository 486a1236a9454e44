import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Policy
import Synchronization

/// One delivery's end, for evidence (`approval.notified`).
struct WebhookDelivery: Sendable {
    var url: String
    var attempts: Int
    /// HTTP status of the last attempt, if any response arrived.
    var status: Int?
    var delivered: Bool
    /// Why the last attempt failed (connect error, timeout, non-2xx), nil when delivered.
    var error: String?
}

/// Tells approvers about a held statement through a rule's webhook: an HTTP POST of a JSON body,
/// signed with HMAC-SHA256, retried with exponential backoff.
///
/// The decision path must never wait on an approver's HTTP endpoint, so `post` returns at once and
/// reports the outcome through a callback; a dead or slow webhook costs the session nothing but the
/// `approval.notified` evidence saying so.
///
/// Every attempt is a fresh connection (`Connection: close`) made with the upstream connector's
/// bootstrap, so it carries the upstream mark like every other socket the daemon opens towards the
/// network and is not captured by the daemon's own ruleset.
///
/// Thread-safe: the settings are immutable and the one TLS context is built on first use behind a
/// `Mutex`.
final class WebhookNotifier: Sendable {
    struct Settings: Sendable {
        /// Tries per delivery, the first included; less than 1 counts as 1.
        var attempts = 5
        /// The wait after the first failed attempt; doubled after each further one.
        var firstBackoff: TimeAmount = .seconds(1)
        var maximumBackoff: TimeAmount = .seconds(30)
        /// One attempt's budget: connect, TLS handshake, request and response head together.
        var timeout: TimeAmount = .seconds(10)
        /// SO_MARK for the webhook sockets (`daemon.upstream_mark`), which the ruleset exempts from
        /// capture; nil: none (tests, which run without CAP_NET_ADMIN).
        var upstreamMark: UInt32? = nil
    }

    private let group: any EventLoopGroup
    private let settings: Settings
    private let logger: Logger
    /// The https client context (system trust roots), built on the first https delivery: reading the
    /// trust store is not free, and many policies have no https webhook at all.
    private let tlsContext = Mutex<NIOSSLContext?>(nil)

    init(group: any EventLoopGroup, settings: Settings = .init(), logger: Logger) {
        self.group = group
        self.settings = settings
        self.logger = logger
    }

    /// Posts `body` (JSON bytes) to `url` with headers `Content-Type: application/json`, `User-Agent: interlock`,
    /// `X-Interlock-Event: <event>`, `X-Interlock-Delivery: <id>`, `X-Interlock-Timestamp: <unix seconds>`
    /// and `X-Interlock-Signature: sha256=<hex HMAC-SHA256 over "<timestamp>.<body>" with key `secret`>`.
    /// Retries on connect failure, timeout or a non-2xx status (not on 4xx other than 408/429), doubling the backoff
    /// up to maximumBackoff, at most `attempts` tries. Returns at once; `completion` runs once, on an event loop.
    ///
    /// The delivery ID is the same on every attempt, so a receiver can drop a repeat whose first copy
    /// it did take (a response lost after the receiver acted on it); the timestamp and signature are
    /// made afresh for each attempt, so a late retry is not refused by a receiver that checks the
    /// timestamp's age against replays.
    ///
    /// An unusable URL, event or delivery ID (see `WebhookTarget.parse`) ends the delivery at once,
    /// with `attempts == 0`. If the event loop group shuts down while a retry waits, the delivery
    /// ends with an error too; if it is already shut down when `post` is called, nothing runs.
    func post(
        url: String, event: String, deliveryID: String, body: [UInt8], secret: [UInt8],
        completion: @escaping @Sendable (WebhookDelivery) -> Void
    ) {
        let loop = group.next()
        let target: WebhookTarget
        do {
            target = try WebhookTarget.parse(url)
            for (name, value) in [("event", event), ("delivery ID", deliveryID)] where !Self.isHeaderSafe(value) {
                throw WebhookFailure.invalidRequest("the \(name) is empty or holds characters a header cannot carry")
            }
        } catch {
            // Not even the URL is logged: an unparsable one may still carry a token.
            logger.notice("approval webhook not sent", metadata: ["error": "\(error)"])
            loop.execute {
                completion(WebhookDelivery(url: url, attempts: 0, status: nil, delivered: false, error: "\(error)"))
            }
            return
        }
        let request = Request(
            url: url, target: target, event: event, deliveryID: deliveryID, body: body, secret: secret)
        let logger = self.logger
        loop.execute {
            self.attempt(1, request, on: loop) { delivery in
                if delivery.delivered {
                    logger.debug(
                        "approval webhook delivered",
                        metadata: [
                            "webhook": "\(target.origin)", "delivery": "\(deliveryID)",
                            "attempts": "\(delivery.attempts)",
                        ])
                } else {
                    logger.notice(
                        "approval webhook not delivered",
                        metadata: [
                            "webhook": "\(target.origin)", "delivery": "\(deliveryID)",
                            "attempts": "\(delivery.attempts)",
                            "error": "\(delivery.error ?? "?")",
                        ])
                }
                completion(delivery)
            }
        }
    }

    /// What every attempt of one delivery sends.
    private struct Request: Sendable {
        var url: String
        var target: WebhookTarget
        var event: String
        var deliveryID: String
        var body: [UInt8]
        /// Kept as bytes: `SymmetricKey` is not `Sendable`.
        var secret: [UInt8]
    }

    /// Makes attempt `number` and, if it failed in a way worth retrying and tries are left, schedules
    /// the next one after the backoff; otherwise hands the outcome to `finish`.
    private func attempt(
        _ number: Int, _ request: Request, on loop: any EventLoop, finish: @escaping @Sendable (WebhookDelivery) -> Void
    ) {
        let attempts = max(settings.attempts, 1)
        send(request, on: loop).whenComplete { result in
            var delivery = WebhookDelivery(
                url: request.url, attempts: number, status: nil, delivered: false, error: nil)
            let retry: Bool
            switch result {
            case .success(let status):
                delivery.status = status
                delivery.delivered = (200..<300).contains(status)
                if !delivery.delivered { delivery.error = "HTTP status \(status)" }
                // Any other 4xx says the request itself is wrong (bad URL path, rejected signature):
                // sending it again cannot help.
                retry = !delivery.delivered && (!(400..<500).contains(status) || status == 408 || status == 429)
            case .failure(let error):
                delivery.error = Self.describe(error)
                retry = true
            }
            guard retry, number < attempts else {
                finish(delivery)
                return
            }
            let backoff = self.backoff(after: number)
            self.logger.debug(
                "approval webhook attempt failed; retrying",
                metadata: [
                    "webhook": "\(request.target.origin)", "delivery": "\(request.deliveryID)", "attempt": "\(number)",
                    "error": "\(delivery.error ?? "?")", "backoff_ms": "\(backoff.nanoseconds / 1_000_000)",
                ])
            let scheduled = loop.scheduleTask(in: backoff) {
                self.attempt(number + 1, request, on: loop, finish: finish)
            }
            // The task never runs if the loop shuts down meanwhile; the delivery still has to end.
            scheduled.futureResult.whenFailure { [delivery] error in
                var abandoned = delivery
                abandoned.error = (delivery.error ?? "") + "; retry abandoned: \(error)"
                finish(abandoned)
            }
        }
    }

    /// The wait after failed attempt `number` (1-based): firstBackoff, doubled per attempt, capped.
    func backoff(after number: Int) -> TimeAmount {
        let cap = max(settings.maximumBackoff.nanoseconds, 0)
        var wait = min(max(settings.firstBackoff.nanoseconds, 0), cap)
        for _ in 1..<max(number, 1) {
            wait = wait > cap / 2 ? cap : wait * 2
        }
        return .nanoseconds(wait)
    }

    /// One attempt: connect, send the request, wait for the final response head. Succeeds with its
    /// status; fails on a connect or TLS error, a connection closed before the head, or `timeout`.
    /// The channel is closed either way.
    private func send(_ request: Request, on loop: any EventLoop) -> EventLoopFuture<Int> {
        let target = request.target
        let result = loop.makePromise(of: Int.self)
        let timeout = settings.timeout
        let deadline = loop.scheduleTask(in: timeout) {
            result.fail(WebhookFailure.timeout(timeout))
        }
        result.futureResult.whenComplete { _ in deadline.cancel() }

        let tls: NIOSSLContext?
        do {
            tls = target.tls ? try clientContext() : nil
        } catch {
            result.fail(error)
            return result.futureResult
        }
        let socket = PostgresUpstreamConnector.SocketSettings(
            mark: settings.upstreamMark.map { Int32(bitPattern: $0) }, connectTimeout: timeout,
            allowRemoteHalfClosure: false)
        PostgresUpstreamConnector.bootstrap(on: loop, socket: socket)
            .channelInitializer { channel in
                do {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: target.serverName))
                    }
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(WebhookResponseHandler(result: result))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .connect(host: target.host, port: target.port)
            .whenComplete { connected in
                switch connected {
                case .failure(let error):
                    result.fail(error)
                case .success(let channel):
                    // Also closes a channel that connected only after the deadline had passed.
                    result.futureResult.whenComplete { _ in channel.close(promise: nil) }
                    self.write(request, to: channel).whenFailure { result.fail($0) }
                }
            }
        return result.futureResult
    }

    /// Writes the signed request. Done only once `connect` has picked its channel: with several
    /// addresses, the channels that lose the race must not have sent anything.
    private func write(_ request: Request, to channel: any Channel) -> EventLoopFuture<Void> {
        let timestamp = String(Int(Date().timeIntervalSince1970))
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: request.target.hostHeader)
        headers.add(name: "User-Agent", value: "interlock")
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(request.body.count))
        headers.add(name: "Connection", value: "close")
        headers.add(name: "X-Interlock-Event", value: request.event)
        headers.add(name: "X-Interlock-Delivery", value: request.deliveryID)
        headers.add(name: "X-Interlock-Timestamp", value: timestamp)
        headers.add(
            name: "X-Interlock-Signature",
            value: "sha256="
                + Self.signature(timestamp: timestamp, body: request.body, key: SymmetricKey(data: request.secret)))
        let head = HTTPRequestHead(
            version: .http1_1, method: .POST, uri: request.target.requestTarget, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(
            HTTPClientRequestPart.body(.byteBuffer(channel.allocator.buffer(bytes: request.body))), promise: nil)
        return channel.writeAndFlush(HTTPClientRequestPart.end(nil))
    }

    /// Lowercase hex of HMAC-SHA256 over `<timestamp>.<body>`: the timestamp is signed with the body
    /// so that a captured request cannot be replayed later under a fresh timestamp.
    static func signature(timestamp: String, body: [UInt8], key: SymmetricKey) -> String {
        var mac = HMAC<SHA256>(key: key)
        mac.update(data: Array(timestamp.utf8) + [UInt8(ascii: ".")])
        mac.update(data: body)
        return mac.finalize().map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// The client context: system trust roots, full verification (the name in the URL against the
    /// certificate), TLS 1.2 or newer.
    private func clientContext() throws -> NIOSSLContext {
        try tlsContext.withLock { cached in
            if let cached { return cached }
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.minimumTLSVersion = .tlsv12
            let context = try NIOSSLContext(configuration: configuration)
            cached = context
            return context
        }
    }

    /// Visible ASCII and spaces only, not empty: what may go into a header value unchanged.
    static func isHeaderSafe(_ value: String) -> Bool {
        !value.isEmpty && value.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    }

    /// A short reason for the evidence: NIO's connection error lists every address tried, with its
    /// DNS answers; the last connect error (or the resolver's) says what went wrong.
    static func describe(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError {
            let place = "\(error.host):\(error.port)"
            if let last = error.connectionErrors.last {
                let address = last.target.ipAddress.map { $0 == error.host ? "" : " (\($0))" } ?? ""
                let reason =
                    (last.error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? "\(last.error)"
                return "cannot connect to \(place)\(address): \(reason)"
            }
            if let dns = error.dnsAAAAError ?? error.dnsAError {
                return "cannot resolve \(error.host): \(dns)"
            }
            return "cannot connect to \(place): no address"
        }
        if error is NIOSSLError || error is NIOSSLExtraError { return "TLS with the webhook failed: \(error)" }
        return "\(error)"
    }
}

/// Why one attempt failed, when NIO's own error would not say it plainly.
enum WebhookFailure: Error, CustomStringConvertible {
    case invalidURL(String)
    case invalidRequest(String)
    case timeout(TimeAmount)
    case closedBeforeResponse

    var description: String {
        switch self {
        case .invalidURL(let why): "invalid webhook URL: \(why)"
        case .invalidRequest(let why): "invalid webhook request: \(why)"
        case .timeout(let t): "no response within \(t.nanoseconds / 1_000_000) ms"
        case .closedBeforeResponse: "connection closed before a response"
        }
    }
}

/// Where a webhook goes, parsed from its URL: `http://` or `https://`, a host name, IPv4 address or
/// bracketed IPv6 address, an optional port, and the path and query.
///
/// Deliberately minimal: no user info (credentials belong in the signature secret, not in a URL
/// that ends up in evidence), no percent-decoding (the path and query are sent as written), the
/// fragment dropped. Whitespace and control characters are refused anywhere, so nothing in the URL
/// can break the request line.
struct WebhookTarget: Sendable, Equatable {
    var tls: Bool
    /// The host as given, without brackets: a name or an address, for `connect(host:port:)`.
    var host: String
    var port: Int
    /// The path and query, `/` when the URL has none.
    var requestTarget: String
    /// The `Host` header: brackets around an IPv6 address, the port when not the scheme's default.
    var hostHeader: String

    /// The name for SNI and for the certificate check; nil for an address, which SNI must not carry
    /// (RFC 6066): the certificate must then name the connected peer's IP.
    var serverName: String? { IPAddress(host) == nil ? host : nil }

    /// `https://host:port`, for logs: the path and query of a webhook URL often hold a token.
    var origin: String { (tls ? "https://" : "http://") + hostHeader }

    static func parse(_ url: String) throws(WebhookFailure) -> WebhookTarget {
        guard url.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .invalidURL("whitespace, control or non-ASCII characters")
        }
        let tls: Bool
        var rest: Substring
        let lower = url.lowercased()
        if lower.hasPrefix("https://") {
            tls = true
            rest = url.dropFirst("https://".count)
        } else if lower.hasPrefix("http://") {
            tls = false
            rest = url.dropFirst("http://".count)
        } else {
            throw .invalidURL("the scheme must be http:// or https://")
        }
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var requestTarget = String(rest[authorityEnd...])
        if requestTarget.isEmpty {
            requestTarget = "/"
        } else if requestTarget.hasPrefix("?") {
            requestTarget = "/" + requestTarget
        }
        if authority.contains("@") { throw .invalidURL("user info is not supported") }

        let host: Substring
        let portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .invalidURL("unclosed [ in the host") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.isEmpty {
                portText = nil
            } else if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else {
                throw .invalidURL("unexpected text after ]")
            }
            guard case .some(.v6) = IPAddress(host) else { throw .invalidURL("[\(host)] is not an IPv6 address") }
        } else if let colon = authority.firstIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
            portText = nil
        }
        guard !host.isEmpty else { throw .invalidURL("no host") }
        let defaultPort = tls ? 443 : 80
        var port = defaultPort
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                let number = Int(portText), (1...65_535).contains(number)
            else { throw .invalidURL("the port must be a number from 1 to 65535") }
            port = number
        }
        var hostHeader = host.contains(":") ? "[\(host)]" : String(host)
        if port != defaultPort { hostHeader += ":\(port)" }
        return WebhookTarget(
            tls: tls, host: String(host), port: port, requestTarget: requestTarget, hostHeader: hostHeader)
    }
}

/// Completes `result` with the status of the first final (non-1xx) response head and ignores the
/// rest of the response; fails it if the connection errs or closes first.
private final class WebhookResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    let result: EventLoopPromise<Int>

    init(result: EventLoopPromise<Int>) { self.result = result }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data), head.status.code >= 200 {
            result.succeed(Int(head.status.code))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        result.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        result.fail(WebhookFailure.closedBeforeResponse)
        context.fireChannelInactive()
    }
}
