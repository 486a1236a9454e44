import PostgresWire
import Synchronization

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
