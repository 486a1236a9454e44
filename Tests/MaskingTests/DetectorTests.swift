import NIOCore
import Testing

@testable import Masking

/// `kind:matched text` for every match of `set` in `text`.
func matches(_ text: String, _ set: DetectorSet = .all) -> [String] {
    let bytes = Array(text.utf8)
    return bytes.withUnsafeBytes { buffer in
        set.matches(in: buffer).map { match in
            "\(match.kind.rawValue):" + String(decoding: bytes[match.range], as: UTF8.self)
        }
    }
}

@Suite struct CreditCardDetectorTests {
    @Test(arguments: [
        "4111111111111111", "5555555555554444", "378282246310005", "6011111111111117", "3530111333300000",
        "30569309025904", "2223003122003222", "4222222222222", "6200000000000005", "4111 1111 1111 1111",
        "4111-1111-1111-1111", "3782 822463 10005", "5555-5555-5555-4444",
    ])
    func acceptsValidCardNumbers(_ card: String) {
        #expect(matches(card) == ["credit_card:\(card)"])
        #expect(matches("paid with \(card).") == ["credit_card:\(card)"])
    }

    @Test(arguments: [
        "4111111111111112",  // Luhn fails
        "1234567812345670",  // Luhn passes, no brand starts with 1
        "0000000000000000",  // Luhn passes, no brand
        "94111111111111111",  // a card inside a longer digit run
        "41111111111111110000",
        "4111111111111111111",  // 19 digits, Luhn fails
        "4111 1111 1111 111",  // Visa has no 15-digit form
        "4111-1111 1111-1111",  // mixed separators
        "41 11 11 11 11 11 11 11",  // not a card grouping
        "x4111111111111111", "4111111111111111x", "4111111111111111.50", "ref 12-4111111111111111",
        "4111111111111111-12", "411111111111",
    ])
    func rejectsOtherDigitRuns(_ text: String) {
        #expect(matches(text, .creditCard) == [])
    }

    @Test func keepsAnExpiryDateAfterASpacedCardOutOfTheMatch() {
        #expect(matches("4111 1111 1111 1111 12/28") == ["credit_card:4111 1111 1111 1111"])
    }

    @Test func findsCardsAtTheBufferEdgesAndNextToNonASCIIText() {
        #expect(matches("4111111111111111") == ["credit_card:4111111111111111"])
        #expect(matches("é4111111111111111") == ["credit_card:4111111111111111"])
        #expect(matches("Karte: 4111 1111 1111 1111 — bezahlt ✓") == ["credit_card:4111 1111 1111 1111"])
        #expect(matches("カード4111111111111111です") == ["credit_card:4111111111111111"])
    }
}

@Suite struct SSNDetectorTests {
    @Test(arguments: ["123-45-6789", "123 45 6789", "078-05-1120", "665-01-0001", "899-99-9999"])
    func acceptsValidSSNs(_ ssn: String) {
        #expect(matches("ssn \(ssn)") == ["us_ssn:\(ssn)"])
    }

    @Test(arguments: [
        "000-12-3456", "666-12-3456", "900-12-3456", "999-12-3456", "123-00-4567", "123-45-0000", "123-45-67890",
        "1123-45-6789", "123-45-6789-1", "123456789", "123-45 6789", "12-123-45-6789", "a123-45-6789",
        "1 123 45 6789", "123 45 6789 1",
    ])
    func rejectsInvalidAreasGroupsSerialsAndShapes(_ text: String) {
        #expect(matches(text, .usSSN) == [])
    }
}

@Suite struct EmailDetectorTests {
    @Test(arguments: [
        "john.doe+tag@example.com", "a@mail.sub.example.co.uk", "x_y%z@example.org", "J.Smith@Example.COM",
        "o'brien@example.ie",
    ])
    func acceptsPracticalAddresses(_ address: String) {
        let local = address.split(separator: "'").last.map(String.init) ?? address
        #expect(matches(address) == ["email:\(local)"])
    }

    @Test func stopsAtSurroundingPunctuation() {
        #expect(matches("Contact: <jane@example.com>.") == ["email:jane@example.com"])
        #expect(matches("mailto:jane@example.com, then") == ["email:jane@example.com"])
        #expect(matches("écrivez à jane@example.fr.") == ["email:jane@example.fr"])
        #expect(matches("jane@example.com") == ["email:jane@example.com"])
    }

    @Test(arguments: [
        "john@localhost", "john@example", "@example.com", "john..doe@example.com", "john.@example.com",
        "john@example.c", "john@-example.com", "john@example-.com", "john@example.123", "@@", "a@b",
        "john@example.com-x",
        "john@example.com@other",
    ])
    func rejectsNonAddresses(_ text: String) {
        #expect(matches(text, .email) == [])
    }

    @Test func rejectsALocalPartLongerThan64Bytes() {
        let local = String(repeating: "a", count: 65)
        #expect(matches("\(local)@example.com", .email) == [])
        #expect(matches("\(local.dropFirst())@example.com", .email).count == 1)
    }
}

@Suite struct PhoneDetectorTests {
    @Test(arguments: [
        "+14155552671", "+1 415 555 2671", "+44 20 7946 0958", "+44 (0)20 7946 0958", "+1 (415) 555-2671",
        "+49-30-901820", "(555) 123-4567", "(555)123-4567", "555-123-4567", "555.123.4567", "1-555-123-4567",
    ])
    func acceptsInternationalAndNANPNumbers(_ phone: String) {
        #expect(matches("call \(phone) now") == ["phone:\(phone)"])
    }

    /// The heuristic: a phone number needs a `+` or NANP punctuation, so dates, times, IP
    /// addresses, versions, decimals and plain integers never match.
    @Test(arguments: [
        "2026-11-21", "2026-11-21T10:30:00+01:00", "2026-11-21 10:30:00.123456+00", "10:30:00", "198.18.0.10",
        "192.168.100.200", "version 1.2.3", "v10.15.7", "5551234567", "12345678901", "123-456-7890", "555-123-45678",
        "555-123-4567-8", "555-123.4567", "+1234567", "+12345678901234567", "1+2345678901", "+0123456789",
        "3.14159265358", "1,234,567,890", "id 00123-456-7890",
    ])
    func rejectsDatesTimesAddressesVersionsAndIds(_ text: String) {
        #expect(matches(text, .phone) == [])
    }
}

@Suite struct IBANDetectorTests {
    @Test(arguments: [
        "GB82WEST12345698765432", "DE89370400440532013000", "GB82 WEST 1234 5698 7654 32",
        "DE89 3704 0044 0532 0130 00",
        "FR1420041010050500013M02606", "NL91ABNA0417164300", "NO9386011117947", "BE68539007547034",
        "CH9300762011623852957",
    ])
    func acceptsValidIBANs(_ iban: String) {
        #expect(matches("IBAN: \(iban).") == ["iban:\(iban)"])
    }

    @Test(arguments: [
        "GB82WEST12345698765433", "DE89370400440532013001", "GB82WEST1234569876543", "GB82WEST123456987654321",
        "XX82WEST12345698765432", "gb82west12345698765432", "GB82 WEST 12345698765432", "GB82WEST 1234 5698 7654 32",
        "xGB82WEST12345698765432",
    ])
    func rejectsWrongChecksumsLengthsAndShapes(_ text: String) {
        #expect(matches(text, .iban) == [])
    }
}

@Suite struct SecretDetectorTests {
    static let jwt =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    static let pem = """
        -----BEGIN RSA PRIVATE KEY-----
        MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu
        KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm
        -----END RSA PRIVATE KEY-----
        """

    @Test func findsAWSAccessKeyIDs() {
        #expect(matches("key AKIAIOSFODNN7EXAMPLE") == ["secret:AKIAIOSFODNN7EXAMPLE"])
        #expect(matches("ASIAIOSFODNN7EXAMPLE") == ["secret:ASIAIOSFODNN7EXAMPLE"])
        #expect(matches("AKIAIOSFODNN7EXAMPL") == [])
        #expect(matches("AKIAIOSFODNN7EXAMPLE1") == [])
        #expect(matches("xAKIAIOSFODNN7EXAMPLE") == [])
        #expect(matches("AKIAiosfodnn7example") == [])
    }

    @Test func findsLabelledAWSSecretKeysButNotBareOnes() {
        let key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        #expect(matches("aws_secret_access_key=\(key)") == ["secret:\(key)"])
        #expect(matches("AWS_SECRET_ACCESS_KEY: \"\(key)\"") == ["secret:\(key)"])
        #expect(matches("aws_secret_access_key = \(key)\nnext") == ["secret:\(key)"])
        #expect(matches(key) == [])
    }

    @Test func findsPEMPrivateKeyBlocksThroughTheEndLine() {
        #expect(matches("before\n\(Self.pem)\nafter") == ["secret:\(Self.pem)"])
        let truncated = "x -----BEGIN PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90"
        #expect(matches(truncated) == ["secret:" + truncated.dropFirst(2)])
        #expect(
            matches("-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKj34\n-----END PUBLIC KEY-----") == []
        )
        #expect(matches("-----BEGIN CERTIFICATE-----") == [])
    }

    @Test func findsJWTsWithAJSONHeader() {
        #expect(matches("Authorization: Bearer \(Self.jwt)") == ["secret:\(Self.jwt)"])
        // Unsigned (alg none): empty signature.
        let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."
        #expect(matches(unsigned) == ["secret:\(unsigned)"])
        // {"not":"jwt"}: a JSON header without "alg".
        #expect(matches("eyJub3QiOiJqd3QifQ.eyJzdWIiOiIxIn0.abc") == [])
        #expect(matches("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9") == [])
        #expect(matches("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.notapayload.sig") == [])
        #expect(matches("eyJsaar.eyJb.c") == [])
    }

    @Test(arguments: [
        ("password=hunter2", "hunter2"), ("\"api_key\": \"abc 123\"", "abc 123"), ("DB_PASSWORD: s3cr3t", "s3cr3t"),
        ("Server=db;Uid=app;Pwd=p@ss;", "p@ss"), ("spring.datasource.password = x", "x"),
        ("?access_token=ya29.abc&x=1", "ya29.abc"), ("client-secret='q\\'w'", "q\\'w"), ("x-api-key:k", "k"),
    ])
    func findsValuesOfSecretNamedAssignments(_ text: String, _ value: String) {
        #expect(matches(text, .secret) == ["secret:\(value)"])
    }

    @Test(arguments: [
        "password==x", "tokens=5", "bypass=1", "token=", "password: ", "https://example.com", "max_tokens=5",
        "tokenizer=bert", "a == b", "password := x", "compass=north",
    ])
    func ignoresOtherAssignments(_ text: String) {
        #expect(matches(text, .secret) == [])
    }
}

@Suite struct DetectorSetTests {
    @Test func findsSeveralMatchesInOneValueInOrder() {
        let text =
            "card 4111111111111111, mail a.b@example.co, ssn 123-45-6789, tel +44 20 7946 0958, iban DE89370400440532013000, key AKIAIOSFODNN7EXAMPLE"
        #expect(
            matches(text) == [
                "credit_card:4111111111111111", "email:a.b@example.co", "us_ssn:123-45-6789", "phone:+44 20 7946 0958",
                "iban:DE89370400440532013000", "secret:AKIAIOSFODNN7EXAMPLE",
            ]
        )
    }

    @Test func runsOnlyTheDetectorsItHolds() {
        let text = "a@example.com 123-45-6789"
        #expect(matches(text, .email) == ["email:a@example.com"])
        #expect(matches(text, [.usSSN]) == ["us_ssn:123-45-6789"])
        #expect(matches(text, []) == [])
    }

    @Test func theLongerOrMoreSpecificOverlappingMatchWins() {
        // The secret assignment's value is exactly an e-mail address: the secret is more specific.
        #expect(matches("password=john@example.com") == ["secret:john@example.com"])
        // A secret value that contains a card number is longer than the card.
        #expect(matches("token=4111111111111111abc") == ["secret:4111111111111111abc"])
        #expect(matches("token=4111111111111111") == ["secret:4111111111111111"])
        let overlapping = [
            DetectorMatch(kind: .phone, range: 0..<10), DetectorMatch(kind: .email, range: 2..<20),
            DetectorMatch(kind: .creditCard, range: 25..<30), DetectorMatch(kind: .secret, range: 25..<30),
        ]
        #expect(
            ContentScanner.resolveOverlaps(overlapping) == [
                DetectorMatch(kind: .email, range: 2..<20), DetectorMatch(kind: .secret, range: 25..<30),
            ]
        )
    }

    @Test func parsesPolicyNames() throws {
        #expect(try DetectorSet(names: ["credit_card", "email", "us_ssn", "phone", "iban", "secret"]) == .all)
        #expect(throws: UnknownDetectorName(name: "ssn")) { try DetectorSet(names: ["email", "ssn"]) }
        #expect(DetectorKind.allCases.map(\.rawValue) == ["credit_card", "email", "us_ssn", "phone", "iban", "secret"])
        #expect(DetectorSet([.email, .phone]).kinds == [.email, .phone])
    }

    @Test func reportsRangesRelativeToAByteBuffersReaderIndex() {
        var buffer = ByteBuffer(string: "xxxxmail a@example.com")
        buffer.moveReaderIndex(forwardBy: 4)
        #expect(DetectorSet.all.matches(in: buffer) == [DetectorMatch(kind: .email, range: 5..<18)])
    }

    @Test func findsNothingInAnEmptyValue() {
        #expect(matches("") == [])
    }

    /// Inputs built to make a careless scanner quadratic; each must finish quickly (a quadratic
    /// scan of 1 MiB would take minutes).
    @Test(arguments: [
        "4", "4 ", "1-", "a@", "@a", "a.", "+1", "(5", "eyJ", "password=", "-----BEGIN RSA PRIVATE KEY-----", "AKIA",
        "GB82", ":", "x",
    ])
    func scansAdversarial1MiBValuesInOnePass(_ unit: String) {
        let count = (1 << 20) / unit.utf8.count
        let value = Array(String(repeating: unit, count: count).utf8)
        let start = ContinuousClock.now
        let found = value.withUnsafeBytes { DetectorSet.all.matches(in: $0) }
        let elapsed = ContinuousClock.now - start
        #expect(found.count < value.count)
        #expect(elapsed < .seconds(30), "\(unit): \(elapsed)")
    }
}

@Suite struct RandomInputTests {
    /// Random values over the bytes the detectors care about (and some UTF-8): the scan never
    /// traps, and its matches are sorted, disjoint and inside the value. Any failing input found
    /// here belongs in the tables above as a regression test.
    @Test func matchesAreSortedDisjointAndInBoundsForRandomInput() {
        let alphabet = Array("0123456789 -.+()@=:/,_eyJAKISGBDEW\"'\nœ✓".utf8)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let length = Int.random(in: 0...80, using: &generator)
            let value = (0..<length).map { _ in alphabet.randomElement(using: &generator)! }
            let found = value.withUnsafeBytes { DetectorSet.all.matches(in: $0) }
            var previousEnd = 0
            for match in found {
                #expect(match.range.lowerBound >= previousEnd && match.range.upperBound <= value.count, "\(value)")
                #expect(!match.range.isEmpty, "\(value)")
                previousEnd = match.range.upperBound
            }
        }
    }
}
