import Testing

@testable import Audit

@Suite struct CanonicalJSONTests {
    private func text(_ value: AuditValue) -> String {
        String(decoding: CanonicalJSON.encode(value), as: UTF8.self)
    }

    @Test func keysAreSortedByUTF8BytesIncludingNonASCII() {
        let value: AuditValue = [
            "b": 1, "a": 2, "é": 3, "Z": 4, "aa": 5, "😀": 6, "\u{FFFD}": 7, "": 8,
        ]
        // UTF-16 order would put "😀" (D83D) before U+FFFD; UTF-8 order puts it last.
        let expected: [UInt8] = Array(#"{"":8,"Z":4,"a":2,"aa":5,"b":1,"é":3,"\#u{FFFD}":7,"😀":6}"#.utf8)
        #expect(CanonicalJSON.encode(value) == expected)
    }

    @Test func stringsEscapeOnlyWhatRFC8785Requires() {
        let value = AuditValue.string("q\"b\\s/\u{08}\u{0C}\n\r\t\u{00}\u{1F}\u{7F}\u{2028}é😀<>&'")
        let expected: [UInt8] =
            Array(#""q\"b\\s/\b\f\n\r\t\u0000\u001f"#.utf8) + [0x7F] + Array("\u{2028}é😀<>&'\"".utf8)
        #expect(CanonicalJSON.encode(value) == expected)
    }

    @Test func controlCharactersUseLowercaseHex() {
        #expect(text(.string("\u{1B}\u{0B}\u{1A}")) == #""\u001b\u000b\u001a""#)
    }

    @Test func nestedValuesNegativeIntegersAndEmptyContainers() {
        let value: AuditValue = [
            "d": ["x": ["y": "z"]],
            "c": [-1, 0, .int(Int64.min), .int(Int64.max), .uint(UInt64.max), nil, true, false],
            "b": [:],
            "a": [],
        ]
        #expect(
            text(value)
                == #"{"a":[],"b":{},"c":[-1,0,-9223372036854775808,9223372036854775807,18446744073709551615,null,true,false],"d":{"x":{"y":"z"}}}"#
        )
        #expect(text([:]) == "{}")
        #expect(text([]) == "[]")
        #expect(text("") == #""""#)
    }

    @Test func roundTripsThroughTheDecoder() throws {
        let values: [AuditValue] = [
            nil, true, false, 0, -1, .int(Int64.min), .uint(UInt64.max), "", "é\u{0}\n😀",
            [], [:], [1, [2, [3, [:]]]],
            ["identity": ["uid": 1001, "groups": ["bots", "ci"], "command_line": "psql -h 198.18.0.10"], "ok": true],
        ]
        for value in values {
            let bytes = CanonicalJSON.encode(value)
            let decoded = try CanonicalJSON.decode(bytes, requireCanonical: true)
            #expect(decoded == value)
            #expect(CanonicalJSON.encode(decoded) == bytes)
        }
    }

    @Test func decoderAcceptsOrdinaryJSONAndFlagsNonCanonicalText() throws {
        let loose = Array(#" { "b" : [ 1 , -2 ] , "a" : "\u00e9\/\ud83d\ude00" } "#.utf8)
        let value = try CanonicalJSON.decode(loose)
        #expect(value == ["a": "é/😀", "b": [1, -2]])
        #expect(!CanonicalJSON.isCanonical(loose))
        #expect(CanonicalJSON.isCanonical(Array(#"{"a":"é/😀","b":[1,-2]}"#.utf8)))
        #expect(!CanonicalJSON.isCanonical(Array(#"{"b":1,"a":2}"#.utf8)))
        #expect(!CanonicalJSON.isCanonical(Array(#"-0"#.utf8)))
        #expect(!CanonicalJSON.isCanonical(Array(#""\u001B""#.utf8)))
    }

    /// The single-pass canonical check agrees with the definition (parse, encode again, compare bytes)
    /// on canonical entries and on every one-byte change, insertion and deletion of them.
    @Test func theSinglePassCanonicalCheckAgreesWithEncodingAgain() throws {
        func byDefinition(_ bytes: [UInt8]) -> Bool {
            guard let value = try? CanonicalJSON.decode(bytes) else { return false }
            return CanonicalJSON.encode(value) == bytes
        }
        let seeds: [AuditValue] = [
            ["a": 1, "b": [true, nil, -5, "x\u{1}\u{8}\t\"\\y/é"], "é": ["": 0, "A": [:], "a": []]],
            ["index": 12, "kind": "statement", "text": "SELECT '\n' FROM t WHERE x = $1", "v": 1],
            [.uint(UInt64.max), .int(Int64.min), "\u{1f}\u{7f}😀"],
        ]
        let alphabet: [UInt8] = Array(#" \"{}[],:-0123456789abcdefnrtu/AZé"#.utf8) + [0x00, 0x1F, 0x7F, 0xC3, 0xFF]
        var checked = 0
        for seed in seeds {
            let bytes = CanonicalJSON.encode(seed)
            #expect(CanonicalJSON.isCanonical(bytes))
            for i in 0...bytes.count {
                var variants: [[UInt8]] = []
                if i < bytes.count {
                    var deleted = bytes
                    deleted.remove(at: i)
                    variants.append(deleted)
                }
                for b in alphabet {
                    var inserted = bytes
                    inserted.insert(b, at: i)
                    variants.append(inserted)
                    if i < bytes.count {
                        var replaced = bytes
                        replaced[i] = b
                        variants.append(replaced)
                    }
                }
                for v in variants {
                    #expect(CanonicalJSON.isCanonical(v) == byDefinition(v), "\(String(decoding: v, as: UTF8.self))")
                    checked += 1
                }
            }
        }
        #expect(checked > 10_000)
    }

    @Test(arguments: [
        "1.5", "1e3", "01", "-", "[1,]", "{\"a\":1,\"a\":2}", "\"\\ud800\"", "\"\\udc00x\"", "\"a\nb\"",
        "18446744073709551616", "-9223372036854775809", "[", "{\"a\" 1}", "nul", "1 2", "\"\\x\"",
    ])
    func decoderRejectsInvalidInput(_ input: String) {
        #expect(throws: AuditError.self) { try CanonicalJSON.decode(Array(input.utf8)) }
    }

    @Test func decoderRejectsInvalidUTF8AndDeepNesting() {
        #expect(throws: AuditError.self) { try CanonicalJSON.decode([0x22, 0xC3, 0x28, 0x22]) }
        let deep = Array(String(repeating: "[", count: 65).utf8) + Array(String(repeating: "]", count: 65).utf8)
        #expect(throws: AuditError.self) { try CanonicalJSON.decode(deep) }
        let ok = Array(String(repeating: "[", count: 64).utf8) + Array(String(repeating: "]", count: 64).utf8)
        #expect((try? CanonicalJSON.decode(ok)) != nil)
    }

    @Test func signedAndUnsignedSpellingsOfOneNumberAreEqual() throws {
        #expect(AuditValue.int(5) == .uint(5))
        #expect(AuditValue.int(-1) != .uint(UInt64.max))
        #expect(try CanonicalJSON.decode(CanonicalJSON.encode(.uint(7))) == .uint(7))
        #expect(AuditValue(UInt64.max) == .uint(UInt64.max))
        #expect(AuditValue(Int32(-3)) == .int(-3))
    }

    @Test func canonicallyEquivalentStringsStayDistinct() {
        // Swift's String == treats these as equal; their bytes (and hashes) differ, so values must too.
        #expect(AuditValue.string("\u{E9}") != .string("e\u{301}"))
        #expect(CanonicalJSON.encode("\u{E9}") != CanonicalJSON.encode("e\u{301}"))
    }
}
