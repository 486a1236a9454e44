// Payment cards, US SSNs and phone numbers: the detectors that start on a digit (or `+`/`(`).

extension ContentScanner {
    /// A payment card number at the digit `start`.
    ///
    /// Accepts 13–19 digits, either unseparated (one run, not part of a longer run) or in the
    /// groupings cards are printed in, with one kind of separator (space or dash): 4-4-4-4,
    /// 4-4-4-4-1..3, 4-4-4-1..3, 4-6-5 (Amex), 4-6-4 (Diners). The longest grouping that passes Luhn,
    /// the brand prefix check and the end boundary wins, so `4111 1111 1111 1111 12/28` matches
    /// the card and leaves the expiry date.
    func cardMatch(at start: Int) -> DetectorMatch? {
        let bytes = self.bytes
        var i = start
        var digits = 0
        var groups = 0
        var firstGroup = 0
        var secondGroup = 0
        var allFoursSoFar = true
        var separator: UInt8 = 0
        var best = -1
        while true {
            let groupStart = i
            while isDigit(bytes.peek(i)) { i += 1 }
            let group = i - groupStart
            digits += group
            if digits > 19 { break }
            groups += 1
            if groups == 1 { firstGroup = group } else if groups == 2 { secondGroup = group }

            var shaped = false
            if groups == 1 {
                shaped = digits >= 13
            } else {
                if allFoursSoFar && group <= 4 && digits >= 13 { shaped = true }
                if groups == 3 && firstGroup == 4 && secondGroup == 6 && (group == 5 || group == 4) { shaped = true }
            }
            if shaped && self.numberMayEnd(at: i) && self.luhnValid(start, i) && self.brandPrefixValid(start, digits) {
                best = i
            }
            if group != 4 { allFoursSoFar = false }

            let next = bytes.peek(i)
            guard next == UInt8(ascii: " ") || next == UInt8(ascii: "-"), isDigit(bytes.peek(i + 1)), groups < 5 else {
                break
            }
            if separator == 0 { separator = next } else if next != separator { break }
            i += 1
        }
        return best < 0 ? nil : DetectorMatch(kind: .creditCard, range: start..<best)
    }

    /// The Luhn checksum over the digits in `start..<end` (separators skipped).
    func luhnValid(_ start: Int, _ end: Int) -> Bool {
        var sum = 0
        var double = false
        var k = end - 1
        while k >= start {
            let b = self.bytes[k]
            if isDigit(b) {
                var d = Int(b &- 0x30)
                if double {
                    d *= 2
                    if d > 9 { d -= 9 }
                }
                sum += d
                double.toggle()
            }
            k -= 1
        }
        return sum % 10 == 0
    }

    /// Whether the first digits are a major brand's prefix (IIN) for this many digits: Visa,
    /// Mastercard (51–55, 2221–2720), Amex, Discover, UnionPay, Diners, JCB, Maestro. Rejects the
    /// Luhn-valid numbers that are no card (`0000000000000000`, most ids).
    func brandPrefixValid(_ start: Int, _ digits: Int) -> Bool {
        var prefix = 0
        var taken = 0
        var k = start
        while taken < 6 {
            let b = self.bytes[k]
            if isDigit(b) {
                prefix = prefix * 10 + Int(b &- 0x30)
                taken += 1
            }
            k += 1
        }
        let p1 = prefix / 100_000
        let p2 = prefix / 10_000
        let p3 = prefix / 1_000
        let p4 = prefix / 100
        switch digits {
        case 13:
            return p1 == 4 || p2 == 50 || (56...58).contains(p2) || p2 == 63 || p2 == 67
        case 14:
            return (300...305).contains(p3) || p2 == 36 || p2 == 38 || p2 == 39 || p2 == 50 || (56...58).contains(p2)
                || p2 == 63 || p2 == 67
        case 15:
            return p2 == 34 || p2 == 37 || p2 == 50 || (56...58).contains(p2) || p2 == 63 || p2 == 67
                || (300...305).contains(p3) || p2 == 36 || p2 == 38 || p2 == 39
        default:  // 16...19
            if p1 == 4 { return digits == 16 || digits == 19 }
            if digits == 16 && ((51...55).contains(p2) || (2221...2720).contains(p4)) { return true }
            return p4 == 6011 || (644...649).contains(p3) || p2 == 65 || p2 == 62
                || (300...305).contains(p3) || p2 == 36 || p2 == 38 || p2 == 39
                || (3528...3589).contains(p4)
                || p2 == 50 || (56...58).contains(p2) || p2 == 63 || p2 == 67
        }
    }

    /// A US SSN `AAA-GG-SSSS` (or with single spaces) at the digit `start`. Rejects area 000, 666
    /// and 900–999, group 00 and serial 0000. The space form must not sit inside a longer run of
    /// space-separated digit groups.
    func ssnMatch(at start: Int) -> DetectorMatch? {
        let bytes = self.bytes
        guard bytes.hasDigits(3, at: start) else { return nil }
        let separator = bytes.peek(start + 3)
        guard separator == UInt8(ascii: "-") || separator == UInt8(ascii: " ") else { return nil }
        guard bytes.hasDigits(2, at: start + 4), bytes.peek(start + 6) == separator,
            bytes.hasDigits(4, at: start + 7)
        else { return nil }
        let end = start + 11
        guard self.numberMayEnd(at: end) else { return nil }
        if separator == UInt8(ascii: " ") {
            if bytes.peek(end) == UInt8(ascii: " ") && isDigit(bytes.peek(end + 1)) { return nil }
            if bytes.peek(start - 1) == UInt8(ascii: " ") && isDigit(bytes.peek(start - 2)) { return nil }
        }
        let area = bytes.decimal(3, at: start)
        let group = bytes.decimal(2, at: start + 4)
        let serial = bytes.decimal(4, at: start + 7)
        guard area != 0, area != 666, area < 900, group != 0, serial != 0 else { return nil }
        return DetectorMatch(kind: .usSSN, range: start..<end)
    }

    /// A punctuated NANP number at the digit `start`: `555-123-4567`, `555.123.4567`, optionally
    /// with a leading `1-`/`1.` (same separator throughout). The area code starts with 2–9.
    /// Unpunctuated runs (`5551234567`) are not phone numbers: they are indistinguishable from ids.
    func nanpMatch(at start: Int) -> DetectorMatch? {
        let bytes = self.bytes
        var area = start
        var separator: UInt8 = 0
        let second = bytes.peek(start + 1)
        if bytes[start] == UInt8(ascii: "1") && (second == UInt8(ascii: "-") || second == UInt8(ascii: "."))
            && isDigit(bytes.peek(start + 2))
        {
            separator = second
            area = start + 2
        }
        guard bytes.hasDigits(3, at: area), bytes[area] >= UInt8(ascii: "2") else { return nil }
        let first = bytes.peek(area + 3)
        guard first == UInt8(ascii: "-") || first == UInt8(ascii: ".") else { return nil }
        if separator != 0 && first != separator { return nil }
        guard bytes.hasDigits(3, at: area + 4), bytes.peek(area + 7) == first, bytes.hasDigits(4, at: area + 8)
        else { return nil }
        let end = area + 12
        guard self.numberMayEnd(at: end) else { return nil }
        return DetectorMatch(kind: .phone, range: start..<end)
    }

    /// A NANP number with the area code in parentheses at `open` (the `(`): `(555) 123-4567`,
    /// `(555)123-4567`, `(555) 123 4567`, `(555) 123.4567`.
    func nanpParenthesizedMatch(at open: Int) -> DetectorMatch? {
        let bytes = self.bytes
        guard !isWordByte(bytes.peek(open - 1)) else { return nil }
        guard bytes.hasDigits(3, at: open + 1), bytes[open + 1] >= UInt8(ascii: "2"),
            bytes.peek(open + 4) == UInt8(ascii: ")")
        else { return nil }
        var exchange = open + 5
        if bytes.peek(exchange) == UInt8(ascii: " ") { exchange += 1 }
        guard bytes.hasDigits(3, at: exchange) else { return nil }
        let separator = bytes.peek(exchange + 3)
        guard separator == UInt8(ascii: "-") || separator == UInt8(ascii: ".") || separator == UInt8(ascii: " "),
            bytes.hasDigits(4, at: exchange + 4)
        else { return nil }
        let end = exchange + 8
        guard self.numberMayEnd(at: end) else { return nil }
        return DetectorMatch(kind: .phone, range: open..<end)
    }

    /// An international number at `plus` (the `+`): a country code not starting with 0, then digit
    /// groups joined by single spaces, dashes or dots, or a parenthesised group (`+44 (0)20 ...`),
    /// 8–15 digits in all. More than 15 digits is a long number, not a phone. The `+` must not
    /// follow a word byte or `)` (`1+2`, `...00:00+01:00`).
    func e164Match(at plus: Int) -> DetectorMatch? {
        let bytes = self.bytes
        let prev = bytes.peek(plus - 1)
        guard !isWordByte(prev), prev != UInt8(ascii: ")"), prev != UInt8(ascii: "+") else { return nil }
        var i = plus + 1
        guard isDigit(bytes.peek(i)), bytes[i] != UInt8(ascii: "0") else { return nil }
        var digits = 0
        while true {
            if bytes.peek(i) == UInt8(ascii: "(") {
                let groupStart = i + 1
                var k = groupStart
                while isDigit(bytes.peek(k)) { k += 1 }
                guard k - groupStart >= 1, k - groupStart <= 4, bytes.peek(k) == UInt8(ascii: ")") else { return nil }
                digits += k - groupStart
                i = k + 1
                if bytes.peek(i) == UInt8(ascii: " ") && isDigit(bytes.peek(i + 1)) { i += 1 }
                guard isDigit(bytes.peek(i)) else { return nil }
            }
            let groupStart = i
            while isDigit(bytes.peek(i)) { i += 1 }
            digits += i - groupStart
            if digits > 15 { return nil }
            let next = bytes.peek(i)
            let after = bytes.peek(i + 1)
            if next == UInt8(ascii: "(") { continue }
            if next == UInt8(ascii: " ") || next == UInt8(ascii: "-") || next == UInt8(ascii: ".") {
                if isDigit(after) || after == UInt8(ascii: "(") {
                    i += 1
                    continue
                }
            }
            break
        }
        guard digits >= 8, self.numberMayEnd(at: i) else { return nil }
        return DetectorMatch(kind: .phone, range: plus..<i)
    }
}
