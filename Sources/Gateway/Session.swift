import Audit
import Foundation
import Logging
import NIOCore
import Policy

/// Why a forwarded session ended; recorded as `session.close.reason`.
enum CloseReason: String, Sendable {
    case clientClosed = "client_closed"
    case upstreamClosed = "upstream_closed"
    case idleTimeout = "idle_timeout"
    case connectFailed = "connect_failed"
    case auditFailed = "audit_failed"
    case error
    case shutdown
}

/// One captured connection from admission to its `session.close` entry.
///
/// Confined to the event loop both of its channels live on, so it needs no locks; the counters it
/// updates at the end are atomics.
final class ProxySession {
    let id: String
    let identity: Identity
    let resource: Resource?
    let source: Endpoint
    let destination: Endpoint
    let started: NIODeadline
    let logger: Logger

    /// True once the upstream connection exists and the session counts as active.
    var forwarded = false
    var bytesUp: UInt64 = 0
    var bytesDown: UInt64 = 0
    private(set) var reason: CloseReason?
    private var openChannels = 2
    private var finished = false

    init(id: String, identity: Identity, resource: Resource?, source: Endpoint, destination: Endpoint, logger: Logger) {
        self.id = id
        self.identity = identity
        self.resource = resource
        self.source = source
        self.destination = destination
        self.started = .now()
        var logger = logger
        logger[metadataKey: "session"] = "\(id)"
        self.logger = logger
    }

    /// The first reason given wins: later ones are consequences of it.
    func noteReason(_ r: CloseReason) {
        if reason == nil { reason = r }
    }

    /// Called once per channel when it becomes inactive; returns true when the session is over.
    func channelClosed() -> Bool {
        openChannels -= 1
        return openChannels == 0
    }

    /// Set by the gateway: records `session.close` and updates the counters.
    var onEnd: ((ProxySession) -> Void)?
    /// Extra words for the close entry (the connect error, say).
    var detail: String?

    /// Ends the session exactly once, however many paths lead here.
    func end() {
        if finished { return }
        finished = true
        onEnd?(self)
        onEnd = nil
    }

    var durationMilliseconds: Int64 { (NIODeadline.now() - started).nanoseconds / 1_000_000 }
}

/// New session ids: 16 hex digits, unique enough across restarts and cheap to make.
enum SessionID {
    static func make() -> String {
        var g = SystemRandomNumberGenerator()
        let n = g.next() as UInt64
        let hex = String(n, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// How evidence entries are spelled (docs/evidence.md is the schema).
enum Evidence {
    static func identity(_ i: Identity) -> AuditValue {
        var o: [String: AuditValue] = [
            "uid": .uint(UInt64(i.uid)),
            "user": i.user.map { .string($0) } ?? .null,
            "gid": i.gid.map { .uint(UInt64($0)) } ?? .null,
            "groups": .array(i.groups.map { .string($0) }),
            "cgroup": i.cgroup.map { .string($0) } ?? .null,
            "unit": i.unit.map { .string($0) } ?? .null,
            "pid": i.pid.map { .int(Int64($0)) } ?? .null,
            "executable": i.executable.map { .string($0) } ?? .null,
        ]
        o["command_line"] = i.commandLine.map { .array($0.map { .string($0) }) } ?? .null
        return .object(o)
    }

    static func endpoint(_ e: Endpoint) -> AuditValue {
        .object(["address": .string(e.address.description), "port": .uint(UInt64(e.port))])
    }
}
