import Crypto
import Foundation

/// A malformed note, checkpoint or key, or a signature that does not verify.
///
/// One type with a message, because every caller does the same thing with any of these failures:
/// refuse the note and tell the operator what was wrong with it. Messages never contain private
/// key material.
public struct NoteError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// A parsed C2SP signed note (c2sp.org/signed-note): text, a blank line, then signature lines.
///
/// Parsing checks only the syntax; it verifies nothing. Use ``NoteVerifier/verify(_:)`` before
/// trusting the text.
///
/// The text may not contain empty lines. C2SP allows them (the last blank line separates the
/// signatures), but Go's signers and every tlog checkpoint never produce them, and forbidding them
/// makes the split between text and signatures unambiguous whichever end it is searched from.
public struct SignedNote: Sendable, Equatable {
    /// One signature line: `— <name> <base64(key ID || signature)>`.
    public struct Signature: Sendable, Equatable {
        public var name: String
        /// Big-endian uint32 from the first four bytes of the decoded signature.
        public var keyID: UInt32
        /// The signature proper, without the key ID (64 bytes for Ed25519; other algorithms differ).
        public var signature: [UInt8]

        public init(name: String, keyID: UInt32, signature: [UInt8]) {
            self.name = name
            self.keyID = keyID
            self.signature = signature
        }

        /// Byte-wise, because signatures are over bytes: Swift's `==` on strings treats canonically
        /// equivalent but differently encoded names as equal, and key lookup must not.
        public static func == (lhs: Signature, rhs: Signature) -> Bool {
            lhs.keyID == rhs.keyID && lhs.signature == rhs.signature && lhs.name.utf8.elementsEqual(rhs.name.utf8)
        }
    }

    /// The signed text, including its final newline but not the blank line after it.
    public var text: String
    /// The signature lines in the order they appear, duplicates and unknown keys included.
    public var signatures: [Signature]

    public init(text: String, signatures: [Signature]) {
        self.text = text
        self.signatures = signatures
    }

    /// Byte-wise for the same reason as ``Signature/==(_:_:)``.
    public static func == (lhs: SignedNote, rhs: SignedNote) -> Bool {
        lhs.text.utf8.elementsEqual(rhs.text.utf8) && lhs.signatures == rhs.signatures
    }

    /// Go's sumdb/note refuses more; C2SP requires accepting at least 16. A cap keeps a hostile note
    /// from making a verifier decode thousands of lines.
    public static let maximumSignatures = 100

    /// The encoded note: text, blank line, one line per signature.
    public var encoded: String {
        var out = text + "\n"
        for signature in signatures {
            out += NoteFormat.signatureLine(
                name: signature.name, keyID: signature.keyID, signature: signature.signature)
        }
        return out
    }

    /// Parses a signed note strictly; anything the format does not allow throws ``NoteError``.
    public static func parse(_ note: String) throws -> SignedNote {
        let bytes = Array(note.utf8)
        try NoteFormat.checkNoControlCharacters(bytes, what: "note")

        // The text has no empty lines, so the first "\n\n" is the separator.
        var split: Int?
        var index = 0
        while index + 1 < bytes.count {
            if bytes[index] == NoteFormat.newline && bytes[index + 1] == NoteFormat.newline {
                split = index
                break
            }
            index += 1
        }
        guard let split else {
            throw NoteError("malformed note: no blank line between the text and the signature lines")
        }
        let textBytes = Array(bytes[...split])
        try NoteFormat.checkText(textBytes)
        let block = bytes[(split + 2)...]
        guard !block.isEmpty else {
            throw NoteError("malformed note: no signature lines after the blank line")
        }
        guard block.last == NoteFormat.newline else {
            throw NoteError("malformed note: the last signature line does not end with a newline")
        }

        var signatures: [Signature] = []
        for line in block.dropLast().split(separator: NoteFormat.newline, omittingEmptySubsequences: false) {
            guard signatures.count < maximumSignatures else {
                throw NoteError("malformed note: more than \(maximumSignatures) signature lines")
            }
            signatures.append(try parseSignatureLine(line, number: signatures.count + 1))
        }
        return SignedNote(text: String(decoding: textBytes, as: UTF8.self), signatures: signatures)
    }

    private static func parseSignatureLine(_ line: ArraySlice<UInt8>, number: Int) throws -> Signature {
        guard !line.isEmpty else {
            throw NoteError(
                "malformed note: signature line \(number) is empty (exactly one blank line must separate the text "
                    + "from the signatures)"
            )
        }
        guard line.starts(with: NoteFormat.signaturePrefix) else {
            throw NoteError(
                "malformed note: signature line \(number) does not start with an em dash (U+2014) and a space")
        }
        let rest = line.dropFirst(NoteFormat.signaturePrefix.count)
        guard let space = rest.firstIndex(of: NoteFormat.space) else {
            throw NoteError(
                "malformed note: signature line \(number) has no space between the key name and the signature")
        }
        let name = String(decoding: rest[..<space], as: UTF8.self)
        try NoteFormat.checkKeyName(name, what: "signature line \(number)")
        let encoded = String(decoding: rest[(space + 1)...], as: UTF8.self)
        guard let decoded = NoteFormat.decodeBase64(encoded) else {
            throw NoteError(
                "malformed note: the signature on line \(number) (key \(name)) is not canonical standard base64")
        }
        guard decoded.count > 4 else {
            throw NoteError(
                "malformed note: the signature on line \(number) (key \(name)) is \(decoded.count) bytes; "
                    + "it needs a 4-byte key ID and a signature"
            )
        }
        return Signature(
            name: name,
            keyID: NoteFormat.bigEndianUInt32(decoded[0..<4]),
            signature: Array(decoded[4...])
        )
    }
}

/// Encoding rules shared by notes, keys and checkpoints.
enum NoteFormat {
    static let newline: UInt8 = 0x0A
    static let space: UInt8 = 0x20
    /// U+2014 EM DASH in UTF-8, then a space.
    static let signaturePrefix: [UInt8] = [0xE2, 0x80, 0x94, 0x20]
    /// The C2SP signature type byte for Ed25519.
    static let ed25519Type: UInt8 = 0x01

    /// Key names are what a verifier matches signatures by, and they sit between "+" separators in
    /// encoded keys and between spaces on signature lines; so no spaces, no "+", and, as the note may
    /// carry no control characters, none of those either.
    static func checkKeyName(_ name: String, what: String) throws {
        guard !name.isEmpty else {
            throw NoteError("invalid key name in \(what): it is empty")
        }
        for scalar in name.unicodeScalars {
            if scalar.properties.isWhitespace {
                throw NoteError("invalid key name \(quoted(name)) in \(what): it contains whitespace")
            }
            if scalar == "+" {
                throw NoteError("invalid key name \(quoted(name)) in \(what): it contains \"+\"")
            }
            if scalar.value < 0x20 || scalar.value == 0x7F {
                throw NoteError("invalid key name \(quoted(name)) in \(what): it contains a control character")
            }
        }
    }

    /// C2SP forbids ASCII control characters other than newline anywhere in a note.
    static func checkNoControlCharacters(_ bytes: [UInt8], what: String) throws {
        if let bad = bytes.firstIndex(where: { $0 < 0x20 && $0 != newline }) {
            throw NoteError(
                "malformed \(what): control character 0x\(hex(UInt32(bytes[bad]), digits: 2)) at byte \(bad) "
                    + "(only newline is allowed)"
            )
        }
    }

    /// Note text: non-empty, newline-terminated, no empty lines, no control characters.
    static func checkText(_ bytes: [UInt8]) throws {
        guard !bytes.isEmpty else {
            throw NoteError("malformed note text: it is empty")
        }
        guard bytes.last == newline else {
            throw NoteError("malformed note text: it does not end with a newline")
        }
        try checkNoControlCharacters(bytes, what: "note text")
        var previous = newline
        var line = 1
        for byte in bytes {
            if byte == newline {
                if previous == newline {
                    throw NoteError(
                        "malformed note text: line \(line) is empty (the blank line is reserved for separating "
                            + "the signatures)"
                    )
                }
                line += 1
            }
            previous = byte
        }
    }

    static func signatureLine(name: String, keyID: UInt32, signature: [UInt8]) -> String {
        "— \(name) \(encodeBase64(bigEndianBytes(keyID) + signature))\n"
    }

    /// The C2SP-recommended key ID: SHA-256(name || 0x0A || type || public key)[:4], big-endian.
    static func keyID(name: String, publicKey: [UInt8]) -> UInt32 {
        var hasher = SHA256()
        hasher.update(data: Array(name.utf8))
        hasher.update(data: [newline, ed25519Type])
        hasher.update(data: publicKey)
        return bigEndianUInt32(Array(hasher.finalize())[0..<4])
    }

    static func bigEndianUInt32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.reduce(0) { ($0 << 8) | UInt32($1) }
    }

    static func bigEndianBytes(_ value: UInt32) -> [UInt8] {
        [
            UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16),
            UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value),
        ]
    }

    static func hex(_ value: UInt32, digits: Int = 8) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }

    /// Exactly 8 hex digits (either case, as Go accepts), as in encoded keys.
    static func parseKeyIDHex(_ text: Substring) -> UInt32? {
        guard text.utf8.count == 8, text.utf8.allSatisfy({ isHexDigit($0) }) else { return nil }
        return UInt32(text, radix: 16)
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x46).contains(byte) || (0x61...0x66).contains(byte)
    }

    static func encodeBase64(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
    }

    /// Standard padded base64 that re-encodes to the same text, so one value has one encoding and a
    /// note cannot be altered without changing the bytes a signature or hash covers.
    static func decodeBase64<S: StringProtocol>(_ text: S) -> [UInt8]? {
        let string = String(text)
        guard !string.isEmpty, let data = Data(base64Encoded: string), data.base64EncodedString() == string else {
            return nil
        }
        return Array(data)
    }

    /// For error messages: the value in quotes, shortened so a hostile input cannot flood the log.
    static func quoted(_ value: String) -> String {
        let limit = 64
        let scalars = value.unicodeScalars
        let shown = scalars.count > limit ? String(String.UnicodeScalarView(scalars.prefix(limit))) + "…" : value
        return "\""
            + shown.unicodeScalars.map { $0.value < 0x20 ? "\\u{\(hex($0.value, digits: 2))}" : String($0) }
            .joined() + "\""
    }
}
