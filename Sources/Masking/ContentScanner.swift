/// One left-to-right pass over a value that runs every enabled detector where it can start.
///
/// The loop looks at each byte once: a word (`[A-Za-z0-9_]+`) is skipped whole after its first byte
/// chose which detectors may start there (digits: card, SSN, phone; an upper-case letter: IBAN, AWS
/// key id; `eyJ`: JWT), and a few punctuation bytes trigger the rest (`@` e-mail, `=`/`:` secret
/// assignments, `+`/`(` phone, `-----BEGIN` PEM). Every attempt is bounded by the longest thing it
/// can match, except PEM and quoted assignment values, which continue the scan from where they end,
/// so a scan is linear in the value's length. Nothing is allocated until a detector matches.
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
        var i = 0
        while i < n {
            let b = bytes[i]
            if isWordByte(b) {
                var end = i &+ 1
                while end < n && isWordByte(bytes[end]) { end &+= 1 }
                var match: DetectorMatch? = nil
                if isDigit(b) {
                    if numeric && self.numberMayStart(at: i) { match = self.numericMatch(at: i) }
                } else if isUpper(b) {
                    if iban { match = self.ibanMatch(at: i) }
                    if match == nil && secret { match = self.awsAccessKeyMatch(at: i, wordEnd: end) }
                } else if b == UInt8(ascii: "e") {
                    if secret { match = self.jwtMatch(at: i) }
                }
                if let match {
                    found.append(match)
                    i = max(end, match.range.upperBound)
                } else {
                    i = end
                }
                continue
            }
            var match: DetectorMatch? = nil
            switch b {
            case UInt8(ascii: "@"): if email { match = self.emailMatch(at: i) }
            case UInt8(ascii: "="), UInt8(ascii: ":"): if secret { match = self.assignmentMatch(at: i) }
            case UInt8(ascii: "+"): if phone { match = self.e164Match(at: i) }
            case UInt8(ascii: "("): if phone { match = self.nanpParenthesizedMatch(at: i) }
            case UInt8(ascii: "-"): if secret { match = self.pemMatch(at: i) }
            default: break
            }
            if let match {
                found.append(match)
                i = max(i &+ 1, match.range.upperBound)
            } else {
                i &+= 1
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
