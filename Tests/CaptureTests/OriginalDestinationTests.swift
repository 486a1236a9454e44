import Foundation
import NIOCore
import Policy
import Synchronization
import Testing

@testable import Capture

#if canImport(Glibc)
import Glibc
#endif

@Suite struct OriginalDestinationTests {
    // MARK: Decoding the kernel's sockaddr

    /// sockaddr_in as getsockopt fills it on x86_64 and arm64 (family in host order, little endian).
    static let v4Fixture: [UInt8] = [0x02, 0x00, 0x15, 0x38, 198, 18, 0, 10] + [UInt8](repeating: 0, count: 8)
    /// sockaddr_in6: family, port 443, flowinfo, 2001:db8::10, scope id.
    static let v6Fixture: [UInt8] =
        [0x0A, 0x00, 0x01, 0xBB, 0, 0, 0, 0]
        + [0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]
        + [0, 0, 0, 0]
    /// sockaddr_in6 holding ::ffff:198.18.0.10 port 5432.
    static let mappedFixture: [UInt8] =
        [0x0A, 0x00, 0x15, 0x38, 0, 0, 0, 0]
        + [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 198, 18, 0, 10]
        + [0, 0, 0, 0]

    @Test func decodesIPv4() throws {
        #expect(try OriginalDestination.decode(Self.v4Fixture) == Endpoint("198.18.0.10:5432"))
    }

    @Test func decodesIPv6() throws {
        #expect(try OriginalDestination.decode(Self.v6Fixture) == Endpoint("[2001:db8::10]:443"))
    }

    @Test func decodesIPv4MappedAsIPv4() throws {
        let endpoint = try OriginalDestination.decode(Self.mappedFixture)
        #expect(endpoint == Endpoint("198.18.0.10:5432"))
        #expect(endpoint.address.isIPv6 == false)
    }

    @Test func rejectsShortOrForeignAddresses() {
        for bytes in [
            [], [0x02], Array(Self.v4Fixture.prefix(6)), Array(Self.v6Fixture.prefix(20)), [0x01, 0x00, 0, 0],
        ] {
            #expect(throws: CaptureError.self) { try OriginalDestination.decode(bytes) }
        }
    }

    // MARK: Which query for which socket

    @Test func queryFollowsTheSocketFamilyAndV4Mapping() throws {
        let v4 = try SocketAddress(ipAddress: "127.0.0.1", port: 15001)
        let v6 = try SocketAddress(ipAddress: "::1", port: 15001)
        let mappedLocal = try SocketAddress(ipAddress: "::ffff:127.0.0.1", port: 15001)
        let mappedPeer = try SocketAddress(ipAddress: "::ffff:198.18.0.5", port: 40000)
        let v6Peer = try SocketAddress(ipAddress: "2001:db8::5", port: 40000)
        #expect(OriginalDestination.query(local: v4, remote: v4) == .ipv4)
        #expect(OriginalDestination.query(local: v6, remote: v6Peer) == .ipv6)
        #expect(OriginalDestination.query(local: mappedLocal, remote: mappedPeer) == .ipv4)
        #expect(OriginalDestination.query(local: v6, remote: mappedPeer) == .ipv4)
        #expect(OriginalDestination.query(local: nil, remote: nil) == nil)
        #expect(OriginalDestination.query(local: try SocketAddress(unixDomainSocketPath: "/tmp/x"), remote: nil) == nil)
    }

    // MARK: The real kernel, in a namespace of our own

    /// nftables redirects 198.18.0.99:5432 and [2001:db8::99]:5432 to :15999 and
    /// 198.18.0.99:5433 to :15998 (a dual-stack listener); the original destination comes back
    /// from the accepted socket, and sock_diag finds the client by it.
    @Test func redirectedConnectionsReportTheirOriginalDestination() throws {
        try #require(getuid() == 0, "this test needs root: it creates a network namespace and installs nftables rules")
        let netns = try TestNetns(
            rules: """
                table inet ilod {
                    chain out {
                        type nat hook output priority -100; policy accept;
                        tcp dport 5432 redirect to :15999
                        tcp dport 5433 redirect to :15998
                    }
                }
                """
        )
        defer { netns.remove() }

        let results = try netns.run { () throws -> [String] in
            var seen: [String] = []
            let diag = try SockDiag()  // opened inside the namespace
            let (l4, _) = try TestSockets.listen("127.0.0.1", port: 15999)
            let (l6, _) = try TestSockets.listen("::1", port: 15999)
            let (lds, _) = try TestSockets.listen("::", port: 15998, dualStack: true)
            defer {
                close(l4)
                close(l6)
                close(lds)
            }
            for (destination, listener) in [
                (Endpoint("198.18.0.99:5432")!, l4), (Endpoint("[2001:db8::99]:5432")!, l6),
                (Endpoint("198.18.0.99:5433")!, lds),
            ] {
                let client = try TestSockets.connect(to: destination)
                defer { close(client) }
                let accepted = try TestSockets.accept(listener)
                defer { close(accepted) }
                let kind = try #require(
                    OriginalDestination.query(
                        local: nioAddress(localOf: accepted),
                        remote: nioAddress(remoteOf: accepted)
                    )
                )
                let original = try OriginalDestination.query(socket: accepted, kind: kind)
                let owner = try diag.owner(client: TestSockets.remoteEndpoint(accepted), destination: original)
                let inode = try TestSockets.inode(ofFD: client)
                seen.append("\(kind) \(original) uid=\(owner.uid) inode-matches=\(owner.inode == inode)")
            }
            return seen
        }
        #expect(
            results == [
                "ipv4 198.18.0.99:5432 uid=0 inode-matches=true",
                "ipv6 [2001:db8::99]:5432 uid=0 inode-matches=true",
                "ipv4 198.18.0.99:5433 uid=0 inode-matches=true",
            ]
        )
    }

    /// Without any NAT or conntrack in the namespace there is no original destination: the
    /// gateway gets `.notFound` and refuses the connection.
    @Test func connectionWithoutConntrackIsNotFound() throws {
        try #require(getuid() == 0, "this test needs root: it creates a network namespace")
        let netns = try TestNetns(rules: nil)
        defer { netns.remove() }
        let code = try netns.run { () throws -> String in
            let (listener, server) = try TestSockets.listen("127.0.0.1")
            defer { close(listener) }
            let client = try TestSockets.connect(to: server)
            defer { close(client) }
            let accepted = try TestSockets.accept(listener)
            defer { close(accepted) }
            do {
                let found = try OriginalDestination.query(socket: accepted, kind: .ipv4)
                return "found \(found)"
            } catch let error as CaptureError {
                return "\(error.code) errno=\(error.errno ?? 0)"
            }
        }
        #expect(code == "notFound errno=\(ENOENT)")
    }

    /// A connection straight to the listener in a namespace where conntrack runs is tracked but
    /// not NATed: the kernel answers with the listener itself. The gateway must refuse an original
    /// destination equal to its own listener (DESIGN: the listener port is not a destination).
    @Test func directConnectionReportsTheListenerItself() throws {
        try #require(getuid() == 0, "this test needs root: it creates a network namespace and installs nftables rules")
        let netns = try TestNetns(
            rules: """
                table inet ilod {
                    chain out {
                        type nat hook output priority -100; policy accept;
                        tcp dport 5432 redirect to :15999
                    }
                }
                """
        )
        defer { netns.remove() }
        let original = try netns.run { () throws -> String in
            let (listener, server) = try TestSockets.listen("127.0.0.1", port: 15999)
            defer { close(listener) }
            let client = try TestSockets.connect(to: server)
            defer { close(client) }
            let accepted = try TestSockets.accept(listener)
            defer { close(accepted) }
            return "\(try OriginalDestination.query(socket: accepted, kind: .ipv4))"
        }
        #expect(original == "127.0.0.1:15999")
    }
}

private func nioAddress(localOf fd: Int32) -> SocketAddress? {
    nioAddress(fd, getsockname)
}

private func nioAddress(remoteOf fd: Int32) -> SocketAddress? {
    nioAddress(fd, getpeername)
}

private func nioAddress(
    _ fd: Int32,
    _ get: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
) -> SocketAddress? {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let rc = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { get(fd, $0, &length) }
    }
    guard rc == 0 else { return nil }
    return withUnsafeBytes(of: &storage) { raw in
        switch Int32(raw.load(as: sa_family_t.self)) {
        case AF_INET: return SocketAddress(raw.load(as: sockaddr_in.self))
        case AF_INET6: return SocketAddress(raw.load(as: sockaddr_in6.self))
        default: return nil
        }
    }
}

/// A network namespace made for one test (`ilod-<random>`), with loopback up, 198.18.0.99 and
/// 2001:db8::99 on it, and optionally an nftables ruleset. Code runs inside it on a dedicated
/// thread that switched namespace with setns(2); the namespace is deleted by `remove()`.
final class TestNetns: Sendable {
    let name: String

    init(rules: String?) throws {
        name = "ilod-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        try Self.sh("ip", "netns", "add", name)
        do {
            try Self.sh("ip", "-n", name, "link", "set", "lo", "up")
            try Self.sh("ip", "-n", name, "addr", "add", "198.18.0.99/32", "dev", "lo")
            try Self.sh("ip", "-n", name, "addr", "add", "2001:db8::99/128", "dev", "lo", "nodad")
            if let rules { try Self.sh("ip", "netns", "exec", name, "nft", "-f", "-", input: rules) }
        } catch {
            remove()
            throw error
        }
    }

    func remove() {
        try? Self.sh("ip", "netns", "del", name)
    }

    static func sh(_ arguments: String..., input: String? = nil) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let stdin = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardError = stderr
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let message = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw TestSockets.Failure(description: "\(arguments.joined(separator: " ")): \(message)")
        }
    }

    private typealias SetnsFunction = @convention(c) (Int32, Int32) -> Int32

    /// Runs `body` on a new thread inside the namespace and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        let outcome = Mutex<Result<T, TestSockets.Failure>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let path = "/run/netns/\(name)"
        let thread = Thread {
            defer { done.signal() }
            let result: Result<T, TestSockets.Failure>
            // Glibc's module does not export setns(2): find it at run time.
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 {
                result = .failure(TestSockets.fail("open \(path)"))
            } else if let symbol = dlsym(dlopen(nil, RTLD_NOW), "setns"),
                unsafeBitCast(symbol, to: SetnsFunction.self)(fd, 0x4000_0000 /* CLONE_NEWNET */) == 0
            {
                close(fd)
                do { result = .success(try body()) } catch { result = .failure(.init(description: "\(error)")) }
            } else {
                result = .failure(TestSockets.fail("setns \(path)"))
                close(fd)
            }
            outcome.withLock { $0 = result }
        }
        thread.start()
        done.wait()
        return try outcome.withLock { $0! }.get()
    }
}
