import Policy
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A connection as conntrack first saw it: who connected, to where, before any NAT.
public struct ConntrackTuple: Sendable, Equatable {
    public var source: Endpoint
    public var destination: Endpoint

    public init(source: Endpoint, destination: Endpoint) {
        self.source = source
        self.destination = destination
    }
}

/// Finds a redirected connection's original tuple from its reply tuple with one exact ctnetlink
/// lookup (`IPCTNL_MSG_CT_GET`).
///
/// It exists because the peer address the daemon sees is not always the client's: when two of a
/// client's connections share a source address and port (SO_REUSEADDR, or a new connection reusing
/// the port of a lingering conntrack entry) they would have the same reply tuple after the
/// redirect, so NAT gives the later one another source port. The sock_diag owner lookup must use
/// the port the client's socket really has, which only conntrack remembers. Needs CAP_NET_ADMIN.
public final class Conntrack: Sendable {
    private let connection: Mutex<NetlinkRequester>

    /// Opens the netlink socket, in the network namespace of the calling thread.
    public init() throws {
        connection = Mutex(
            try NetlinkRequester(
                netlinkProtocol: ConntrackWire.netlinkNetfilter, name: "conntrack", receiveTimeoutMilliseconds: 250))
    }

    /// The original tuple of the TCP connection whose reply direction goes from `replySource`
    /// (interlockd's listener, the accepted socket's local address) to `replyDestination` (the
    /// accepted socket's peer address).
    public func originalTuple(replySource: Endpoint, replyDestination: Endpoint) throws -> ConntrackTuple {
        try connection.withLock { socket in
            try socket.exchange(
                "\(replyDestination) -> \(replySource)",
                encode: { buffer, sequence in
                    ConntrackWire.encodeGet(
                        into: buffer, sequence: sequence, replySource: replySource, replyDestination: replyDestination)
                },
                decode: { datagram, sequence in
                    ConntrackWire.decodeReplies(datagram, sequence: sequence)
                })
        }
    }
}

/// ctnetlink constants and layouts (linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h).
enum ConntrackWire {
    static let netlinkNetfilter: Int32 = 12  // NETLINK_NETFILTER
    static let subsystem: UInt16 = 1  // NFNL_SUBSYS_CTNETLINK
    static let messageNew: UInt16 = 0  // IPCTNL_MSG_CT_NEW (what a GET is answered with)
    static let messageGet: UInt16 = 1  // IPCTNL_MSG_CT_GET
    static let nested: UInt16 = 0x8000  // NLA_F_NESTED
    static let tupleOrig: UInt16 = 1  // CTA_TUPLE_ORIG
    static let tupleReply: UInt16 = 2  // CTA_TUPLE_REPLY
    static let tupleIP: UInt16 = 1  // CTA_TUPLE_IP
    static let tupleProto: UInt16 = 2  // CTA_TUPLE_PROTO
    static let ipV4Src: UInt16 = 1, ipV4Dst: UInt16 = 2, ipV6Src: UInt16 = 3, ipV6Dst: UInt16 = 4
    static let protoNum: UInt16 = 1, protoSrcPort: UInt16 = 2, protoDstPort: UInt16 = 3
    static let tcp: UInt8 = 6

    /// A tiny attribute writer: netlink attributes are (u16 length, u16 type, value, pad to 4).
    struct Writer {
        let out: UnsafeMutableRawBufferPointer
        var offset: Int

        mutating func bytes(_ b: [UInt8]) {
            for (i, x) in b.enumerated() { out[offset + i] = x }
            offset += b.count
        }

        mutating func attribute(_ type: UInt16, _ value: [UInt8]) {
            let length = 4 + value.count
            out.storeBytes(of: UInt16(length), toByteOffset: offset, as: UInt16.self)
            out.storeBytes(of: type, toByteOffset: offset + 2, as: UInt16.self)
            offset += 4
            bytes(value)
            while offset % 4 != 0 {
                out[offset] = 0
                offset += 1
            }
        }

        mutating func nest(_ type: UInt16, _ body: (inout Writer) -> Void) {
            let start = offset
            offset += 4
            body(&self)
            out.storeBytes(of: UInt16(offset - start), toByteOffset: start, as: UInt16.self)
            out.storeBytes(of: type | nested, toByteOffset: start + 2, as: UInt16.self)
        }
    }

    static func port(_ p: UInt16) -> [UInt8] { [UInt8(p >> 8), UInt8(p & 0xFF)] }

    static func encodeGet(
        into out: UnsafeMutableRawBufferPointer, sequence: UInt32, replySource: Endpoint, replyDestination: Endpoint
    ) -> Int {
        let v6 = replySource.address.isIPv6
        var w = Writer(out: out, offset: NetlinkWire.headerSize)
        // struct nfgenmsg { u8 family; u8 version; be16 res_id; }
        w.bytes([UInt8(v6 ? AF_INET6 : AF_INET), 0, 0, 0])
        w.nest(tupleReply) { t in
            t.nest(tupleIP) { ip in
                ip.attribute(v6 ? ipV6Src : ipV4Src, replySource.address.bytes)
                ip.attribute(v6 ? ipV6Dst : ipV4Dst, replyDestination.address.bytes)
            }
            t.nest(tupleProto) { p in
                p.attribute(protoNum, [tcp])
                p.attribute(protoSrcPort, port(replySource.port))
                p.attribute(protoDstPort, port(replyDestination.port))
            }
        }
        let length = w.offset
        out.storeBytes(of: UInt32(length), toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: subsystem << 8 | messageGet, toByteOffset: 4, as: UInt16.self)
        out.storeBytes(of: NetlinkWire.requestFlag, toByteOffset: 6, as: UInt16.self)
        out.storeBytes(of: sequence, toByteOffset: 8, as: UInt32.self)
        out.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
        return length
    }

    /// Walks the attributes in `buf`, calling `body(type without flags, value)`.
    static func attributes(_ buf: UnsafeRawBufferPointer, _ body: (UInt16, UnsafeRawBufferPointer) -> Void) {
        var a = 0
        while a + 4 <= buf.count {
            let length = Int(buf.loadUnaligned(fromByteOffset: a, as: UInt16.self))
            let type = buf.loadUnaligned(fromByteOffset: a + 2, as: UInt16.self) & 0x3FFF
            guard length >= 4, a + length <= buf.count else { return }
            body(type, UnsafeRawBufferPointer(rebasing: buf[(a + 4)..<(a + length)]))
            a += (length + 3) & ~3
        }
    }

    /// Decodes CTA_TUPLE_IP + CTA_TUPLE_PROTO into endpoints.
    static func tuple(_ buf: UnsafeRawBufferPointer) -> ConntrackTuple? {
        var src: IPAddress?
        var dst: IPAddress?
        var sport: UInt16?
        var dport: UInt16?
        attributes(buf) { type, value in
            switch type {
            case tupleIP:
                attributes(value) { t, v in
                    switch (t, v.count) {
                    case (ipV4Src, 4): src = IPAddress(ipv4Bytes: Array(v))
                    case (ipV4Dst, 4): dst = IPAddress(ipv4Bytes: Array(v))
                    case (ipV6Src, 16): src = IPAddress(ipv6Bytes: Array(v))
                    case (ipV6Dst, 16): dst = IPAddress(ipv6Bytes: Array(v))
                    default: break
                    }
                }
            case tupleProto:
                attributes(value) { t, v in
                    guard v.count >= 2 else { return }
                    let p = UInt16(v[0]) << 8 | UInt16(v[1])
                    if t == protoSrcPort { sport = p }
                    if t == protoDstPort { dport = p }
                }
            default:
                break
            }
        }
        guard let src, let dst, let sport, let dport else { return nil }
        return ConntrackTuple(
            source: Endpoint(address: src, port: sport), destination: Endpoint(address: dst, port: dport))
    }

    static func decodeReplies(
        _ buf: UnsafeRawBufferPointer, sequence: UInt32
    ) -> NetlinkRequester.Outcome<ConntrackTuple> {
        NetlinkWire.forEachMessage(in: buf, sequence: sequence, name: "conntrack") { type, payload in
            switch type {
            case NetlinkWire.nlmsgError:
                guard payload.count >= 4 else {
                    return .done(.failure(CaptureError(code: .netlink, message: "conntrack: short NLMSG_ERROR")))
                }
                let error = -payload.loadUnaligned(fromByteOffset: 0, as: Int32.self)
                if error == 0 { return .keepReading }
                return .done(.failure(CaptureError.fromErrno(error, "conntrack lookup")))
            case subsystem << 8 | messageNew:
                guard payload.count >= 4 else {
                    return .done(.failure(CaptureError(code: .netlink, message: "conntrack: short answer")))
                }
                var original: ConntrackTuple?
                attributes(UnsafeRawBufferPointer(rebasing: payload[4...])) { t, v in
                    if t == tupleOrig { original = tuple(v) }
                }
                guard let original else {
                    return .done(
                        .failure(CaptureError(code: .netlink, message: "conntrack: answer without CTA_TUPLE_ORIG")))
                }
                return .done(.success(original))
            default:
                return .keepReading
            }
        }
    }
}

extension IPAddress {
    init(ipv4Bytes b: [UInt8]) {
        self = .v4(UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3]))
    }
}
