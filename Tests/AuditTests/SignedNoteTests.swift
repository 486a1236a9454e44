import Crypto
import Foundation
import Testing

@testable import Audit

/// The example key pair and note published in the documentation of Go's golang.org/x/mod/sumdb/note
/// (and reused by its tests); an implementation that agrees with these interoperates with Go's.
private enum GoExample {
    static let verifierKey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    static let signerKey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    static let text =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    static let signatureBase64 =
        "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
    static let note = text + "\n— PeterNeumann " + signatureBase64 + "\n"
}

private func errorMessage(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let error as NoteError {
        return error.message
    } catch {
        return "unexpected error type: \(error)"
    }
}

private func base64(_ text: String) -> [UInt8] {
    Array(Data(base64Encoded: text) ?? Data())
}

@Suite struct SignedNoteTests {
    // MARK: the Go example vectors

    @Test func goVerifierKeyDecodes() throws {
        let verifier = try NoteVerifier(verifierKey: GoExample.verifierKey)
        #expect(verifier.name == "PeterNeumann")
        #expect(verifier.keyID == 0xc74f_20a3)
        #expect(verifier.publicKey == Array(base64("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").dropFirst()))
    }

    @Test func goSignerKeyDecodesAndReencodes() throws {
        let signer = try NoteSigner(encoded: GoExample.signerKey)
        #expect(signer.name == "PeterNeumann")
        #expect(signer.keyID == 0xc74f_20a3)
        #expect(signer.encoded == GoExample.signerKey)
        #expect(signer.verifierKey == GoExample.verifierKey)
        #expect(signer.publicKey == (try NoteVerifier(verifierKey: GoExample.verifierKey)).publicKey)
    }

    @Test func signingTheGoExampleReproducesThePublishedNote() throws {
        let signer = try NoteSigner(encoded: GoExample.signerKey)
        let note = try signer.sign(GoExample.text)
        #if canImport(Darwin)
        // CryptoKit randomizes Ed25519 signatures; only the verification can be compared there.
        #expect(try NoteVerifier(verifierKey: GoExample.verifierKey).verify(note) == GoExample.text)
        #else
        // RFC 8032 signatures are deterministic, so this must be the published note byte for byte.
        #expect(Array(note.utf8) == Array(GoExample.note.utf8))
        #endif
    }

    @Test func thePublishedGoNoteVerifies() throws {
        let verifier = try NoteVerifier(verifierKey: GoExample.verifierKey)
        #expect(try verifier.verify(GoExample.note) == GoExample.text)
        let parsed = try SignedNote.parse(GoExample.note)
        #expect(parsed.text == GoExample.text)
        #expect(parsed.signatures.count == 1)
        #expect(parsed.signatures[0].name == "PeterNeumann")
        #expect(parsed.signatures[0].keyID == 0xc74f_20a3)
        #expect(parsed.signatures[0].signature == Array(base64(GoExample.signatureBase64).dropFirst(4)))
        #expect(parsed.encoded == GoExample.note)
    }

    @Test func keyIDIsTheFirstFourBytesOfSHA256OfNameNewlineTypeAndKey() throws {
        let signer = try NoteSigner(encoded: GoExample.signerKey)
        let digest = Array(SHA256.hash(data: Array("PeterNeumann\n".utf8) + [0x01] + signer.publicKey))
        let expected = UInt32(digest[0]) << 24 | UInt32(digest[1]) << 16 | UInt32(digest[2]) << 8 | UInt32(digest[3])
        #expect(expected == 0xc74f_20a3)
        #expect(NoteFormat.keyID(name: "PeterNeumann", publicKey: signer.publicKey) == expected)
        // The name is part of the hash: the same key under another name has another ID.
        let renamed = try NoteSigner(
            name: "PeterNeumann2",
            seed: Array(
                base64(
                    "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
                ).dropFirst()))
        #expect(renamed.publicKey == signer.publicKey)
        #expect(renamed.keyID != signer.keyID)
        #expect(renamed.verifierKey.hasPrefix("PeterNeumann2+" + NoteFormat.hex(renamed.keyID) + "+"))
    }

    // MARK: round trips

    @Test func generatedKeysRoundTripThroughTheirEncodings() throws {
        let signer = try NoteSigner.generate(name: "interlock.example/audit")
        let decoded = try NoteSigner(encoded: signer.encoded)
        #expect(decoded.encoded == signer.encoded)
        #expect(decoded.keyID == signer.keyID)
        #expect(decoded.publicKey == signer.publicKey)
        let verifier = try NoteVerifier(verifierKey: signer.verifierKey)
        #expect(verifier.name == signer.name)
        #expect(verifier.keyID == signer.keyID)
        #expect(verifier.publicKey == signer.publicKey)

        let text = "first line\nsecond line with ünïcödé — and a dash\n"
        let note = try decoded.sign(text)
        #expect(note.hasPrefix(text + "\n— interlock.example/audit "))
        #expect(try verifier.verify(note) == text)
        #expect(try SignedNote.parse(note).encoded == note)
    }

    @Test func otherSignersLinesAreIgnoredAndEitherKeyVerifies() throws {
        let a = try NoteSigner.generate(name: "a.example")
        let b = try NoteSigner.generate(name: "b.example")
        let text = "shared text\n"
        var note = try SignedNote.parse(try a.sign(text))
        note.signatures += try SignedNote.parse(try b.sign(text)).signatures
        note.signatures.append(.init(name: "unknown.example", keyID: 7, signature: [1, 2, 3, 4, 5]))
        let encoded = note.encoded
        #expect(try NoteVerifier(verifierKey: a.verifierKey).verify(encoded) == text)
        #expect(try NoteVerifier(verifierKey: b.verifierKey).verify(encoded) == text)
        #expect(try SignedNote.parse(encoded) == note)
    }

    @Test func signerDescriptionAndMirrorHideThePrivateKey() throws {
        let signer = try NoteSigner(encoded: GoExample.signerKey)
        let secret = "AYEKFALVFGyNhPJEMzD1QIDr"
        #expect(!"\(signer)".contains(secret))
        #expect(!String(reflecting: signer).contains(secret))
        var dumped = ""
        dump(signer, to: &dumped)
        #expect(!dumped.contains("129"))  // 0x81, the seed's first byte
        #expect("\(signer)".contains("PeterNeumann+c74f20a3"))
    }

    // MARK: verification failures

    @Test func aChangedTextFailsVerification() throws {
        let verifier = try NoteVerifier(verifierKey: GoExample.verifierKey)
        let altered = GoExample.note.replacingOccurrences(of: "cryptography", with: "cryptographY")
        let message = errorMessage { _ = try verifier.verify(altered) }
        #expect(message?.contains("invalid signature by key PeterNeumann+c74f20a3") == true)

        // One flipped bit in the first byte of the text ("I" → "H").
        var bytes = Array(GoExample.note.utf8)
        bytes[0] ^= 0x01
        #expect(throws: NoteError.self) { try verifier.verify(String(decoding: bytes, as: UTF8.self)) }
    }

    @Test func aFlippedBitInTheSignatureFailsVerification() throws {
        let verifier = try NoteVerifier(verifierKey: GoExample.verifierKey)
        for index in [4, 20, 67] {  // in R, in the middle, the last byte of S
            var raw = base64(GoExample.signatureBase64)
            raw[index] ^= 0x80
            let note = GoExample.text + "\n— PeterNeumann " + Data(raw).base64EncodedString() + "\n"
            let message = errorMessage { _ = try verifier.verify(note) }
            #expect(message?.hasPrefix("invalid signature") == true, "byte \(index): \(message ?? "accepted")")
        }
    }

    @Test func aFlippedBitInTheKeyIDMakesTheSignatureUnknown() throws {
        let verifier = try NoteVerifier(verifierKey: GoExample.verifierKey)
        var raw = base64(GoExample.signatureBase64)
        raw[3] ^= 0x01
        let note = GoExample.text + "\n— PeterNeumann " + Data(raw).base64EncodedString() + "\n"
        let message = errorMessage { _ = try verifier.verify(note) }
        #expect(message?.contains("no signature by key PeterNeumann+c74f20a3") == true)
        #expect(message?.contains("PeterNeumann+c74f20a2") == true)
    }

    @Test func aDifferentKeyDoesNotVerify() throws {
        let other = try NoteVerifier(verifierKey: NoteSigner.generate(name: "someone.else").verifierKey)
        let message = errorMessage { _ = try other.verify(GoExample.note) }
        #expect(message?.contains("no signature by key someone.else+") == true)
        #expect(message?.contains("signed by PeterNeumann+c74f20a3") == true)
    }

    @Test func aKeyWithTheSameNameButAnotherIDDoesNotVerify() throws {
        let impostor = try NoteSigner.generate(name: "PeterNeumann")
        #expect(impostor.keyID != 0xc74f_20a3)
        let verifier = try NoteVerifier(verifierKey: impostor.verifierKey)
        #expect(throws: NoteError.self) { try verifier.verify(GoExample.note) }
        // And the impostor's signature does not verify under the real key either.
        let forged = try impostor.sign(GoExample.text)
        let message = errorMessage { _ = try NoteVerifier(verifierKey: GoExample.verifierKey).verify(forged) }
        #expect(message?.contains("no signature by key PeterNeumann+c74f20a3") == true)
    }

    @Test func anotherKeysSignatureUnderTheKnownNameAndIDIsRejected() throws {
        let impostor = try NoteSigner.generate(name: "PeterNeumann")
        let forged = try SignedNote.parse(try impostor.sign(GoExample.text)).signatures[0].signature
        let note = SignedNote(
            text: GoExample.text,
            signatures: [.init(name: "PeterNeumann", keyID: 0xc74f_20a3, signature: forged)]
        )
        let message = errorMessage { _ = try NoteVerifier(verifierKey: GoExample.verifierKey).verify(note.encoded) }
        #expect(message?.hasPrefix("invalid signature by key PeterNeumann+c74f20a3") == true)
    }

    @Test func aBadLineNextToAGoodOneRejectsTheNote() throws {
        var note = try SignedNote.parse(GoExample.note)
        var bad = note.signatures[0]
        bad.signature[10] ^= 1
        note.signatures.append(bad)
        #expect(throws: NoteError.self) { try NoteVerifier(verifierKey: GoExample.verifierKey).verify(note.encoded) }
    }

    @Test func truncatedSignaturesAreRejected() throws {
        let verifier = try NoteVerifier(verifierKey: GoExample.verifierKey)
        // Canonical base64 of key ID + 63 signature bytes: well formed, but not an Ed25519 signature.
        let short = Data(base64(GoExample.signatureBase64).dropLast()).base64EncodedString()
        let message = errorMessage {
            _ = try verifier.verify(GoExample.text + "\n— PeterNeumann " + short + "\n")
        }
        #expect(message?.hasPrefix("invalid signature") == true)
        // Cut-off base64 text.
        let cut = String(GoExample.signatureBase64.dropLast(5))
        let malformed = errorMessage { _ = try verifier.verify(GoExample.text + "\n— PeterNeumann " + cut + "\n") }
        #expect(malformed?.contains("not canonical standard base64") == true)
        // Only the key ID.
        let idOnly = Data(base64(GoExample.signatureBase64).prefix(4)).base64EncodedString()
        let tooShort = errorMessage { _ = try verifier.verify(GoExample.text + "\n— PeterNeumann " + idOnly + "\n") }
        #expect(tooShort?.contains("is 4 bytes") == true)
    }

    @Test func aMissingBlankLineIsMalformed() throws {
        let verifier = try NoteVerifier(verifierKey: GoExample.verifierKey)
        let note = GoExample.text + "— PeterNeumann " + GoExample.signatureBase64 + "\n"
        let message = errorMessage { _ = try verifier.verify(note) }
        #expect(message == "malformed note: no blank line between the text and the signature lines")
    }

    @Test func anExtraBlankLineIsMalformed() throws {
        let verifier = try NoteVerifier(verifierKey: GoExample.verifierKey)
        let note = GoExample.text + "\n\n— PeterNeumann " + GoExample.signatureBase64 + "\n"
        let message = errorMessage { _ = try verifier.verify(note) }
        #expect(message?.contains("signature line 1 is empty") == true)
        // A blank line inside the text, or between signature lines, or at the end.
        let inText =
            "If you think cryptography is the answer to your problem,\n\n" + "then...\n\n— PeterNeumann "
            + GoExample.signatureBase64 + "\n"
        #expect(throws: NoteError.self) { try SignedNote.parse(inText) }
        #expect(throws: NoteError.self) { try SignedNote.parse(GoExample.note + "\n") }
        let between =
            GoExample.text + "\n— PeterNeumann " + GoExample.signatureBase64 + "\n\n— PeterNeumann "
            + GoExample.signatureBase64 + "\n"
        #expect(throws: NoteError.self) { try SignedNote.parse(between) }
    }

    @Test func malformedNotesAreRejectedByParse() throws {
        let sig = GoExample.signatureBase64
        let cases: [(String, String)] = [
            (GoExample.text + "\n— PeterNeumann " + sig, "does not end with a newline"),
            (GoExample.text + "\n", "no signature lines"),
            (GoExample.text + "\n-- PeterNeumann " + sig + "\n", "em dash"),
            (GoExample.text + "\n—PeterNeumann " + sig + "\n", "em dash"),
            (GoExample.text + "\n— PeterNeumann" + sig + "\n", "no space"),
            (GoExample.text + "\n— Peter+Neumann " + sig + "\n", "contains \"+\""),
            (GoExample.text + "\n—  " + sig + "\n", "is empty"),
            (GoExample.text + "\n— PeterNeumann " + sig + " \n", "not canonical standard base64"),
            (GoExample.text + "\n— PeterNeumann " + sig.dropLast() + "\n", "not canonical standard base64"),
            ("tab\there\n\n— PeterNeumann " + sig + "\n", "control character 0x09"),
            ("\n\n— PeterNeumann " + sig + "\n", "line 1 is empty"),
            ("", "no blank line"),
        ]
        for (note, expected) in cases {
            let message = errorMessage { _ = try SignedNote.parse(note) }
            #expect(message?.contains(expected) == true, "\(note.debugDescription): \(message ?? "accepted")")
        }
    }

    @Test func moreThanAHundredSignaturesAreRefused() throws {
        let line = "— PeterNeumann " + GoExample.signatureBase64 + "\n"
        #expect(
            try SignedNote.parse(GoExample.text + "\n" + String(repeating: line, count: 100)).signatures.count == 100)
        let message = errorMessage {
            _ = try SignedNote.parse(GoExample.text + "\n" + String(repeating: line, count: 101))
        }
        #expect(message == "malformed note: more than 100 signature lines")
    }

    @Test func signRefusesTextItCannotEncode() throws {
        let signer = try NoteSigner.generate(name: "x")
        #expect(errorMessage { _ = try signer.sign("no newline") }?.contains("does not end with a newline") == true)
        #expect(errorMessage { _ = try signer.sign("") }?.contains("is empty") == true)
        #expect(errorMessage { _ = try signer.sign("a\n\nb\n") }?.contains("line 2 is empty") == true)
        #expect(errorMessage { _ = try signer.sign("\n") }?.contains("line 1 is empty") == true)
        #expect(errorMessage { _ = try signer.sign("cr\r\n") }?.contains("control character 0x0d") == true)
    }

    // MARK: key encodings

    @Test func malformedVerifierKeysAreRejected() {
        let cases: [(String, String)] = [
            // Go's own test: the right key under a wrong ID.
            ("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "give c74f20a3"),
            ("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "not 8 hex digits"),
            ("PeterNeumann+c74f20g3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "not 8 hex digits"),
            ("PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "not canonical standard base64"),
            ("PeterNeumann+c74f20a3+AhpcQ2cUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "algorithm byte 0x02"),
            ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy", "public key is 29 bytes"),
            ("PeterNeumann+c74f20a3", "need <name>+<key ID>+<key>"),
            ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "it is empty"),
            ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "contains whitespace"),
        ]
        for (key, expected) in cases {
            let message = errorMessage { _ = try NoteVerifier(verifierKey: key) }
            #expect(message?.contains(expected) == true, "\(key): \(message ?? "accepted")")
        }
    }

    @Test func malformedSignerKeysAreRejectedWithoutEchoingTheSeed() {
        let seed = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
        let cases: [(String, String)] = [
            ("PeterNeumann+c74f20a3+" + seed, "does not start with \"PRIVATE+KEY+\""),
            ("PRIVATE+KEY+PeterNeumann+c74f20a4+" + seed, "says key ID c74f20a4 but its key has ID c74f20a3"),
            ("PRIVATE+KEY+Other+c74f20a3+" + seed, "says key ID c74f20a3"),
            ("PRIVATE+KEY+PeterNeumann+c74f20a3+" + seed.dropLast(4), "seed is 29 bytes"),
            ("PRIVATE+KEY+PeterNeumann+c74f20a3", "need PRIVATE+KEY+<name>+<key ID>+<key>"),
        ]
        for (key, expected) in cases {
            let message = errorMessage { _ = try NoteSigner(encoded: key) }
            #expect(message?.contains(expected) == true, "\(key): \(message ?? "accepted")")
            #expect(message?.contains("AYEKFALV") != true)
        }
        #expect(errorMessage { _ = try NoteSigner(name: "x", seed: [1, 2, 3]) }?.contains("3 bytes, need 32") == true)
        #expect(errorMessage { _ = try NoteSigner.generate(name: "a+b") }?.contains("contains \"+\"") == true)
        #expect(errorMessage { _ = try NoteSigner.generate(name: "a\u{00A0}b") }?.contains("whitespace") == true)
        #expect(errorMessage { _ = try NoteSigner.generate(name: "") }?.contains("it is empty") == true)
    }

    @Test func keyIDHexAcceptsUppercaseLikeGo() throws {
        let upper = "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        #expect(try NoteVerifier(verifierKey: upper).keyID == 0xc74f_20a3)
    }

    // MARK: checkpoints

    /// The example from c2sp.org/tlog-checkpoint.
    static let specCheckpoint = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

    @Test func theSpecExampleParsesAndFormatsBack() throws {
        let checkpoint = try Checkpoint.parse(Self.specCheckpoint)
        #expect(checkpoint.origin == "example.com/behind-the-sofa")
        #expect(checkpoint.size == 20_852_163)
        #expect(checkpoint.rootHash == base64("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="))
        #expect(checkpoint.extensions.isEmpty)
        #expect(checkpoint.text == Self.specCheckpoint)
        try checkpoint.validate()
    }

    @Test func checkpointsRoundTrip() throws {
        let root = Array(SHA256.hash(data: Array("leaf".utf8)))
        let cases = [
            Checkpoint(origin: "interlock.example/audit", size: 0, rootHash: root),
            Checkpoint(origin: "o", size: 1, rootHash: [UInt8](repeating: 0, count: 32)),
            Checkpoint(origin: "o p", size: UInt64.max, rootHash: root, extensions: ["ext one", "— two"]),
        ]
        for checkpoint in cases {
            try checkpoint.validate()
            #expect(try Checkpoint.parse(checkpoint.text) == checkpoint)
        }
        #expect(cases[0].text.hasPrefix("interlock.example/audit\n0\n"))
        #expect(cases[2].text.hasPrefix("o p\n18446744073709551615\n"))
        #expect(cases[2].text.hasSuffix("\next one\n— two\n"))
    }

    @Test func signedCheckpointsVerifyAndParse() throws {
        let signer = try NoteSigner.generate(name: "interlock.example/audit")
        let checkpoint = Checkpoint(
            origin: "interlock.example/audit", size: 42, rootHash: Array(SHA256.hash(data: [1, 2, 3])))
        let note = try signer.sign(checkpoint)
        let text = try NoteVerifier(verifierKey: signer.verifierKey).verify(note)
        #expect(try Checkpoint.parse(text) == checkpoint)
        let short = Checkpoint(origin: "o", size: 1, rootHash: [UInt8](repeating: 0, count: 31))
        #expect(errorMessage { _ = try signer.sign(short) }?.contains("31 bytes, need 32") == true)
    }

    @Test func malformedCheckpointsAreRejected() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
        let root31 = Data([UInt8](repeating: 7, count: 31)).base64EncodedString()
        let cases: [(String, String)] = [
            ("o\n01\n\(root)\n", "leading zero"),
            ("o\n00\n\(root)\n", "leading zero"),
            ("o\n+5\n\(root)\n", "not a decimal number"),
            ("o\n-1\n\(root)\n", "not a decimal number"),
            ("o\n 5\n\(root)\n", "not a decimal number"),
            ("o\n5 \n\(root)\n", "not a decimal number"),
            ("o\n0x10\n\(root)\n", "not a decimal number"),
            ("o\n18446744073709551616\n\(root)\n", "does not fit in 64 bits"),
            ("o\n5\n\(root.dropLast())\n", "not canonical standard base64"),
            ("o\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n", "not canonical standard base64"),
            ("o\n5\n!!!!\n", "not canonical standard base64"),
            ("o\n5\n\(root31)\n", "root hash is 31 bytes"),
            ("\n5\n\(root)\n", "the origin line is empty"),
            ("o\n\n\(root)\n", "the tree size line is empty"),
            ("o\n5\n\(root)\n\next\n", "extension line 1 is empty"),
            ("o\n5\n\(root)", "does not end with a newline"),
            ("o\n5\n\(root)\next", "does not end with a newline"),
            ("o\n5\n", "2 lines"),
            ("", "does not end with a newline"),
            ("o\n5\n\(root)\nbad\u{01}\n", "control character 0x01"),
        ]
        for (text, expected) in cases {
            let message = errorMessage { _ = try Checkpoint.parse(text) }
            #expect(message?.contains(expected) == true, "\(text.debugDescription): \(message ?? "accepted")")
        }
    }

    @Test func validateRejectsWhatWouldNotParseBack() {
        let root = [UInt8](repeating: 1, count: 32)
        let cases: [(Checkpoint, String)] = [
            (Checkpoint(origin: "", size: 1, rootHash: root), "origin is empty"),
            (Checkpoint(origin: "a\nb", size: 1, rootHash: root), "newline or control character"),
            (Checkpoint(origin: "o", size: 1, rootHash: []), "0 bytes, need 32"),
            (Checkpoint(origin: "o", size: 1, rootHash: root, extensions: [""]), "extension line 1 is empty"),
            (Checkpoint(origin: "o", size: 1, rootHash: root, extensions: ["x", "y\n"]), "extension line 2"),
        ]
        for (checkpoint, expected) in cases {
            let message = errorMessage { try checkpoint.validate() }
            #expect(message?.contains(expected) == true, "\(checkpoint): \(message ?? "accepted")")
        }
    }

    // MARK: key files

    @Test func keyFilesAreWrittenWithMode0600AndReadBack() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        let path = dir.file("note.key")
        let signer = try NoteSigner(encoded: GoExample.signerKey)
        try NoteKeyFile.write(signer, to: path)

        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == GoExample.signerKey + "\n")
        #expect(try NoteKeyFile.read(path: path).encoded == GoExample.signerKey)

        // A key without the final newline, as an operator might write it by hand, also reads.
        let handWritten = dir.file("hand.key")
        #expect(
            FileManager.default.createFile(
                atPath: handWritten, contents: Data(GoExample.signerKey.utf8), attributes: [.posixPermissions: 0o400]))
        #expect(try NoteKeyFile.read(path: handWritten).keyID == 0xc74f_20a3)
    }

    @Test func keyFilesAreNeverOverwritten() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        let path = dir.file("note.key")
        let first = try NoteSigner.generate(name: "first")
        try NoteKeyFile.write(first, to: path)
        let message = errorMessage { try NoteKeyFile.write(try NoteSigner.generate(name: "second"), to: path) }
        #expect(message == "refusing to overwrite the existing file \(path) with a note signing key")
        #expect(try NoteKeyFile.read(path: path).encoded == first.encoded)

        let missingDirectory = errorMessage { try NoteKeyFile.write(first, to: dir.file("no/such/dir.key")) }
        #expect(missingDirectory?.hasPrefix("cannot create note key file") == true)
    }

    @Test func keyFilesOthersCanAccessAreRefused() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        let path = dir.file("note.key")
        try NoteKeyFile.write(try NoteSigner.generate(name: "k"), to: path)
        for mode: mode_t in [0o640, 0o604, 0o644, 0o620, 0o660] {
            #expect(chmod(path, mode) == 0)
            let message = errorMessage { _ = try NoteKeyFile.read(path: path) }
            #expect(
                message?.contains("has mode 0\(String(mode, radix: 8)), so users other than its owner") == true,
                "mode \(String(mode, radix: 8)): \(message ?? "accepted")")
            #expect(message?.contains("chmod 600") == true)
        }
        #expect(chmod(path, 0o400) == 0)
        #expect(try NoteKeyFile.read(path: path).name == "k")
    }

    @Test func unreadableOrCorruptKeyFilesFailClearly() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        let missing = errorMessage { _ = try NoteKeyFile.read(path: dir.file("absent.key")) }
        #expect(missing?.hasPrefix("cannot open note key file") == true)

        let corrupt = dir.file("corrupt.key")
        let edited = GoExample.signerKey.replacingOccurrences(of: "c74f20a3", with: "c74f20a4")
        #expect(
            FileManager.default.createFile(
                atPath: corrupt, contents: Data(edited.utf8), attributes: [.posixPermissions: 0o600]))
        let message = errorMessage { _ = try NoteKeyFile.read(path: corrupt) }
        #expect(message?.hasPrefix("note key file \(corrupt): signer key") == true)
        #expect(message?.contains("AYEKFALV") != true)

        let directory = errorMessage { _ = try NoteKeyFile.read(path: dir.path) }
        #expect(directory?.contains("not a regular file") == true)
    }
}
