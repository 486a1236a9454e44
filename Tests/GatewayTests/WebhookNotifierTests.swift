import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing

@testable import Gateway

/// One request as the test server saw it.
struct ReceivedRequest: Sendable {
    var head: HTTPRequestHead
    var body: [UInt8]
}

/// How the test server answers its n-th request (0-based): with a status, or not at all.
enum WebhookReply: Sendable {
    case status(Int)
    case silence
}

/// A tiny HTTP/1.1 server on 127.0.0.1 and an ephemeral port, NIO's own server pipeline, which
/// records every request and answers it as `reply` says.
final class WebhookTestServer: Sendable {
    /// The requests in arrival order.
    final class Log: Sendable {
        let requests = Mutex<[ReceivedRequest]>([])
    }

    let group: MultiThreadedEventLoopGroup
    let channel: any Channel
    let log: Log

    init(reply: @escaping @Sendable (Int) -> WebhookReply) throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let log = Log()
        self.log = log
        self.group = group
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(
                            RecordingHandler { request in
                                let index = log.requests.withLock {
                                    $0.append(request)
                                    return $0.count - 1
                                }
                                return reply(index)
                            })
                    }
                }
                .bind(host: "127.0.0.1", port: 0).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    var port: Int { channel.localAddress?.port ?? 0 }

    var received: [ReceivedRequest] { log.requests.withLock { $0 } }

    deinit {
        channel.close(promise: nil)
        try? group.syncShutdownGracefully()
    }
}

private final class RecordingHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let record: (ReceivedRequest) -> WebhookReply
    var head: HTTPRequestHead?
    var body: [UInt8] = []

    init(record: @escaping (ReceivedRequest) -> WebhookReply) { self.record = record }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
        case .body(var chunk):
            body += chunk.readBytes(length: chunk.readableBytes) ?? []
        case .end:
            guard let head else { return }
            guard case .status(let code) = record(ReceivedRequest(head: head, body: body)) else { return }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Length", value: "2")
            headers.add(name: "Connection", value: "close")
            let response = HTTPResponseHead(
                version: .http1_1, status: HTTPResponseStatus(statusCode: code), headers: headers)
            context.write(wrapOutboundOut(.head(response)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "ok")))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

/// Posts once and waits (at most `limit`) for the completion.
func deliver(
    _ notifier: WebhookNotifier, url: String, event: String = "approval.requested", deliveryID: String = "d-1",
    body: [UInt8] = Array(#"{"request":"r-1"}"#.utf8), secret: [UInt8] = Array("s3cret".utf8),
    limit: TimeAmount = .seconds(10)
) async throws -> WebhookDelivery {
    let loop = MultiThreadedEventLoopGroup.singleton.next()
    let promise = loop.makePromise(of: WebhookDelivery.self)
    let guardTask = loop.scheduleTask(in: limit) {
        promise.fail(WebhookTestTimeout())
    }
    notifier.post(url: url, event: event, deliveryID: deliveryID, body: body, secret: secret) {
        promise.succeed($0)
    }
    defer { guardTask.cancel() }
    return try await promise.futureResult.get()
}

struct WebhookTestTimeout: Error {}

/// Lowercase hex, as the receiver would compute it.
func hex(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

@Suite struct WebhookNotifierTests {
    let group = MultiThreadedEventLoopGroup.singleton
    let logger = Logger(label: "test")

    func fast(attempts: Int = 5, timeout: TimeAmount = .seconds(5)) -> WebhookNotifier.Settings {
        WebhookNotifier.Settings(
            attempts: attempts, firstBackoff: .milliseconds(10), maximumBackoff: .milliseconds(40), timeout: timeout)
    }

    @Test func deliversASignedPOSTWithTheHeadersAndBody() async throws {
        let server = try WebhookTestServer { _ in .status(204) }
        let notifier = WebhookNotifier(group: group, settings: fast(), logger: logger)
        let body = Array(#"{"request":"r-42","statement":"DELETE FROM accounts"}"#.utf8)
        let secret = Array("approver-hook-key".utf8)
        let before = Int(Date().timeIntervalSince1970)
        let delivery = try await deliver(
            notifier, url: "http://127.0.0.1:\(server.port)/hooks/approve?team=dba", event: "approval.requested",
            deliveryID: "7f0c2a", body: body, secret: secret)
        let after = Int(Date().timeIntervalSince1970)

        #expect(delivery.delivered)
        #expect(delivery.attempts == 1)
        #expect(delivery.status == 204)
        #expect(delivery.error == nil)
        #expect(delivery.url == "http://127.0.0.1:\(server.port)/hooks/approve?team=dba")

        let received = server.received
        try #require(received.count == 1)
        let request = received[0]
        #expect(request.head.method == .POST)
        #expect(request.head.uri == "/hooks/approve?team=dba")
        #expect(request.head.version == .http1_1)
        #expect(request.body == body)
        let h = request.head.headers
        #expect(h["Host"] == ["127.0.0.1:\(server.port)"])
        #expect(h["Content-Type"] == ["application/json"])
        #expect(h["Content-Length"] == ["\(body.count)"])
        #expect(h["User-Agent"] == ["interlock"])
        #expect(h["X-Interlock-Event"] == ["approval.requested"])
        #expect(h["X-Interlock-Delivery"] == ["7f0c2a"])
        let timestamp = try #require(h.first(name: "X-Interlock-Timestamp"))
        let seconds = try #require(Int(timestamp))
        #expect(seconds >= before && seconds <= after)

        // The receiver's check: HMAC-SHA256 over "<timestamp>.<body>" with the shared key.
        let expected = HMAC<SHA256>.authenticationCode(
            for: Array(timestamp.utf8) + Array(".".utf8) + body, using: SymmetricKey(data: secret))
        #expect(h["X-Interlock-Signature"] == ["sha256=" + hex(expected)])
        let signature = try #require(h.first(name: "X-Interlock-Signature"))
        #expect(signature.hasPrefix("sha256=") && signature.count == 7 + 64)
        // And it does not verify with another key.
        let other = HMAC<SHA256>.authenticationCode(
            for: Array(timestamp.utf8) + Array(".".utf8) + body, using: SymmetricKey(data: Array("other".utf8)))
        #expect(signature != "sha256=" + hex(other))
    }

    @Test func serverErrorsAreRetriedUntilDelivered() async throws {
        let server = try WebhookTestServer { $0 < 2 ? .status(500) : .status(200) }
        let notifier = WebhookNotifier(group: group, settings: fast(), logger: logger)
        let delivery = try await deliver(notifier, url: "http://127.0.0.1:\(server.port)/hook", deliveryID: "d-retry")
        #expect(delivery.delivered)
        #expect(delivery.attempts == 3)
        #expect(delivery.status == 200)
        #expect(delivery.error == nil)
        let received = server.received
        #expect(received.count == 3)
        // One delivery ID across the attempts, so the receiver can drop repeats.
        #expect(received.map { $0.head.headers["X-Interlock-Delivery"] } == Array(repeating: ["d-retry"], count: 3))
    }

    @Test func clientErrorIsNotRetried() async throws {
        let server = try WebhookTestServer { _ in .status(400) }
        let notifier = WebhookNotifier(group: group, settings: fast(), logger: logger)
        let delivery = try await deliver(notifier, url: "http://127.0.0.1:\(server.port)/hook")
        #expect(!delivery.delivered)
        #expect(delivery.attempts == 1)
        #expect(delivery.status == 400)
        #expect(delivery.error == "HTTP status 400")
        #expect(server.received.count == 1)
    }

    @Test func tooManyRequestsIsRetriedAndTheLastStatusReported() async throws {
        let server = try WebhookTestServer { _ in .status(429) }
        let notifier = WebhookNotifier(group: group, settings: fast(attempts: 3), logger: logger)
        let delivery = try await deliver(notifier, url: "http://127.0.0.1:\(server.port)/hook")
        #expect(!delivery.delivered)
        #expect(delivery.attempts == 3)
        #expect(delivery.status == 429)
        #expect(server.received.count == 3)
    }

    @Test func refusedConnectionEndsAfterEveryAttempt() async throws {
        // A port that was just free on 127.0.0.1: bind, note, close.
        let probe = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(probe.localAddress?.port)
        try await probe.close()

        let notifier = WebhookNotifier(group: group, settings: fast(attempts: 3), logger: logger)
        let delivery = try await deliver(notifier, url: "http://127.0.0.1:\(port)/hook")
        #expect(!delivery.delivered)
        #expect(delivery.attempts == 3)
        #expect(delivery.status == nil)
        let error = try #require(delivery.error)
        #expect(error == "cannot connect to 127.0.0.1:\(port): Connection refused")
    }

    @Test func httpsToAPlainServerFailsTheHandshakeAndIsRetried() async throws {
        // The TLS path end to end as far as loopback allows: the context with the system roots, no
        // SNI for an address, and a handshake that cannot succeed against a plain HTTP server.
        let server = try WebhookTestServer { _ in .status(200) }
        let notifier = WebhookNotifier(group: group, settings: fast(attempts: 2), logger: logger)
        let delivery = try await deliver(notifier, url: "https://127.0.0.1:\(server.port)/hook")
        #expect(!delivery.delivered)
        #expect(delivery.attempts == 2)
        #expect(delivery.status == nil)
        #expect(delivery.error?.hasPrefix("TLS with the webhook failed") == true)
        #expect(server.received.isEmpty)
    }

    @Test func silentServerHitsTheTimeoutOnEveryAttempt() async throws {
        let server = try WebhookTestServer { _ in .silence }
        let notifier = WebhookNotifier(
            group: group, settings: fast(attempts: 2, timeout: .milliseconds(200)), logger: logger)
        let started = ContinuousClock.now
        let delivery = try await deliver(notifier, url: "http://127.0.0.1:\(server.port)/hook", limit: .seconds(5))
        let took = ContinuousClock.now - started
        #expect(!delivery.delivered)
        #expect(delivery.attempts == 2)
        #expect(delivery.status == nil)
        #expect(delivery.error == "no response within 200 ms")
        #expect(took >= .milliseconds(400))
        #expect(server.received.count == 2)
    }

    @Test func unusableURLEndsAtOnceWithoutAttempts() async throws {
        let notifier = WebhookNotifier(group: group, settings: fast(), logger: logger)
        for url in ["ftp://127.0.0.1/x", "http://", "http://127.0.0.1:99999/", "http://u:p@127.0.0.1/", "http://a b/"] {
            let delivery = try await deliver(notifier, url: url)
            #expect(delivery.attempts == 0, "\(url)")
            #expect(!delivery.delivered)
            #expect(delivery.error?.hasPrefix("invalid webhook URL") == true, "\(url)")
        }
        let delivery = try await deliver(notifier, url: "http://127.0.0.1:1/", event: "bad\r\nX-Injected: 1")
        #expect(delivery.attempts == 0)
        #expect(delivery.error?.hasPrefix("invalid webhook request") == true)
    }

    @Test func urlsParse() throws {
        #expect(
            try WebhookTarget.parse("https://hooks.example.com/a/b?c=d#frag")
                == WebhookTarget(
                    tls: true, host: "hooks.example.com", port: 443, requestTarget: "/a/b?c=d",
                    hostHeader: "hooks.example.com"))
        #expect(
            try WebhookTarget.parse("HTTP://10.0.0.1:8080")
                == WebhookTarget(
                    tls: false, host: "10.0.0.1", port: 8080, requestTarget: "/", hostHeader: "10.0.0.1:8080"))
        #expect(
            try WebhookTarget.parse("http://[::1]:9000?x=1")
                == WebhookTarget(tls: false, host: "::1", port: 9000, requestTarget: "/?x=1", hostHeader: "[::1]:9000"))
        #expect(
            try WebhookTarget.parse("https://[2001:db8::5]/h")
                == WebhookTarget(
                    tls: true, host: "2001:db8::5", port: 443, requestTarget: "/h", hostHeader: "[2001:db8::5]"))
        #expect(try WebhookTarget.parse("https://[2001:db8::5]/h").serverName == nil)
        #expect(try WebhookTarget.parse("https://hooks.example.com:8443/").serverName == "hooks.example.com")
        #expect(try WebhookTarget.parse("https://hooks.example.com:8443/").origin == "https://hooks.example.com:8443")
        for bad in [
            "hooks.example.com/x", "http://[::1/", "http://[nope]/", "http://[::1]x/", "http://h:/", "http://h:0/",
            "http://h:+80/", "http://:80/", "http://h/\u{7F}", "https://h/é",
        ] {
            #expect(throws: WebhookFailure.self, "\(bad)") { try WebhookTarget.parse(bad) }
        }
    }

    @Test func backoffDoublesUpToTheMaximum() {
        let notifier = WebhookNotifier(
            group: group,
            settings: .init(firstBackoff: .seconds(1), maximumBackoff: .seconds(30)), logger: logger)
        #expect((1...7).map { notifier.backoff(after: $0) } == [1, 2, 4, 8, 16, 30, 30].map { TimeAmount.seconds($0) })
        #expect(notifier.backoff(after: 1_000) == .seconds(30))
    }
}
