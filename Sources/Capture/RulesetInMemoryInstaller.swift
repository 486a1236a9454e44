import Synchronization

/// A `RulesetInstaller` that keeps the ruleset in memory, for other modules' unit tests (the
/// reconciler, the CLI's `rules show`): it validates like the real one, remembers what was
/// installed, and can simulate an operator flushing or tampering with the table.
public final class InMemoryRulesetInstaller: RulesetInstaller {
    private struct State {
        var installed: CaptureRuleset?
        var tampered = false
        var installCount = 0
        var removeCount = 0
        var nextInstallError: CaptureError?
    }

    private let state = Mutex(State())

    public init() {}

    /// What is "in the kernel" now; nil when missing.
    public var installed: CaptureRuleset? { state.withLock { $0.installed } }
    /// How many times `install` succeeded.
    public var installCount: Int { state.withLock { $0.installCount } }
    /// How many times `remove` was called.
    public var removeCount: Int { state.withLock { $0.removeCount } }

    public func install(_ ruleset: CaptureRuleset) throws {
        try ruleset.validate()
        try state.withLock { state in
            if let error = state.nextInstallError {
                state.nextInstallError = nil
                throw error
            }
            state.installed = ruleset
            state.tampered = false
            state.installCount += 1
        }
    }

    public func health(expected: CaptureRuleset) throws -> RulesetHealth {
        state.withLock { state in
            guard let installed = state.installed else { return .missing }
            if state.tampered {
                return .drifted("chain nat_output: rules were changed outside interlockd (simulated tamper)")
            }
            return installed == expected ? .intact : .drifted(Self.differences(installed, expected))
        }
    }

    public func remove() throws {
        state.withLock { state in
            state.installed = nil
            state.tampered = false
            state.removeCount += 1
        }
    }

    /// As if an operator ran `nft flush ruleset`: the table disappears.
    public func simulateFlush() {
        state.withLock { $0.installed = nil }
    }

    /// As if someone edited the table by hand: health reports `.drifted` until the next install.
    public func simulateTamper() {
        state.withLock { state in
            if state.installed != nil { state.tampered = true }
        }
    }

    /// The next `install` fails with `error` (once), to test how callers handle a refusing kernel.
    public func failNextInstall(with error: CaptureError) {
        state.withLock { $0.nextInstallError = error }
    }

    private static func differences(_ installed: CaptureRuleset, _ expected: CaptureRuleset) -> String {
        var out: [String] = []
        if installed.capturedUIDs != expected.capturedUIDs {
            out.append("set captured_uids holds \(installed.capturedUIDs), expected \(expected.capturedUIDs)")
        }
        if installed.daemonUID != expected.daemonUID {
            out.append("daemon uid \(installed.daemonUID), expected \(expected.daemonUID)")
        }
        if installed.listenPort != expected.listenPort {
            out.append("listen port \(installed.listenPort), expected \(expected.listenPort)")
        }
        if installed.upstreamMark != expected.upstreamMark {
            out.append("mark \(nftHex32(installed.upstreamMark)), expected \(nftHex32(expected.upstreamMark))")
        }
        if installed.allowDNS != expected.allowDNS {
            out.append("DNS over UDP \(installed.allowDNS ? "allowed" : "refused"), expected the opposite")
        }
        return out.joined(separator: "; ")
    }
}
