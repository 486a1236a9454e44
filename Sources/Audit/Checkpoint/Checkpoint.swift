import Foundation

/// A transparency log tree head in the C2SP tlog-checkpoint form: the text a log signs as a note.
///
/// ```
/// <origin>
/// <tree size, decimal>
/// <base64 root hash>
/// [<extension line>...]
/// ```
///
/// Each line ends with a newline. The text must be byte-for-byte what other implementations produce,
/// since witnesses and auditors verify the log's signature over it; hence one encoding per value
/// (no leading zeros, canonical base64) and a strict parser.
public struct Checkpoint: Sendable, Equatable {
    /// The log's identity. C2SP recommends a schema-less URL but only requires it to be non-empty,
    /// so parsing accepts any non-empty line.
    public var origin: String
    /// The number of leaves in the tree.
    public var size: UInt64
    /// The RFC 6962 Merkle tree root at ``size``: 32 bytes.
    public var rootHash: [UInt8]
    /// Opaque, non-empty lines after the root hash. C2SP discourages them; they round-trip unchanged.
    public var extensions: [String]

    public init(origin: String, size: UInt64, rootHash: [UInt8], extensions: [String] = []) {
        self.origin = origin
        self.size = size
        self.rootHash = rootHash
        self.extensions = extensions
    }

    /// Byte-wise, because the checkpoint is compared as the text that was signed, and Swift's `==`
    /// on strings equates differently encoded canonically equivalent text.
    public static func == (lhs: Checkpoint, rhs: Checkpoint) -> Bool {
        lhs.size == rhs.size && lhs.rootHash == rhs.rootHash && lhs.origin.utf8.elementsEqual(rhs.origin.utf8)
            && lhs.extensions.count == rhs.extensions.count
            && zip(lhs.extensions, rhs.extensions).allSatisfy { $0.utf8.elementsEqual($1.utf8) }
    }

    /// The note body. Only meaningful for a checkpoint that passes ``validate()``; otherwise, for
    /// example, an origin with a newline in it would produce text that parses as something else.
    public var text: String {
        var out = "\(origin)\n\(size)\n\(NoteFormat.encodeBase64(rootHash))\n"
        for line in extensions {
            out += line + "\n"
        }
        return out
    }

    /// Throws unless ``text`` is a well-formed checkpoint that ``parse(_:)`` turns back into `self`.
    public func validate() throws {
        try Self.checkLine(origin, what: "origin")
        guard rootHash.count == 32 else {
            throw NoteError("invalid checkpoint: the root hash is \(rootHash.count) bytes, need 32 (SHA-256)")
        }
        for (index, line) in extensions.enumerated() {
            try Self.checkLine(line, what: "extension line \(index + 1)")
        }
    }

    private static func checkLine(_ line: String, what: String) throws {
        guard !line.isEmpty else {
            throw NoteError("invalid checkpoint: the \(what) is empty")
        }
        if line.utf8.contains(where: { $0 < 0x20 }) {
            throw NoteError(
                "invalid checkpoint: the \(what) \(NoteFormat.quoted(line)) contains a newline or control character")
        }
    }

    /// Parses checkpoint text (typically what ``NoteVerifier/verify(_:)`` returned).
    public static func parse(_ text: String) throws -> Checkpoint {
        let bytes = Array(text.utf8)
        guard bytes.last == NoteFormat.newline else {
            throw NoteError("malformed checkpoint: the text does not end with a newline")
        }
        try NoteFormat.checkNoControlCharacters(bytes, what: "checkpoint")
        let lines = bytes.dropLast().split(separator: NoteFormat.newline, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        guard lines.count >= 3 else {
            throw NoteError(
                "malformed checkpoint: \(lines.count) line\(lines.count == 1 ? "" : "s"), need origin, tree size "
                    + "and root hash"
            )
        }
        if let empty = lines.firstIndex(where: \.isEmpty) {
            let names = ["origin", "tree size", "root hash"]
            let what = empty < names.count ? "the \(names[empty]) line" : "extension line \(empty - 2)"
            throw NoteError("malformed checkpoint: \(what) is empty")
        }
        return Checkpoint(
            origin: lines[0],
            size: try parseSize(lines[1]),
            rootHash: try parseRootHash(lines[2]),
            extensions: Array(lines[3...])
        )
    }

    /// ASCII digits only, no sign, no leading zeros (except "0" itself): one text per size, so two
    /// checkpoints for the same tree are the same bytes.
    private static func parseSize(_ line: String) throws -> UInt64 {
        let digits = Array(line.utf8)
        guard digits.allSatisfy({ (0x30...0x39).contains($0) }) else {
            throw NoteError("malformed checkpoint: the tree size \(NoteFormat.quoted(line)) is not a decimal number")
        }
        guard digits.count == 1 || digits.first != 0x30 else {
            throw NoteError("malformed checkpoint: the tree size \(NoteFormat.quoted(line)) has a leading zero")
        }
        guard let size = UInt64(line) else {
            throw NoteError("malformed checkpoint: the tree size \(NoteFormat.quoted(line)) does not fit in 64 bits")
        }
        return size
    }

    private static func parseRootHash(_ line: String) throws -> [UInt8] {
        guard let hash = NoteFormat.decodeBase64(line) else {
            throw NoteError(
                "malformed checkpoint: the root hash \(NoteFormat.quoted(line)) is not canonical standard base64")
        }
        guard hash.count == 32 else {
            throw NoteError("malformed checkpoint: the root hash is \(hash.count) bytes, need 32 (SHA-256)")
        }
        return hash
    }
}
