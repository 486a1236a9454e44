import NIOCore
import PostgresWire
import Synchronization

/// The backend keys of live PostgreSQL sessions.
///
/// A `CancelRequest` arrives on a new captured connection and names only a backend's pid and secret.
/// The gateway looks the key up here to learn which session it belongs to (and so whose it is) and
/// which server to send it to: a captured account may cancel its own statements, nobody else's.
final class CancelRegistry: Sendable {
    struct Target: Sendable {
        var session: String
        var uid: UInt32
        var resource: String
        var upstream: SocketAddress
        /// Tells the owning session a cancel for it was allowed (a statement held for approval is
        /// withdrawn: the server has nothing to cancel for it).
        var interrupt: @Sendable () -> Void
        /// Whether the owning session holds a statement for approval right now.
        var isHolding: @Sendable () -> Bool = { false }
    }

    private let targets = Mutex<[PostgresBackendKey: Target]>([:])

    func register(_ key: PostgresBackendKey, _ target: Target) {
        targets.withLock { $0[key] = target }
    }

    /// Forgets `key` if it still belongs to `session` (a backend pid may be reused by a later one).
    func unregister(_ key: PostgresBackendKey, session: String) {
        targets.withLock {
            if $0[key]?.session == session { $0[key] = nil }
        }
    }

    func lookup(_ key: PostgresBackendKey) -> Target? {
        targets.withLock { $0[key] }
    }
}
