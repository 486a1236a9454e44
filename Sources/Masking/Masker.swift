import Crypto
import NIOCore

/// How a rule hides a sensitive value: the policy's `with:` word.
///
/// It exists so policies name a method by a stable word and the wire layer gets one switch.
public enum MaskMethod: String, CaseIterable, Sendable, Hashable {
    /// Replace with ``Masker/redactionMarker`` (`[REDACTED]`): the whole value for a column rule,
    /// each match for content detection.
    case redact
    /// Keep a useful part: a card's or SSN's last 4 digits, the first letter of an e-mail's local
    /// part and its domain, a phone's last 4 (or 2 when it has fewer than 10 digits), an IBAN's country
    /// and last 4; secrets are redacted whole. A column value no detector recognises keeps its
    /// last 4 characters (at most half of them) and shows one `*` per hidden character.
    case partial
    /// `h:` and the first 16 hex digits of HMAC-SHA256 under the appliance key, so equal values
    /// stay joinable without revealing them.
    case hash
    /// Send SQL NULL instead of the value.
    case null
}

/// What the wire layer sends instead of a value.
///
/// It exists because `null` is not a byte string: the wire layer writes a length of -1 for
/// ``sqlNull`` and the bytes of ``replaced(_:)`` otherwise.
public enum MaskOutcome: Sendable, Hashable {
    /// The value's new bytes (UTF-8 text).
    case replaced([UInt8])
    /// SQL NULL (a PostgreSQL field length of -1).
    case sqlNull
}

/// Applies mask methods to values, for column rules and for content detection.
///
/// It exists to hold the per-appliance HMAC key behind the ``MaskMethod/hash`` method so no other
/// code can read it: its description and mirror show no key material, so logging or dumping a
/// `Masker` never logs the key. It is a small value, safe to share across event loops.
public struct Masker: Sendable {
    private let hashKey: HashKey

    /// The marker that ``MaskMethod/redact`` (and secrets under ``MaskMethod/partial``) write.
    public static let redactionMarker: [UInt8] = Array("[REDACTED]".utf8)

    /// A masker hashing with `hashKey` (at least 32 random bytes, generated once per appliance).
    public init(hashKey: SymmetricKey) {
        self.hashKey = HashKey(key: hashKey)
    }

    /// A masker hashing with the key bytes `hashKey`.
    public init(hashKey: [UInt8]) {
        self.hashKey = HashKey(key: SymmetricKey(data: hashKey))
    }

    // MARK: Column rules

    /// Masks a value of a column that a rule marks sensitive: the whole value is sensitive.
    ///
    /// `partial` and `hash` first look for one detector match covering the whole value (ASCII
    /// whitespace around it allowed); if found, it is masked like content detection would
    /// (`j***@example.com`; a hash of the normalised value, so a column value and the same value
    /// found by a detector elsewhere hash alike). Otherwise `partial` keeps the last 4 UTF-8
    /// characters (at most half the value) and `hash` hashes the exact bytes.
    public func maskColumn(_ value: UnsafeRawBufferPointer, method: MaskMethod, stats: inout MaskStats) -> MaskOutcome {
        stats.columnValuesMasked += 1
        switch method {
        case .null:
            return .sqlNull
        case .redact:
            return .replaced(Self.redactionMarker)
        case .partial, .hash:
            if let match = Self.wholeValueMatch(value) {
                return .replaced(self.render(value, matches: [match], method: method))
            }
            if method == .partial { return .replaced(Self.genericPartial(value)) }
            var out: [UInt8] = []
            out.reserveCapacity(18)
            self.appendHash(of: value, to: &out)
            return .replaced(out)
        }
    }

    /// ``maskColumn(_:method:stats:)-(UnsafeRawBufferPointer,_,_)`` over a buffer's readable bytes.
    public func maskColumn(_ value: ByteBuffer, method: MaskMethod, stats: inout MaskStats) -> MaskOutcome {
        value.withUnsafeReadableBytes { self.maskColumn($0, method: method, stats: &stats) }
    }

    // MARK: Content detection

    /// Runs `detectors` over a value and masks only what they matched.
    ///
    /// Returns `nil` when nothing matched: the caller forwards the original bytes. Otherwise the
    /// bytes outside the matches are kept exactly, each match is replaced by `method` (`redact`
    /// writes `[REDACTED]` per match), and `null` turns the whole value into SQL NULL.
    public func scan(
        _ value: UnsafeRawBufferPointer, detectors: DetectorSet, method: MaskMethod, stats: inout MaskStats
    ) -> MaskOutcome? {
        stats.valuesScanned += 1
        let matches = detectors.matches(in: value)
        guard !matches.isEmpty else { return nil }
        stats.record(matches)
        if method == .null { return .sqlNull }
        return .replaced(self.render(value, matches: matches, method: method))
    }

    /// ``scan(_:detectors:method:stats:)-(UnsafeRawBufferPointer,_,_,_)`` over a buffer's readable bytes.
    public func scan(
        _ value: ByteBuffer, detectors: DetectorSet, method: MaskMethod, stats: inout MaskStats
    )
        -> MaskOutcome?
    {
        value.withUnsafeReadableBytes { self.scan($0, detectors: detectors, method: method, stats: &stats) }
    }

    // MARK: Rendering

    /// The one match that covers `value` but for surrounding ASCII whitespace.
    static func wholeValueMatch(_ value: UnsafeRawBufferPointer) -> DetectorMatch? {
        var low = 0
        var high = value.count
        while low < high && isASCIISpace(value[low]) { low += 1 }
        while high > low && isASCIISpace(value[high - 1]) { high -= 1 }
        guard low < high else { return nil }
        let matches = DetectorSet.all.matches(in: value)
        guard matches.count == 1, matches[0].range == low..<high else { return nil }
        return matches[0]
    }

    func render(_ value: UnsafeRawBufferPointer, matches: [DetectorMatch], method: MaskMethod) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(value.count + 16 * matches.count)
        var position = 0
        for match in matches {
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: value[position..<match.range.lowerBound]))
            let matched = UnsafeRawBufferPointer(rebasing: value[match.range])
            switch method {
            case .redact, .null:
                out.append(contentsOf: Self.redactionMarker)
            case .partial:
                Self.appendPartial(of: matched, kind: match.kind, to: &out)
            case .hash:
                let canonical = Self.canonical(matched, kind: match.kind)
                canonical.withUnsafeBytes { self.appendHash(of: $0, to: &out) }
            }
            position = match.range.upperBound
        }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: value[position...]))
        return out
    }

    /// `h:` + 16 lower-case hex digits (64 bits) of HMAC-SHA256(key, bytes).
    func appendHash(of bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        var mac = HMAC<SHA256>(key: self.hashKey.key)
        mac.update(data: bytes)
        let code = mac.finalize()
        out.append(UInt8(ascii: "h"))
        out.append(UInt8(ascii: ":"))
        code.withUnsafeBytes { digest in
            for k in 0..<8 {
                out.append(hexDigit(digest[k] >> 4))
                out.append(hexDigit(digest[k] & 0x0F))
            }
        }
    }

    /// What a detector's hash is computed over, so the same number written differently hashes
    /// alike: digits only for cards, SSNs and phones; letters and digits for IBANs; an e-mail in
    /// lower case; a secret as found.
    static func canonical(_ matched: UnsafeRawBufferPointer, kind: DetectorKind) -> [UInt8] {
        switch kind {
        case .creditCard, .usSSN, .phone:
            return matched.filter(isDigit)
        case .iban:
            return matched.filter(isAlnum)
        case .email:
            return matched.map(asciiLower)
        case .secret:
            return Array(matched)
        }
    }

    static func appendPartial(of matched: UnsafeRawBufferPointer, kind: DetectorKind, to out: inout [UInt8]) {
        let star = UInt8(ascii: "*")
        switch kind {
        case .creditCard, .usSSN, .phone:
            let digits = matched.reduce(0) { $0 + (isDigit($1) ? 1 : 0) }
            let keep = kind == .phone && digits < 10 ? 2 : 4
            var seen = 0
            for b in matched {
                if isDigit(b) {
                    seen += 1
                    out.append(seen > digits - keep ? b : star)
                } else {
                    out.append(b)
                }
            }
        case .iban:
            let characters = matched.reduce(0) { $0 + (isAlnum($1) ? 1 : 0) }
            var seen = 0
            for b in matched {
                if isAlnum(b) {
                    seen += 1
                    out.append(seen <= 2 || seen > characters - 4 ? b : star)
                } else {
                    out.append(b)
                }
            }
        case .email:
            out.append(matched[0])
            out.append(contentsOf: [star, star, star])
            let at = matched.firstIndex(of: UInt8(ascii: "@"))!
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: matched[at...]))
        case .secret:
            out.append(contentsOf: Self.redactionMarker)
        }
    }

    /// Keeps the last `min(4, n / 2)` of the value's `n` UTF-8 characters and writes one `*` for
    /// each other character (a character starts at every byte that is not a continuation byte).
    static func genericPartial(_ value: UnsafeRawBufferPointer) -> [UInt8] {
        var characters = 0
        for b in value where b & 0xC0 != 0x80 { characters += 1 }
        let keep = min(4, characters / 2)
        var out: [UInt8] = []
        out.reserveCapacity(value.count)
        var seen = 0
        for (offset, b) in value.enumerated() where b & 0xC0 != 0x80 {
            seen += 1
            if seen > characters - keep {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: value[offset...]))
                return out
            }
            out.append(UInt8(ascii: "*"))
        }
        return out
    }
}

extension Masker: CustomStringConvertible, CustomReflectable {
    public var description: String { "Masker(hashKey: <hidden>)" }
    public var customMirror: Mirror { Mirror(self, children: [:]) }
}

/// The appliance's HMAC key. `SymmetricKey` is not marked `Sendable` in swift-crypto 3, but it is
/// immutable after creation (its storage is never written again and only read through
/// `withUnsafeBytes`), so sharing it between threads is safe.
private struct HashKey: @unchecked Sendable {
    let key: SymmetricKey
}

@inline(__always)
private func hexDigit(_ nibble: UInt8) -> UInt8 {
    nibble < 10 ? nibble + 0x30 : nibble + 0x57
}

@inline(__always)
private func isASCIISpace(_ b: UInt8) -> Bool {
    b == 0x20 || (b >= 0x09 && b <= 0x0D)
}
