import NIOSSL
import Policy
import Synchronization

/// How the daemon uses TLS towards one resource's server: what `PostgresUpstreamConnector`
/// needs, built from the resource's `tls:` by `UpstreamTLSContexts.settings(for:)`.
public struct UpstreamTLS: Sendable {
    public var mode: UpstreamTLSMode
    /// The client context; nil only for `.disable`.
    public var context: NIOSSLContext?
    /// Sent as SNI and, with `verify-full`, matched against the certificate's dNSName SANs; nil for
    /// address and network resources, whose certificate must then carry the server's IP as an
    /// iPAddress SAN (checked against the connected peer address).
    public var serverHostname: String?

    public init(mode: UpstreamTLSMode, context: NIOSSLContext?, serverHostname: String? = nil) {
        self.mode = mode
        self.context = context
        // SNI must not carry an IP address (RFC 6066), and swift-nio-ssl refuses one.
        self.serverHostname = serverHostname.flatMap { IPAddress($0) == nil ? $0 : nil }
    }

    /// Plain TCP: the SSLRequest is never sent.
    public static let disabled = UpstreamTLS(mode: .disable, context: nil)
}

/// The TLS client contexts of the upstream leg, one per (mode, CA file), built on first use.
///
/// A context is costly to build (the CA file is read and parsed) and safe to share across
/// connections, so each is built once. The CA file is read when its context is first built and
/// not watched afterwards: make a new `UpstreamTLSContexts` when the policy is loaded again so
/// that a replaced `ca_file` takes effect and removed ones are dropped.
public final class UpstreamTLSContexts: Sendable {
    private struct Key: Hashable {
        var mode: UpstreamTLSMode
        var caFile: String?
    }

    private let cache = Mutex<[Key: NIOSSLContext]>([:])

    public init() {}

    /// The client context for `mode`, nil for `.disable`.
    ///
    /// - `prefer`, `require`: no certificate check at all (libpq's meaning: encryption against
    ///   passive eavesdroppers only).
    /// - `verify-full`: the chain must end at a certificate of `caFile` (PEM, one or more), and the
    ///   server's name must be in it: the host name given to the handler, else the peer's IP.
    ///
    /// TLS 1.2 or newer; ALPN `postgresql` is offered (PostgreSQL 17+ checks it when sent, older
    /// servers ignore it).
    public func upstreamContext(mode: UpstreamTLSMode, caFile: String?) throws(GatewayTLSError) -> NIOSSLContext? {
        if mode == .disable { return nil }
        let key = Key(mode: mode, caFile: mode == .verifyFull ? caFile : nil)
        if let hit = cache.withLock({ $0[key] }) { return hit }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["postgresql"]
        configuration.shutdownTimeout = ApplianceCA.tlsShutdownTimeout
        switch mode {
        case .disable:
            return nil
        case .prefer, .require:
            configuration.certificateVerification = .none
        case .verifyFull:
            guard let caFile else {
                throw GatewayTLSError(.fileInvalid, "upstream: verify-full needs ca_file")
            }
            let bytes = try ApplianceCA.readFile(caFile, privateKey: false)
            let roots: [NIOSSLCertificate]
            do {
                roots = try NIOSSLCertificate.fromPEMBytes(bytes)
            } catch {
                throw GatewayTLSError(.fileInvalid, "\(caFile) is not a PEM CA bundle: \(error)")
            }
            guard !roots.isEmpty else {
                throw GatewayTLSError(.fileInvalid, "\(caFile) holds no PEM certificate")
            }
            configuration.trustRoots = .certificates(roots)
            configuration.certificateVerification = .fullVerification
        }
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw GatewayTLSError(.issueFailed, "cannot build the upstream TLS context (\(mode.rawValue)): \(error)")
        }
        cache.withLock { $0[key] = context }
        return context
    }

    /// Everything the connector needs for `resource`: its mode, the context, and its host name for
    /// host-name resources.
    public func settings(for resource: Resource) throws(GatewayTLSError) -> UpstreamTLS {
        let mode = resource.tls.upstream
        let context = try upstreamContext(mode: mode, caFile: resource.tls.caFile?.value)
        let hostname: String?
        switch resource.target {
        case .host(let h, _): hostname = h
        case .address, .network: hostname = nil
        }
        return UpstreamTLS(mode: mode, context: context, serverHostname: hostname)
    }
}
