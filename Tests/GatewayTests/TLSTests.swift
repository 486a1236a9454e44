import Crypto
import Foundation
import NIOCore
import NIOEmbedded
import NIOPosix
import NIOSSL
import NIOTLS
import Policy
import SwiftASN1
import Synchronization
import Testing
import X509

@testable import Gateway

#if canImport(Glibc)
import Glibc
#endif

/// A temporary directory removed when the value goes away.
final class TLSScratch {
    let path: String

    init() {
        var template = Array("/tmp/interlock-tls-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil)
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Writes `text` to `name` with `mode`; returns the path.
    @discardableResult
    func write(_ name: String, _ text: String, mode: mode_t) -> String {
        let file = "\(path)/\(name)"
        let created = FileManager.default.createFile(atPath: file, contents: Data(text.utf8))
        precondition(created, "cannot write \(file)")
        chmod(file, mode)
        return file
    }

    /// A fresh CA written as ca.crt (0644) and ca.key (0600) under `prefix`.
    func newCA(_ prefix: String = "ca", commonName: String = "Test CA") throws -> (ca: ApplianceCA, certificate: String)
    {
        let generated = try ApplianceCA.generate(commonName: commonName)
        let certificate = write("\(prefix).crt", generated.certificatePEM, mode: 0o644)
        let key = write("\(prefix).key", generated.keyPEM, mode: 0o600)
        return (try ApplianceCA(certificatePEMFile: certificate, keyPEMFile: key), certificate)
    }
}

let loopback = IPAddress("127.0.0.1")!

@Suite struct ApplianceCATests {
    @Test func generatedCALoadsBackWithCAExtensions() throws {
        let scratch = TLSScratch()
        let (ca, _) = try scratch.newCA(commonName: "Interlock appliance CA (test)")
        let c = ca.certificate
        #expect(c.subject.description.contains("CN=Interlock appliance CA (test)"))
        #expect(c.issuer == c.subject)
        #expect(try c.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: 0))
        #expect(c.extensions[oid: .X509ExtensionID.basicConstraints]?.critical == true)
        let usage = try #require(try c.extensions.keyUsage)
        #expect(usage.keyCertSign && usage.cRLSign && !usage.digitalSignature)
        #expect(c.extensions[oid: .X509ExtensionID.keyUsage]?.critical == true)
        #expect(try c.extensions.subjectKeyIdentifier != nil)
        // Ten years, backdated a little.
        let lifetime = c.notValidAfter.timeIntervalSince(c.notValidBefore)
        #expect(lifetime >= 10 * 365 * 86_400 && lifetime <= 10 * 365 * 86_400 + 600)
        #expect(c.notValidBefore < Date())
        #expect(P256.Signing.PublicKey(c.publicKey) != nil)
    }

    @Test func keyReadableByOthersIsRefused() throws {
        let scratch = TLSScratch()
        let generated = try ApplianceCA.generate(commonName: "Test CA")
        let certificate = scratch.write("ca.crt", generated.certificatePEM, mode: 0o644)
        for mode: mode_t in [0o644, 0o640, 0o604, 0o620] {
            let key = scratch.write("ca-\(String(mode, radix: 8)).key", generated.keyPEM, mode: mode)
            do {
                _ = try ApplianceCA(certificatePEMFile: certificate, keyPEMFile: key)
                Issue.record("loaded a key of mode \(String(mode, radix: 8))")
            } catch {
                #expect(error.code == .keyExposed)
                #expect(error.message.contains("chmod 0600 \(key)"))
            }
        }
        let key = scratch.write("ca.key", generated.keyPEM, mode: 0o400)
        _ = try ApplianceCA(certificatePEMFile: certificate, keyPEMFile: key)
    }

    @Test func keyOfAnotherCAIsRefused() throws {
        let one = try ApplianceCA.generate(commonName: "One")
        let two = try ApplianceCA.generate(commonName: "Two")
        do {
            _ = try ApplianceCA(certificatePEM: one.certificatePEM, keyPEM: two.keyPEM)
            Issue.record("loaded a CA with another CA's key")
        } catch {
            #expect(error.code == .keyMismatch)
        }
    }

    @Test func missingAndGarbageFilesAreNamed() throws {
        let scratch = TLSScratch()
        let generated = try ApplianceCA.generate(commonName: "Test CA")
        let key = scratch.write("ca.key", generated.keyPEM, mode: 0o600)
        let garbage = scratch.write("garbage.crt", "not a certificate\n", mode: 0o644)
        do {
            _ = try ApplianceCA(certificatePEMFile: scratch.path + "/absent.crt", keyPEMFile: key)
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.code == .fileUnreadable)
            #expect(error.message.contains("absent.crt"))
        }
        do {
            _ = try ApplianceCA(certificatePEMFile: garbage, keyPEMFile: key)
            Issue.record("loaded a garbage certificate")
        } catch {
            #expect(error.code == .fileInvalid)
        }
    }

    @Test func expiredCAIsRefused() throws {
        let old = try ApplianceCA.generate(
            commonName: "Old", validity: .seconds(3600), now: Date(timeIntervalSinceNow: -7200))
        do {
            _ = try ApplianceCA(certificatePEM: old.certificatePEM, keyPEM: old.keyPEM)
            Issue.record("loaded an expired CA")
        } catch {
            #expect(error.code == .caExpired)
        }
    }

    @Test func leafNamesTheDestinationAndChainsToTheCA() throws {
        let scratch = TLSScratch()
        let (ca, _) = try scratch.newCA()
        let issued = try ca.issue(for: [.dns("db.interlock.test"), .ip(loopback)])
        let leaf = issued.certificate
        #expect(leaf.issuer == ca.certificate.subject)
        #expect(try leaf.extensions.basicConstraints == .notCertificateAuthority)
        #expect(try leaf.extensions.extendedKeyUsage == ExtendedKeyUsage([.serverAuth]))
        let sans = try #require(try leaf.extensions.subjectAlternativeNames)
        #expect(
            Array(sans) == [.dnsName("db.interlock.test"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))])
        let aki = try #require(try leaf.extensions.authorityKeyIdentifier)
        #expect(aki.keyIdentifier == (try ca.certificate.extensions.subjectKeyIdentifier)?.keyIdentifier)
        #expect(leaf.notValidBefore < Date())
        #expect(leaf.notValidAfter <= ca.certificate.notValidAfter)
        #expect(leaf.notValidAfter.timeIntervalSince(leaf.notValidBefore) <= 365 * 86_400 + 300)
        #expect(issued.chain.count == 1)  // a self-signed CA is not sent
    }

    @Test func leafNeverOutlivesTheCA() throws {
        let short = try ApplianceCA.generate(commonName: "Short", validity: .seconds(3600))
        let ca = try ApplianceCA(certificatePEM: short.certificatePEM, keyPEM: short.keyPEM)
        let leaf = try ca.issue(for: [.ip(loopback)]).certificate
        #expect(leaf.notValidAfter == ca.certificate.notValidAfter)
    }

    @Test func namesFollowTheResourceTarget() {
        let dst = IPAddress("198.18.0.77")!
        #expect(
            CertificateName.names(for: .address(IPAddress("198.18.0.10")!, .any), destination: dst) == [
                .ip(IPAddress("198.18.0.10")!)
            ])
        #expect(
            CertificateName.names(for: .network(IPAddress("198.18.0.0")!, prefixLength: 24, .any), destination: dst)
                == [.ip(dst)])
        #expect(
            CertificateName.names(for: .host("db.internal", .any), destination: dst) == [.dns("db.internal"), .ip(dst)])
    }

    @Test func serverContextsAreCachedPerNameSet() throws {
        let scratch = TLSScratch()
        let (ca, _) = try scratch.newCA()
        let a = try ca.serverContext(for: [.dns("a.test"), .ip(loopback)])
        let b = try ca.serverContext(for: [.ip(loopback), .dns("a.test"), .ip(loopback)])
        let c = try ca.serverContext(for: [.ip(loopback)])
        #expect(a === b)
        #expect(a !== c)
    }

    @Test func clientVerifiesTheLeafForTheAddressItDialled() async throws {
        let scratch = TLSScratch()
        let (ca, caFile) = try scratch.newCA()
        let client = try verifyingClientContext(caFile: caFile)
        try await handshake(server: ca.serverContext(for: [.ip(loopback)]), client: client, serverHostname: nil).get()
    }

    @Test func leafForAnotherAddressFailsVerification() async throws {
        let scratch = TLSScratch()
        let (ca, caFile) = try scratch.newCA()
        let client = try verifyingClientContext(caFile: caFile)
        let result = try await handshake(
            server: ca.serverContext(for: [.ip(IPAddress("127.0.0.2")!)]), client: client, serverHostname: nil)
        #expect(throws: (any Error).self) { try result.get() }
    }

    @Test func clientVerifiesTheLeafForTheHostNameItDialled() async throws {
        let scratch = TLSScratch()
        let (ca, caFile) = try scratch.newCA()
        let client = try verifyingClientContext(caFile: caFile)
        // The destination in the certificate is not the address dialled, so only the DNS name can
        // match (swift-nio-ssl accepts an iPAddress SAN equal to the peer even when a host name is given).
        let server = try ca.serverContext(
            for: CertificateName.names(for: .host("db.interlock.test", .any), destination: IPAddress("127.0.0.2")!))
        try await handshake(server: server, client: client, serverHostname: "db.interlock.test").get()
        let wrong = try await handshake(server: server, client: client, serverHostname: "other.interlock.test")
        #expect(throws: (any Error).self) { try wrong.get() }
    }

    @Test func leafOfAnotherCAFailsVerification() async throws {
        let scratch = TLSScratch()
        let (ca, _) = try scratch.newCA("one")
        let (_, otherFile) = try scratch.newCA("two")
        let client = try verifyingClientContext(caFile: otherFile)
        let result = try await handshake(
            server: ca.serverContext(for: [.ip(loopback)]), client: client, serverHostname: nil)
        #expect(throws: (any Error).self) { try result.get() }
    }
}

@Suite struct PostgresUpstreamConnectorTests {
    let socket = PostgresUpstreamConnector.SocketSettings(mark: nil, connectTimeout: .seconds(10))

    @Test func verifyFullWithTheServersCAEncryptsTheSession() async throws {
        let scratch = TLSScratch()
        let (ca, caFile) = try scratch.newCA()
        let server = try await FakePostgres.start(.acceptTLS(ca.serverContext(for: [.ip(loopback)])))
        defer { server.close() }
        let contexts = UpstreamTLSContexts()
        let tls = UpstreamTLS(
            mode: .verifyFull, context: try contexts.upstreamContext(mode: .verifyFull, caFile: caFile))
        let connection = try await connect(server, tls)
        #expect(connection.negotiatedTLS)
        // Only the TLS handler is left for the caller to build on.
        let channel = connection.channel
        let handlers = try await channel.eventLoop.submit { channel.pipeline.debugDescription }.get()
        #expect(handlers.contains("NIOSSLClientHandler"))
        #expect(!handlers.contains("SSLRequestHandler") && !handlers.contains("HandshakeWaiter"))
        #expect(try await echo(connection.channel, "Q-over-tls") == "Q-over-tls")
        #expect(server.requests() == 1)
    }

    @Test func negotiationReadsItselfWhenAutoReadIsOff() async throws {
        let scratch = TLSScratch()
        let (ca, caFile) = try scratch.newCA()
        let server = try await FakePostgres.start(.acceptTLS(ca.serverContext(for: [.ip(loopback)])))
        defer { server.close() }
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.autoRead, value: false)
            .connect(to: server.address).get()
        let tls = UpstreamTLS(
            mode: .verifyFull, context: try UpstreamTLSContexts().upstreamContext(mode: .verifyFull, caFile: caFile))
        let negotiated = try await PostgresUpstreamConnector.negotiateTLS(on: channel, tls: tls, timeout: .seconds(30))
            .get()
        #expect(negotiated)
        #expect(try await channel.getOption(.autoRead) == false)
        try await channel.setOption(.autoRead, value: true)
        #expect(try await echo(channel, "after") == "after")
    }

    @Test func verifyFullChecksTheHostNameOfHostResources() async throws {
        let scratch = TLSScratch()
        let (ca, caFile) = try scratch.newCA()
        let server = try await FakePostgres.start(.acceptTLS(ca.serverContext(for: [.dns("db.interlock.test")])))
        defer { server.close() }
        let contexts = UpstreamTLSContexts()
        let resource = Resource(
            name: "db", protocol: .postgres, target: .host("db.interlock.test", .any),
            tls: TLSSettings(upstream: .verifyFull, caFile: Located(caFile)))
        let connection = try await connect(server, try contexts.settings(for: resource))
        #expect(connection.negotiatedTLS)
        #expect(try await echo(connection.channel, "hello") == "hello")

        let other = Resource(
            name: "db", protocol: .postgres, target: .host("other.interlock.test", .any),
            tls: TLSSettings(upstream: .verifyFull, caFile: Located(caFile)))
        await expectFailure(server, try contexts.settings(for: other), code: .upstreamHandshake)
    }

    @Test func verifyFullWithAnotherCAFails() async throws {
        let scratch = TLSScratch()
        let (ca, _) = try scratch.newCA("server")
        let (_, otherFile) = try scratch.newCA("other")
        let server = try await FakePostgres.start(.acceptTLS(ca.serverContext(for: [.ip(loopback)])))
        defer { server.close() }
        let tls = UpstreamTLS(
            mode: .verifyFull, context: try UpstreamTLSContexts().upstreamContext(mode: .verifyFull, caFile: otherFile))
        let error = await expectFailure(server, tls, code: .upstreamHandshake)
        #expect(error?.message.contains("upstream: verify-full") == true)
    }

    @Test func requireAcceptsAnyCertificate() async throws {
        let scratch = TLSScratch()
        let (ca, _) = try scratch.newCA()
        let server = try await FakePostgres.start(.acceptTLS(ca.serverContext(for: [.ip(IPAddress("192.0.2.1")!)])))
        defer { server.close() }
        let tls = UpstreamTLS(
            mode: .require, context: try UpstreamTLSContexts().upstreamContext(mode: .require, caFile: nil))
        let connection = try await connect(server, tls)
        #expect(connection.negotiatedTLS)
        #expect(try await echo(connection.channel, "x") == "x")
    }

    @Test func preferContinuesInPlainTextWhenDeclined() async throws {
        let server = try await FakePostgres.start(.decline)
        defer { server.close() }
        let tls = UpstreamTLS(
            mode: .prefer, context: try UpstreamTLSContexts().upstreamContext(mode: .prefer, caFile: nil))
        let connection = try await connect(server, tls)
        #expect(!connection.negotiatedTLS)
        #expect(try await echo(connection.channel, "plain") == "plain")
        #expect(server.requests() == 1)
    }

    @Test(arguments: [UpstreamTLSMode.require, .verifyFull])
    func requiredModesFailWhenDeclined(mode: UpstreamTLSMode) async throws {
        let scratch = TLSScratch()
        let (_, caFile) = try scratch.newCA()
        let server = try await FakePostgres.start(.decline)
        defer { server.close() }
        let tls = UpstreamTLS(
            mode: mode, context: try UpstreamTLSContexts().upstreamContext(mode: mode, caFile: caFile))
        let error = await expectFailure(server, tls, code: .upstreamRefused)
        #expect(error?.message == "the server at 127.0.0.1:\(server.port) refused TLS (upstream: \(mode.rawValue))")
    }

    @Test func plaintextAfterSIsRefused() async throws {
        let server = try await FakePostgres.start(.acceptWithTrailingBytes)
        defer { server.close() }
        let tls = UpstreamTLS(
            mode: .prefer, context: try UpstreamTLSContexts().upstreamContext(mode: .prefer, caFile: nil))
        let error = await expectFailure(server, tls, code: .upstreamProtocol)
        #expect(error?.message.contains("CVE-2021-23222") == true)
    }

    @Test func errorAnswerIsRefused() async throws {
        let server = try await FakePostgres.start(.errorResponse)
        defer { server.close() }
        let tls = UpstreamTLS(
            mode: .prefer, context: try UpstreamTLSContexts().upstreamContext(mode: .prefer, caFile: nil))
        await expectFailure(server, tls, code: .upstreamProtocol)
    }

    @Test func closeBeforeAnswerIsRefused() async throws {
        let server = try await FakePostgres.start(.close)
        defer { server.close() }
        let tls = UpstreamTLS(
            mode: .require, context: try UpstreamTLSContexts().upstreamContext(mode: .require, caFile: nil))
        let error = await expectFailure(server, tls, code: .upstreamProtocol)
        #expect(error?.message.contains("closed the connection") == true)
    }

    @Test func disableSendsNoSSLRequest() async throws {
        let server = try await FakePostgres.start(.echoOnly)
        defer { server.close() }
        let connection = try await connect(server, .disabled)
        #expect(!connection.negotiatedTLS)
        // An SSLRequest would come back first, in place of these 8 bytes.
        #expect(try await echo(connection.channel, "startup!") == "startup!")
    }

    /// A connected channel is active before `channelActive` has travelled its pipeline, so the
    /// handler sees both "added while active" and the event; a second request would reach the
    /// server as unencrypted bytes after the first (PostgreSQL: "received unencrypted data after
    /// SSL request").
    @Test func sslRequestIsSentOnceWhenChannelActiveArrivesLate() throws {
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 5432)).wait()
        let tls = UpstreamTLS(
            mode: .prefer, context: try UpstreamTLSContexts().upstreamContext(mode: .prefer, caFile: nil))
        let negotiated = PostgresUpstreamConnector.negotiateTLS(on: channel, tls: tls, timeout: .seconds(30))
        channel.pipeline.fireChannelActive()
        let request = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(Array(request.readableBytesView) == [0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F])
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        try channel.writeInbound(ByteBuffer(string: "N"))
        #expect(try negotiated.wait() == false)
        _ = try? channel.finish()
    }

    @Test func contextsAreBuiltOncePerModeAndCAFile() throws {
        let scratch = TLSScratch()
        let (_, caFile) = try scratch.newCA()
        let contexts = UpstreamTLSContexts()
        #expect(try contexts.upstreamContext(mode: .disable, caFile: nil) == nil)
        let a = try #require(try contexts.upstreamContext(mode: .verifyFull, caFile: caFile))
        let b = try #require(try contexts.upstreamContext(mode: .verifyFull, caFile: caFile))
        let c = try #require(try contexts.upstreamContext(mode: .require, caFile: nil))
        #expect(a === b)
        #expect(a !== c)
        do {
            _ = try contexts.upstreamContext(mode: .verifyFull, caFile: scratch.path + "/absent.pem")
            Issue.record("built a context from a missing file")
        } catch {
            #expect(error.code == .fileUnreadable)
        }
    }

    func connect(_ server: FakePostgres, _ tls: UpstreamTLS) async throws -> PostgresUpstreamConnector.Connection {
        try await PostgresUpstreamConnector.connect(
            to: server.address, on: MultiThreadedEventLoopGroup.singleton.next(), socket: socket, tls: tls
        ).get()
    }

    @discardableResult
    func expectFailure(
        _ server: FakePostgres, _ tls: UpstreamTLS, code: GatewayTLSError.Code,
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) async -> GatewayTLSError? {
        do {
            let connection = try await connect(server, tls)
            connection.channel.close(promise: nil)
            Issue.record("connected; expected \(code)", sourceLocation: sourceLocation)
            return nil
        } catch let error as GatewayTLSError {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
            return error
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }
}

// MARK: Helpers

func verifyingClientContext(caFile: String) throws -> NIOSSLContext {
    var configuration = TLSConfiguration.makeClientConfiguration()
    configuration.trustRoots = .file(caFile)
    configuration.certificateVerification = .fullVerification
    return try NIOSSLContext(configuration: configuration)
}

/// One TLS handshake over loopback between `server` and a client with `client`; the result is
/// the client's view.
func handshake(
    server: NIOSSLContext, client: NIOSSLContext, serverHostname: String?
) async throws -> Result<Void, any Error> {
    let group = MultiThreadedEventLoopGroup.singleton
    let listener = try await ServerBootstrap(group: group)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: server))
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
    defer { listener.close(promise: nil) }
    let done = group.next().makePromise(of: Void.self)
    let channel = try await ClientBootstrap(group: group)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                    NIOSSLClientHandler(context: client, serverHostname: serverHostname))
                try channel.pipeline.syncOperations.addHandler(HandshakeObserver(done))
            }
        }
        .connect(to: listener.localAddress!).get()
    defer { channel.close(promise: nil) }
    do {
        try await done.futureResult.get()
        return .success(())
    } catch {
        return .failure(error)
    }
}

final class HandshakeObserver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<Void>

    init(_ promise: EventLoopPromise<Void>) { self.promise = promise }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(.handshakeCompleted) = event as? TLSUserEvent { promise.succeed(()) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { promise.fail(error) }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }
}

/// Writes `text` on an upstream channel and waits for it to come back from the fake's echo.
func echo(_ channel: any Channel, _ text: String) async throws -> String {
    let promise = channel.eventLoop.makePromise(of: String.self)
    try await channel.eventLoop.submit {
        try channel.pipeline.syncOperations.addHandler(Collector(promise, expected: text.utf8.count))
    }.get()
    try await channel.writeAndFlush(ByteBuffer(string: text)).get()
    defer { channel.close(promise: nil) }
    return try await promise.futureResult.get()
}

final class Collector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<String>
    let expected: Int
    var received = ByteBuffer()

    init(_ promise: EventLoopPromise<String>, expected: Int) {
        self.promise = promise
        self.expected = expected
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        received.writeBuffer(&buffer)
        if received.readableBytes >= expected { promise.succeed(String(buffer: received)) }
    }

    func channelInactive(context: ChannelHandlerContext) { promise.fail(ChannelError.ioOnClosedChannel) }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { promise.fail(error) }
}

/// A PostgreSQL server as far as the SSLRequest goes: it reads the 8-byte request, answers per
/// `script`, and then echoes whatever arrives (over TLS when it accepted).
final class FakePostgres: Sendable {
    enum Script: Sendable {
        case acceptTLS(NIOSSLContext)
        case decline
        /// `S` and plaintext in the same write: what a man in the middle would inject.
        case acceptWithTrailingBytes
        case errorResponse
        /// Close without answering.
        case close
        /// No SSLRequest expected: echo from the first byte.
        case echoOnly
    }

    let listener: any Channel
    let seen: SeenBox

    private init(listener: any Channel, seen: SeenBox) {
        self.listener = listener
        self.seen = seen
    }

    static func start(_ script: Script) async throws -> FakePostgres {
        let seen = SeenBox()
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(FakePostgresHandler(script, seen))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return FakePostgres(listener: listener, seen: seen)
    }

    var address: SocketAddress { listener.localAddress! }
    var port: Int { listener.localAddress!.port! }

    /// SSLRequests received so far.
    func requests() -> Int { seen.count.withLock { $0 } }

    func close() { listener.close(promise: nil) }
}

final class SeenBox: Sendable {
    let count = Mutex(0)
}

final class FakePostgresHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let script: FakePostgres.Script
    let seen: SeenBox
    var pending = ByteBuffer()
    var answered: Bool

    init(_ script: FakePostgres.Script, _ seen: SeenBox) {
        self.script = script
        self.seen = seen
        if case .echoOnly = script { answered = true } else { answered = false }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if answered {
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            return
        }
        pending.writeBuffer(&buffer)
        guard pending.readableBytes >= 8,
            let (length, code) = pending.readMultipleIntegers(endianness: .big, as: (UInt32, UInt32).self)
        else { return }
        guard length == 8, code == 80_877_103 else {
            context.close(promise: nil)
            return
        }
        seen.count.withLock { $0 += 1 }
        answered = true
        switch script {
        case .acceptTLS(let tls):
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "S")), promise: nil)
            try! context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
        case .decline:
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "N")), promise: nil)
        case .acceptWithTrailingBytes:
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "SR\0\0\0\u{8}\0\0\0\0")), promise: nil)
        case .errorResponse:
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "E\0\0\0\u{8}SFATAL\0\0")), promise: nil)
        case .close:
            context.close(promise: nil)
        case .echoOnly:
            break
        }
    }
}
