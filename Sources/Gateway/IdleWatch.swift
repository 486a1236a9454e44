import NIOCore

/// Ends a session after `timeout` without a byte either way.
///
/// It checks a byte counter every quarter of the timeout instead of timing each read and write, so
/// the data path pays nothing for it (NIO's IdleStateHandler reads the clock and allocates a promise
/// per write); an idle session is ended between 1× and 1.25× the timeout. Confined to one event loop.
final class IdleWatch {
    private let timeout: TimeAmount
    private let eventLoop: any EventLoop
    private let total: () -> UInt64?
    private let waiting: () -> Bool
    private let expired: () -> Void
    private var task: Scheduled<Void>?
    private var lastTotal: UInt64 = 0
    private var lastChange = NIODeadline.now()

    /// - Parameters:
    ///   - total: bytes moved so far, either way; nil when the session is gone (the watch stops).
    ///   - waiting: whether the session is quiet on purpose (a statement held for approval, whose
    ///     own timeout ends the wait): it is not idle meanwhile.
    ///   - expired: called once, on the event loop, when the session has been idle too long.
    init(
        timeout: TimeAmount, on eventLoop: any EventLoop, total: @escaping () -> UInt64?,
        waiting: @escaping () -> Bool = { false }, expired: @escaping () -> Void
    ) {
        self.timeout = timeout
        self.eventLoop = eventLoop
        self.total = total
        self.waiting = waiting
        self.expired = expired
        schedule(every: .nanoseconds(max(timeout.nanoseconds / 4, 1_000_000)))
    }

    func cancel() {
        task?.cancel()
        task = nil
    }

    private func schedule(every interval: TimeAmount) {
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        task = eventLoop.scheduleTask(in: interval) {
            let this = bound.value
            guard this.task != nil, let total = this.total() else { return }
            let now = NIODeadline.now()
            if total != this.lastTotal || this.waiting() {
                this.lastTotal = total
                this.lastChange = now
            } else if now - this.lastChange >= this.timeout {
                this.task = nil
                this.expired()
                return
            }
            this.schedule(every: interval)
        }
    }
}
