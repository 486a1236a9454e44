import NIOCore
import Policy

#if canImport(Glibc)
import Glibc
#endif

/// Where a redirected connection was going before nftables sent it to the daemon.
///
/// The nat `redirect` rewrites the destination to the listener; conntrack keeps the original,
/// and `SO_ORIGINAL_DST` (IPv4) or `IP6T_SO_ORIGINAL_DST` (IPv6) hands it back for the accepted
/// socket. A connection that was not redirected has no such entry: the query fails with
/// `.notFound` and the gateway refuses the connection (fail closed).
public enum OriginalDestination {
    /// `SOL_IP` and `SOL_IPV6` (the same numbers as `IPPROTO_IP` and `IPPROTO_IPV6`).
    static let solIP: Int32 = 0
    static let solIPv6: Int32 = 41
    /// `SO_ORIGINAL_DST` from linux/netfilter_ipv4.h, at level `SOL_IP`.
    static let ipv4Option: Int32 = 80
    /// `IP6T_SO_ORIGINAL_DST` from linux/netfilter_ipv6/ip6_tables.h, at level `SOL_IPV6`.
    static let ipv6Option: Int32 = 80

    /// Which of the two socket options answers for a socket.
    enum Query: Equatable {
        case ipv4
        case ipv6
    }

    /// The query for an accepted socket, from its addresses. An AF_INET6 socket of a dual-stack
    /// listener carries IPv4 connections as IPv4-mapped addresses; conntrack tracked those as IPv4,
    /// so they need the IPv4 query. Nil when the channel has no IP address (closed, or Unix).
    static func query(local: SocketAddress?, remote: SocketAddress?) -> Query? {
        switch local {
        case .v4:
            return .ipv4
        case .v6(let local):
            if isIPv4Mapped(local.address) { return .ipv4 }
            if case .v6(let remote) = remote, isIPv4Mapped(remote.address) { return .ipv4 }
            return .ipv6
        case .unixDomainSocket, nil:
            return nil
        }
    }

    private static func isIPv4Mapped(_ address: sockaddr_in6) -> Bool {
        withUnsafeBytes(of: address.sin6_addr) { b in
            b[0..<10].allSatisfy { $0 == 0 } && b[10] == 0xFF && b[11] == 0xFF
        }
    }

    /// The original destination of an accepted, redirected TCP channel.
    ///
    /// Runs `getsockopt` on the channel's event loop. Fails with `CaptureError` `.notFound` when
    /// conntrack has no entry for the connection, `.system` otherwise (`ENOPROTOOPT`: nf_conntrack
    /// is not loaded). Note: a connection that conntrack tracked but did not NAT (a client that
    /// dialled the listener directly) succeeds with the listener's own address; the caller must
    /// refuse an original destination equal to its listener.
    public static func query(_ channel: any Channel) -> EventLoopFuture<Endpoint> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(
                CaptureError(code: .system, message: "the channel is not a socket: no original destination", errno: nil)
            )
        }
        guard let kind = query(local: channel.localAddress, remote: channel.remoteAddress) else {
            return channel.eventLoop.makeFailedFuture(
                CaptureError(
                    code: .system,
                    message: "the channel has no IP address: no original destination",
                    errno: nil
                )
            )
        }
        let bytes: EventLoopFuture<[UInt8]>
        switch kind {
        case .ipv4:
            bytes = provider.unsafeGetSocketOption(level: SocketOptionLevel(solIP), name: ipv4Option)
                .map { (address: sockaddr_in) in withUnsafeBytes(of: address) { Array($0) } }
        case .ipv6:
            bytes = provider.unsafeGetSocketOption(level: SocketOptionLevel(solIPv6), name: ipv6Option)
                .map { (address: sockaddr_in6) in withUnsafeBytes(of: address) { Array($0) } }
        }
        return bytes.flatMapErrorThrowing { error in
            throw mapError(error, kind: kind)
        }.flatMapThrowing { try decode($0) }
    }

    /// The same query on a raw socket descriptor, for code (and tests) outside a channel.
    static func query(socket fd: Int32, kind: Query) throws -> Endpoint {
        var storage = sockaddr_in6()
        var length: socklen_t
        let rc: Int32
        switch kind {
        case .ipv4:
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            rc = getsockopt(fd, solIP, ipv4Option, &storage, &length)
        case .ipv6:
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            rc = getsockopt(fd, solIPv6, ipv6Option, &storage, &length)
        }
        guard rc == 0 else { throw errorFor(errno: errno, kind: kind) }
        return try withUnsafeBytes(of: storage) { try decode(Array($0.prefix(Int(length)))) }
    }

    /// Decodes the `sockaddr_in` or `sockaddr_in6` the kernel returned. IPv4-mapped IPv6
    /// addresses become IPv4, as everywhere in `Policy`.
    static func decode(_ bytes: [UInt8]) throws -> Endpoint {
        guard bytes.count >= 2 else {
            throw CaptureError(
                code: .system,
                message: "original destination: \(bytes.count) bytes, no address family",
                errno: nil
            )
        }
        // sa_family_t is in host order; the port and the address in network order.
        let family = Int32(bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: sa_family_t.self) })
        switch family {
        case AF_INET:
            guard bytes.count >= 8 else {
                throw CaptureError(code: .system, message: "original destination: short sockaddr_in", errno: nil)
            }
            let port = UInt16(bytes[2]) << 8 | UInt16(bytes[3])
            let address = bytes[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            return Endpoint(address: .v4(address), port: port)
        case AF_INET6:
            guard bytes.count >= 24 else {
                throw CaptureError(code: .system, message: "original destination: short sockaddr_in6", errno: nil)
            }
            let port = UInt16(bytes[2]) << 8 | UInt16(bytes[3])
            return Endpoint(address: IPAddress(ipv6Bytes: Array(bytes[8..<24])), port: port)
        default:
            throw CaptureError(
                code: .system,
                message: "original destination: unexpected address family \(family)",
                errno: nil
            )
        }
    }

    private static func mapError(_ error: any Error, kind: Query) -> any Error {
        if let error = error as? IOError { return errorFor(errno: error.errnoCode, kind: kind) }
        return error
    }

    private static func errorFor(errno code: Int32, kind: Query) -> CaptureError {
        let option = kind == .ipv4 ? "SO_ORIGINAL_DST" : "IP6T_SO_ORIGINAL_DST"
        switch code {
        case ENOENT:
            return CaptureError(
                code: .notFound,
                message: "\(option): the connection was not redirected by nftables (no NAT entry)",
                errno: code
            )
        case ENOPROTOOPT:
            return CaptureError(
                code: .system,
                message: "\(option) is not available: is nf_conntrack loaded in this network namespace?",
                errno: code
            )
        default:
            return CaptureError(code: .system, message: "\(option) failed", errno: code)
        }
    }
}
