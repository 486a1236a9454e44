import Foundation

/// Entry timestamps: integer microseconds since the Unix epoch in the database, RFC 3339 UTC with
/// exactly six fractional digits inside entries (`2026-11-21T19:40:00.123456Z`).
///
/// Formatting and parsing are done by hand: they run on the writer thread for every entry, and
/// `DateFormatter` is both slower and locale-sensitive.
enum AuditTime {
    /// Length of every formatted timestamp (years 0000...9999).
    static let formattedLength = 27

    static func micros(_ date: Date) -> Int64 {
        let value = (date.timeIntervalSince1970 * 1_000_000).rounded()
        if value >= Double(Int64.max) { return Int64.max }
        if value <= Double(Int64.min) { return Int64.min }
        return Int64(value)
    }

    static func date(micros: Int64) -> Date {
        Date(timeIntervalSince1970: Double(micros) / 1_000_000)
    }

    /// Years outside 0000...9999 are clamped so the text keeps its fixed width.
    static let minimumMicros: Int64 = -62_167_219_200_000_000  // 0000-01-01T00:00:00Z
    static let maximumMicros: Int64 = 253_402_300_799_999_999  // 9999-12-31T23:59:59.999999Z

    static func format(micros: Int64) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(formattedLength)
        append(micros: micros, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func append(micros raw: Int64, to out: inout [UInt8]) {
        let micros = min(max(raw, minimumMicros), maximumMicros)
        let (seconds, fraction) = floorDivide(micros, 1_000_000)
        let (days, secondOfDay) = floorDivide(seconds, 86_400)
        let (year, month, day) = civil(fromDays: days)
        appendDigits(year, width: 4, to: &out)
        out.append(UInt8(ascii: "-"))
        appendDigits(month, width: 2, to: &out)
        out.append(UInt8(ascii: "-"))
        appendDigits(day, width: 2, to: &out)
        out.append(UInt8(ascii: "T"))
        appendDigits(secondOfDay / 3600, width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDigits(secondOfDay / 60 % 60, width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDigits(secondOfDay % 60, width: 2, to: &out)
        out.append(UInt8(ascii: "."))
        appendDigits(fraction, width: 6, to: &out)
        out.append(UInt8(ascii: "Z"))
    }

    private static func appendDigits(_ value: Int64, width: Int, to out: inout [UInt8]) {
        var divisor: Int64 = 1
        for _ in 1..<width { divisor *= 10 }
        var rest = value
        while divisor > 0 {
            out.append(UInt8(ascii: "0") + UInt8(rest / divisor))
            rest %= divisor
            divisor /= 10
        }
    }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        var q = a / b
        var r = a % b
        if r < 0 {
            q -= 1
            r += b
        }
        return (q, r)
    }

    /// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
    static func civil(fromDays z0: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    static func days(fromCivil y0: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let year = month <= 2 ? y0 - 1 : y0
        let era = (year >= 0 ? year : year - 399) / 400
        let yoe = year - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func daysInMonth(_ year: Int64, _ month: Int64) -> Int64 {
        switch month {
        case 1, 3, 5, 7, 8, 10, 12: return 31
        case 4, 6, 9, 11: return 30
        default:
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
            return leap ? 29 : 28
        }
    }

    /// Parses RFC 3339 (`2026-11-21T19:40:00Z`, any fraction, `Z` or `±hh:mm`, `T`, `t` or a space),
    /// a bare date (`2026-11-21`, midnight UTC), `now`, or a relative age (`90s`, `15m`, `2h`, `7d`,
    /// `2w`: that long before `now`).
    static func parse(_ text: String, now: Date) -> Date? {
        let s = Array(text.trimmingCharacters(in: .whitespaces).utf8)
        guard !s.isEmpty else { return nil }
        if s == Array("now".utf8) { return now }
        if let relative = parseRelative(s) {
            return now.addingTimeInterval(-Double(relative))
        }
        guard let micros = parseAbsolute(s) else { return nil }
        return date(micros: micros)
    }

    /// Seconds, for `<digits><unit>`.
    private static func parseRelative(_ s: [UInt8]) -> Int64? {
        guard s.count >= 2 else { return nil }
        let unit: Int64
        switch s[s.count - 1] {
        case UInt8(ascii: "s"): unit = 1
        case UInt8(ascii: "m"): unit = 60
        case UInt8(ascii: "h"): unit = 3600
        case UInt8(ascii: "d"): unit = 86_400
        case UInt8(ascii: "w"): unit = 604_800
        default: return nil
        }
        var value: Int64 = 0
        for byte in s[..<(s.count - 1)] {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int64(byte - UInt8(ascii: "0"))
            guard value < 1_000_000_000 else { return nil }
        }
        return value * unit
    }

    private static func parseAbsolute(_ s: [UInt8]) -> Int64? {
        var i = 0
        func number(_ width: Int) -> Int64? {
            guard i + width <= s.count else { return nil }
            var value: Int64 = 0
            for _ in 0..<width {
                let byte = s[i]
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int64(byte - UInt8(ascii: "0"))
                i += 1
            }
            return value
        }
        func take(_ byte: UInt8) -> Bool {
            guard i < s.count, s[i] == byte else { return false }
            i += 1
            return true
        }
        guard let year = number(4), take(UInt8(ascii: "-")), let month = number(2), take(UInt8(ascii: "-")),
            let day = number(2), (1...12).contains(month), day >= 1, day <= daysInMonth(year, month)
        else { return nil }
        let dayMicros = days(fromCivil: year, month, day) * 86_400_000_000
        if i == s.count { return dayMicros }
        guard i < s.count, s[i] == UInt8(ascii: "T") || s[i] == UInt8(ascii: "t") || s[i] == UInt8(ascii: " ") else {
            return nil
        }
        i += 1
        guard let hour = number(2), take(UInt8(ascii: ":")), let minute = number(2), take(UInt8(ascii: ":")),
            let second = number(2), hour < 24, minute < 60, second <= 60
        else { return nil }
        var fraction: Int64 = 0
        if take(UInt8(ascii: ".")) {
            var digits = 0
            while i < s.count, s[i] >= UInt8(ascii: "0"), s[i] <= UInt8(ascii: "9") {
                if digits < 6 { fraction = fraction * 10 + Int64(s[i] - UInt8(ascii: "0")) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<max(digits, 6) { fraction *= 10 }
        }
        var offsetSeconds: Int64 = 0
        if take(UInt8(ascii: "Z")) || take(UInt8(ascii: "z")) {
            offsetSeconds = 0
        } else if i < s.count, s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "-") {
            let sign: Int64 = s[i] == UInt8(ascii: "-") ? -1 : 1
            i += 1
            guard let offsetHours = number(2), take(UInt8(ascii: ":")), let offsetMinutes = number(2),
                offsetHours < 24, offsetMinutes < 60
            else { return nil }
            offsetSeconds = sign * (offsetHours * 3600 + offsetMinutes * 60)
        } else {
            return nil
        }
        guard i == s.count else { return nil }
        let seconds = hour * 3600 + minute * 60 + second - offsetSeconds
        return dayMicros + seconds * 1_000_000 + fraction
    }
}
