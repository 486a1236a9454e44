import Logging
import ServiceLifecycle
import UnixSignals

/// The daemon's long-lived background work, run as one `Service` in the daemon's `ServiceGroup`:
/// the ruleset reconciler, SIGHUP reloads, host-name refresh and the systemd watchdog. The
/// listeners are started before the group runs (so READY=1 means "capturing"); this service stops
/// them when a graceful shutdown (SIGTERM) begins.
public struct DaemonService: Service {
    let gateway: Gateway
    let notifier: SystemdNotifier
    let logger: Logger
    let onStop: @Sendable () async -> Void

    public init(
        gateway: Gateway, notifier: SystemdNotifier, logger: Logger, onStop: @escaping @Sendable () async -> Void
    ) {
        self.gateway = gateway
        self.notifier = notifier
        self.logger = logger
        self.onStop = onStop
    }

    public func run() async throws {
        let runtime = gateway.runtime
        let notifier = self.notifier
        let logger = self.logger
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: runtime.policy.config.daemon.rulesetCheckInterval)
                        if Task.isCancelled { break }
                        runtime.reconcile()
                    }
                }
                group.addTask {
                    for await _ in await UnixSignalsSequence(trapping: .sighup) {
                        if Task.isCancelled { break }
                        logger.info("SIGHUP: reloading policy")
                        runtime.reload(trigger: "sighup")
                    }
                }
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: runtime.policy.config.daemon.resolveInterval)
                        if Task.isCancelled { break }
                        runtime.refreshHostNames()
                    }
                }
                if let interval = notifier.watchdogInterval {
                    group.addTask {
                        while !Task.isCancelled {
                            notifier.notify("WATCHDOG=1")
                            try? await Task.sleep(for: interval)
                        }
                    }
                }
                await group.waitForAll()
            }
        }
        notifier.notify("STOPPING=1")
        logger.info("stopping: closing listeners and live sessions")
        await gateway.stop()
        await onStop()
    }
}
