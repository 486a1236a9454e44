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

/// The salted SCRAM keys of the daemon's own upstream logins, per resource, user and password.
///
/// A SCRAM login costs the client PBKDF2 (4,096 rounds by default, about a millisecond), and with
/// injected credentials the client is the daemon, at every captured connection. The server's salt and
/// iteration count rarely change, so the keys of one login serve the next; the authenticator checks
/// salt and iterations and derives again when they differ.
final class SCRAMKeyCache: Sendable {
    private let keys = Mutex<[String: SCRAMSHA256Client.Keys]>([:])

    func lookup(_ key: String) -> SCRAMSHA256Client.Keys? {
        keys.withLock { $0[key] }
    }

    func store(_ value: SCRAMSHA256Client.Keys, for key: String) {
        keys.withLock {
            if $0.count >= 1024 { $0.removeAll() }
            $0[key] = value
        }
    }
}
