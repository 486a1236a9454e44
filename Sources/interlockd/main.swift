// interlockd: the Interlock daemon. Runs in the foreground (systemd's Type=notify), logs to stderr.
//
// Start-up order matters and is the whole point of this file:
//   1. parse arguments, load and compile the policy (as root: it may read root-only files);
//   2. prepare the state and runtime directories for the daemon's own account;
//   3. drop privileges to that account keeping only CAP_NET_ADMIN, BEFORE any thread exists
//      (capabilities are per thread; threads started later inherit the reduced set);
//   4. open the evidence log, install the ruleset, bind the listeners and the control socket;
//   5. READY=1, then run until SIGTERM; the ruleset stays installed after exit (fail closed).

import ArgumentParser
import Audit
import Capture
import Foundation
import Gateway
import Logging
import NIOCore
import NIOPosix
import Policy
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

let interlockVersion = "0.1.0"

struct Options: ParsableArguments {
    @Option(name: .long, help: "The policy file.")
    var config: String = "/etc/interlock/interlock.yaml"

    @Option(name: .long, help: "trace | debug | info | notice | warning | error | critical")
    var logLevel: String = "info"

    @Flag(name: .long, help: "Stay root instead of dropping to daemon.user (for debugging only).")
    var noDropPrivileges = false
}

let options = Options.parseOrExit()
LoggingSystem.bootstrap { label in
    var h = StreamLogHandler.standardError(label: label)
    h.logLevel = Logger.Level(rawValue: options.logLevel) ?? .info
    return h
}
let logger = Logger(label: "interlockd")

@MainActor func die(_ message: String, code: Int32 = 1) -> Never {
    logger.critical("\(message)")
    FileHandle.standardError.write(Data("interlockd: \(message)\n".utf8))
    exit(code)
}

// 1. The policy.
let accounts = SystemAccounts()
var initialPolicy: ActivePolicy
do {
    initialPolicy = try ActivePolicy.load(path: options.config, accounts: accounts)
} catch {
    die("\(error)", code: 78)  // EX_CONFIG: systemd will not restart-loop on a broken file
}
let settings = initialPolicy.config
guard let daemonAccount = accounts.user(uid: initialPolicy.daemonUID) else {
    die("daemon.user '\(settings.daemon.user)' has no passwd entry", code: 78)
}

// 2. Directories the daemon's account must own.
@MainActor func prepareDirectory(_ path: String, mode: mode_t) {
    if mkdir(path, mode) != 0 && errno != EEXIST {
        die("cannot create \(path): \(String(cString: strerror(errno)))")
    }
    if getuid() == 0 && !options.noDropPrivileges {
        guard chown(path, initialPolicy.daemonUID, daemonAccount.gid) == 0 else {
            die("cannot chown \(path) to \(settings.daemon.user): \(String(cString: strerror(errno)))")
        }
    }
}
let databaseDirectory = (settings.audit.database as NSString).deletingLastPathComponent
let socketDirectory = (settings.daemon.controlSocket as NSString).deletingLastPathComponent
prepareDirectory(databaseDirectory, mode: 0o750)
prepareDirectory(socketDirectory, mode: 0o755)

// 3. Privileges.
if getuid() == 0 && !options.noDropPrivileges {
    do {
        try Privileges.drop(toUser: daemonAccount.name, uid: initialPolicy.daemonUID, gid: daemonAccount.gid)
    } catch {
        die("cannot drop privileges to \(daemonAccount.name): \(error)")
    }
} else if !Privileges.hasNetAdmin {
    die("interlockd needs CAP_NET_ADMIN (run it as root, or with AmbientCapabilities=CAP_NET_ADMIN)")
}
if getuid() != initialPolicy.daemonUID && !options.noDropPrivileges {
    die(
        "running as uid \(getuid()), but daemon.user '\(settings.daemon.user)' is uid \(initialPolicy.daemonUID): "
            + "captured-connection exemption is by uid, so they must agree")
}
logger.info(
    "starting",
    metadata: ["version": "\(interlockVersion)", "uid": "\(getuid())", "config": "\(options.config)"])

// 4. Evidence, kernel, listeners.
// The checkpoint signing key: created at the first start (mode 0600, the daemon's own), its public
// half written beside it for operators to hand to auditors (`interlock audit public-key` prints it).
let signingKeyPath = settings.audit.signingKey ?? databaseDirectory + "/checkpoint.key"
let signer: NoteSigner
do {
    let (key, created) = try NoteKeyFile.loadOrCreate(path: signingKeyPath)
    signer = key
    if created {
        logger.notice("created the checkpoint signing key", metadata: ["path": "\(signingKeyPath)"])
    }
} catch {
    die("cannot load the checkpoint signing key \(signingKeyPath): \(error)")
}
let audit: AuditLog
do {
    audit = try AuditLog.open(
        path: settings.audit.database,
        durability: settings.audit.durability == .powerLoss ? .powerLoss : .crash,
        // With the key file, the log finishes (or discards) a key rotation a crash interrupted, and
        // `interlock audit rotate-key` can replace the key.
        signing: AuditSigning(
            signer: signer, genesis: ["version": .string(interlockVersion)], keyFile: signingKeyPath),
        logger: logger)
} catch {
    die("cannot open the evidence log \(settings.audit.database): \(error)")
}

let sockDiag: SockDiag
do {
    sockDiag = try SockDiag()
} catch {
    die("cannot open NETLINK_SOCK_DIAG: \(error)")
}
let conntrack: Conntrack
do {
    conntrack = try Conntrack()
} catch {
    die("cannot open the conntrack netlink socket: \(error)")
}
let maskKeyPath = databaseDirectory + "/mask-hash.key"
let maskKey: [UInt8]
do {
    maskKey = try MaskKey.loadOrCreate(path: maskKeyPath)
} catch {
    die("cannot load the masking key: \(error)")
}
initialPolicy.useDefaultMaskKey(maskKey)
let port = settings.daemon.listenPort
let runtime = Runtime(
    policy: initialPolicy, policyPath: options.config, audit: audit, accounts: accounts,
    installer: NetfilterRulesetInstaller(), listenAddresses: ["127.0.0.1:\(port)", "[::1]:\(port)"], logger: logger,
    defaultMaskKey: maskKey)

do {
    _ = try await audit.append(
        kind: "daemon.started", subject: AuditSubject(user: nil, resource: nil, session: nil),
        fields: [
            "version": .string(interlockVersion), "pid": .int(Int64(getpid())), "config": .string(options.config),
            "uid": .uint(UInt64(getuid())),
        ])
} catch {
    die("cannot write to the evidence log: \(error)")
}
runtime.recordPolicyLoaded(initialPolicy, trigger: "start")

do {
    try runtime.installInitialRuleset()
} catch {
    die("cannot install the nftables ruleset: \(error)")
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
let gateway = Gateway(
    runtime: runtime,
    inspector: KernelInspector(sockDiag: sockDiag, conntrack: conntrack, resolver: IdentityResolver()), group: group,
    logger: logger)
gateway.recordApprovalsLostAtRestart()
// Retention: prune entry bodies past `audit.retention.entries`, and recordings past
// `audit.retention.recordings`, at start and every hour, on a thread of its own (a prune waits for
// its entry and checkpoint to commit).
let retention: [(what: String, keep: Duration)] = [
    settings.audit.retentionEntries.map { ("entries", $0) },
    settings.audit.retentionRecordings.map { ("recordings", $0) },
].compactMap { $0 }
if !retention.isEmpty {
    let pruneQueue = DispatchQueue(label: "interlock.retention")
    _ = group.next().scheduleRepeatedTask(initialDelay: .seconds(5), delay: .hours(1)) { _ in
        pruneQueue.async {
            for r in retention {
                let seconds = Double(r.keep.components.seconds)
                let policyText =
                    seconds >= 86_400 ? "\(r.what): \(Int(seconds / 86_400))d" : "\(r.what): \(Int(seconds / 3_600))h"
                do {
                    let cutoff = Date().addingTimeInterval(-seconds)
                    if r.what == "entries" {
                        _ = try audit.prune(before: cutoff, policy: policyText)
                    } else {
                        _ = try audit.pruneRecordings(before: cutoff, policy: policyText)
                    }
                } catch {
                    logger.error(
                        "retention: the \(r.what) prune failed; nothing was removed after the failure",
                        metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
let controlService = ControlService(runtime: runtime, gateway: gateway, version: interlockVersion, logger: logger) {
    kill(getpid(), SIGTERM)
}
let control = ControlServer(service: controlService, group: group, logger: logger)
let controlChannel: any Channel
do {
    let bound = try await gateway.start(port: port)
    controlChannel = try await control.start(path: settings.daemon.controlSocket)
    logger.info(
        "listening",
        metadata: ["addresses": "\(bound)", "control": "\(settings.daemon.controlSocket)"])
} catch {
    die("cannot listen: \(error)")
}

// 5. Run until SIGTERM.
let notifier = SystemdNotifier(environment: ProcessInfo.processInfo.environment)
notifier.notify("READY=1\nSTATUS=capturing \(initialPolicy.captured.count) account(s)")
let service = DaemonService(gateway: gateway, notifier: notifier, logger: logger) {
    try? await controlChannel.close()
    _ = try? await audit.append(
        kind: "daemon.stopped", subject: AuditSubject(user: nil, resource: nil, session: nil),
        fields: ["pid": .int(Int64(getpid()))])
}
let serviceGroup = ServiceGroup(
    configuration: .init(
        services: [.init(service: service)],
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger))
do {
    try await serviceGroup.run()
} catch {
    logger.error("service group ended with an error", metadata: ["error": "\(error)"])
}
audit.close()
try? await group.shutdownGracefully()
logger.info("stopped; the ruleset stays installed (captured connections are refused until interlockd runs again)")
