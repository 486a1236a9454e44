import NIOCore
import Testing

@testable import Masking

/// The key the expected hashes below were computed with: bytes 0, 1, ..., 31
/// (`python3 -c 'import hmac; print(hmac.new(bytes(range(32)), b"hello", "sha256").hexdigest()[:16])'`).
let testKey: [UInt8] = Array(0..<32)

func scan(
    _ text: String, _ method: MaskMethod, detectors: DetectorSet = .all, masker: Masker = Masker(hashKey: testKey)
) -> MaskOutcome? {
    var stats = MaskStats()
    return masker.scan(ByteBuffer(string: text), detectors: detectors, method: method, stats: &stats)
}

func column(_ text: String, _ method: MaskMethod, masker: Masker = Masker(hashKey: testKey)) -> MaskOutcome {
    var stats = MaskStats()
    return masker.maskColumn(ByteBuffer(string: text), method: method, stats: &stats)
}

func text(_ outcome: MaskOutcome?) -> String? {
    guard case .replaced(let bytes) = outcome else { return nil }
    return String(decoding: bytes, as: UTF8.self)
}

@Suite struct ScanTests {
    @Test func returnsNilWhenNothingMatchesSoTheOriginalBytesAreForwarded() {
        #expect(scan("order 42 shipped 2026-11-21 to 198.18.0.10", .redact) == nil)
        #expect(scan("", .partial) == nil)
        #expect(scan("a@example.com", .redact, detectors: .creditCard) == nil)
    }

    @Test func redactsEachMatchAndKeepsTheRestByteForByte() {
        #expect(text(scan("mail é a@example.com, ✓ 4111111111111111!", .redact)) == "mail é [REDACTED], ✓ [REDACTED]!")
    }

    @Test(arguments: [
        ("card 4111-1111-1111-1111 ok", "card ****-****-****-1111 ok"),
        ("4111111111111111", "************1111"),
        ("378282246310005", "***********0005"),
        ("john.doe@example.com", "j***@example.com"),
        ("ssn: 123-45-6789.", "ssn: ***-**-6789."),
        ("(555) 123-4567", "(***) ***-4567"),
        ("+44 20 7946 0958", "+** ** **** 0958"),
        ("+49-30-901820", "+**-**-**1820"), ("+4930901820 x", "+******1820 x"),
        ("+1 (415) 555-2671", "+* (***) ***-2671"),
        ("GB82WEST12345698765432", "GB****************5432"),
        ("GB82 WEST 1234 5698 7654 32", "GB** **** **** **** **54 32"),
        ("key AKIAIOSFODNN7EXAMPLE", "key [REDACTED]"),
        ("password=hunter2&user=x", "password=[REDACTED]&user=x"),
        ("Zoë: 4111 1111 1111 1111 — ✓", "Zoë: **** **** **** 1111 — ✓"),
    ])
    func partialKeepsAUsefulTail(_ value: String, _ expected: String) {
        #expect(text(scan(value, .partial)) == expected)
    }

    @Test func hashesTheNormalisedMatch() {
        #expect(text(scan("card 4111111111111111 ok", .hash)) == "card h:0622241201382a45 ok")
        // The same card written with separators hashes alike, so it stays joinable.
        #expect(text(scan("4111 1111 1111 1111", .hash)) == "h:0622241201382a45")
        #expect(text(scan("GB82 WEST 1234 5698 7654 32", .hash)) == "h:3fdc2e8d54a40292")
        #expect(text(scan("to John.Doe@Example.com", .hash)) == "to h:6ac80707df11ac9c")
    }

    @Test func nullTurnsTheWholeValueIntoSQLNullOnlyWhenSomethingMatched() {
        #expect(scan("call 555-123-4567", .null) == .sqlNull)
        #expect(scan("nothing here", .null) == nil)
    }

    @Test func scansOnlyTheReadableBytesOfABuffer() {
        var buffer = ByteBuffer(string: "123-45-6789|ssn 123-45-6789 end")
        buffer.moveReaderIndex(forwardBy: 12)
        var stats = MaskStats()
        let outcome = Masker(hashKey: testKey).scan(buffer, detectors: .all, method: .partial, stats: &stats)
        #expect(text(outcome) == "ssn ***-**-6789 end")
        #expect(stats.matches(.usSSN) == 1)
    }

    @Test func masksSeveralMatchesInOneValue() {
        #expect(
            text(scan("a@example.com / 123-45-6789 / b@example.org", .partial))
                == "a***@example.com / ***-**-6789 / b***@example.org"
        )
    }

    @Test func countsDetectorsValuesAndMatchesButNoValues() {
        let masker = Masker(hashKey: testKey)
        var stats = MaskStats()
        for value in ["a@example.com and b@example.com", "clean", "4111111111111111", "also clean"] {
            _ = masker.scan(ByteBuffer(string: value), detectors: .all, method: .redact, stats: &stats)
        }
        _ = masker.maskColumn(ByteBuffer(string: "x"), method: .null, stats: &stats)
        #expect(stats.valuesScanned == 4)
        #expect(stats.valuesMaskedByDetectors == 2)
        #expect(stats.columnValuesMasked == 1)
        #expect(stats.matches(.email) == 2)
        #expect(stats.matches(.creditCard) == 1)
        #expect(stats.totalMatches == 3)
        #expect(stats.detectorsFired == [.creditCard, .email])
        var total = MaskStats()
        total.merge(stats)
        total.merge(stats)
        #expect(total.totalMatches == 6 && total.valuesScanned == 8 && total.columnValuesMasked == 2)
        #expect(MaskStats().isEmpty && !stats.isEmpty)
    }

    @Test func scansAMebibyteValueAndMasksOnlyItsMatches() {
        var value = String(repeating: "lorem ipsum 12345 dolor, sit amet 2026-11-21. ", count: (1 << 20) / 46)
        value = "4111111111111111 " + value + " a@example.com"
        guard case .replaced(let out) = scan(value, .partial) else {
            Issue.record("expected a rewrite")
            return
        }
        #expect(out.count == value.utf8.count + 3)
        #expect(String(decoding: out.prefix(17), as: UTF8.self) == "************1111 ")
        #expect(String(decoding: out.suffix(17), as: UTF8.self) == " a***@example.com")
    }
}

@Suite struct ColumnTests {
    @Test func redactReplacesTheWholeValue() {
        #expect(text(column("Jonathan Smith", .redact)) == "[REDACTED]")
        #expect(text(column("", .redact)) == "[REDACTED]")
    }

    @Test func nullIsSQLNull() {
        #expect(column("anything", .null) == .sqlNull)
    }

    @Test(arguments: [
        ("Jonathan", "****than"), ("Zoë Müller", "******ller"), ("abc", "**c"), ("ab", "*b"), ("a", "*"), ("", ""),
        ("日本語のテキスト", "****テキスト"), ("5551234567", "******4567"),
    ])
    func partialWithoutADetectorKeepsTheLastCharactersNotBytes(_ value: String, _ expected: String) {
        #expect(text(column(value, .partial)) == expected)
    }

    @Test func partialUsesTheDetectorThatCoversTheWholeValue() {
        #expect(text(column("john.doe@example.com", .partial)) == "j***@example.com")
        #expect(text(column("  john.doe@example.com ", .partial)) == "  j***@example.com ")
        #expect(text(column("4111-1111-1111-1111", .partial)) == "****-****-****-1111")
        #expect(text(column("123-45-6789", .partial)) == "***-**-6789")
        // Two addresses: no single detector covers the value, so the generic rule applies.
        #expect(text(column("a@example.com b@example.com", .partial)) == "***********************.com")
    }

    @Test func hashIsAKeyedHMACOfTheValue() {
        #expect(text(column("hello", .hash)) == "h:53c40272a70c15ca")
        #expect(text(column("", .hash)) == "h:d38b42096d80f45f")
        // A whole-value detector match hashes its normalised form, like content detection does.
        #expect(text(column("4111-1111-1111-1111", .hash)) == "h:0622241201382a45")
    }

    @Test func hashIsDeterministicAndDependsOnTheKey() {
        let other = Masker(hashKey: [UInt8](repeating: 1, count: 32))
        #expect(column("hello", .hash) == column("hello", .hash))
        #expect(text(column("hello", .hash, masker: other)) == "h:3a4d75699f355339")
        #expect(column("hello", .hash, masker: other) != column("hello", .hash))
        #expect(column("hello", .hash) != column("hellp", .hash))
    }

    @Test func theMaskerNeverPrintsItsKey() {
        let masker = Masker(hashKey: testKey)
        var dumped = ""
        dump(masker, to: &dumped)
        #expect("\(masker)" == "Masker(hashKey: <hidden>)")
        #expect(String(reflecting: masker) == "Masker(hashKey: <hidden>)")
        #expect(!dumped.contains("SymmetricKey") && !dumped.contains("0, 1, 2"))
    }
}
