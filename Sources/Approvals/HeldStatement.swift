import Crypto

/// The exact statement a request asks about: its text and, for the extended protocol, its bound
/// parameters, as they would reach the server. Only its digest is kept; the text approvers read
/// is the caller's masked rendering (``ApprovalRequest/statementText``).
public struct HeldStatement: Sendable, Hashable {
    /// One bound parameter. The format is part of the value: the same bytes mean different things
    /// as text and as binary, so an approval of one does not cover the other.
    public enum Parameter: Sendable, Hashable {
        case null
        case text([UInt8])
        case binary([UInt8])
    }

    public var text: String
    public var parameters: [Parameter]

    public init(text: String, parameters: [Parameter] = []) {
        self.text = text
        self.parameters = parameters
    }

    /// An unambiguous byte encoding: a domain tag, then every part length-prefixed (big-endian
    /// `UInt64` lengths, a `UInt32` parameter count, one tag byte per parameter), so no two
    /// different statements (text moved into a parameter, a parameter split in two) encode alike.
    func encoded() -> [UInt8] {
        var out: [UInt8] = Array("interlock.approval.statement.v1\0".utf8)
        func append<I: FixedWidthInteger>(_ v: I) { withUnsafeBytes(of: v.bigEndian) { out.append(contentsOf: $0) } }
        append(UInt64(text.utf8.count))
        out.append(contentsOf: text.utf8)
        append(UInt32(parameters.count))
        for p in parameters {
            switch p {
            case .null:
                out.append(0)
            case .text(let bytes):
                out.append(1)
                append(UInt64(bytes.count))
                out.append(contentsOf: bytes)
            case .binary(let bytes):
                out.append(2)
                append(UInt64(bytes.count))
                out.append(contentsOf: bytes)
            }
        }
        return out
    }
}

/// Digests of held statements, keyed.
///
/// Why an HMAC and not a plain SHA-256: the digest is shown to approvers, returned by the CLI and
/// written to evidence, while the statement it covers is the *unmasked* original. A plain hash of
/// `... where ssn = '123-45-6789'` could be recovered by hashing every SSN; a keyed one cannot.
/// The key lives only in the daemon's memory, which is enough: pending requests and their
/// digests do not survive a restart anyway.
///
/// `@unchecked Sendable` as in Masking's `HashKey`: `SymmetricKey` is not marked `Sendable` in
/// swift-crypto 3, but it is immutable after creation (only read through `withUnsafeBytes`).
struct StatementDigester: @unchecked Sendable, CustomReflectable {
    let key: SymmetricKey

    /// Dumps and debuggers do not show the key.
    var customMirror: Mirror { Mirror(self, children: [:]) }

    init(key: SymmetricKey = SymmetricKey(size: .bits256)) { self.key = key }

    /// Lower-case hex HMAC-SHA256 of ``HeldStatement/encoded()``, 64 characters.
    func digest(_ statement: HeldStatement) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: statement.encoded(), using: key)
        return mac.map { b in
            let s = String(b, radix: 16)
            return b < 16 ? "0" + s : s
        }.joined()
    }
}

/// Short ids people type: a prefix saying what the id names (`apr-` requests, `grt-` grants) and
/// ten characters of Crockford base32 (50 random bits, no `i l o u`, so nothing reads as another
/// character). Input is compared after lower-casing, so `APR-...` works too.
enum ShortID {
    static let alphabet: [Character] = Array("0123456789abcdefghjkmnpqrstvwxyz")

    static func make(prefix: String, using rng: inout some RandomNumberGenerator) -> String {
        var s = prefix
        for _ in 0..<10 { s.append(alphabet[Int(rng.next(upperBound: UInt8(32)))]) }
        return s
    }

    static func normalise(_ id: String) -> String { id.lowercased() }
}
