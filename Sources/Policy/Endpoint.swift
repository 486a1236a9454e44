#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address, stored as bytes in network order.
///
/// Policy matches destinations against resources without going through `sockaddr`, so the type
/// is plain data: comparable, hashable, printable the way operators write addresses.
public enum IPAddress: Sendable, Hashable {
    case v4(UInt32)  // host byte order: 198.18.0.10 is 0xC612000A
    case v6(UInt64, UInt64)  // high and low halves, host byte order

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text (no brackets, no zone).
    public init?(_ text: some StringProtocol) {
        let s = String(text)
        var a4 = in_addr()
        if inet_pton(AF_INET, s, &a4) == 1 {
            self = .v4(UInt32(bigEndian: a4.s_addr))
            return
        }
        var a6 = in6_addr()
        if inet_pton(AF_INET6, s, &a6) == 1 {
            self.init(ipv6Bytes: withUnsafeBytes(of: a6) { Array($0) })
            return
        }
        return nil
    }

    /// Builds an address from 16 bytes in network order; IPv4-mapped (`::ffff:a.b.c.d`) becomes `.v4`.
    public init(ipv6Bytes b: [UInt8]) {
        precondition(b.count == 16)
        var hi: UInt64 = 0
        var lo: UInt64 = 0
        for i in 0..<8 { hi = hi << 8 | UInt64(b[i]) }
        for i in 8..<16 { lo = lo << 8 | UInt64(b[i]) }
        if hi == 0, lo >> 32 == 0xFFFF {
            self = .v4(UInt32(truncatingIfNeeded: lo))
        } else {
            self = .v6(hi, lo)
        }
    }

    /// The address as 4 or 16 bytes in network order.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let a):
            return [UInt8(a >> 24), UInt8(a >> 16 & 0xFF), UInt8(a >> 8 & 0xFF), UInt8(a & 0xFF)]
        case .v6(let hi, let lo):
            return (0..<8).map { UInt8(hi >> (56 - 8 * UInt64($0)) & 0xFF) }
                + (0..<8).map { UInt8(lo >> (56 - 8 * UInt64($0)) & 0xFF) }
        }
    }

    public var isIPv6: Bool {
        if case .v6 = self { return true }
        return false
    }

    public var isLoopback: Bool {
        switch self {
        case .v4(let a): return a >> 24 == 127
        case .v6(let hi, let lo): return hi == 0 && lo == 1
        }
    }

    /// True when the first `prefixLength` bits of `self` and `network` agree (same family only).
    public func isIn(network: IPAddress, prefixLength: Int) -> Bool {
        switch (self, network) {
        case (.v4(let a), .v4(let n)):
            guard prefixLength > 0 else { return true }
            let mask: UInt32 = prefixLength >= 32 ? .max : ~(UInt32.max >> UInt32(prefixLength))
            return a & mask == n & mask
        case (.v6(let ah, let al), .v6(let nh, let nl)):
            if prefixLength <= 0 { return true }
            if prefixLength <= 64 {
                let mask: UInt64 = prefixLength == 64 ? .max : ~(UInt64.max >> UInt64(prefixLength))
                return ah & mask == nh & mask
            }
            let bits = min(prefixLength, 128) - 64
            let mask: UInt64 = bits == 64 ? .max : ~(UInt64.max >> UInt64(bits))
            return ah == nh && al & mask == nl & mask
        default:
            return false
        }
    }
}

extension IPAddress: CustomStringConvertible {
    public var description: String {
        var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let b = bytes
        switch self {
        case .v4:
            var a = in_addr()
            withUnsafeMutableBytes(of: &a) { $0.copyBytes(from: b) }
            inet_ntop(AF_INET, &a, &out, socklen_t(out.count))
        case .v6:
            var a = in6_addr()
            withUnsafeMutableBytes(of: &a) { $0.copyBytes(from: b) }
            inet_ntop(AF_INET6, &a, &out, socklen_t(out.count))
        }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension IPAddress: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let a = IPAddress(s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not an IP address: \(s)")
        }
        self = a
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// An address and a TCP port: a connection's source, its original destination, a listener.
public struct Endpoint: Sendable, Hashable, Codable {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `198.18.0.10:5432` or `[2001:db8::10]:5432`.
    public init?(_ text: some StringProtocol) {
        let s = String(text)
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]"),
                s.index(after: close) < s.endIndex, s[s.index(after: close)] == ":",
                let a = IPAddress(s[s.index(after: s.startIndex)..<close]),
                let p = UInt16(s[s.index(close, offsetBy: 2)...])
            else { return nil }
            self.init(address: a, port: p)
        } else {
            guard let colon = s.lastIndex(of: ":"), let a = IPAddress(s[..<colon]), case .v4 = a,
                let p = UInt16(s[s.index(after: colon)...])
            else { return nil }
            self.init(address: a, port: p)
        }
    }
}

extension Endpoint: CustomStringConvertible {
    public var description: String {
        address.isIPv6 ? "[\(address)]:\(port)" : "\(address):\(port)"
    }
}
