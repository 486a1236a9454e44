// Secrets: AWS access key ids, JWTs, PEM private key blocks and secret-named assignments.

extension ContentScanner {
    /// An AWS access key id: the whole word is `AKIA` or `ASIA` followed by 16 upper-case letters
    /// or digits.
    func awsAccessKeyMatch(at start: Int) -> DetectorMatch? {
        let bytes = self.bytes
        let wordEnd = start + 20
        guard wordEnd <= bytes.count, !isWordByte(bytes.peek(wordEnd)), bytes[start] == UInt8(ascii: "A"),
            bytes[start + 1] == UInt8(ascii: "K") || bytes[start + 1] == UInt8(ascii: "S"),
            bytes[start + 2] == UInt8(ascii: "I"), bytes[start + 3] == UInt8(ascii: "A")
        else { return nil }
        for k in (start + 4)..<wordEnd where !(isUpper(bytes[k]) || isDigit(bytes[k])) { return nil }
        return DetectorMatch(kind: .secret, range: start..<wordEnd)
    }

    /// A JWT (or JWE) at `start`: `eyJ<base64url>.ey<base64url>.<base64url>` (up to five
    /// dot-separated parts), where the first part decodes to a JSON object with an `"alg"` member.
    /// The signature may be empty (`alg: none`).
    func jwtMatch(at start: Int) -> DetectorMatch? {
        let bytes = self.bytes
        guard bytes.peek(start + 1) == UInt8(ascii: "y"), bytes.peek(start + 2) == UInt8(ascii: "J") else {
            return nil
        }
        let prev = bytes.peek(start - 1)
        guard prev != UInt8(ascii: "-"), prev != UInt8(ascii: ".") else { return nil }
        var i = start
        while isBase64URL(bytes.peek(i)) { i += 1 }
        let headerEnd = i
        guard bytes.peek(i) == UInt8(ascii: "."), (headerEnd - start) % 4 != 1,
            self.isJSONHeader(start, headerEnd)
        else { return nil }
        i += 1
        let payloadStart = i
        guard bytes.peek(i) == UInt8(ascii: "e"), bytes.peek(i + 1) == UInt8(ascii: "y") else { return nil }
        while isBase64URL(bytes.peek(i)) { i += 1 }
        guard (i - payloadStart) % 4 != 1, bytes.peek(i) == UInt8(ascii: ".") else { return nil }
        i += 1
        while isBase64URL(bytes.peek(i)) { i += 1 }
        var parts = 3
        while parts < 5 && bytes.peek(i) == UInt8(ascii: ".") && isBase64URL(bytes.peek(i + 1)) {
            i += 1
            while isBase64URL(bytes.peek(i)) { i += 1 }
            parts += 1
        }
        return DetectorMatch(kind: .secret, range: start..<i)
    }

    /// Decodes base64url `start..<end` on the fly (no buffer) and checks it is a JSON object with
    /// an `"alg"` member: starts with `{`, ends with `}` (ignoring whitespace), no control bytes.
    func isJSONHeader(_ start: Int, _ end: Int) -> Bool {
        var accumulator: UInt32 = 0
        var bits = 0
        var decoded = 0
        var lastNonSpace: UInt8 = 0
        var window: UInt64 = 0
        var sawAlg = false
        let alg: UInt64 = 0x22_61_6C_67_22  // "alg" with its quotes
        for k in start..<end {
            let c = self.bytes[k]
            let v: UInt32
            if isUpper(c) {
                v = UInt32(c &- 0x41)
            } else if isAlpha(c) {
                v = UInt32(c &- 0x61) + 26
            } else if isDigit(c) {
                v = UInt32(c &- 0x30) + 52
            } else if c == UInt8(ascii: "-") {
                v = 62
            } else {
                v = 63
            }
            accumulator = ((accumulator << 6) | v) & 0xFFFF
            bits += 6
            guard bits >= 8 else { continue }
            bits -= 8
            let byte = UInt8(truncatingIfNeeded: accumulator >> UInt32(bits))
            if decoded == 0 && byte != UInt8(ascii: "{") { return false }
            decoded += 1
            switch byte {
            case 0x20, 0x09, 0x0A, 0x0D: break
            case 0..<0x20, 0x7F: return false
            default: lastNonSpace = byte
            }
            window = (window << 8) | UInt64(byte)
            if window & 0xFF_FFFF_FFFF == alg { sawAlg = true }
        }
        return sawAlg && lastNonSpace == UInt8(ascii: "}")
    }

    /// A PEM private key block at `start`: `-----BEGIN <label>-----` where the label contains
    /// `PRIVATE KEY` (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP ... BLOCK), through the matching
    /// `-----END <label>-----` line. A block without its END line (a truncated value) is masked
    /// to the end of the value: a partial private key is still a secret.
    func pemMatch(at start: Int) -> DetectorMatch? {
        let bytes = self.bytes
        guard bytes.hasBytes("-----BEGIN ", at: start) else { return nil }
        var i = start + 11
        let labelStart = i
        while isUpper(bytes.peek(i)) || isDigit(bytes.peek(i)) || bytes.peek(i) == UInt8(ascii: " ") { i += 1 }
        let labelEnd = i
        guard bytes.hasBytes("-----", at: i) else { return nil }
        var isPrivate = false
        var k = labelStart
        while k + 11 <= labelEnd {
            if bytes.hasBytes("PRIVATE KEY", at: k) {
                isPrivate = true
                break
            }
            k += 1
        }
        guard isPrivate else { return nil }
        i += 5
        let n = bytes.count
        while i < n {
            if bytes[i] == UInt8(ascii: "-") && bytes.hasBytes("-----END ", at: i) {
                var j = i + 9
                while isUpper(bytes.peek(j)) || isDigit(bytes.peek(j)) || bytes.peek(j) == UInt8(ascii: " ") { j += 1 }
                if bytes.hasBytes("-----", at: j) { return DetectorMatch(kind: .secret, range: start..<(j + 5)) }
                i = j
                continue
            }
            i += 1
        }
        return DetectorMatch(kind: .secret, range: start..<n)
    }

    /// The value of a secret-named assignment around the `=` or `:` at `op`: `password=...`,
    /// `"api_key": "..."`, `DB_PASSWORD: ...`, `aws_secret_access_key = ...`.
    ///
    /// The key (the identifier just before, optionally quoted, case-insensitive, `-` and `.` read
    /// as `_`) must end with one of ``secretKeyNames`` at the start of the key or after `_`, `-`
    /// or `.`. The match is the value only, so the label stays readable: a quoted value up to its
    /// closing quote (backslash escapes skipped; unterminated: to the end of the value), otherwise
    /// up to whitespace, a quote or one of `, ; & ) } ] < >`. `==`, `:=`/`=:`, `://` are not
    /// assignments. An empty value matches nothing.
    func assignmentMatch(at op: Int) -> DetectorMatch? {
        let bytes = self.bytes
        let next = bytes.peek(op + 1)
        let prev = bytes.peek(op - 1)
        if next == UInt8(ascii: "=") || next == UInt8(ascii: "/") || prev == UInt8(ascii: "=")
            || prev == UInt8(ascii: ":") || prev == UInt8(ascii: "!") || prev == UInt8(ascii: "<")
            || prev == UInt8(ascii: ">")
        {
            return nil
        }
        var k = op - 1
        while op - k <= 4 && (bytes.peek(k) == UInt8(ascii: " ") || bytes.peek(k) == UInt8(ascii: "\t")) { k -= 1 }
        if bytes.peek(k) == UInt8(ascii: "\"") || bytes.peek(k) == UInt8(ascii: "'") { k -= 1 }
        let keyEnd = k + 1
        while keyEnd - k <= 64 && Self.isKeyByte(bytes.peek(k)) { k -= 1 }
        let keyStart = k + 1
        guard keyStart < keyEnd, self.isSecretKey(keyStart, keyEnd) else { return nil }

        let n = bytes.count
        var v = op + 1
        while v - op <= 4 && (bytes.peek(v) == UInt8(ascii: " ") || bytes.peek(v) == UInt8(ascii: "\t")) { v += 1 }
        let quote = bytes.peek(v)
        if quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'") {
            v += 1
            let valueStart = v
            while v < n && bytes[v] != quote { v += bytes[v] == UInt8(ascii: "\\") ? 2 : 1 }
            let valueEnd = min(v, n)
            guard valueEnd > valueStart else { return nil }
            return DetectorMatch(kind: .secret, range: valueStart..<valueEnd)
        }
        let valueStart = v
        while v < n && !Self.endsUnquotedValue(bytes[v]) { v += 1 }
        guard v > valueStart else { return nil }
        return DetectorMatch(kind: .secret, range: valueStart..<v)
    }

    @inline(__always)
    static func isKeyByte(_ b: UInt8) -> Bool {
        isWordByte(b) || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
    }

    @inline(__always)
    static func endsUnquotedValue(_ b: UInt8) -> Bool {
        switch b {
        case 0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x0C: true
        case UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "&"),
            UInt8(ascii: ")"), UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: "<"), UInt8(ascii: ">"):
            true
        default: false
        }
    }

    /// Key suffixes whose value is a secret. `pwd` is the ODBC spelling; `token` covers
    /// `access_token`, `refresh_token`, `auth_token`; `secret` covers `client_secret`;
    /// `secret_access_key` and `secret_key` cover AWS's labels.
    static let secretKeyNames: [StaticString] = [
        "password", "passwd", "pwd", "passphrase", "secret", "token", "api_key", "apikey", "private_key",
        "secret_key", "secret_access_key",
    ]

    func isSecretKey(_ start: Int, _ end: Int) -> Bool {
        let bytes = self.bytes
        for name in Self.secretKeyNames {
            let length = name.utf8CodeUnitCount
            guard end - start >= length else { continue }
            let from = end - length
            if from > start {
                let before = bytes[from - 1]
                guard before == UInt8(ascii: "_") || before == UInt8(ascii: "-") || before == UInt8(ascii: ".") else {
                    continue
                }
            }
            let p = name.utf8Start
            var same = true
            for j in 0..<length {
                var b = asciiLower(bytes[from + j])
                if b == UInt8(ascii: "-") || b == UInt8(ascii: ".") { b = UInt8(ascii: "_") }
                if b != p[j] {
                    same = false
                    break
                }
            }
            if same { return true }
        }
        return false
    }
}
