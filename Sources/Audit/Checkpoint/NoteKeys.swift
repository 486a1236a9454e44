import Crypto
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An Ed25519 note signing key with its name, as Go's sumdb/note and C2SP signed-note define it.
///
/// The encoded form `PRIVATE+KEY+<name>+<key ID>+<base64(0x01 || seed)>` is what goes in a key file;
/// it starts with "PRIVATE+KEY" so it cannot be mistaken for, or pasted as, a verifier key.
public struct NoteSigner: Sendable {
    public let name: String
    public let keyID: UInt32
    public let publicKey: [UInt8]
    /// The 32-byte RFC 8032 seed. Kept as bytes rather than a CryptoKit key so the struct is plainly
    /// Sendable; ``description`` and ``customMirror`` keep it out of logs and `dump`.
    private let seed: [UInt8]

    /// A signer from a 32-byte Ed25519 seed.
    public init(name: String, seed: [UInt8]) throws {
        try NoteFormat.checkKeyName(name, what: "signer key")
        guard seed.count == 32 else {
            throw NoteError("invalid Ed25519 seed for signer \(NoteFormat.quoted(name)): \(seed.count) bytes, need 32")
        }
        let privateKey: Curve25519.Signing.PrivateKey
        do {
            privateKey = try Curve25519.Signing.PrivateKey(rawRepresentation: seed)
        } catch {
            throw NoteError("invalid Ed25519 seed for signer \(NoteFormat.quoted(name)): \(error)")
        }
        self.name = name
        self.seed = seed
        self.publicKey = Array(privateKey.publicKey.rawRepresentation)
        self.keyID = NoteFormat.keyID(name: name, publicKey: publicKey)
    }

    /// A new random key named `name`.
    public static func generate(name: String) throws -> NoteSigner {
        try NoteSigner(name: name, seed: Array(Curve25519.Signing.PrivateKey().rawRepresentation))
    }

    /// Decodes `PRIVATE+KEY+<name>+<8 hex digits>+<base64(0x01 || seed)>`.
    ///
    /// The key ID is recomputed from the derived public key and must match, which catches a
    /// truncated or hand-edited key before it signs anything. Errors name the key but never echo
    /// the seed.
    public init(encoded: String) throws {
        let prefix = "PRIVATE+KEY+"
        guard encoded.utf8.starts(with: prefix.utf8) else {
            throw NoteError("malformed signer key: it does not start with \"PRIVATE+KEY+\"")
        }
        let fields = encoded.dropFirst(prefix.count).split(
            separator: "+", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3 else {
            throw NoteError("malformed signer key: need PRIVATE+KEY+<name>+<key ID>+<key>")
        }
        let name = String(fields[0])
        try NoteFormat.checkKeyName(name, what: "signer key")
        guard let keyID = NoteFormat.parseKeyIDHex(fields[1]) else {
            throw NoteError("malformed signer key \(NoteFormat.quoted(name)): the key ID is not 8 hex digits")
        }
        guard let key = NoteFormat.decodeBase64(fields[2]) else {
            throw NoteError("malformed signer key \(NoteFormat.quoted(name)): the key is not canonical standard base64")
        }
        guard key.first == NoteFormat.ed25519Type else {
            throw NoteError(
                "unsupported signer key \(NoteFormat.quoted(name)): algorithm byte "
                    + "\(key.first.map { "0x" + NoteFormat.hex(UInt32($0), digits: 2) } ?? "missing"), only 0x01 "
                    + "(Ed25519) is supported"
            )
        }
        guard key.count == 33 else {
            throw NoteError(
                "malformed signer key \(NoteFormat.quoted(name)): the Ed25519 seed is \(key.count - 1) bytes, need 32"
            )
        }
        try self.init(name: name, seed: Array(key[1...]))
        guard self.keyID == keyID else {
            throw NoteError(
                "signer key \(NoteFormat.quoted(name)) says key ID \(NoteFormat.hex(keyID)) but its key has ID "
                    + "\(NoteFormat.hex(self.keyID)); the key is corrupt or the name was changed"
            )
        }
    }

    /// `PRIVATE+KEY+<name>+<key ID>+<base64(0x01 || seed)>`. Secret.
    public var encoded: String {
        "PRIVATE+KEY+\(name)+\(NoteFormat.hex(keyID))+\(NoteFormat.encodeBase64([NoteFormat.ed25519Type] + seed))"
    }

    /// `<name>+<key ID>+<base64(0x01 || public key)>`, for ``NoteVerifier/init(verifierKey:)``.
    public var verifierKey: String {
        NoteFormat.verifierKey(name: name, keyID: keyID, publicKey: publicKey)
    }

    /// The signed note: `text` + "\n" + one signature line.
    ///
    /// `text` must end with a newline and have no empty lines or control characters; the signature
    /// covers it byte for byte, final newline included.
    public func sign(_ text: String) throws -> String {
        let message = Array(text.utf8)
        try NoteFormat.checkText(message)
        let signature: Data
        do {
            signature = try Curve25519.Signing.PrivateKey(rawRepresentation: seed).signature(for: message)
        } catch {
            throw NoteError("signing with key \(NoteFormat.quoted(name)) failed: \(error)")
        }
        return text + "\n" + NoteFormat.signatureLine(name: name, keyID: keyID, signature: Array(signature))
    }

    /// Signs a checkpoint after checking it is well formed, so a log never publishes a checkpoint
    /// that verifiers would refuse to parse.
    public func sign(_ checkpoint: Checkpoint) throws -> String {
        try checkpoint.validate()
        return try sign(checkpoint.text)
    }
}

extension NoteSigner: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "NoteSigner(\(name)+\(NoteFormat.hex(keyID)), private key hidden)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["name": name, "keyID": NoteFormat.hex(keyID)], displayStyle: .struct)
    }
}

/// An Ed25519 note verifier key: `<name>+<key ID>+<base64(0x01 || public key)>`.
public struct NoteVerifier: Sendable {
    public let name: String
    public let keyID: UInt32
    public let publicKey: [UInt8]

    /// Decodes a verifier key, recomputing its key ID from the name and public key so a key whose
    /// parts were mixed up or mistyped is refused here instead of failing every verification later.
    public init(verifierKey: String) throws {
        let fields = verifierKey.split(separator: "+", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3 else {
            throw NoteError("malformed verifier key \(NoteFormat.quoted(verifierKey)): need <name>+<key ID>+<key>")
        }
        let name = String(fields[0])
        try NoteFormat.checkKeyName(name, what: "verifier key")
        guard let keyID = NoteFormat.parseKeyIDHex(fields[1]) else {
            throw NoteError("malformed verifier key \(NoteFormat.quoted(verifierKey)): the key ID is not 8 hex digits")
        }
        guard let key = NoteFormat.decodeBase64(fields[2]) else {
            throw NoteError(
                "malformed verifier key \(NoteFormat.quoted(verifierKey)): the key is not canonical standard base64"
            )
        }
        guard key.first == NoteFormat.ed25519Type else {
            throw NoteError(
                "unsupported verifier key \(NoteFormat.quoted(verifierKey)): algorithm byte "
                    + "\(key.first.map { "0x" + NoteFormat.hex(UInt32($0), digits: 2) } ?? "missing"), only 0x01 "
                    + "(Ed25519) is supported"
            )
        }
        guard key.count == 33 else {
            throw NoteError(
                "malformed verifier key \(NoteFormat.quoted(verifierKey)): the Ed25519 public key is "
                    + "\(key.count - 1) bytes, need 32"
            )
        }
        let publicKey = Array(key[1...])
        let computed = NoteFormat.keyID(name: name, publicKey: publicKey)
        guard computed == keyID else {
            throw NoteError(
                "verifier key \(NoteFormat.quoted(verifierKey)) says key ID \(NoteFormat.hex(keyID)) but its name and "
                    + "key give \(NoteFormat.hex(computed))"
            )
        }
        self.name = name
        self.keyID = keyID
        self.publicKey = publicKey
    }

    /// Returns the note's text if a signature by this key (name and key ID) verifies; throws otherwise
    /// (unknown key, bad signature, malformed note). Other signers' lines are ignored.
    ///
    /// Every line with this key's name and ID must verify, not only the first: C2SP says a failing
    /// signature from a known key should reject the whole note, and a note carrying a forged line
    /// next to a good one has been tampered with.
    public func verify(_ note: String) throws -> String {
        let parsed = try SignedNote.parse(note)
        let message = Array(parsed.text.utf8)
        let key: Curve25519.Signing.PublicKey
        do {
            key = try Curve25519.Signing.PublicKey(rawRepresentation: publicKey)
        } catch {
            throw NoteError("verifier key \(name)+\(NoteFormat.hex(keyID)) is unusable: \(error)")
        }
        var verified = false
        for signature in parsed.signatures
        where signature.keyID == keyID && signature.name.utf8.elementsEqual(name.utf8) {
            guard signature.signature.count == 64, key.isValidSignature(signature.signature, for: message) else {
                throw NoteError(
                    "invalid signature by key \(name)+\(NoteFormat.hex(keyID)): the note was altered after signing "
                        + "or the signature is corrupt"
                )
            }
            verified = true
        }
        guard verified else {
            let others = parsed.signatures.prefix(8).map { "\($0.name)+\(NoteFormat.hex($0.keyID))" }
            throw NoteError(
                "note has no signature by key \(name)+\(NoteFormat.hex(keyID)) (it is signed by "
                    + others.joined(separator: ", ") + (parsed.signatures.count > 8 ? ", ..." : "") + ")"
            )
        }
        return parsed.text
    }
}

/// A signer key kept in a file readable only by its owner, like an SSH private key.
extension NoteVerifier {
    /// The verifier key as text (`name+keyid+base64`), as `interlock audit public-key` prints it.
    public var encodedKey: String { NoteFormat.verifierKey(name: name, keyID: keyID, publicKey: publicKey) }
}

extension NoteFormat {
    /// `<name>+<key ID>+<base64(0x01 || public key)>`.
    static func verifierKey(name: String, keyID: UInt32, publicKey: [UInt8]) -> String {
        "\(name)+\(hex(keyID))+\(encodeBase64([ed25519Type] + publicKey))"
    }
}

public enum NoteKeyFile {
    /// Longer than any encoded Ed25519 signer key with a sane name; stops a wrong path (a log, a
    /// device) from being read whole.
    static let maximumSize = 4096

    /// Where the public half of the key at `keyPath` is written: `checkpoint.key` → `checkpoint.pub`.
    public static func publicPath(for keyPath: String) -> String {
        (keyPath.hasSuffix(".key") ? String(keyPath.dropLast(4)) : keyPath) + ".pub"
    }

    /// The key at `path`, or a new one named after this host (`interlock-<hostname>`, written with
    /// mode 0600); either way its public half is (re)written beside it, mode 0644, for operators to
    /// hand to auditors. `created` says whether the key is new. The daemon at start and
    /// `interlock audit init-key` at install both come here, so the two make the same key.
    public static func loadOrCreate(path: String) throws -> (signer: NoteSigner, created: Bool) {
        let signer: NoteSigner
        let created = !FileManager.default.fileExists(atPath: path)
        if created {
            let host = ProcessInfo.processInfo.hostName.filter { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" }
            signer = try NoteSigner.generate(name: "interlock-" + (host.isEmpty ? "appliance" : host))
            try write(signer, to: path)
        } else {
            signer = try read(path: path)
        }
        let publicPath = publicPath(for: path)
        try Data((signer.verifierKey + "\n").utf8).write(to: URL(fileURLWithPath: publicPath), options: .atomic)
        chmod(publicPath, 0o644)
        return (signer, created)
    }

    /// Writes `signer.encoded` and a newline to a new file with mode 0600.
    ///
    /// Refuses to replace an existing file (or follow a symlink there), so a mistyped path cannot
    /// destroy the key a log has been signing with. A partly written file is removed.
    public static func write(_ signer: NoteSigner, to path: String) throws {
        let fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let code = errno
            if code == EEXIST {
                throw NoteError("refusing to overwrite the existing file \(path) with a note signing key")
            }
            throw NoteError("cannot create note key file \(path): \(String(cString: strerror(code)))")
        }
        var succeeded = false
        defer {
            close(fd)
            if !succeeded { unlink(path) }
        }
        // The umask can only narrow 0600; fchmod makes the mode exactly 0600 whatever it was.
        guard fchmod(fd, 0o600) == 0 else {
            throw NoteError("cannot set mode 0600 on note key file \(path): \(String(cString: strerror(errno)))")
        }
        let bytes = Array((signer.encoded + "\n").utf8)
        var written = 0
        while written < bytes.count {
            let result = bytes[written...].withUnsafeBytes { buffer in
                posixWrite(fd, buffer.baseAddress, buffer.count)
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw NoteError("cannot write note key file \(path): \(String(cString: strerror(errno)))")
            }
            written += result
        }
        guard fsync(fd) == 0 else {
            throw NoteError("cannot flush note key file \(path) to disk: \(String(cString: strerror(errno)))")
        }
        succeeded = true
    }

    /// Reads a signer key written by ``write(_:to:)`` (or by hand: one encoded key, optional final
    /// newline).
    ///
    /// Refuses a file that its group or other users can read or write: the key may already have
    /// leaked, and signing on with it would make forged checkpoints indistinguishable from real ones.
    public static func read(path: String) throws -> NoteSigner {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw NoteError("cannot open note key file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw NoteError("cannot stat note key file \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw NoteError("note key file \(path) is not a regular file")
        }
        let permissions = info.st_mode & 0o777
        guard permissions & 0o077 == 0 else {
            throw NoteError(
                "note key file \(path) has mode 0\(String(permissions, radix: 8)), so users other than its owner can "
                    + "access it; run chmod 600 on it (and consider the key exposed if others could read it)"
            )
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { posixRead(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw NoteError("cannot read note key file \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            bytes.append(contentsOf: buffer[..<count])
            guard bytes.count <= maximumSize else {
                throw NoteError("note key file \(path) is larger than \(maximumSize) bytes; it is not a note key")
            }
        }
        if bytes.last == NoteFormat.newline { bytes.removeLast() }
        guard let text = String(bytes: bytes, encoding: .utf8) else {
            throw NoteError("note key file \(path) is not UTF-8 text")
        }
        do {
            return try NoteSigner(encoded: text)
        } catch let error as NoteError {
            throw NoteError("note key file \(path): \(error.message)")
        }
    }
}

// Outside NoteKeyFile, whose own read and write would otherwise shadow the system calls.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
    write(fd, buffer, count)
}

private func posixRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(fd, buffer, count)
}
