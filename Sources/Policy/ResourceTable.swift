#if canImport(Glibc)
import Glibc
#endif

/// Maps a captured connection's original destination to the resource it belongs to.
///
/// The most specific resource wins: an exact address (or a host name's resolved address) beats a
/// network, a longer prefix beats a shorter one, a narrower port range beats a wider one, and
/// among equals the one written first in the file.
public struct ResourceTable: Sendable {
    private struct Entry: Sendable {
        var resource: Resource
        var network: IPAddress
        var prefixLength: Int
        var ports: PortRange
        var order: Int
    }

    private var entries: [Entry] = []
    public private(set) var resources: [Resource]
    /// Host names that resolved to nothing at the last resolution (they match no destination).
    public private(set) var unresolved: [String] = []

    /// - Parameter resolved: addresses for each `.host` target, from `HostResolver` (or a test).
    public init(resources: [Resource], resolved: [String: [IPAddress]] = [:]) {
        self.resources = resources
        for (order, r) in resources.enumerated() {
            switch r.target {
            case .address(let a, let p):
                entries.append(
                    Entry(resource: r, network: a, prefixLength: a.isIPv6 ? 128 : 32, ports: p, order: order))
            case .network(let a, let len, let p):
                entries.append(Entry(resource: r, network: a, prefixLength: len, ports: p, order: order))
            case .host(let h, let p):
                let addresses = resolved[h] ?? []
                if addresses.isEmpty { unresolved.append(h) }
                for a in addresses {
                    entries.append(
                        Entry(resource: r, network: a, prefixLength: a.isIPv6 ? 128 : 32, ports: p, order: order))
                }
            }
        }
        entries.sort { a, b in
            if a.prefixLength != b.prefixLength { return a.prefixLength > b.prefixLength }
            if a.ports.width != b.ports.width { return a.ports.width < b.ports.width }
            return a.order < b.order
        }
    }

    /// The host names that need resolving.
    public var hostNames: [String] {
        var seen = Set<String>()
        return resources.compactMap { r in
            if case .host(let h, _) = r.target, seen.insert(h).inserted { return h }
            return nil
        }
    }

    public func match(_ destination: Endpoint) -> Resource? {
        for e in entries
        where e.ports.contains(destination.port)
            && destination.address.isIn(network: e.network, prefixLength: e.prefixLength)
        {
            return e.resource
        }
        return nil
    }

    public func resource(named name: String) -> Resource? {
        resources.first { $0.name == name }
    }
}

/// Resolves resource host names with the system resolver (getaddrinfo), both families.
public enum HostResolver {
    public static func resolve(_ host: String) -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var out: [IPAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let ai = cursor {
            if let sa = ai.pointee.ai_addr {
                switch Int32(sa.pointee.sa_family) {
                case AF_INET:
                    let a = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                    out.append(.v4(UInt32(bigEndian: a)))
                case AF_INET6:
                    let bytes = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                        withUnsafeBytes(of: p.pointee.sin6_addr) { Array($0) }
                    }
                    out.append(IPAddress(ipv6Bytes: bytes))
                default:
                    break
                }
            }
            cursor = ai.pointee.ai_next
        }
        var seen = Set<IPAddress>()
        return out.filter { seen.insert($0).inserted }
    }

    /// Resolves every host name of `resources` (blocking: call off the event loops).
    public static func resolveAll(_ resources: [Resource]) -> [String: [IPAddress]] {
        var out: [String: [IPAddress]] = [:]
        for r in resources {
            if case .host(let h, _) = r.target, out[h] == nil { out[h] = resolve(h) }
        }
        return out
    }
}
