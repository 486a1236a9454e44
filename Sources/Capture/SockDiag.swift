import Policy
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What the kernel knows about the process side of a socket: authoritative, unlike names.
public struct SocketOwner: Sendable, Equatable {
    /// The socket's owner uid (`sk_uid`: the fsuid of the creator), in the daemon's user namespace.
    public var uid: UInt32
    /// The socket's inode number, as `/proc/PID/fd` shows it (`socket:[inode]`).
    public var inode: UInt64
    /// The cgroup v2 id (the cgroup directory's inode number), when the kernel reports one.
    public var cgroupID: UInt64?

    public init(uid: UInt32, inode: UInt64, cgroupID: UInt64?) {
        self.uid = uid
        self.inode = inode
        self.cgroupID = cgroupID
    }
}

/// Finds who owns the client side of a captured connection with one exact `NETLINK_SOCK_DIAG`
/// lookup of its 4-tuple.
///
/// It exists because a redirected connection carries no identity: the daemon only sees a peer
/// address on loopback. The kernel still has the client's socket, with its uid and cgroup, and
/// sock_diag finds it by 4-tuple in the established hash in a few microseconds, without scanning
/// `/proc/net/tcp` and without privileges. One netlink socket is kept and reused behind a mutex;
/// each request carries a fresh sequence number and stale answers are dropped, and a receive
/// timeout bounds the wait so a kernel that never answers cannot hang the event loop.
public final class SockDiag: Sendable {
    private let connection: Mutex<NetlinkRequester>

    /// Opens the netlink socket. It belongs to the network namespace of the calling thread.
    public init() throws {
        connection = Mutex(
            try NetlinkRequester(
                netlinkProtocol: InetDiagWire.netlinkSockDiag, name: "sock_diag", receiveTimeoutMilliseconds: 250))
    }

    /// The owner of the TCP socket that `client` uses to talk to `destination`, as the client
    /// sees it: `client` is the connecting side's local endpoint (the accepted channel's remote
    /// address) and `destination` the original destination (before the redirect).
    ///
    /// Throws `CaptureError` `.notFound` when no such live socket exists (closed, or only a
    /// TIME_WAIT remnant that carries no owner), `.netlink` or `.system` when the kernel cannot be
    /// asked.
    public func owner(client: Endpoint, destination: Endpoint) throws -> SocketOwner {
        try connection.withLock { socket in
            try socket.lookup(client: client, destination: destination)
        }
    }
}

// MARK: - Wire format

/// Netlink and inet_diag constants and layouts (linux/netlink.h, linux/sock_diag.h,
/// linux/inet_diag.h). Spelled out because several are macros or anonymous enums.
enum InetDiagWire {
    static let netlinkSockDiag: Int32 = 4  // NETLINK_SOCK_DIAG
    static let ipprotoTCP: UInt8 = 6  // IPPROTO_TCP
    static let nlmsghdrSize = NetlinkWire.headerSize
    static let requestSize = 56  // struct inet_diag_req_v2
    static let messageSize = 72  // struct inet_diag_msg
    static let sockDiagByFamily: UInt16 = 20  // SOCK_DIAG_BY_FAMILY
    static let nlmsgError = NetlinkWire.nlmsgError
    static let nlmsgDone = NetlinkWire.nlmsgDone
    static let nlmRequest = NetlinkWire.requestFlag
    static let attributeCgroupID: UInt16 = 21  // INET_DIAG_CGROUP_ID
    static let tcpTimeWait: UInt8 = 6  // TCP_TIME_WAIT
    static let tcpListen: UInt8 = 10  // TCP_LISTEN
    static let tcpNewSynRecv: UInt8 = 12  // TCP_NEW_SYN_RECV

    /// Writes the whole request (nlmsghdr + inet_diag_req_v2) into `out`, which holds at least
    /// `nlmsghdrSize + requestSize` bytes. Returns the length.
    static func encodeRequest(
        into out: UnsafeMutableRawBufferPointer,
        sequence: UInt32,
        client: Endpoint,
        destination: Endpoint
    ) -> Int {
        let length = nlmsghdrSize + requestSize
        precondition(out.count >= length)
        for i in 0..<length { out[i] = 0 }
        out.storeBytes(of: UInt32(length), toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: sockDiagByFamily, toByteOffset: 4, as: UInt16.self)
        out.storeBytes(of: nlmRequest, toByteOffset: 6, as: UInt16.self)
        out.storeBytes(of: sequence, toByteOffset: 8, as: UInt32.self)
        // nlmsg_pid 0: the kernel.
        let r = nlmsghdrSize
        out[r + 0] = UInt8(client.address.isIPv6 ? AF_INET6 : AF_INET)
        out[r + 1] = ipprotoTCP
        out[r + 2] = 0  // no extensions: INET_DIAG_CGROUP_ID comes unrequested.
        out.storeBytes(of: UInt32.max, toByteOffset: r + 4, as: UInt32.self)  // every state
        let id = r + 8
        out.storeBytes(of: client.port.bigEndian, toByteOffset: id + 0, as: UInt16.self)
        out.storeBytes(of: destination.port.bigEndian, toByteOffset: id + 2, as: UInt16.self)
        storeAddress(client.address, into: out, at: id + 4)
        storeAddress(destination.address, into: out, at: id + 20)
        // idiag_if 0; idiag_cookie = INET_DIAG_NOCOOKIE twice, or the kernel compares it.
        out.storeBytes(of: UInt32.max, toByteOffset: id + 40, as: UInt32.self)
        out.storeBytes(of: UInt32.max, toByteOffset: id + 44, as: UInt32.self)
        return length
    }

    private static func storeAddress(_ address: IPAddress, into out: UnsafeMutableRawBufferPointer, at offset: Int) {
        switch address {
        case .v4(let a):
            out.storeBytes(of: a.bigEndian, toByteOffset: offset, as: UInt32.self)
        case .v6(let hi, let lo):
            out.storeBytes(of: hi.bigEndian, toByteOffset: offset, as: UInt64.self)
            out.storeBytes(of: lo.bigEndian, toByteOffset: offset + 8, as: UInt64.self)
        }
    }

    /// Reads an address from an inet_diag_sockid field; IPv4-mapped IPv6 becomes `.v4`, as in
    /// `IPAddress`, so a dual-stack socket matches the IPv4 tuple it was looked up by.
    static func loadAddress(family: UInt8, from buf: UnsafeRawBufferPointer, at offset: Int) -> IPAddress {
        if Int32(family) == AF_INET {
            return .v4(UInt32(bigEndian: buf.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        }
        let hi = UInt64(bigEndian: buf.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        let lo = UInt64(bigEndian: buf.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
        if hi == 0, lo >> 32 == 0xFFFF { return .v4(UInt32(truncatingIfNeeded: lo)) }
        return .v6(hi, lo)
    }

    /// The outcome of one netlink message of the answer.
    enum Reply: Equatable {
        /// Not ours (another sequence number) or not interesting (an ack): keep reading.
        case ignore
        case owner(SocketOwner)
        /// The kernel's negative errno, or a condition we refuse (e.g. a TIME_WAIT socket).
        case failure(CaptureError.Code, String, errno: Int32?)
    }

    /// Decodes every netlink message in `buf` and returns the first decisive reply.
    static func decodeReplies(
        _ buf: UnsafeRawBufferPointer,
        sequence: UInt32,
        client: Endpoint,
        destination: Endpoint
    ) -> Reply {
        let outcome: NetlinkRequester.Outcome<Reply> = NetlinkWire.forEachMessage(
            in: buf, sequence: sequence, name: "sock_diag"
        ) { type, payload in
            let reply = decodeMessage(type: type, payload: payload, client: client, destination: destination)
            return reply == .ignore ? .keepReading : .done(.success(reply))
        }
        switch outcome {
        case .keepReading: return .ignore
        case .done(.success(let reply)): return reply
        case .done(.failure(let error)): return .failure(error.code, error.message, errno: error.errno)
        }
    }

    static func decodeMessage(
        type: UInt16,
        payload: UnsafeRawBufferPointer,
        client: Endpoint,
        destination: Endpoint
    ) -> Reply {
        switch type {
        case nlmsgError:
            guard payload.count >= 4 else {
                return .failure(.netlink, "sock_diag: short NLMSG_ERROR", errno: nil)
            }
            let error = -payload.loadUnaligned(fromByteOffset: 0, as: Int32.self)
            if error == 0 { return .ignore }
            if error == ENOENT {
                return .failure(.notFound, "no TCP socket \(client) -> \(destination)", errno: error)
            }
            return .failure(.netlink, "sock_diag lookup of \(client) -> \(destination) failed", errno: error)
        case nlmsgDone:
            return .failure(.notFound, "no TCP socket \(client) -> \(destination)", errno: nil)
        case sockDiagByFamily:
            guard payload.count >= messageSize else {
                return .failure(.netlink, "sock_diag: short inet_diag_msg", errno: nil)
            }
            let family = payload[0]
            let state = payload[1]
            let id = 4
            let sport = UInt16(bigEndian: payload.loadUnaligned(fromByteOffset: id, as: UInt16.self))
            let dport = UInt16(bigEndian: payload.loadUnaligned(fromByteOffset: id + 2, as: UInt16.self))
            let src = loadAddress(family: family, from: payload, at: id + 4)
            let dst = loadAddress(family: family, from: payload, at: id + 20)
            // An exact lookup falls back to a listener on the same local port: only the very
            // socket we asked for counts.
            guard sport == client.port, dport == destination.port, src == client.address,
                dst == destination.address, state != tcpListen
            else {
                return .failure(
                    .notFound,
                    "no TCP socket \(client) -> \(destination) (kernel answered with another socket)",
                    errno: nil
                )
            }
            // A TIME_WAIT or request socket has no owner; the kernel reports uid 0 for it, which
            // must never be mistaken for root.
            guard state != tcpTimeWait, state != tcpNewSynRecv else {
                return .failure(
                    .notFound,
                    "TCP socket \(client) -> \(destination) is closed (state \(state))",
                    errno: nil
                )
            }
            let uid = payload.loadUnaligned(fromByteOffset: 64, as: UInt32.self)
            let inode = payload.loadUnaligned(fromByteOffset: 68, as: UInt32.self)
            var cgroupID: UInt64? = nil
            var a = messageSize
            while a + 4 <= payload.count {
                let alen = Int(payload.loadUnaligned(fromByteOffset: a, as: UInt16.self))
                let atype = payload.loadUnaligned(fromByteOffset: a + 2, as: UInt16.self) & 0x3FFF
                guard alen >= 4, a + alen <= payload.count else { break }
                if atype == attributeCgroupID, alen >= 12 {
                    cgroupID = payload.loadUnaligned(fromByteOffset: a + 4, as: UInt64.self)
                }
                a += (alen + 3) & ~3
            }
            return .owner(SocketOwner(uid: uid, inode: UInt64(inode), cgroupID: cgroupID))
        default:
            return .ignore
        }
    }
}

// MARK: - The socket

extension NetlinkRequester {
    func lookup(client: Endpoint, destination: Endpoint) throws -> SocketOwner {
        guard client.address.isIPv6 == destination.address.isIPv6 else {
            throw CaptureError(
                code: .notFound,
                message: "no TCP socket \(client) -> \(destination): address families differ",
                errno: nil
            )
        }
        return try exchange(
            "\(client) -> \(destination)",
            encode: { buffer, sequence in
                InetDiagWire.encodeRequest(into: buffer, sequence: sequence, client: client, destination: destination)
            },
            decode: { datagram, sequence in
                switch InetDiagWire.decodeReplies(
                    datagram, sequence: sequence, client: client, destination: destination)
                {
                case .ignore: .keepReading
                case .owner(let owner): .done(.success(owner))
                case .failure(let code, let message, let error):
                    .done(.failure(CaptureError(code: code, message: message, errno: error)))
                }
            })
    }
}
