import Audit
import Capture
import Control
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import Policy

#if canImport(Glibc)
import Glibc
#endif

/// Who is on the other end of the control socket, from `SO_PEERCRED` (the kernel's word, not the
/// client's).
struct ControlPeer: Sendable {
    var uid: UInt32
    var gid: UInt32
    var pid: Int32
    var user: String?
    var access: AccessLevel
}

/// Answers the control socket's requests: the operations behind `interlock status`, `rules show`,
/// `audit list`, `reload` and `uninstall`.
public final class ControlService: Sendable {
    let runtime: Runtime
    let logger: Logger
    let requestShutdown: @Sendable () -> Void
    let version: String

    public init(runtime: Runtime, version: String, logger: Logger, requestShutdown: @escaping @Sendable () -> Void) {
        self.runtime = runtime
        self.version = version
        self.logger = logger
        self.requestShutdown = requestShutdown
    }

    func accessLevel(uid: UInt32, gid: UInt32) -> (String?, AccessLevel) {
        if uid == 0 { return ("root", .admin) }
        let daemon = runtime.policy.config.daemon
        guard let account = runtime.accounts.user(uid: uid) else { return (nil, .none) }
        let groups = Set(runtime.accounts.groupNames(ofUser: account.name, primaryGID: account.gid))
        if groups.contains(daemon.adminGroup) { return (account.name, .admin) }
        if groups.contains(daemon.auditorGroup) { return (account.name, .read) }
        return (account.name, .none)
    }

    /// Runs one request (blocking: called off the event loops).
    func handle(_ request: ControlRequest, from peer: ControlPeer) -> ControlResponse {
        guard peer.access >= request.command.requiredAccess else {
            let daemon = runtime.policy.config.daemon
            let need =
                request.command.requiredAccess == .admin
                ? "root or a member of '\(daemon.adminGroup)'"
                : "root or a member of '\(daemon.adminGroup)' or '\(daemon.auditorGroup)'"
            logger.notice(
                "control request refused",
                metadata: ["command": "\(request.command.rawValue)", "uid": "\(peer.uid)", "pid": "\(peer.pid)"])
            return .failure(
                "forbidden", "\(request.command.rawValue) needs \(need); you are \(peer.user ?? "uid \(peer.uid)")")
        }
        switch request.command {
        case .status:
            return ControlResponse(ok: true, status: status())
        case .rulesShow:
            return ControlResponse(
                ok: true, rules: RulesetReport(status: runtime.inspectRuleset(), nft: runtime.policy.ruleset.nftText()))
        case .auditList:
            return auditList(request.audit ?? AuditQueryArgs())
        case .reload:
            logger.info("reload requested", metadata: ["by": "\(peer.user ?? "\(peer.uid)")"])
            switch runtime.reload(trigger: "control by \(peer.user ?? "uid \(peer.uid)")") {
            case .success(let p):
                return ControlResponse(
                    ok: true,
                    message: "policy loaded from \(runtime.policyPath) (sha256 \(p.digest.prefix(12))): "
                        + "\(p.captured.count) captured account(s), \(p.config.resources.count) resource(s)")
            case .failure(let e):
                return .failure("policy_invalid", "\(e) (the previous policy stays in force)")
            }
        case .uninstall:
            do {
                try runtime.uninstall()
            } catch {
                return .failure("internal", "could not remove the ruleset: \(error)")
            }
            requestShutdown()
            return ControlResponse(ok: true, message: "ruleset removed; interlockd is stopping")
        }
    }

    func status() -> StatusReport {
        let p = runtime.policy
        return StatusReport(
            version: version,
            pid: getpid(),
            uptimeSeconds: Int(Date().timeIntervalSince(runtime.startedAt)),
            listen: runtime.listenAddresses,
            policyPath: runtime.policyPath,
            policyLoadedAt: ISO8601DateFormatter().string(from: p.loadedAt),
            resources: p.config.resources.map { "\($0.name) \($0.protocol.rawValue) \($0.target)" },
            captured: p.captured.map { .init(uid: $0.uid, user: $0.user, via: $0.via) },
            ruleset: runtime.rulesetStatus,
            counters: runtime.counters.snapshot,
            auditDatabase: p.config.audit.database,
            auditLastIndex: (try? runtime.audit.lastIndex) ?? 0)
    }

    func auditList(_ args: AuditQueryArgs) -> ControlResponse {
        var q = AuditQuery()
        if let s = args.since {
            guard let d = AuditLog.parseTime(s) else {
                return .failure("bad_request", "--since: cannot read time '\(s)'")
            }
            q.since = d
        }
        if let s = args.until {
            guard let d = AuditLog.parseTime(s) else {
                return .failure("bad_request", "--until: cannot read time '\(s)'")
            }
            q.until = d
        }
        q.user = args.user
        q.resource = args.resource
        q.kind = args.kind
        q.afterIndex = args.afterIndex
        if let l = args.limit {
            guard l > 0, l <= 100_000 else { return .failure("bad_request", "--limit must be 1...100000") }
            q.limit = l
        }
        do {
            return ControlResponse(ok: true, entries: try runtime.audit.query(q).map(\.text))
        } catch {
            return .failure("internal", "cannot read the evidence log: \(error)")
        }
    }
}

/// The control socket: a Unix stream socket, one JSON request per line, one JSON response per line.
public final class ControlServer: Sendable {
    let service: ControlService
    let group: any EventLoopGroup
    let logger: Logger

    public init(service: ControlService, group: any EventLoopGroup, logger: Logger) {
        self.service = service
        self.group = group
        self.logger = logger
    }

    /// Binds `path` (replacing a stale socket file) with mode 0666: every local user may connect,
    /// and each request is authorised by the peer's credentials.
    public func start(path: String) async throws -> any Channel {
        let service = self.service
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ControlConnectionHandler(service: service))
                }
            }
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
            .get()
        guard chmod(path, 0o666) == 0 else {
            throw ControlFailure(code: "internal", message: "chmod \(path): \(String(cString: strerror(errno)))")
        }
        return channel
    }
}

/// `struct ucred` from <sys/socket.h> (hidden behind _GNU_SOURCE in Swift's Glibc module): same layout.
struct PeerCredentials {
    var pid: Int32
    var uid: UInt32
    var gid: UInt32
}

/// One control connection: reads lines, answers each in order.
final class ControlConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let maxRequestBytes = 1 << 20
    /// Requests a client may pipeline before it must read answers.
    static let maxQueuedRequests = 64
    private static let queue = DispatchQueue(label: "interlock.control", attributes: .concurrent)

    let service: ControlService
    private var buffer = ByteBuffer()
    private var peer: ControlPeer?
    private var busy = false
    private var queued: [ByteBuffer] = []

    init(service: ControlService) {
        self.service = service
    }

    func channelActive(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        guard let provider = context.channel as? SocketOptionProvider else {
            context.close(promise: nil)
            return
        }
        let credentials: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        credentials.whenComplete { result in
            let (this, context) = bound.value
            switch result {
            case .success(let c):
                let (user, access) = this.service.accessLevel(uid: c.uid, gid: c.gid)
                this.peer = ControlPeer(uid: c.uid, gid: c.gid, pid: c.pid, user: user, access: access)
                this.drain(context: context)
            case .failure:
                context.close(promise: nil)
            }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        while let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - buffer.readerIndex
            if let line = buffer.readSlice(length: length) { queued.append(line) }
            buffer.moveReaderIndex(forwardBy: 1)
        }
        buffer.discardReadBytes()
        if queued.count > Self.maxQueuedRequests {
            respond(context: context, .failure("bad_request", "more than \(Self.maxQueuedRequests) requests queued"))
            context.close(promise: nil)
            return
        }
        if buffer.readableBytes > Self.maxRequestBytes {
            respond(context: context, .failure("bad_request", "request larger than \(Self.maxRequestBytes) bytes"))
            context.close(promise: nil)
            return
        }
        drain(context: context)
    }

    private func drain(context: ChannelHandlerContext) {
        guard let peer, !busy, !queued.isEmpty else { return }
        let line = queued.removeFirst()
        let request: ControlRequest
        do {
            request = try JSONDecoder().decode(ControlRequest.self, from: Data(line.readableBytesView))
        } catch {
            respond(context: context, .failure("bad_request", "cannot read the request: \(error)"))
            drain(context: context)
            return
        }
        busy = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let service = self.service
        Self.queue.async {
            let response = service.handle(request, from: peer)
            eventLoop.execute {
                let (this, context) = bound.value
                this.busy = false
                this.respond(context: context, response)
                this.drain(context: context)
            }
        }
    }

    private func respond(context: ChannelHandlerContext, _ response: ControlResponse) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var out = context.channel.allocator.buffer(capacity: 256)
        if let data = try? encoder.encode(response) {
            out.writeBytes(data)
        } else {
            out.writeString(#"{"ok":false,"error":{"code":"internal","message":"cannot encode the response"}}"#)
        }
        out.writeInteger(UInt8(ascii: "\n"))
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
