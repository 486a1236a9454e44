/// Counts for the evidence log: which detectors fired and how many values and matches were
/// masked. It never holds a value, so it can be recorded and logged freely.
///
/// It exists so a statement's audit entry can say "3 values masked by `customers.email`, 2 card
/// numbers found" without the masker knowing about statements: the wire layer keeps one per
/// statement (or per column) and ``merge(_:)``s them.
public struct MaskStats: Sendable, Hashable {
    /// Values given to content detection.
    public internal(set) var valuesScanned = 0
    /// Values that content detection rewrote (or turned into NULL).
    public internal(set) var valuesMaskedByDetectors = 0
    /// Values masked because their column is covered by a rule.
    public internal(set) var columnValuesMasked = 0
    private var creditCard = 0
    private var email = 0
    private var usSSN = 0
    private var phone = 0
    private var iban = 0
    private var secret = 0

    public init() {}

    /// Matches found by `kind`.
    public func matches(_ kind: DetectorKind) -> Int {
        switch kind {
        case .creditCard: self.creditCard
        case .email: self.email
        case .usSSN: self.usSSN
        case .phone: self.phone
        case .iban: self.iban
        case .secret: self.secret
        }
    }

    /// Matches found by all detectors.
    public var totalMatches: Int {
        self.creditCard + self.email + self.usSSN + self.phone + self.iban + self.secret
    }

    /// The detectors that found at least one match, in ``DetectorKind/allCases`` order.
    public var detectorsFired: [DetectorKind] {
        DetectorKind.allCases.filter { self.matches($0) > 0 }
    }

    /// Whether anything was masked.
    public var isEmpty: Bool {
        self.valuesMaskedByDetectors == 0 && self.columnValuesMasked == 0
    }

    /// Adds `other`'s counts to these.
    public mutating func merge(_ other: MaskStats) {
        self.valuesScanned += other.valuesScanned
        self.valuesMaskedByDetectors += other.valuesMaskedByDetectors
        self.columnValuesMasked += other.columnValuesMasked
        self.creditCard += other.creditCard
        self.email += other.email
        self.usSSN += other.usSSN
        self.phone += other.phone
        self.iban += other.iban
        self.secret += other.secret
    }

    mutating func record(_ matches: [DetectorMatch]) {
        self.valuesMaskedByDetectors += 1
        for match in matches {
            switch match.kind {
            case .creditCard: self.creditCard += 1
            case .email: self.email += 1
            case .usSSN: self.usSSN += 1
            case .phone: self.phone += 1
            case .iban: self.iban += 1
            case .secret: self.secret += 1
            }
        }
    }
}
