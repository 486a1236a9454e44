// E-mail addresses and IBANs.

extension ContentScanner {
    /// An e-mail address around the `@` at `sign`.
    ///
    /// Local part: 1–64 bytes of `A-Z a-z 0-9 . _ % + -`, starting with a letter, digit or `_`, no
    /// leading/trailing/double dot (quoted local parts and non-ASCII addresses are not recognised).
    /// Domain: two or more labels of `A-Z a-z 0-9 -` (1–63 bytes, no leading/trailing `-`), at
    /// most 253 bytes, the last label (TLD) letters only and at least 2 long. A trailing dot (end
    /// of a sentence) is not part of the address.
    func emailMatch(at sign: Int) -> DetectorMatch? {
        let bytes = self.bytes
        var start = sign
        while start > 0 && sign - start <= 64 && Self.isLocalPartByte(bytes[start - 1]) { start -= 1 }
        if sign - start > 64 { return nil }
        while start < sign && !isWordByte(bytes[start]) { start += 1 }
        guard start < sign, bytes[sign - 1] != UInt8(ascii: ".") else { return nil }
        var k = start + 1
        while k < sign {
            if bytes[k] == UInt8(ascii: ".") && bytes[k - 1] == UInt8(ascii: ".") { return nil }
            k += 1
        }

        var i = sign + 1
        var labels = 0
        var domainEnd = -1
        while true {
            let labelStart = i
            var lettersOnly = true
            while true {
                let b = bytes.peek(i)
                if isAlpha(b) {
                } else if isDigit(b) || b == UInt8(ascii: "-") {
                    lettersOnly = false
                } else {
                    break
                }
                i += 1
                if i - labelStart > 63 { break }
            }
            let length = i - labelStart
            guard length >= 1, length <= 63, bytes[labelStart] != UInt8(ascii: "-"),
                bytes[i - 1] != UInt8(ascii: "-"), i - sign - 1 <= 253
            else { break }
            labels += 1
            if labels >= 2 && lettersOnly && length >= 2 { domainEnd = i }
            guard bytes.peek(i) == UInt8(ascii: "."), isAlnum(bytes.peek(i + 1)) else { break }
            i += 1
        }
        guard domainEnd > 0 else { return nil }
        let next = bytes.peek(domainEnd)
        guard !isWordByte(next), next != UInt8(ascii: "-"), next != UInt8(ascii: "@") else { return nil }
        return DetectorMatch(kind: .email, range: start..<domainEnd)
    }

    @inline(__always)
    static func isLocalPartByte(_ b: UInt8) -> Bool {
        isWordByte(b) || b == UInt8(ascii: ".") || b == UInt8(ascii: "%") || b == UInt8(ascii: "+")
            || b == UInt8(ascii: "-")
    }

    /// An IBAN at the upper-case letter `start`: a country code from the length table, 2 check
    /// digits, then upper-case letters and digits up to the country's length, either unbroken
    /// (`GB82WEST12345698765432`) or in groups of 4 separated by single spaces
    /// (`GB82 WEST 1234 5698 7654 32`), with a valid ISO 7064 mod-97 checksum. Lower-case IBANs
    /// and countries missing from the table are not recognised.
    func ibanMatch(at start: Int) -> DetectorMatch? {
        let bytes = self.bytes
        let c0 = bytes[start]
        let c1 = bytes.peek(start + 1)
        guard isUpper(c1), isDigit(bytes.peek(start + 2)), isDigit(bytes.peek(start + 3)),
            let length = Self.ibanLength(c0, c1)
        else { return nil }
        var i = start + 4
        let spaced = bytes.peek(i) == UInt8(ascii: " ")
        var count = 4
        var remainder = 0
        while count < length {
            if count % 4 == 0 && spaced {
                guard bytes.peek(i) == UInt8(ascii: " ") else { return nil }
                i += 1
            }
            let b = bytes.peek(i)
            if isDigit(b) {
                remainder = (remainder * 10 + Int(b &- 0x30)) % 97
            } else if isUpper(b) {
                remainder = (remainder * 100 + Int(b &- 0x41) + 10) % 97
            } else {
                return nil
            }
            i += 1
            count += 1
        }
        guard !isWordByte(bytes.peek(i)) else { return nil }
        remainder = (remainder * 100 + Int(c0 &- 0x41) + 10) % 97
        remainder = (remainder * 100 + Int(c1 &- 0x41) + 10) % 97
        remainder = (remainder * 100 + bytes.decimal(2, at: start + 2)) % 97
        guard remainder == 1 else { return nil }
        return DetectorMatch(kind: .iban, range: start..<i)
    }

    /// IBAN lengths of the SWIFT registry's countries (common European ones and the rest of the
    /// registry that uses the same format).
    static func ibanLength(_ c0: UInt8, _ c1: UInt8) -> Int? {
        switch (c0, c1) {
        case (0x41, 0x44): 24  // AD
        case (0x41, 0x45): 23  // AE
        case (0x41, 0x4C): 28  // AL
        case (0x41, 0x54): 20  // AT
        case (0x41, 0x5A): 28  // AZ
        case (0x42, 0x41): 20  // BA
        case (0x42, 0x45): 16  // BE
        case (0x42, 0x47): 22  // BG
        case (0x42, 0x48): 22  // BH
        case (0x42, 0x52): 29  // BR
        case (0x43, 0x48): 21  // CH
        case (0x43, 0x52): 22  // CR
        case (0x43, 0x59): 28  // CY
        case (0x43, 0x5A): 24  // CZ
        case (0x44, 0x45): 22  // DE
        case (0x44, 0x4B): 18  // DK
        case (0x44, 0x4F): 28  // DO
        case (0x45, 0x45): 20  // EE
        case (0x45, 0x47): 29  // EG
        case (0x45, 0x53): 24  // ES
        case (0x46, 0x49): 18  // FI
        case (0x46, 0x4F): 18  // FO
        case (0x46, 0x52): 27  // FR
        case (0x47, 0x42): 22  // GB
        case (0x47, 0x45): 22  // GE
        case (0x47, 0x49): 23  // GI
        case (0x47, 0x4C): 18  // GL
        case (0x47, 0x52): 27  // GR
        case (0x47, 0x54): 28  // GT
        case (0x48, 0x52): 21  // HR
        case (0x48, 0x55): 28  // HU
        case (0x49, 0x45): 22  // IE
        case (0x49, 0x4C): 23  // IL
        case (0x49, 0x53): 26  // IS
        case (0x49, 0x54): 27  // IT
        case (0x4A, 0x4F): 30  // JO
        case (0x4B, 0x57): 30  // KW
        case (0x4B, 0x5A): 20  // KZ
        case (0x4C, 0x42): 28  // LB
        case (0x4C, 0x49): 21  // LI
        case (0x4C, 0x54): 20  // LT
        case (0x4C, 0x55): 20  // LU
        case (0x4C, 0x56): 21  // LV
        case (0x4D, 0x43): 27  // MC
        case (0x4D, 0x44): 24  // MD
        case (0x4D, 0x45): 22  // ME
        case (0x4D, 0x4B): 19  // MK
        case (0x4D, 0x52): 27  // MR
        case (0x4D, 0x54): 31  // MT
        case (0x4D, 0x55): 30  // MU
        case (0x4E, 0x4C): 18  // NL
        case (0x4E, 0x4F): 15  // NO
        case (0x50, 0x4B): 24  // PK
        case (0x50, 0x4C): 28  // PL
        case (0x50, 0x53): 29  // PS
        case (0x50, 0x54): 25  // PT
        case (0x51, 0x41): 29  // QA
        case (0x52, 0x4F): 24  // RO
        case (0x52, 0x53): 22  // RS
        case (0x53, 0x41): 24  // SA
        case (0x53, 0x45): 24  // SE
        case (0x53, 0x49): 19  // SI
        case (0x53, 0x4B): 24  // SK
        case (0x53, 0x4D): 27  // SM
        case (0x54, 0x4E): 24  // TN
        case (0x54, 0x52): 26  // TR
        case (0x55, 0x41): 29  // UA
        case (0x56, 0x47): 24  // VG
        case (0x58, 0x4B): 20  // XK
        default: nil
        }
    }
}
