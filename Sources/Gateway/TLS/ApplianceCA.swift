import Crypto
import Foundation
import NIOCore
import NIOSSL
import Policy
import SwiftASN1
import Synchronization
import X509

#if canImport(Glibc)
import Glibc
#endif

/// A name a certificate is issued for: what the client dialled, so that `sslmode=verify-full`
/// finds it in the certificate's subjectAltName.
public enum CertificateName: Sendable, Hashable, CustomStringConvertible {
    /// An iPAddress SAN: clients that connect to an address (`host=198.18.0.10`).
    case ip(IPAddress)
    /// A dNSName SAN: clients that connect by host name (`host=db.internal`); lowercase.
    case dns(String)

    public var description: String {
        switch self {
        case .ip(let a): "\(a)"
        case .dns(let h): h
        }
    }

    /// The names a resource's clients may have dialled for a connection captured on its way to
    /// `destination` (the original destination, after the kernel's redirect):
    ///
    /// - an address resource: that address;
    /// - a network resource: the destination address (one certificate cannot name a whole CIDR, so
    ///   each destination gets its own, issued on first use);
    /// - a host-name resource: the host name, and the destination address for clients that
    ///   connect to the resolved address directly.
    public static func names(for target: ResourceTarget, destination: IPAddress) -> [CertificateName] {
        switch target {
        case .address(let a, _): [.ip(a)]
        case .network: [.ip(destination)]
        case .host(let h, _): [.dns(h), .ip(destination)]
        }
    }
}

/// The appliance's own certificate authority, and the certificates it issues to itself.
///
/// Clients of a resource with `tls: { client: offer }` talk TLS to the daemon, not to the server
/// they dialled; they can only verify that with a CA they were told to trust. `interlock tls init`
/// creates that CA at install (`/etc/interlock/tls/ca.crt`, `ca.key`) and operators hand `ca.crt`
/// to clients as `sslrootcert`. The daemon then issues, in memory and on first use, a leaf
/// certificate for each set of names clients dial. Leaf keys never touch the disk, so rotating
/// the CA (re-run `tls init --force`, restart) rotates every leaf.
///
/// Thread-safe: the CA is immutable and the cache of TLS contexts sits behind a `Mutex`.
public final class ApplianceCA: Sendable {
    /// How long closing a TLS connection waits for the peer's close_notify (NIOSSL's default is 5
    /// s). A live peer answers within a round trip; one that already closed its TCP connection (a
    /// PostgreSQL server after Terminate) never does, and the session's end (its `session.close`,
    /// its slot) waited the whole 5 s for it.
    static let tlsShutdownTimeout = TimeAmount.milliseconds(250)

    /// Ten years: the CA outlives the appliance's likely service life; rotation is a command.
    public static let defaultValidity: Duration = .seconds(10 * 365 * 86_400)
    /// One year, or less when the CA expires sooner; leaves are renewed half-way through.
    public static let leafValidity: Duration = .seconds(365 * 86_400)
    /// Tolerates clients whose clocks run a little behind the appliance's.
    public static let backdating: Duration = .seconds(300)
    /// Distinct name sets (for example destinations in a network resource) kept; beyond this the
    /// oldest context is dropped and issued again when next needed.
    public static let maxCachedContexts = 256
    /// A CA key or certificate file larger than this is the wrong file.
    static let maxFileSize = 1 << 20

    /// The CA certificate as loaded.
    public let certificate: Certificate
    private let privateKey: Certificate.PrivateKey
    /// Sent after the leaf when the CA is itself an intermediate; empty for a self-signed root.
    private let intermediates: [NIOSSLCertificate]
    private let clock: @Sendable () -> Date
    private let cache = Mutex(ContextCache())

    // MARK: Creating and loading

    /// A new self-signed CA: P-256 ECDSA, CA:true (path length 0: it signs leaves only),
    /// keyCertSign and cRLSign, a subjectKeyIdentifier, backdated by `backdating`.
    ///
    /// - Returns: the certificate and the PKCS#8 private key, both PEM; write the key mode 0600.
    public static func generate(
        commonName: String, validity: Duration = defaultValidity, now: Date = Date()
    ) throws(GatewayTLSError) -> (certificatePEM: String, keyPEM: String) {
        let key = P256.Signing.PrivateKey()
        let privateKey = Certificate.PrivateKey(key)
        do {
            let name = try DistinguishedName {
                OrganizationName("Interlock")
                CommonName(commonName)
            }
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: privateKey.publicKey)
            }
            let certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: privateKey.publicKey,
                notValidBefore: now - backdating.timeInterval, notValidAfter: now + validity.timeInterval,
                issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
                issuerPrivateKey: privateKey)
            return (try certificate.serializeAsPEM().pemString, key.pemRepresentation)
        } catch {
            throw GatewayTLSError(.issueFailed, "cannot create the CA certificate: \(error)")
        }
    }

    /// Loads the CA from its two PEM files and checks it can be used now.
    ///
    /// The key file is opened first and checked through its descriptor: a regular file with no
    /// group or other permission bits (`chmod 0600`, owned by the daemon's user), since whoever
    /// reads it can impersonate every `client: offer` resource to every client.
    ///
    /// - Parameter clock: the time used for validity checks and issuing; tests pass a fixed one.
    public convenience init(
        certificatePEMFile: String, keyPEMFile: String, clock: @escaping @Sendable () -> Date = { Date() }
    ) throws(GatewayTLSError) {
        let keyBytes = try Self.readFile(keyPEMFile, privateKey: true)
        let certificateBytes = try Self.readFile(certificatePEMFile, privateKey: false)
        try self.init(
            certificatePEM: String(decoding: certificateBytes, as: UTF8.self),
            keyPEM: String(decoding: keyBytes, as: UTF8.self),
            certificateSource: certificatePEMFile, keySource: keyPEMFile, clock: clock)
    }

    /// Loads the CA from PEM text (no file mode check: the caller holds the key already).
    ///
    /// Checks that the certificate is a CA allowed to sign certificates, valid now, and that the
    /// key is its key.
    public init(
        certificatePEM: String, keyPEM: String, certificateSource: String = "the CA certificate",
        keySource: String = "the CA key", clock: @escaping @Sendable () -> Date = { Date() }
    ) throws(GatewayTLSError) {
        let certificate: Certificate
        do {
            certificate = try Certificate(pemEncoded: certificatePEM)
        } catch {
            throw GatewayTLSError(.fileInvalid, "\(certificateSource) is not a PEM certificate: \(error)")
        }
        let privateKey: Certificate.PrivateKey
        do {
            privateKey = try Certificate.PrivateKey(pemEncoded: keyPEM)
        } catch {
            throw GatewayTLSError(.fileInvalid, "\(keySource) is not a PEM private key: \(error)")
        }
        guard privateKey.publicKey == certificate.publicKey else {
            throw GatewayTLSError(
                .keyMismatch,
                "\(keySource) is not the key of \(certificateSource) (was one of them replaced? "
                    + "re-create both with: interlock tls init --force)")
        }
        let constraints = try? certificate.extensions.basicConstraints
        guard case .isCertificateAuthority = constraints else {
            throw GatewayTLSError(
                .fileInvalid, "\(certificateSource) is not a CA certificate (basicConstraints CA:true is missing)")
        }
        if let usage = try? certificate.extensions.keyUsage, !usage.keyCertSign {
            throw GatewayTLSError(.fileInvalid, "\(certificateSource) may not sign certificates (keyUsage)")
        }
        let now = clock()
        guard certificate.notValidBefore <= now, now < certificate.notValidAfter else {
            throw GatewayTLSError(
                .caExpired,
                "\(certificateSource) is valid from \(certificate.notValidBefore) to \(certificate.notValidAfter), "
                    + "not now (\(now)); re-create it with: interlock tls init --force")
        }
        let selfSigned = certificate.issuer == certificate.subject
        self.certificate = certificate
        self.privateKey = privateKey
        self.intermediates = selfSigned ? [] : [try Self.nioCertificate(certificate)]
        self.clock = clock
    }

    // MARK: Issuing

    /// A leaf certificate and its key, ready for a TLS server.
    public struct Issued: Sendable {
        /// The leaf as X.509, for inspection.
        public var certificate: Certificate
        /// The leaf first, then the CA when it is an intermediate.
        public var chain: [NIOSSLCertificate]
        public var privateKey: NIOSSLPrivateKey
    }

    /// Issues a leaf for `names`: a fresh P-256 key, serverAuth only, CA:false, the names as
    /// subjectAltNames, an authorityKeyIdentifier, valid from `backdating` ago for `leafValidity`
    /// or until the CA expires, whichever is first. Not cached: `serverContext` is.
    public func issue(for names: [CertificateName]) throws(GatewayTLSError) -> Issued {
        guard !names.isEmpty else { throw GatewayTLSError(.issueFailed, "a certificate needs at least one name") }
        let now = clock()
        let notAfter = min(now + Self.leafValidity.timeInterval, certificate.notValidAfter)
        guard now < notAfter else {
            throw GatewayTLSError(
                .caExpired,
                "the appliance CA expired on \(certificate.notValidAfter); re-create it with: interlock tls init --force"
            )
        }
        let key = P256.Signing.PrivateKey()
        let leafKey = Certificate.PrivateKey(key)
        let first = names[0].description
        do {
            let subject = try DistinguishedName {
                OrganizationName("Interlock")
                CommonName(first.utf8.count <= 64 ? first : "Interlock appliance")
            }
            let authorityKeyID = try certificate.extensions.subjectKeyIdentifier?.keyIdentifier
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(names.map(\.generalName))
                SubjectKeyIdentifier(hash: leafKey.publicKey)
                if let authorityKeyID {
                    AuthorityKeyIdentifier(keyIdentifier: authorityKeyID)
                }
            }
            let leaf = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: leafKey.publicKey,
                notValidBefore: now - Self.backdating.timeInterval, notValidAfter: notAfter,
                issuer: certificate.subject, subject: subject, extensions: extensions,
                issuerPrivateKey: privateKey)
            let nioKey = try NIOSSLPrivateKey(bytes: Array(key.derRepresentation), format: .der)
            return Issued(certificate: leaf, chain: [try Self.nioCertificate(leaf)] + intermediates, privateKey: nioKey)
        } catch let error as GatewayTLSError {
            throw error
        } catch {
            throw GatewayTLSError(.issueFailed, "cannot issue a certificate for \(names): \(error)")
        }
    }

    /// The TLS server context for a connection whose client dialled one of `names`: TLS 1.2 or
    /// newer, ALPN `postgresql` (PostgreSQL 17's direct TLS needs it; older clients send none).
    ///
    /// Cached per set of names (order and repeats do not matter) and issued again half-way
    /// through the leaf's life, so one daemon can run for years.
    public func serverContext(for names: [CertificateName]) throws(GatewayTLSError) -> NIOSSLContext {
        let key = Set(names)
        let now = clock()
        if let hit = cache.withLock({ $0.lookup(key, now: now) }) { return hit }
        // Issue outside the lock: two connections racing for the same new name set both issue, and
        // the second replaces the first in the cache, which is harmless.
        let issued = try issue(for: names)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: issued.chain.map { .certificate($0) }, privateKey: .privateKey(issued.privateKey))
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["postgresql"]
        configuration.shutdownTimeout = Self.tlsShutdownTimeout
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw GatewayTLSError(.issueFailed, "cannot build the TLS server context for \(names): \(error)")
        }
        let lifetime = issued.certificate.notValidAfter.timeIntervalSince(issued.certificate.notValidBefore)
        let renewAfter = issued.certificate.notValidBefore + lifetime / 2
        cache.withLock { $0.insert(key, context, renewAfter: renewAfter) }
        return context
    }

    /// The server context for a connection captured on its way to `destination` on a resource
    /// with this `target`: see `CertificateName.names(for:destination:)`.
    public func serverContext(target: ResourceTarget, destination: IPAddress) throws(GatewayTLSError) -> NIOSSLContext {
        try serverContext(for: CertificateName.names(for: target, destination: destination))
    }

    // MARK: Helpers

    static func nioCertificate(_ certificate: Certificate) throws(GatewayTLSError) -> NIOSSLCertificate {
        do {
            var serializer = DER.Serializer()
            try serializer.serialize(certificate)
            return try NIOSSLCertificate(bytes: serializer.serializedBytes, format: .der)
        } catch {
            throw GatewayTLSError(.issueFailed, "cannot convert a certificate for TLS: \(error)")
        }
    }

    /// Reads a small file through one descriptor; with `privateKey`, refuses it unless only its
    /// owner may access it.
    static func readFile(_ path: String, privateKey: Bool) throws(GatewayTLSError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            throw GatewayTLSError(.fileUnreadable, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw GatewayTLSError(.fileUnreadable, "cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw GatewayTLSError(.fileInvalid, "\(path) is not a regular file")
        }
        let mode = st.st_mode & 0o7777
        if privateKey, mode & 0o077 != 0 {
            throw GatewayTLSError(
                .keyExposed,
                "\(path) may be accessed by other users than its owner (mode \(String(mode, radix: 8))); "
                    + "it must be readable by the daemon only: chmod 0600 \(path)")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw GatewayTLSError(.fileUnreadable, "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
            guard bytes.count <= maxFileSize else {
                throw GatewayTLSError(.fileInvalid, "\(path) is larger than \(maxFileSize) bytes")
            }
        }
        return bytes
    }
}

/// Server contexts by name set, oldest first out.
private struct ContextCache {
    struct Entry {
        var context: NIOSSLContext
        var renewAfter: Date
    }
    var entries: [Set<CertificateName>: Entry] = [:]
    var order: [Set<CertificateName>] = []

    func lookup(_ key: Set<CertificateName>, now: Date) -> NIOSSLContext? {
        guard let e = entries[key], now < e.renewAfter else { return nil }
        return e.context
    }

    mutating func insert(_ key: Set<CertificateName>, _ context: NIOSSLContext, renewAfter: Date) {
        if entries.updateValue(Entry(context: context, renewAfter: renewAfter), forKey: key) == nil {
            order.append(key)
        }
        while order.count > ApplianceCA.maxCachedContexts {
            entries[order.removeFirst()] = nil
        }
    }
}

/// A summary of a CA certificate for people: what `interlock tls show` prints.
public struct CertificateSummary: Sendable {
    public var subject: String
    public var issuer: String
    /// SHA-256 of the DER certificate, upper-case hex bytes joined by ':' (as `openssl x509 -fingerprint -sha256`).
    public var sha256Fingerprint: String
    public var notValidBefore: Date
    public var notValidAfter: Date
    public var isCertificateAuthority: Bool
    /// Lower-case hex bytes joined by ':' (as `openssl x509 -serial` shows them, separated).
    public var serialNumber: String

    /// Summarises the first certificate of a PEM file.
    public init(pem: String, source: String) throws(GatewayTLSError) {
        let certificate: Certificate
        let der: [UInt8]
        do {
            let document = try PEMDocument(pemString: pem)
            certificate = try Certificate(pemDocument: document)
            der = document.derBytes
        } catch {
            throw GatewayTLSError(.fileInvalid, "\(source) is not a PEM certificate: \(error)")
        }
        subject = certificate.subject.description
        issuer = certificate.issuer.description
        sha256Fingerprint = SHA256.hash(data: der).map { String(format: "%02X", $0) }.joined(separator: ":")
        notValidBefore = certificate.notValidBefore
        notValidAfter = certificate.notValidAfter
        if case .isCertificateAuthority = try? certificate.extensions.basicConstraints {
            isCertificateAuthority = true
        } else {
            isCertificateAuthority = false
        }
        serialNumber = certificate.serialNumber.bytes.map { String(format: "%02x", $0) }.joined(separator: ":")
    }
}

extension CertificateName {
    var generalName: GeneralName {
        switch self {
        case .ip(let a): .ipAddress(ASN1OctetString(contentBytes: ArraySlice(a.bytes)))
        case .dns(let h): .dnsName(h)
        }
    }
}

extension Duration {
    /// Seconds as `Date` arithmetic wants them.
    fileprivate var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
