import Crypto
import Foundation

/// A SHA-256 tree hash (32 bytes).
///
/// A distinct type rather than `[UInt8]` so that a truncated or foreign digest cannot reach the
/// tree math: every value has been checked for length once, at the edge where it was parsed, and
/// proofs, roots and checkpoints can then be compared without re-validating.
public struct MerkleHash: Hashable, Sendable, CustomStringConvertible {
    /// Size of a SHA-256 digest, the only hash RFC 6962 trees here are built with.
    static let byteCount = 32

    /// The digest; always ``byteCount`` bytes.
    public let bytes: [UInt8]

    /// `nil` unless `bytes` is exactly 32 bytes, so a short read or a hash of another algorithm is
    /// refused instead of silently producing roots nobody else can reproduce.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        self.bytes = bytes
    }

    /// Parses 64 hex digits (either case). `nil` for any other length or a non-hex character.
    public init?(hex: String) {
        let digits = Array(hex.utf8)
        guard digits.count == Self.byteCount * 2 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.byteCount)
        var index = 0
        while index < digits.count {
            guard let high = Self.hexValue(digits[index]), let low = Self.hexValue(digits[index + 1]) else {
                return nil
            }
            bytes.append(high << 4 | low)
            index += 2
        }
        self.bytes = bytes
    }

    /// Parses standard, padded base64 (RFC 4648 §4) of 32 bytes. Only the canonical spelling is
    /// accepted (the one ``base64`` produces), so one hash has one text form in evidence and
    /// signatures over text never disagree about which hash they name.
    public init?(base64: String) {
        guard let data = Data(base64Encoded: base64), data.count == Self.byteCount else { return nil }
        guard data.base64EncodedString() == base64 else { return nil }
        self.bytes = Array(data)
    }

    /// Lower-case hex, the form RFC 6962 test vectors and most log tooling print.
    public var hex: String {
        let alphabet = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(alphabet[Int(byte >> 4)])
            text.append(alphabet[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Standard, padded base64, the form RFC 9162 checkpoints and C2SP signed notes use.
    public var base64: String {
        Data(bytes).base64EncodedString()
    }

    public var description: String { hex }

    /// Wraps a digest the hasher just produced; its length is fixed by SHA-256, not by input.
    init(digest: SHA256.Digest) {
        self.bytes = Array(digest)
    }

    private static func hexValue(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return character - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
