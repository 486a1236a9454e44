import NIOCore

/// A kind of sensitive content that the content detectors recognise in a value.
///
/// It exists so policies, evidence and the wire layer can name a detector without knowing how it
/// works: the raw value is the stable name written in policy files (`detectors: [credit_card, ...]`)
/// and in audit entries, so it must never change.
public enum DetectorKind: String, CaseIterable, Sendable, Hashable {
    /// 13–19 digit payment card numbers, Luhn-checked, with a known brand prefix.
    case creditCard = "credit_card"
    /// Practical e-mail addresses: `local@domain.tld`.
    case email
    /// US social security numbers written `AAA-GG-SSSS` (dashes or spaces).
    case usSSN = "us_ssn"
    /// E.164 numbers (`+` and 8–15 digits) and punctuated NANP numbers.
    case phone
    /// IBANs with a valid mod-97 checksum and the right length for their country.
    case iban
    /// AWS access key ids, PEM private key blocks, JWTs, and values of secret-named assignments.
    case secret

    /// The bit of this kind in a ``DetectorSet``.
    @inline(__always)
    var bit: UInt8 {
        switch self {
        case .creditCard: 1 << 0
        case .email: 1 << 1
        case .usSSN: 1 << 2
        case .phone: 1 << 3
        case .iban: 1 << 4
        case .secret: 1 << 5
        }
    }

    /// Which kind wins when two matches of the same length overlap: the higher one.
    /// A secret is the most specific claim (it names its own label or structure), a phone number
    /// the least (its shape is the loosest).
    var specificity: Int {
        switch self {
        case .secret: 6
        case .creditCard: 5
        case .iban: 4
        case .usSSN: 3
        case .email: 2
        case .phone: 1
        }
    }
}

/// The detectors a rule turns on, as a bit set.
///
/// It exists so the hot path tests "is this detector on?" with one AND instead of a collection
/// lookup, and so a policy's `detectors:` list compiles once into a value that costs nothing to copy.
public struct DetectorSet: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8

    public init(rawValue: UInt8) {
        self.rawValue = rawValue & DetectorSet.allBits
    }

    /// The set holding exactly `kinds`.
    public init(_ kinds: some Sequence<DetectorKind>) {
        var raw: UInt8 = 0
        for kind in kinds { raw |= kind.bit }
        self.rawValue = raw
    }

    /// The set named by policy words (`credit_card`, `email`, ...); throws on the first unknown word.
    public init(names: some Sequence<String>) throws(UnknownDetectorName) {
        var raw: UInt8 = 0
        for name in names {
            guard let kind = DetectorKind(rawValue: name) else { throw UnknownDetectorName(name: name) }
            raw |= kind.bit
        }
        self.rawValue = raw
    }

    private static let allBits: UInt8 = 0b11_1111

    public static let creditCard = DetectorSet(rawValue: DetectorKind.creditCard.bit)
    public static let email = DetectorSet(rawValue: DetectorKind.email.bit)
    public static let usSSN = DetectorSet(rawValue: DetectorKind.usSSN.bit)
    public static let phone = DetectorSet(rawValue: DetectorKind.phone.bit)
    public static let iban = DetectorSet(rawValue: DetectorKind.iban.bit)
    public static let secret = DetectorSet(rawValue: DetectorKind.secret.bit)
    /// Every detector.
    public static let all = DetectorSet(rawValue: allBits)

    /// Whether `kind` is on.
    @inline(__always)
    public func contains(_ kind: DetectorKind) -> Bool {
        self.rawValue & kind.bit != 0
    }

    /// The kinds in this set, in ``DetectorKind/allCases`` order.
    public var kinds: [DetectorKind] {
        DetectorKind.allCases.filter { self.contains($0) }
    }

    /// All matches of this set's detectors in `value`, sorted and without overlaps (the longer
    /// match wins; on equal length the more specific kind does). Allocates only when something matches.
    public func matches(in value: UnsafeRawBufferPointer) -> [DetectorMatch] {
        ContentScanner(bytes: value, enabled: self).findAll()
    }

    /// All matches of this set's detectors in the readable bytes of `value`; ranges are offsets
    /// from the buffer's reader index.
    public func matches(in value: ByteBuffer) -> [DetectorMatch] {
        value.withUnsafeReadableBytes { self.matches(in: $0) }
    }
}

/// A detector name in a policy that no detector has.
public struct UnknownDetectorName: Error, Hashable, Sendable, CustomStringConvertible {
    /// The word as written in the policy.
    public var name: String

    public var description: String {
        let known = DetectorKind.allCases.map(\.rawValue).joined(separator: ", ")
        return "unknown detector '\(name)' (known detectors: \(known))"
    }
}

/// One span of a value that a detector recognised.
///
/// It exists so callers (and tests) can see *where* and *what* matched without the masker
/// rewriting anything; `range` is a byte offset range into the scanned value.
public struct DetectorMatch: Sendable, Hashable {
    /// The detector that fired.
    public var kind: DetectorKind
    /// Byte offsets of the match in the scanned value.
    public var range: Range<Int>

    public init(kind: DetectorKind, range: Range<Int>) {
        self.kind = kind
        self.range = range
    }
}
