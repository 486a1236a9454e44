import Approvals
import Audit
import Capture
import Control
import Crypto
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import Policy
import Synchronization

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
    /// The gateway's held statements; nil when no gateway runs (tests of the other commands).
    let approvals: ApprovalCenter?
    /// `approvals watch` calls waiting now: each holds a control thread for up to a minute, so they
    /// are capped below the thread pool's size, leaving room for every other command.
    private let watchers = Atomic<Int>(0)
    static let maximumWatchers = 16

    public convenience init(
        runtime: Runtime, gateway: Gateway? = nil, version: String, logger: Logger,
        requestShutdown: @escaping @Sendable () -> Void
    ) {
        self.init(
            runtime: runtime, approvals: gateway?.approvals, version: version, logger: logger,
            requestShutdown: requestShutdown)
    }

    init(
        runtime: Runtime, approvals: ApprovalCenter?, version: String, logger: Logger,
        requestShutdown: @escaping @Sendable () -> Void
    ) {
        self.runtime = runtime
        self.approvals = approvals
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
        case .auditPublicKey:
            guard let key = runtime.audit.verifierKey else {
                return .failure("internal", "the evidence log has no signing key")
            }
            guard request.key?.all == true else { return ControlResponse(ok: true, message: key) }
            do {
                let chain = try runtime.audit.keyChain() ?? AuditKeyChain(genesisKey: key)
                var response = ControlResponse(ok: true, message: key)
                response.chain = KeyChainInfo(
                    genesisKey: chain.genesisKey,
                    rotations: chain.rotations.map { .init(index: $0.index, key: $0.newKey, reason: $0.reason) })
                return response
            } catch {
                return .failure("internal", "cannot read the key chain: \(error)")
            }
        case .auditRotateKey:
            return rotateKey(reason: request.key?.reason ?? "", by: peer)
        case .auditExport:
            return auditExport(request.audit ?? AuditQueryArgs(), request.export ?? ExportArgs())
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
        case .approvalsList, .approvalsApprove, .approvalsDeny, .approvalsWatch, .approvalsGrants, .approvalsRevoke:
            guard let approvals else { return .failure("internal", "no gateway runs in this process") }
            return handleApprovals(request, from: peer, approvals)
        case .sessionsList:
            return sessionsList(request.audit ?? AuditQueryArgs())
        case .auditBlob:
            return auditBlob(request.blob ?? "")
        }
    }

    /// The peer as approval rules see it: uid, name and every group it is in.
    func identity(of peer: ControlPeer) -> Identity {
        var identity = Identity(uid: peer.uid)
        identity.gid = peer.gid
        identity.pid = peer.pid
        if let account = runtime.accounts.user(uid: peer.uid) {
            identity.user = account.name
            identity.groups = runtime.accounts.groupNames(ofUser: account.name, primaryGID: account.gid)
        } else if peer.uid == 0 {
            identity.user = "root"
        }
        return identity
    }

    func handleApprovals(
        _ request: ControlRequest, from peer: ControlPeer, _ approvals: ApprovalCenter
    )
        -> ControlResponse
    {
        let me = identity(of: peer)
        let args = request.approval ?? ApprovalArgs()
        let now = Date()
        // Auditors and admins see everything; others see what they may decide and their own requests.
        func visible(_ r: ApprovalRequest) -> Bool {
            peer.access >= .read || r.approvers.matches(me) || r.requester.uid == me.uid
        }
        func visible(_ g: Grant) -> Bool {
            peer.access >= .read || g.approvers.matches(me) || g.holder.uid == me.uid
        }
        do throws(ApprovalError) {
            switch request.command {
            case .approvalsList:
                let list = approvals.pending().filter { visible($0.request) }.map { p in
                    ApprovalCenter.info(
                        p.request, approvals: p.approvals, now: now,
                        mayDecide: p.request.approvers.matches(me) && p.request.requester.uid != me.uid
                            && !p.approvals.contains { $0.approver.uid == me.uid })
                }
                return ControlResponse(ok: true, approvals: list)
            case .approvalsGrants:
                let list = approvals.grants().filter { visible($0.grant) }.map {
                    ApprovalCenter.info($0.grant, now: now)
                }
                return ControlResponse(ok: true, grants: list)
            case .approvalsApprove:
                guard let id = args.id, let digest = args.digest else {
                    return .failure("bad_request", "approve needs the request id and the statement digest")
                }
                var grant: Duration?
                if let text = args.grant {
                    guard let d = parseDuration(text) else {
                        return .failure("bad_request", "--grant: cannot read duration '\(text)' (try 30m, 1h, 90s)")
                    }
                    grant = d
                }
                let (message, opened) = try approvals.approve(
                    id, by: me, reason: args.reason, grant: grant, digest: digest)
                logger.notice("approval", metadata: ["request": "\(id)", "by": "\(me.displayName)"])
                return ControlResponse(
                    ok: true, message: message, grants: opened.map { [ApprovalCenter.info($0, now: now)] })
            case .approvalsDeny:
                guard let id = args.id else { return .failure("bad_request", "deny needs the request id") }
                let message = try approvals.deny(id, by: me, reason: args.reason ?? "")
                logger.notice("denial", metadata: ["request": "\(id)", "by": "\(me.displayName)"])
                return ControlResponse(ok: true, message: message)
            case .approvalsRevoke:
                guard let id = args.id else { return .failure("bad_request", "revoke needs the grant id") }
                return ControlResponse(ok: true, message: try approvals.revoke(id, by: me))
            case .approvalsWatch:
                let wait = min(max(args.waitSeconds ?? 25, 1), 60)
                guard watchers.add(1, ordering: .relaxed).newValue <= Self.maximumWatchers else {
                    watchers.subtract(1, ordering: .relaxed)
                    return .failure("busy", "more than \(Self.maximumWatchers) approvals watchers; try again later")
                }
                defer { watchers.subtract(1, ordering: .relaxed) }
                let (shown, sequence) = approvals.events(
                    after: args.after, visibleTo: me, all: peer.access >= .read, wait: .seconds(wait))
                return ControlResponse(ok: true, events: shown, sequence: sequence)
            default:
                return .failure("bad_request", "not an approvals command")
            }
        } catch {
            logger.notice(
                "approval refused",
                metadata: [
                    "command": "\(request.command.rawValue)", "by": "\(me.displayName)", "code": "\(error.code)",
                ])
            return .failure(error.code.description, error.message)
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

    /// `audit.rotate-key`: the daemon's log replaces its checkpoint key (see AuditLog.rotateKey).
    func rotateKey(reason: String, by peer: ControlPeer) -> ControlResponse {
        logger.notice("key rotation requested", metadata: ["by": "\(peer.user ?? "uid \(peer.uid)")"])
        do {
            let done = try runtime.audit.rotateKey(reason: reason, requestedBy: (peer.uid, peer.user))
            var response = ControlResponse(
                ok: true,
                message: "rotated the checkpoint key at entry \(done.index): \(done.oldKey) → \(done.newKey)")
            response.rotation = KeyRotationInfo(oldKey: done.oldKey, newKey: done.newKey, index: done.index)
            return response
        } catch {
            return .failure(error.code.description, error.message)
        }
    }

    /// The filters of `audit list` and `audit export`, or the failure to answer.
    func auditQuery(_ args: AuditQueryArgs) -> Result<AuditQuery, ControlFailure> {
        var q = AuditQuery()
        if let s = args.since {
            guard let d = AuditLog.parseTime(s) else {
                return .failure(ControlFailure(code: "bad_request", message: "--since: cannot read time '\(s)'"))
            }
            q.since = d
        }
        if let s = args.until {
            guard let d = AuditLog.parseTime(s) else {
                return .failure(ControlFailure(code: "bad_request", message: "--until: cannot read time '\(s)'"))
            }
            q.until = d
        }
        q.user = args.user
        q.resource = args.resource
        q.session = args.session
        q.kind = args.kind
        return .success(q)
    }

    /// One page of an export: entries in index order with inclusion proofs against one checkpoint.
    func auditExport(_ args: AuditQueryArgs, _ export: ExportArgs) -> ControlResponse {
        var q: AuditQuery
        switch auditQuery(args) {
        case .success(let query): q = query
        case .failure(let f): return ControlResponse(ok: false, error: f)
        }
        let audit = runtime.audit
        guard let verifierKey = audit.verifierKey else {
            return .failure("internal", "the evidence log has no signing key")
        }
        do {
            let checkpoint: StoredCheckpoint
            if let size = export.size {
                guard let found = try audit.checkpoints(sizes: size...size).first else {
                    return .failure("bad_request", "no checkpoint of size \(size)")
                }
                checkpoint = found
            } else {
                // The newest entries too: ask for a checkpoint over them and wait for it (≤ 3 s).
                guard let newest = try audit.checkpoint(covering: try audit.lastIndex, within: 3) else {
                    return .failure("internal", "the evidence log has no checkpoint yet")
                }
                checkpoint = newest
            }
            if export.seal == true {
                return try sealExport(q, args: args, checkpoint: checkpoint)
            }
            let limit = min(max(export.limit ?? 2000, 1), 2000)
            q.afterIndex = export.after
            q.maxIndex = checkpoint.size
            q.oldestFirst = true
            q.limit = limit
            let records = try audit.query(q)
            let proofs = try audit.inclusionProofs(indexes: records.map(\.index), size: checkpoint.size)
            var entries: [ExportedEntry] = []
            entries.reserveCapacity(records.count)
            for (record, proof) in zip(records, proofs) {
                entries.append(
                    ExportedEntry(
                        index: record.index, leafHash: Merkle.leafHash(record.body).hex, proof: proof.map(\.hex),
                        entry: record.text))
            }
            var older: [String] = []
            var consistency: [ExportConsistency] = []
            var chain: [ExportedEntry]?
            if export.after == nil {
                (chain, older, consistency) = try keyChainEvidence(upTo: checkpoint)
                if let first = records.first, let covering = try audit.firstCheckpoint(covering: first.index),
                    covering.size < checkpoint.size, !older.contains(covering.note)
                {
                    older.append(covering.note)
                    let proof = try audit.consistencyProof(from: covering.size, to: checkpoint.size)
                    consistency.append(
                        ExportConsistency(from: covering.size, to: checkpoint.size, proof: proof.map(\.hex)))
                }
                if let trusted = export.trustedCheckpoint {
                    guard let note = try? SignedNote.parse(trusted), let parsed = try? Checkpoint.parse(note.text)
                    else {
                        return .failure("bad_request", "--trusted-checkpoint: not a signed checkpoint")
                    }
                    if parsed.size < checkpoint.size, !consistency.contains(where: { $0.from == parsed.size }) {
                        let proof = try audit.consistencyProof(from: parsed.size, to: checkpoint.size)
                        consistency.append(
                            ExportConsistency(from: parsed.size, to: checkpoint.size, proof: proof.map(\.hex)))
                    }
                }
            }
            let page = ExportPage(
                origin: audit.origin, applianceID: audit.applianceID, verifierKey: verifierKey,
                checkpointSize: checkpoint.size, checkpoint: checkpoint.note, olderCheckpoints: older,
                consistency: consistency, entries: entries,
                next: records.count == limit ? records.last?.index : nil, chain: chain)
            return ControlResponse(ok: true, export: page)
        } catch {
            return .failure("internal", "cannot export the evidence log: \(error)")
        }
    }

    /// What an auditor needs to follow the key chain up to `checkpoint`, whatever the query: the
    /// genesis and every rotation entry with their proofs, and each rotation's hand-over checkpoint
    /// (signed by the old key, of exactly the rotation's size) with a consistency proof to it.
    func keyChainEvidence(
        upTo checkpoint: StoredCheckpoint
    ) throws -> (
        [ExportedEntry], [String], [ExportConsistency]
    ) {
        let audit = runtime.audit
        let records = try audit.keyChainRecords(upTo: checkpoint.size)
        let proofs = try audit.inclusionProofs(indexes: records.map(\.index), size: checkpoint.size)
        let chain = zip(records, proofs).map { record, proof in
            ExportedEntry(
                index: record.index, leafHash: Merkle.leafHash(record.body).hex, proof: proof.map(\.hex),
                entry: record.text)
        }
        var older: [String] = []
        var consistency: [ExportConsistency] = []
        for record in records where record.kind == AuditKind.keyRotated && record.index < checkpoint.size {
            guard let handOver = try audit.checkpoints(sizes: record.index...record.index).first else { continue }
            older.append(handOver.note)
            let proof = try audit.consistencyProof(from: handOver.size, to: checkpoint.size)
            consistency.append(ExportConsistency(from: handOver.size, to: checkpoint.size, proof: proof.map(\.hex)))
        }
        return (chain, older, consistency)
    }

    /// The export's signed manifest: the same selection again, counted and hashed here, so the
    /// auditor's bundle cannot claim more or other entries than the appliance gave.
    func sealExport(_ base: AuditQuery, args: AuditQueryArgs, checkpoint: StoredCheckpoint) throws -> ControlResponse {
        var q = base
        q.maxIndex = checkpoint.size
        q.oldestFirst = true
        q.limit = 5000
        var hasher = SHA256()
        var count = 0
        var first: UInt64?
        var last: UInt64?
        var blobs: [String] = []
        while true {
            let records = try runtime.audit.query(q)
            for r in records {
                if let blob = Self.blobReference(r) { blobs.append(blob) }
                hasher.update(data: r.body)
                hasher.update(data: [0x0A])
                first = first ?? r.index
                last = r.index
                count += 1
            }
            guard records.count == q.limit, let end = records.last?.index else { break }
            q.afterIndex = end
        }
        var query: [String: String] = [:]
        for (k, v) in [
            ("since", args.since), ("until", args.until), ("user", args.user), ("resource", args.resource),
            ("session", args.session), ("kind", args.kind),
        ] {
            if let v { query[k] = v }
        }
        let present = try runtime.audit.blobsPresent(Array(Set(blobs)))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let chain = try runtime.audit.keyChainRecords(upTo: checkpoint.size)
        let manifest = AuditBundle.Manifest(
            origin: runtime.audit.origin, checkpointSize: checkpoint.size,
            query: String(decoding: try encoder.encode(query), as: UTF8.self),
            filtered: args.user != nil || args.resource != nil || args.session != nil || args.kind != nil,
            entries: count, firstIndex: first, lastIndex: last,
            digest: hasher.finalize().map { String(format: "%02x", $0) }.joined(), time: AuditLog.formatTime(Date()),
            blobs: present.count, blobsPruned: Set(blobs).count - present.count, root: checkpoint.root.hex,
            chainEntries: chain.count)
        // The manifest is signed by the key in force now, which must be the last key of the chain the
        // bundle carries: a rotation since the export's checkpoint would leave it unverifiable.
        let (note, key) = try runtime.audit.signNoteWithKey(manifest.text)
        let chainKey = try AuditKeyChain.from(chain)?.currentKey
        guard chainKey == nil || chainKey == key else {
            return .failure("busy", "the checkpoint key was rotated during this export; run the export again")
        }
        return ControlResponse(ok: true, message: note)
    }

    func auditList(_ args: AuditQueryArgs) -> ControlResponse {
        var q: AuditQuery
        switch auditQuery(args) {
        case .success(let query): q = query
        case .failure(let f): return ControlResponse(ok: false, error: f)
        }
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
