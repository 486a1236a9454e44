/// SASLprep (RFC 4013) as PostgreSQL applies it to SCRAM passwords, minus Unicode normalization.
///
/// PostgreSQL (`pg_saslprep`) leaves an all-ASCII password untouched; otherwise it maps non-ASCII spaces to
/// U+0020, removes characters "commonly mapped to nothing", normalizes to NFKC, and if a prohibited character
/// remains it falls back to the password's raw bytes. This does the same except NFKC, which needs Unicode tables
/// this module does not carry (no Foundation). The limit: a non-ASCII password that is not already in NFKC form
/// (a decomposed accent, a ligature such as U+FB01, full-width letters) derives another key than the server's and
/// the server refuses the login; store such passwords normalized. Unassigned code points and the bidirectional
/// rule are not checked either; PostgreSQL falls back to raw bytes for those, we prepare them as ordinary text.
enum SASLprep {
    static func prepare(_ password: String) -> [UInt8] {
        let raw = Array(password.utf8)
        if raw.allSatisfy({ $0 < 0x80 }) {
            return raw
        }
        var prepared = String.UnicodeScalarView()
        for scalar in password.unicodeScalars {
            if Self.isNonASCIISpace(scalar.value) {
                prepared.append(" ")
            } else if Self.isMappedToNothing(scalar.value) {
                continue
            } else {
                prepared.append(scalar)
            }
        }
        if prepared.isEmpty || prepared.contains(where: { Self.isProhibited($0.value) }) {
            return raw
        }
        return Array(String(prepared).utf8)
    }

    /// RFC 3454 table C.1.2.
    static func isNonASCIISpace(_ value: UInt32) -> Bool {
        switch value {
        case 0x00A0, 0x1680, 0x2000...0x200B, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    /// RFC 3454 table B.1.
    static func isMappedToNothing(_ value: UInt32) -> Bool {
        switch value {
        case 0x00AD, 0x034F, 0x1806, 0x180B...0x180D, 0x200C, 0x200D, 0x2060, 0xFE00...0xFE0F, 0xFEFF: return true
        default: return false
        }
    }

    /// RFC 3454 tables C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9 (as SASLprep prohibits them).
    static func isProhibited(_ value: UInt32) -> Bool {
        switch value {
        case 0x0000...0x001F, 0x007F: return true  // C.2.1
        case 0x0080...0x009F, 0x06DD, 0x070F, 0x180E, 0x2028, 0x2029, 0x2061...0x2063, 0xFFF9...0xFFFC,
            0x1D173...0x1D17A:
            return true  // C.2.2
        case 0xE000...0xF8FF, 0xF0000...0xFFFFD, 0x100000...0x10FFFD: return true  // C.3
        case 0xFDD0...0xFDEF: return true  // C.4
        case 0xFFFD: return true  // C.6
        case 0x2FF0...0x2FFB: return true  // C.7
        case 0x0340, 0x0341, 0x200E, 0x200F, 0x202A...0x202E, 0x206A...0x206F: return true  // C.8
        case 0xE0001, 0xE0020...0xE007F: return true  // C.9
        default:
            return value & 0xFFFE == 0xFFFE  // C.4: U+nFFFE and U+nFFFF
        }
    }
}
