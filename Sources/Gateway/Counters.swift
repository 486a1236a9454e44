import Control
import Synchronization

/// Process-wide counters for `interlock status`. Relaxed atomics: they are statistics, read rarely.
public final class Counters: Sendable {
    let accepted = Atomic<UInt64>(0)
    let forwarded = Atomic<UInt64>(0)
    let refused = Atomic<UInt64>(0)
    let active = Atomic<UInt64>(0)
    let bytesUp = Atomic<UInt64>(0)
    let bytesDown = Atomic<UInt64>(0)

    public init() {}

    public var snapshot: StatusReport.Counters {
        var c = StatusReport.Counters()
        c.accepted = accepted.load(ordering: .relaxed)
        c.forwarded = forwarded.load(ordering: .relaxed)
        c.refused = refused.load(ordering: .relaxed)
        c.active = active.load(ordering: .relaxed)
        c.bytesUp = bytesUp.load(ordering: .relaxed)
        c.bytesDown = bytesDown.load(ordering: .relaxed)
        return c
    }
}
