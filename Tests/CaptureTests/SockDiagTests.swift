import Foundation
import Policy
import Synchronization
import Testing

@testable import Capture

#if canImport(Glibc)
import Glibc
#endif

/// Plain blocking sockets on loopback, for tests that need the kernel's view of real connections.
enum TestSockets {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func fail(_ what: String) -> Failure {
        Failure(description: "\(what): \(String(cString: strerror(errno)))")
    }

    static func withSockaddr<T>(_ endpoint: Endpoint, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        switch endpoint.address {
        case .v4(let a):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = endpoint.port.bigEndian
            sin.sin_addr.s_addr = a.bigEndian
            return withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .v6:
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = endpoint.port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: endpoint.address.bytes) }
            return withUnsafePointer(to: &sin6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
    }

    static func endpoint(_ storage: sockaddr_storage) -> Endpoint {
        var storage = storage
        return withUnsafeBytes(of: &storage) { raw in
            let family = Int32(raw.load(as: sa_family_t.self))
            let port = UInt16(raw[2]) << 8 | UInt16(raw[3])
            if family == AF_INET {
                return Endpoint(address: .v4(raw[4..<8].reduce(0) { $0 << 8 | UInt32($1) }), port: port)
            }
            return Endpoint(address: IPAddress(ipv6Bytes: Array(raw[8..<24])), port: port)
        }
    }

    /// A listening socket on `address` (port 0: the kernel picks), with its real endpoint.
    static func listen(
        _ address: String, port: UInt16 = 0, dualStack: Bool = false
    ) throws -> (
        fd: Int32, endpoint: Endpoint
    ) {
        guard let ip = IPAddress(address) ?? (address == "::" ? IPAddress.v6(0, 0) : nil) else {
            throw Failure(description: "bad address \(address)")
        }
        let fd = socket(ip.isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw fail("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if ip.isIPv6 {
            var v6only: Int32 = dualStack ? 0 : 1
            setsockopt(fd, 41 /* IPPROTO_IPV6 */, 26 /* IPV6_V6ONLY */, &v6only, socklen_t(MemoryLayout<Int32>.size))
        }
        let rc = withSockaddr(Endpoint(address: ip, port: port)) { bind(fd, $0, $1) }
        guard rc == 0, Glibc.listen(fd, 64) == 0 else {
            let error = fail("bind/listen \(address):\(port)")
            close(fd)
            throw error
        }
        return (fd, localEndpoint(fd))
    }

    static func connect(to endpoint: Endpoint) throws -> Int32 {
        let fd = socket(
            endpoint.address.isIPv6 ? AF_INET6 : AF_INET,
            Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
            0
        )
        guard fd >= 0 else { throw fail("socket") }
        let rc = withSockaddr(endpoint) { Glibc.connect(fd, $0, $1) }
        guard rc == 0 else {
            let error = fail("connect \(endpoint)")
            close(fd)
            throw error
        }
        return fd
    }

    static func accept(_ listener: Int32) throws -> Int32 {
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else { throw fail("accept") }
        return fd
    }

    static func localEndpoint(_ fd: Int32) -> Endpoint {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return endpoint(storage)
    }

    static func remoteEndpoint(_ fd: Int32) -> Endpoint {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        return endpoint(storage)
    }

    /// The socket's inode number, as `/proc/self/fd/N` shows it (`socket:[N]`).
    static func inode(ofFD fd: Int32) throws -> UInt64 {
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")
        guard link.hasPrefix("socket:["), link.hasSuffix("]"), let n = UInt64(link.dropFirst(8).dropLast()) else {
            throw Failure(description: "fd \(fd) is \(link)")
        }
        return n
    }

    /// The cgroup v2 id of this process: the inode of its cgroup directory.
    static func ownCgroupID() throws -> UInt64 {
        let text = try String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else {
            throw Failure(description: "no cgroup v2 line in /proc/self/cgroup")
        }
        let mountinfo = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        guard let root = IdentityResolver.cgroup2Mount(mountinfo: mountinfo) else {
            throw Failure(description: "no cgroup2 mount")
        }
        let path = String(line.dropFirst(3))
        var st = stat()
        guard stat(path == "/" ? root : root + path, &st) == 0 else { throw fail("stat cgroup dir") }
        return UInt64(st.st_ino)
    }
}

@Suite struct SockDiagTests {
    // MARK: Real kernel, loopback

    @Test(arguments: ["127.0.0.1", "::1"])
    func ownerOfOwnConnectionIsThisProcess(address: String) throws {
        let (listener, server) = try TestSockets.listen(address)
        defer { close(listener) }
        let client = try TestSockets.connect(to: server)
        defer { close(client) }
        let accepted = try TestSockets.accept(listener)
        defer { close(accepted) }

        let clientEndpoint = TestSockets.localEndpoint(client)
        #expect(TestSockets.remoteEndpoint(accepted) == clientEndpoint)
        let owner = try SockDiag().owner(client: clientEndpoint, destination: server)
        #expect(owner.uid == getuid())
        #expect(owner.inode == (try TestSockets.inode(ofFD: client)))
        #expect(owner.inode != (try TestSockets.inode(ofFD: accepted)))
        #expect(owner.cgroupID == (try TestSockets.ownCgroupID()))
    }

    @Test func dualStackClientSocketIsFoundByItsIPv4Tuple() throws {
        // A client using an AF_INET6 socket to reach ::ffff:127.0.0.1 is an IPv4 connection on the
        // wire; the gateway sees IPv4 endpoints and must still find the client's socket.
        let (listener, server) = try TestSockets.listen("127.0.0.1")
        defer { close(listener) }
        let client = socket(AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #expect(client >= 0)
        defer { close(client) }
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = server.port.bigEndian
        withUnsafeMutableBytes(of: &sin6.sin6_addr) {
            $0.copyBytes(from: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 127, 0, 0, 1])
        }
        let rc = withUnsafePointer(to: &sin6) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(client, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
            }
        }
        try #require(rc == 0, "connect to ::ffff:127.0.0.1 failed")
        let accepted = try TestSockets.accept(listener)
        defer { close(accepted) }
        let clientEndpoint = TestSockets.remoteEndpoint(accepted)  // IPv4, as the gateway sees it
        #expect(clientEndpoint.address == .v4(0x7F00_0001))
        let owner = try SockDiag().owner(client: clientEndpoint, destination: server)
        #expect(owner.inode == (try TestSockets.inode(ofFD: client)))
    }

    @Test func socketThatDoesNotExistIsNotFound() throws {
        let (listener, server) = try TestSockets.listen("127.0.0.1")
        defer { close(listener) }
        let diag = try SockDiag()
        // Nobody connected to the listener from this port.
        let ghost = Endpoint(address: .v4(0x7F00_0001), port: 1)
        #expect {
            try diag.owner(client: ghost, destination: server)
        } throws: { ($0 as? CaptureError)?.code == .notFound }
        let ghost6 = Endpoint(address: IPAddress("::1")!, port: 1)
        #expect {
            try diag.owner(client: ghost6, destination: Endpoint(address: IPAddress("::1")!, port: server.port))
        } throws: { ($0 as? CaptureError)?.code == .notFound }
    }

    @Test func listenerOnTheClientPortIsNotMistakenForTheClient() throws {
        // An exact lookup falls back to a listener bound to the "local" side of the tuple.
        let (listener, server) = try TestSockets.listen("127.0.0.1")
        defer { close(listener) }
        let (other, otherEndpoint) = try TestSockets.listen("127.0.0.1")
        defer { close(other) }
        #expect {
            try SockDiag().owner(client: otherEndpoint, destination: server)
        } throws: { ($0 as? CaptureError)?.code == .notFound }
    }

    @Test func closedClientInTimeWaitIsNotFoundNotRoot() throws {
        let (listener, server) = try TestSockets.listen("127.0.0.1")
        defer { close(listener) }
        let client = try TestSockets.connect(to: server)
        let accepted = try TestSockets.accept(listener)
        let clientEndpoint = TestSockets.localEndpoint(client)
        let diag = try SockDiag()
        #expect(try diag.owner(client: clientEndpoint, destination: server).uid == getuid())
        close(client)  // active close: the client side ends in TIME_WAIT
        var byte: UInt8 = 0
        _ = read(accepted, &byte, 1)  // EOF once the FIN arrived
        close(accepted)
        usleep(50_000)
        #expect {
            try diag.owner(client: clientEndpoint, destination: server)
        } throws: { ($0 as? CaptureError)?.code == .notFound }
    }

    @Test func connectionOfAnotherUIDReportsThatUID() throws {
        try #require(
            getuid() == 0,
            "this test needs root: it runs a client as uid 65534 with setpriv in a cgroup of its own"
        )
        let (listener, server) = try TestSockets.listen("127.0.0.1")
        defer { close(listener) }
        let mountinfo = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        let cgroupRoot = try #require(IdentityResolver.cgroup2Mount(mountinfo: mountinfo), "no cgroup2 mount")
        let unit = "ilsd-\(String(UInt32.random(in: 0...UInt32.max), radix: 16)).scope"
        let child = try UnprivilegedClient(port: server.port, cgroup: cgroupRoot + "/" + unit)
        defer { child.stop() }
        let accepted = try TestSockets.accept(listener)
        defer { close(accepted) }

        let owner = try SockDiag().owner(client: TestSockets.remoteEndpoint(accepted), destination: server)
        #expect(owner.uid == 65534)
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(child.pid)/fd/3")
        #expect(link == "socket:[\(owner.inode)]")
        var st = stat()
        #expect(stat(cgroupRoot + "/" + unit, &st) == 0)
        #expect(owner.cgroupID == UInt64(st.st_ino))

        // And the whole chain on the real host: names from /etc/passwd, the cgroup path from the
        // real tree, the process from its cgroup.procs and fd table (root can read it).
        let identity = IdentityResolver().resolve(owner)
        #expect(identity.uid == 65534)
        #expect(identity.user == "nobody")
        #expect(identity.cgroup == "/" + unit)
        #expect(identity.unit == unit)
        #expect(identity.pid == child.pid)
        #expect(identity.executable?.hasSuffix("sleep") == true)
        #expect(identity.commandLine == ["sleep", "30"])
    }

    @Test func concurrentLookupsFromManyThreadsAgree() throws {
        let (listener, server) = try TestSockets.listen("127.0.0.1")
        defer { close(listener) }
        var clients: [(fd: Int32, endpoint: Endpoint, inode: UInt64)] = []
        for _ in 0..<8 {
            let fd = try TestSockets.connect(to: server)
            clients.append((fd, TestSockets.localEndpoint(fd), try TestSockets.inode(ofFD: fd)))
        }
        defer { for c in clients { close(c.fd) } }
        let diag = try SockDiag()
        let expected = clients.map { ($0.endpoint, $0.inode) }
        let mismatches = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for i in 0..<200 {
                let (endpoint, inode) = expected[(worker + i) % expected.count]
                let found = try? diag.owner(client: endpoint, destination: server).inode
                if found != inode { mismatches.withLock { $0 += 1 } }
            }
        }
        #expect(mismatches.withLock { $0 } == 0)
    }

    /// Not a pass/fail check: prints the cost of one lookup so it can be reported.
    @Test func lookupCost() throws {
        let (listener, server) = try TestSockets.listen("127.0.0.1")
        defer { close(listener) }
        let client = try TestSockets.connect(to: server)
        defer { close(client) }
        let endpoint = TestSockets.localEndpoint(client)
        let diag = try SockDiag()
        let n = 10_000
        let clock = ContinuousClock()
        var uids: UInt64 = 0
        let elapsed = try clock.measure {
            for _ in 0..<n { uids &+= UInt64(try diag.owner(client: endpoint, destination: server).uid) }
        }
        #expect(uids == UInt64(getuid()) * UInt64(n))
        let micros = Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12
        print("sock_diag lookup: \(n) lookups, \(String(format: "%.2f", micros / Double(n))) µs per lookup")
    }

    // MARK: Wire decoding

    private static let client = Endpoint("198.18.0.5:40000")!
    private static let destination = Endpoint("198.18.0.10:5432")!

    /// An inet_diag_msg answer as the kernel would send it.
    static func answer(
        sequence: UInt32,
        state: UInt8 = 1,
        client: Endpoint = client,
        destination: Endpoint = destination,
        uid: UInt32 = 1001,
        inode: UInt32 = 4242,
        cgroupID: UInt64? = 77
    ) -> [UInt8] {
        var payload = [UInt8](repeating: 0, count: 72)
        payload[0] = UInt8(client.address.isIPv6 ? AF_INET6 : AF_INET)
        payload[1] = state
        payload[4] = UInt8(client.port >> 8)
        payload[5] = UInt8(client.port & 0xFF)
        payload[6] = UInt8(destination.port >> 8)
        payload[7] = UInt8(destination.port & 0xFF)
        payload.replaceSubrange(8..<(8 + client.address.bytes.count), with: client.address.bytes)
        payload.replaceSubrange(24..<(24 + destination.address.bytes.count), with: destination.address.bytes)
        withUnsafeBytes(of: uid.littleEndian) { payload.replaceSubrange(64..<68, with: $0) }
        withUnsafeBytes(of: inode.littleEndian) { payload.replaceSubrange(68..<72, with: $0) }
        // INET_DIAG_SHUTDOWN (u8, padded), then INET_DIAG_CGROUP_ID (u64).
        payload += [5, 0, 8, 0, 0, 0, 0, 0]
        if let cgroupID {
            payload += [12, 0, 21, 0]
            withUnsafeBytes(of: cgroupID.littleEndian) { payload += $0 }
        }
        return header(type: 20, sequence: sequence, payloadCount: payload.count) + payload
    }

    static func header(type: UInt16, sequence: UInt32, payloadCount: Int) -> [UInt8] {
        var h: [UInt8] = []
        withUnsafeBytes(of: UInt32(16 + payloadCount).littleEndian) { h += $0 }
        withUnsafeBytes(of: type.littleEndian) { h += $0 }
        h += [0, 0]
        withUnsafeBytes(of: sequence.littleEndian) { h += $0 }
        h += [0, 0, 0, 0]
        return h
    }

    static func error(sequence: UInt32, errno: Int32) -> [UInt8] {
        var payload: [UInt8] = []
        withUnsafeBytes(of: (-errno).littleEndian) { payload += $0 }
        payload += [UInt8](repeating: 0, count: 16)  // the echoed request header
        return header(type: 2, sequence: sequence, payloadCount: payload.count) + payload
    }

    static func decode(_ bytes: [UInt8], sequence: UInt32) -> InetDiagWire.Reply {
        bytes.withUnsafeBytes {
            InetDiagWire.decodeReplies($0, sequence: sequence, client: client, destination: destination)
        }
    }

    @Test func requestLayoutIsInetDiagReqV2() {
        var out = [UInt8](repeating: 0xAA, count: 128)
        let n = out.withUnsafeMutableBytes {
            InetDiagWire.encodeRequest(into: $0, sequence: 7, client: Self.client, destination: Self.destination)
        }
        #expect(n == 72)
        #expect(Array(out[0..<16]) == [72, 0, 0, 0, 20, 0, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(out[16..<24]) == [UInt8(AF_INET), 6, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(Array(out[24..<28]) == [0x9C, 0x40, 0x15, 0x38])  // 40000, 5432 big endian
        #expect(Array(out[28..<44]) == [198, 18, 0, 5] + [UInt8](repeating: 0, count: 12))
        #expect(Array(out[44..<60]) == [198, 18, 0, 10] + [UInt8](repeating: 0, count: 12))
        #expect(Array(out[60..<72]) == [0, 0, 0, 0] + [UInt8](repeating: 0xFF, count: 8))
    }

    @Test func answerDecodesUIDInodeAndCgroup() {
        #expect(
            Self.decode(Self.answer(sequence: 9), sequence: 9)
                == .owner(SocketOwner(uid: 1001, inode: 4242, cgroupID: 77))
        )
        #expect(
            Self.decode(Self.answer(sequence: 9, cgroupID: nil), sequence: 9)
                == .owner(SocketOwner(uid: 1001, inode: 4242, cgroupID: nil))
        )
    }

    @Test func staleAnswerIsSkippedForTheCurrentOne() {
        let bytes = Self.answer(sequence: 8, uid: 0) + Self.answer(sequence: 9, uid: 1001)
        #expect(Self.decode(bytes, sequence: 9) == .owner(SocketOwner(uid: 1001, inode: 4242, cgroupID: 77)))
        #expect(Self.decode(Self.answer(sequence: 8), sequence: 9) == .ignore)
    }

    @Test func kernelErrorsMapToCodes() {
        guard case .failure(.notFound, _, let e) = Self.decode(Self.error(sequence: 3, errno: ENOENT), sequence: 3)
        else {
            Issue.record("ENOENT is not .notFound")
            return
        }
        #expect(e == ENOENT)
        guard case .failure(.netlink, _, EINVAL) = Self.decode(Self.error(sequence: 3, errno: EINVAL), sequence: 3)
        else {
            Issue.record("EINVAL is not .netlink")
            return
        }
        #expect(Self.decode(Self.error(sequence: 3, errno: 0), sequence: 3) == .ignore)
    }

    @Test(arguments: [UInt8(6), 12, 10])
    func ownerlessStatesAreNotFound(state: UInt8) {
        // TIME_WAIT and request sockets report uid 0; a listener is another socket.
        guard case .failure(.notFound, _, _) = Self.decode(Self.answer(sequence: 1, state: state, uid: 0), sequence: 1)
        else {
            Issue.record("state \(state) was accepted")
            return
        }
    }

    @Test func answerForAnotherTupleIsRefused() {
        let other = Endpoint("198.18.0.5:40001")!
        guard case .failure(.notFound, _, _) = Self.decode(Self.answer(sequence: 1, client: other), sequence: 1) else {
            Issue.record("an answer for another 4-tuple was accepted")
            return
        }
    }

    @Test func dualStackAnswerMatchesTheIPv4Tuple() {
        // A v6 socket connected to ::ffff:198.18.0.10 answers with family AF_INET6 and mapped addresses.
        var bytes = Self.answer(sequence: 1)
        bytes[16] = UInt8(AF_INET6)
        let mapped: (Endpoint) -> [UInt8] = { [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + $0.address.bytes }
        bytes.replaceSubrange((16 + 8)..<(16 + 24), with: mapped(Self.client))
        bytes.replaceSubrange((16 + 24)..<(16 + 40), with: mapped(Self.destination))
        #expect(Self.decode(bytes, sequence: 1) == .owner(SocketOwner(uid: 1001, inode: 4242, cgroupID: 77)))
    }

    @Test func truncatedMessageIsANetlinkError() {
        let bytes = Array(Self.answer(sequence: 1).prefix(40))
        guard case .failure(.netlink, _, _) = Self.decode(bytes, sequence: 1) else {
            Issue.record("truncated answer accepted")
            return
        }
    }
}

/// `bash` run as uid/gid 65534 with `setpriv`, in a new cgroup v2 directory `cgroup` (created
/// here, removed by `stop()`), holding a TCP connection to 127.0.0.1:`port` on fd 3 and then
/// sleeping (as `sleep 30`, same pid).
final class UnprivilegedClient {
    let process = Process()
    let cgroup: String
    var pid: Int32 { process.processIdentifier }

    init(port: UInt16, cgroup: String) throws {
        self.cgroup = cgroup
        try FileManager.default.createDirectory(atPath: cgroup, withIntermediateDirectories: false)
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        // The shell moves itself into the cgroup before anything opens a socket (a socket keeps
        // the cgroup it was created in), then becomes setpriv, then bash, then sleep.
        process.arguments = [
            "-c",
            "echo $$ > \"$1/cgroup.procs\" && exec setpriv --reuid=65534 --regid=65534 --clear-groups "
                + "/bin/bash -c 'exec 3<>/dev/tcp/127.0.0.1/\(port); echo connected; exec sleep 30'",
            "sh", cgroup,
        ]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let line = out.fileHandleForReading.readData(ofLength: 10)
        guard String(decoding: line, as: UTF8.self).hasPrefix("connected") else {
            stop()
            throw TestSockets.Failure(description: "the setpriv client did not connect")
        }
        // Wait for bash to become `sleep`, so the process is what the test expects.
        for _ in 0..<200 {
            if (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe"))?.hasSuffix("sleep")
                == true
            {
                return
            }
            usleep(10_000)
        }
    }

    func stop() {
        // SIGKILL: the child may inherit a signal mask that blocks SIGTERM.
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
        for _ in 0..<100 where rmdir(cgroup) != 0 && errno == EBUSY { usleep(10_000) }
    }
}
