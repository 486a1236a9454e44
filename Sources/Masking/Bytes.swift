// Byte classes and small helpers shared by the detectors. Everything works on ASCII bytes of a
// UTF-8 value; bytes >= 0x80 belong to no class, so non-ASCII text is a boundary like punctuation.

@inline(__always)
func isDigit(_ b: UInt8) -> Bool { b &- 0x30 < 10 }

@inline(__always)
func isUpper(_ b: UInt8) -> Bool { b &- 0x41 < 26 }

@inline(__always)
func isAlpha(_ b: UInt8) -> Bool { (b | 0x20) &- 0x61 < 26 }

@inline(__always)
func isAlnum(_ b: UInt8) -> Bool { isDigit(b) || isAlpha(b) }

/// Letters, digits and `_`: the bytes of one "word". Detectors only start at a word start.
@inline(__always)
func isWordByte(_ b: UInt8) -> Bool { isAlnum(b) || b == 0x5F }

/// The base64url alphabet (`A-Z a-z 0-9 - _`).
@inline(__always)
func isBase64URL(_ b: UInt8) -> Bool { isWordByte(b) || b == 0x2D }

/// Punctuation that joins digit groups in dates, times, decimals, versions and IP addresses.
/// A digit group next to one of these and another digit is part of a longer number.
@inline(__always)
func isNumberJoiner(_ b: UInt8) -> Bool {
    b == 0x2D || b == 0x2E || b == 0x2F || b == 0x3A || b == 0x2C  // - . / : ,
}

@inline(__always)
func asciiLower(_ b: UInt8) -> UInt8 { isUpper(b) ? b | 0x20 : b }

extension UnsafeRawBufferPointer {
    /// The byte at `i`, or 0 (which belongs to no class) outside the buffer.
    @inline(__always)
    func peek(_ i: Int) -> UInt8 {
        i >= 0 && i < self.count ? self[i] : 0
    }

    /// Whether the bytes at `i` are exactly `literal`.
    @inline(__always)
    func hasBytes(_ literal: StaticString, at i: Int) -> Bool {
        let length = literal.utf8CodeUnitCount
        guard i >= 0, i + length <= self.count else { return false }
        let p = literal.utf8Start
        var k = 0
        while k < length {
            if self[i + k] != p[k] { return false }
            k += 1
        }
        return true
    }

    /// Whether `count` digits start at `i`.
    @inline(__always)
    func hasDigits(_ count: Int, at i: Int) -> Bool {
        guard i >= 0, i + count <= self.count else { return false }
        var k = i
        while k < i + count {
            if !isDigit(self[k]) { return false }
            k += 1
        }
        return true
    }

    /// The decimal value of `count` digits at `i` (the caller checked they are digits).
    @inline(__always)
    func decimal(_ count: Int, at i: Int) -> Int {
        var value = 0
        for k in i..<(i + count) { value = value * 10 + Int(self[k] &- 0x30) }
        return value
    }
}
