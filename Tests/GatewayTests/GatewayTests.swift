import Audit
import Capture
import Control
import Foundation
import Logging
import NIOCore
import NIOPosix
import Policy
import Synchronization
import Testing

@testable import Gateway

/// Stands in for the kernel: every accepted connection "was going to" `destination` and was opened
/// by `uid`. Everything else (sockets, forwarding, evidence) is real, on loopback.
struct FakeInspector: ConnectionInspector {
    var destination: Endpoint
    var uid: UInt32 = 4242
    var failOwner = false

    func originalDestination(of channel: any Channel) -> EventLoopFuture<Endpoint> {
        channel.eventLoop.makeSucceededFuture(destination)
    }

    func clientEndpoint(peer: Endpoint, listener: Endpoint, destination: Endpoint) throws -> Endpoint {
        peer
    }

    func owner(client: Endpoint, destination: Endpoint) throws -> SocketOwner {
        if failOwner { throw CaptureError(code: .notFound, message: "no such socket") }
        return SocketOwner(uid: uid, inode: 1, cgroupID: nil)
    }

    func identity(of owner: SocketOwner) -> Identity {
        Identity(uid: owner.uid, user: "svc-test", gid: owner.uid, groups: ["bots"], unit: "ci-job.service")
    }
}

/// A throwaway world: a temp dir with a policy file and an evidence log, an upstream server, and
/// a gateway listening on an ephemeral loopback port.
final class Harness: @unchecked Sendable {  // fields are set once in init and only read afterwards
    let dir: String
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let audit: AuditLog
    let installer = InMemoryRulesetInstaller()
    let accounts = InMemoryAccounts(
        users: [
            .init(name: "interlock", uid: 999, gid: 999), .init(name: "svc-test", uid: 4242, gid: 4242),
            .init(name: "audra", uid: 3001, gid: 3001), .init(name: "opal", uid: 3002, gid: 3002),
            .init(name: "alice", uid: 3003, gid: 3003),
        ],
        groups: [
            .init(name: "interlock-auditors", gid: 3100, members: ["audra"]),
            .init(name: "interlock-admin", gid: 3101, members: ["opal"]),
            .init(name: "bots", gid: 3102, members: ["svc-test"]),
        ])
    let runtime: Runtime
    let policyPath: String

    init(policy yaml: String) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("gwtest-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        policyPath = dir + "/interlock.yaml"
        try yaml.write(toFile: policyPath, atomically: true, encoding: .utf8)
        audit = try AuditLog.open(path: dir + "/audit.db", logger: Logger(label: "test"))
        let policy = try ActivePolicy.load(path: policyPath, accounts: accounts)
        runtime = Runtime(
            policy: policy, policyPath: policyPath, audit: audit, accounts: accounts, installer: installer,
            listenAddresses: [], logger: Logger(label: "test"))
    }

    func gateway(inspector: some ConnectionInspector) -> Gateway {
        Gateway(runtime: runtime, inspector: inspector, group: group, logger: Logger(label: "test"))
    }

    func entries(_ kind: String) throws -> [[String: Any]] {
        try audit.query(AuditQuery(kind: kind)).map {
            try JSONSerialization.jsonObject(with: Data($0.body)) as! [String: Any]
        }
    }

    /// Waits until `kind` has `count` entries (entries are written asynchronously).
    func waitFor(_ kind: String, count: Int = 1) async throws -> [[String: Any]] {
        for _ in 0..<200 {
            let e = try entries(kind)
            if e.count >= count { return e }
            try await Task.sleep(for: .milliseconds(10))
        }
        return try entries(kind)
    }

    deinit {
        audit.close()
        try? group.syncShutdownGracefully()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// A tiny upstream: accepts, and for each connection either echoes everything (and half-closes
/// after the client does), or sends `greeting` first.
final class AcceptCount: Sendable {
    let value = Atomic<Int>(0)
    func load(ordering _: AtomicLoadOrdering) -> Int { value.load(ordering: .relaxed) }
}

final class Upstream: Sendable {
    let fd: Int32
    let port: UInt16
    let accepts: AcceptCount

    init() throws {
        let listenFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listenFD, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        a.sin_port = 0
        _ = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listenFD, $0, 16) }
        }
        listen(listenFD, 64)
        var len = socklen_t(16)
        _ = withUnsafeMutablePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listenFD, $0, &len) }
        }
        fd = listenFD
        port = UInt16(bigEndian: a.sin_port)
        let accepts = AcceptCount()
        self.accepts = accepts
        Thread.detachNewThread {
            while true {
                let c = accept(listenFD, nil, nil)
                if c < 0 { return }
                accepts.value.add(1, ordering: .relaxed)
                Thread.detachNewThread {
                    var buf = [UInt8](repeating: 0, count: 65536)
                    while true {
                        let n = read(c, &buf, buf.count)
                        if n <= 0 { break }
                        var off = 0
                        while off < n { off += buf[off..<n].withUnsafeBytes { write(c, $0.baseAddress, $0.count) } }
                    }
                    shutdown(c, Int32(SHUT_WR))
                    close(c)
                }
            }
        }
    }

    var endpoint: Endpoint { Endpoint(address: .v4(0x7F00_0001), port: port) }

    deinit {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}

/// A blocking client: connect, send, half-close, read to EOF. Returns nil on reset/refusal.
func exchange(port: UInt16, payload: [UInt8]) -> [UInt8]? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    a.sin_port = port.bigEndian
    let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, 16) } }
    guard rc == 0 else { return nil }
    var off = 0
    while off < payload.count {
        let n = payload[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return nil }
        off += n
    }
    shutdown(fd, Int32(SHUT_WR))
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n < 0 { return nil }
        if n == 0 { break }
        out += buf[0..<n]
    }
    return out
}

func policy(resourceAddress: String, unregistered: String = "deny") -> String {
    """
    daemon: { user: interlock, listen_port: 15001, connect_timeout: 2s }
    capture: { users: [svc-test], unregistered: \(unregistered) }
    resources:
      - { name: echo, protocol: tcp, address: "\(resourceAddress)" }
    """
}

@Suite(.serialized) struct ProxyTests {
    @Test func forwardsBothWaysAndRecordsOpenAndCloseWithByteCounts() async throws {
        let upstream = try Upstream()
        let h = try Harness(policy: policy(resourceAddress: "127.0.0.1:\(upstream.port)"))
        let gw = h.gateway(inspector: FakeInspector(destination: upstream.endpoint))
        let port = try #require(try await gw.start(port: 0, hosts: ["127.0.0.1"]).first?.port)
        // 1 MiB crosses many reads and exercises backpressure in both directions.
        let payload = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let echoed = await Task.detached { exchange(port: UInt16(port), payload: payload) }.value
        #expect(echoed == payload)

        let open = try await h.waitFor("session.open")
        #expect(open.count == 1)
        #expect(open[0]["decision"] as? String == "allow")
        #expect(open[0]["resource"] as? String == "echo")
        let identity = try #require(open[0]["identity"] as? [String: Any])
        #expect(identity["uid"] as? Int == 4242)
        #expect(identity["unit"] as? String == "ci-job.service")
        let close = try await h.waitFor("session.close")
        #expect(close.count == 1)
        #expect(close[0]["session"] as? String == open[0]["session"] as? String)
        #expect(close[0]["bytes_up"] as? Int == payload.count)
        #expect(close[0]["bytes_down"] as? Int == payload.count)
        #expect(close[0]["reason"] as? String == "client_closed")
        let counters = h.runtime.counters.snapshot
        #expect(counters.forwarded == 1 && counters.active == 0 && counters.bytesUp == UInt64(payload.count))
        await gw.stop()
    }

    @Test func smallPayloadWithImmediateHalfCloseIsForwarded() async throws {
        let upstream = try Upstream()
        let h = try Harness(policy: policy(resourceAddress: "127.0.0.1:\(upstream.port)"))
        let gw = h.gateway(inspector: FakeInspector(destination: upstream.endpoint))
        let port = try #require(try await gw.start(port: 0, hosts: ["127.0.0.1"]).first?.port)
        // Data and FIN arrive before the upstream connection exists: both must still go through.
        let got = await Task.detached { exchange(port: UInt16(port), payload: Array("hello".utf8)) }.value
        #expect(got == Array("hello".utf8))
        await gw.stop()
    }

    @Test func unregisteredDestinationIsRefusedRecordedAndNeverConnected() async throws {
        let upstream = try Upstream()
        // The resource names another port: the destination is unregistered.
        let h = try Harness(policy: policy(resourceAddress: "127.0.0.1:1"))
        let gw = h.gateway(inspector: FakeInspector(destination: upstream.endpoint))
        let port = try #require(try await gw.start(port: 0, hosts: ["127.0.0.1"]).first?.port)
        let got = await Task.detached { exchange(port: UInt16(port), payload: Array("hello".utf8)) }.value
        #expect(got == nil || got == [])
        let open = try await h.waitFor("session.open")
        #expect(open.first?["decision"] as? String == "deny")
        #expect(open.first?["reason"] as? String == "unregistered destination")
        #expect(upstream.accepts.load(ordering: .relaxed) == 0)
        #expect(h.runtime.counters.snapshot.refused == 1)
        await gw.stop()
    }

    @Test func unregisteredDestinationIsForwardedUnderRecord() async throws {
        let upstream = try Upstream()
        let h = try Harness(policy: policy(resourceAddress: "127.0.0.1:1", unregistered: "record"))
        let gw = h.gateway(inspector: FakeInspector(destination: upstream.endpoint))
        let port = try #require(try await gw.start(port: 0, hosts: ["127.0.0.1"]).first?.port)
        let got = await Task.detached { exchange(port: UInt16(port), payload: Array("hello".utf8)) }.value
        #expect(got == Array("hello".utf8))
        let open = try await h.waitFor("session.open")
        #expect(open.first?["decision"] as? String == "allow")
        #expect(open.first?["resource"] is NSNull)
        await gw.stop()
    }

    @Test func deadUpstreamEndsTheClientAndRecordsConnectFailed() async throws {
        let dead = try Upstream()
        let deadEndpoint = dead.endpoint
        _ = consume dead  // closes the listening socket: connections to it are refused
        let h = try Harness(policy: policy(resourceAddress: "127.0.0.1:\(deadEndpoint.port)"))
        let gw = h.gateway(inspector: FakeInspector(destination: deadEndpoint))
        let port = try #require(try await gw.start(port: 0, hosts: ["127.0.0.1"]).first?.port)
        let got = await Task.detached { exchange(port: UInt16(port), payload: Array("hello".utf8)) }.value
        #expect(got == nil || got == [])
        let close = try await h.waitFor("session.close")
        #expect(close.first?["reason"] as? String == "connect_failed")
        #expect(h.runtime.counters.snapshot.active == 0)
        await gw.stop()
    }

    @Test func unknownOwnerIsRefusedAndRecorded() async throws {
        let upstream = try Upstream()
        let h = try Harness(policy: policy(resourceAddress: "127.0.0.1:\(upstream.port)"))
        let gw = h.gateway(inspector: FakeInspector(destination: upstream.endpoint, failOwner: true))
        let port = try #require(try await gw.start(port: 0, hosts: ["127.0.0.1"]).first?.port)
        let got = await Task.detached { exchange(port: UInt16(port), payload: Array("hello".utf8)) }.value
        #expect(got == nil || got == [])
        let open = try await h.waitFor("session.open")
        #expect(open.first?["decision"] as? String == "deny")
        #expect((open.first?["reason"] as? String)?.hasPrefix("socket owner unknown") == true)
        #expect(upstream.accepts.load(ordering: .relaxed) == 0)
        await gw.stop()
    }
}

@Suite struct RuntimeTests {
    @Test func reconcilerRestoresAFlushedOrTamperedRulesetAndRecordsIt() async throws {
        let h = try Harness(policy: policy(resourceAddress: "127.0.0.1:5432"))
        try h.runtime.installInitialRuleset()
        #expect(h.runtime.reconcile() == .intact)
        h.installer.simulateFlush()
        #expect(h.runtime.reconcile() == .missing)
        #expect(h.installer.installed == h.runtime.policy.ruleset)
        h.installer.simulateTamper()
        if case .drifted = h.runtime.reconcile() {} else { Issue.record("tampering not seen as drift") }
        #expect(h.runtime.reconcile() == .intact)
        let restored = try await h.waitFor("ruleset.restored", count: 2)
        #expect(restored.map { $0["problem"] as? String } == ["missing", "drifted"])
        #expect(h.runtime.rulesetStatus.restores == 2)
    }

    @Test func badReloadKeepsThePolicyAndGoodReloadSwapsIt() async throws {
        let h = try Harness(policy: policy(resourceAddress: "127.0.0.1:5432"))
        let before = h.runtime.policy
        try "capture: { users: [nobody-such] }\n".write(toFile: h.policyPath, atomically: true, encoding: .utf8)
        guard case .failure(let e) = h.runtime.reload(trigger: "test") else {
            Issue.record("a policy naming an unknown user was accepted")
            return
        }
        #expect(e.description.contains("\(h.policyPath):1:"))
        #expect(h.runtime.policy.digest == before.digest)
        try (policy(resourceAddress: "127.0.0.1:6000") + "\n").write(
            toFile: h.policyPath, atomically: true, encoding: .utf8)
        guard case .success = h.runtime.reload(trigger: "test") else {
            Issue.record("a good policy was rejected")
            return
        }
        #expect(h.runtime.policy.resources.match(Endpoint("127.0.0.1:6000")!)?.name == "echo")
        let loaded = try await h.waitFor("policy.loaded", count: 2)
        #expect(loaded.map { $0["outcome"] as? String } == ["rejected", "ok"])
    }

    @Test func uninstallStopsTheReconciler() throws {
        let h = try Harness(policy: policy(resourceAddress: "127.0.0.1:5432"))
        try h.runtime.installInitialRuleset()
        try h.runtime.uninstall()
        #expect(h.installer.installed == nil)
        #expect(h.runtime.reconcile() == nil)
        #expect(h.installer.installed == nil)
    }

    @Test func daemonAccountCannotBeCaptured() throws {
        let h = try Harness(policy: policy(resourceAddress: "127.0.0.1:5432"))
        #expect(throws: ConfigError.self) {
            _ = try ActivePolicy.compile(
                ConfigLoader.parse("capture: { users: [interlock] }", path: "p"), text: "", accounts: h.accounts)
        }
        let p = try ActivePolicy.compile(
            ConfigLoader.parse("capture: { groups: [bots] }", path: "p"), text: "", accounts: h.accounts)
        #expect(p.captured.map(\.uid) == [4242])
        #expect(p.captured.first?.via == ["group:bots"])
    }
}

@Suite struct ControlServiceTests {
    @Test func accessFollowsGroupsAndCommandsCheckIt() throws {
        let h = try Harness(policy: policy(resourceAddress: "127.0.0.1:5432"))
        let service = ControlService(runtime: h.runtime, version: "test", logger: Logger(label: "t")) {}
        #expect(service.accessLevel(uid: 0, gid: 0).1 == .admin)
        #expect(service.accessLevel(uid: 3002, gid: 3002).1 == .admin)
        #expect(service.accessLevel(uid: 3001, gid: 3001).1 == .read)
        #expect(service.accessLevel(uid: 3003, gid: 3003).1 == .none)
        #expect(service.accessLevel(uid: 77777, gid: 77777).1 == .none)
        let alice = ControlPeer(uid: 3003, gid: 3003, pid: 1, user: "alice", access: .none)
        let audra = ControlPeer(uid: 3001, gid: 3001, pid: 1, user: "audra", access: .read)
        #expect(service.handle(ControlRequest(command: .auditList), from: alice).error?.code == "forbidden")
        #expect(service.handle(ControlRequest(command: .auditList), from: audra).ok)
        #expect(service.handle(ControlRequest(command: .reload), from: audra).error?.code == "forbidden")
        let bad = service.handle(
            ControlRequest(command: .auditList, audit: AuditQueryArgs(since: "yesterday-ish")), from: audra)
        #expect(bad.error?.code == "bad_request")
    }
}

@Suite struct ReloadLimitsTests {
    @Test func reloadRefusesKeysThatNeedARestart() async throws {
        let h = try Harness(policy: policy(resourceAddress: "127.0.0.1:5432"))
        let moved = policy(resourceAddress: "127.0.0.1:5432").replacingOccurrences(of: "15001", with: "15002")
        try moved.write(toFile: h.policyPath, atomically: true, encoding: .utf8)
        guard case .failure(let e) = h.runtime.reload(trigger: "test") else {
            Issue.record("a reload that moves the listener was accepted")
            return
        }
        #expect(e.key == "daemon.listen_port")
        #expect(h.runtime.policy.config.daemon.listenPort == 15001)
    }
}
