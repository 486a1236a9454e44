/// One left-to-right pass over a value that runs every enabled detector where it can start.
///
/// The loop looks at each byte once: only the first byte of a word (`[A-Za-z0-9_]+`) may start
/// a detector, and it chooses which (digits: card, SSN, phone; an upper-case letter: IBAN, AWS
/// key id; `eyJ`: JWT), and a few punctuation bytes trigger the rest (`@` e-mail, `=`/`:` secret
/// assignments, `+`/`(` phone, `-----BEGIN` PEM). An attempt reads either a bounded window (an
/// e-mail's 64-byte local part, an IBAN's 34 characters) or a run that no other attempt reads
/// again (a digit run, a base64url run, a PEM body or a secret value, after which the scan resumes
/// at the match's end), so a scan is linear in the value's length. Nothing is allocated until a
/// detector matches.
struct ContentScanner {
    let bytes: UnsafeRawBufferPointer
    let enabled: DetectorSet

    func findAll() -> [DetectorMatch] {
        let bytes = self.bytes
        let n = bytes.count
        let numeric =
            self.enabled.rawValue
            & (DetectorSet.creditCard.rawValue | DetectorSet.usSSN.rawValue | DetectorSet.phone.rawValue) != 0
        let iban = self.enabled.contains(.iban)
        let secret = self.enabled.contains(.secret)
        let email = self.enabled.contains(.email)
        let phone = self.enabled.contains(.phone)

        var found: [DetectorMatch] = []
        byteClasses.withUnsafeBufferPointer { classes in
            // `previous` is ByteClass.word when the byte before `i` is a word byte: then `i` is no
            // word start and only trigger punctuation (never a word byte) can start a detector.
            // The common byte costs one load, one AND and a well-predicted branch.
            var previous: UInt8 = 0
            var i = 0
            while i < n {
                let b = bytes[i]
                let byteClass = classes[Int(b)]
                if byteClass & ~(previous << 2) & (ByteClass.trigger | ByteClass.wordStart) == 0 {
                    previous = byteClass & ByteClass.word
                    i &+= 1
                    continue
                }
                var match: DetectorMatch? = nil
                if byteClass & ByteClass.wordStart != 0 {
                    if isDigit(b) {
                        if numeric && self.numberMayStart(at: i) { match = self.numericMatch(at: i) }
                    } else if isUpper(b) {
                        if iban { match = self.ibanMatch(at: i) }
                        if match == nil && secret { match = self.awsAccessKeyMatch(at: i) }
                    } else if secret {
                        match = self.jwtMatch(at: i)
                    }
                } else {
                    switch b {
                    case UInt8(ascii: "@"): if email { match = self.emailMatch(at: i) }
                    case UInt8(ascii: "="), UInt8(ascii: ":"): if secret { match = self.assignmentMatch(at: i) }
                    case UInt8(ascii: "+"): if phone { match = self.e164Match(at: i) }
                    case UInt8(ascii: "("): if phone { match = self.nanpParenthesizedMatch(at: i) }
                    case UInt8(ascii: "-"): if secret { match = self.pemMatch(at: i) }
                    default: break
                    }
                }
                if let match, match.range.upperBound > i {
                    found.append(match)
                    i = match.range.upperBound
                    previous = classes[Int(bytes[i &- 1])] & ByteClass.word
                } else {
                    if let match { found.append(match) }
                    previous = byteClass & ByteClass.word
                    i &+= 1
                }
            }
        }
        return found.count < 2 ? found : Self.resolveOverlaps(found)
    }

    /// Card, SSN or punctuated NANP phone starting at the digit `i` (a word start).
    private func numericMatch(at i: Int) -> DetectorMatch? {
        if self.enabled.contains(.creditCard), let m = self.cardMatch(at: i) { return m }
        if self.enabled.contains(.usSSN), let m = self.ssnMatch(at: i) { return m }
        if self.enabled.contains(.phone), let m = self.nanpMatch(at: i) { return m }
        return nil
    }

    /// A number may start at the digit `i` unless it continues a longer number: `2026-11-21`,
    /// `198.18.0.10`, `1,234,567`, `10:30` (a digit, a joiner, then `i`), or follows a `+`.
    @inline(__always)
    func numberMayStart(at i: Int) -> Bool {
        guard i > 0 else { return true }
        let prev = self.bytes[i - 1]
        if isWordByte(prev) || prev == UInt8(ascii: "+") { return false }
        if isNumberJoiner(prev) && isDigit(self.bytes.peek(i - 2)) { return false }
        return true
    }

    /// A number may end at `e` (exclusive) unless a word byte follows or it continues as a longer
    /// number (a joiner and another digit: `555-123-4567-1`, `4111111111111111.50`).
    @inline(__always)
    func numberMayEnd(at e: Int) -> Bool {
        let next = self.bytes.peek(e)
        if isWordByte(next) { return false }
        if isNumberJoiner(next) && isDigit(self.bytes.peek(e + 1)) { return false }
        return true
    }

    /// Sorts matches by start (longer first) and drops overlaps: the longer match wins, and on equal
    /// length the more specific kind.
    static func resolveOverlaps(_ found: [DetectorMatch]) -> [DetectorMatch] {
        let sorted = found.sorted {
            $0.range.lowerBound != $1.range.lowerBound
                ? $0.range.lowerBound < $1.range.lowerBound : $0.range.count > $1.range.count
        }
        var kept: [DetectorMatch] = []
        kept.reserveCapacity(sorted.count)
        for match in sorted {
            guard let last = kept.last, match.range.lowerBound < last.range.upperBound else {
                kept.append(match)
                continue
            }
            let longer = match.range.count > last.range.count
            let sameButMoreSpecific =
                match.range.count == last.range.count && match.kind.specificity > last.kind.specificity
            if longer || sameButMoreSpecific { kept[kept.count - 1] = match }
        }
        return kept
    }
}

/// What the scan loop does with a byte, as bits: part of a word; a word byte that may start a
/// detector when it starts a word (digits, upper-case letters, `e`); punctuation that triggers a
/// detector. One table load per byte instead of a chain of range checks.
enum ByteClass {
    static let word: UInt8 = 1
    static let trigger: UInt8 = 2
    static let wordStart: UInt8 = 4
}

let byteClasses: [UInt8] = (0..<256).map { (value: Int) -> UInt8 in
    let b = UInt8(value)
    if isDigit(b) || isUpper(b) || b == UInt8(ascii: "e") { return ByteClass.word | ByteClass.wordStart }
    if isWordByte(b) { return ByteClass.word }
    switch b {
    case UInt8(ascii: "@"), UInt8(ascii: "="), UInt8(ascii: ":"), UInt8(ascii: "+"), UInt8(ascii: "("),
        UInt8(ascii: "-"):
        return ByteClass.trigger
    default:
        return 0
    }
}
