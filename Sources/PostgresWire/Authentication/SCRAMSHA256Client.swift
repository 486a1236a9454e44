import Crypto
import NIOCore
import _CryptoExtras

/// The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, without channel binding.
///
/// It exists so the gateway can log in upstream with a password the client never sees, and check that the server
/// knows the password too (a wrong server signature fails the login: it is not the real server). A pure value: feed
/// it the server's SASL data, send what it returns. The gs2 header is `n,,` (this client does not do channel
/// binding, so it picks `SCRAM-SHA-256`, never `-PLUS`). The password goes through ``SASLprep`` (see its limits).
///
/// PBKDF2 costs `iterations` HMACs (4096 by PostgreSQL's default, about a millisecond); ``keys`` can be kept and
/// handed to the next login with the same password so that only the first connection pays it.
public struct SCRAMSHA256Client: Sendable, CustomStringConvertible, CustomReflectable {
    /// The SASL mechanism name.
    public static let mechanism = "SCRAM-SHA-256"
    /// Iteration counts above this are refused: a hostile server could otherwise ask for hours of CPU.
    public static let defaultMaximumIterations = 1_000_000

    /// The keys PBKDF2 derives from the password for one salt and iteration count. Password-equivalent for that
    /// server: keep them as secret as the password (their description is redacted).
    public struct Keys: Sendable, Hashable, CustomStringConvertible, CustomReflectable {
        public let salt: [UInt8]
        public let iterations: Int
        let clientKey: [UInt8]
        let serverKey: [UInt8]

        public var description: String { "SCRAMSHA256Client.Keys(iterations: \(self.iterations), redacted)" }
        public var customMirror: Mirror { Mirror(self, children: ["iterations": self.iterations]) }
    }

    private enum State: Sendable {
        case initial
        case clientFirstSent(clientFirstBare: String)
        case clientFinalSent(expectedServerSignature: [UInt8])
        case finished
        case failed
    }

    private let username: String
    private let password: [UInt8]
    private let clientNonce: String
    private let maximumIterations: Int
    private var state: State = .initial
    /// The keys of the last exchange (after the server-first-message), to reuse with ``init(username:password:cachedKeys:maximumIterations:)``.
    public private(set) var keys: Keys?

    /// - Parameters:
    ///   - username: sent in the client-first-message. PostgreSQL ignores it (it uses the startup `user`), and
    ///     libpq sends it empty; so does the default.
    ///   - cachedKeys: keys from an earlier login with the same password; used when the server's salt and
    ///     iteration count match, skipping PBKDF2.
    public init(
        username: String = "",
        password: String,
        cachedKeys: Keys? = nil,
        maximumIterations: Int = SCRAMSHA256Client.defaultMaximumIterations
    ) {
        var generator = SystemRandomNumberGenerator()
        let nonce = (0..<18).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        self.init(
            username: username,
            password: password,
            clientNonce: Base64.encode(nonce),
            cachedKeys: cachedKeys,
            maximumIterations: maximumIterations
        )
    }

    /// With a fixed client nonce, for test vectors only.
    init(
        username: String,
        password: String,
        clientNonce: String,
        cachedKeys: Keys? = nil,
        maximumIterations: Int = SCRAMSHA256Client.defaultMaximumIterations
    ) {
        self.username = username
        self.password = SASLprep.prepare(password)
        self.clientNonce = clientNonce
        self.keys = cachedKeys
        self.maximumIterations = maximumIterations
    }

    public var description: String { "SCRAMSHA256Client(redacted)" }
    public var customMirror: Mirror { Mirror(self, children: []) }

    /// The client-first-message, the data of `SASLInitialResponse`: `n,,n=<user>,r=<nonce>`.
    public mutating func clientFirstMessage() -> ByteBuffer {
        guard case .initial = self.state else {
            preconditionFailure("clientFirstMessage() is the first step of a SCRAM exchange")
        }
        let bare = "n=\(Self.saslName(self.username)),r=\(self.clientNonce)"
        self.state = .clientFirstSent(clientFirstBare: bare)
        return ByteBuffer(string: "n,," + bare)
    }

    /// Takes the server-first-message (`AuthenticationSASLContinue` data) and returns the client-final-message
    /// (`SASLResponse` data) with the proof.
    public mutating func receiveServerFirstMessage(_ message: ByteBuffer) throws -> ByteBuffer {
        guard case .clientFirstSent(let clientFirstBare) = self.state else {
            self.state = .failed
            throw PostgresWireError.auth(.unexpectedAuthenticationMessage, "SCRAM server-first-message out of order")
        }
        self.state = .failed
        let serverFirst = String(decoding: message.readableBytesView, as: UTF8.self)
        var attributes = serverFirst.split(separator: ",", omittingEmptySubsequences: false)[...]
        if attributes.first?.hasPrefix("m=") == true {
            throw PostgresWireError.auth(.invalidSCRAMMessage, "SCRAM server requires an unsupported extension")
        }
        guard let nonce = Self.attribute("r", attributes.popFirst()),
            let saltText = Self.attribute("s", attributes.popFirst()),
            let iterationsText = Self.attribute("i", attributes.popFirst())
        else {
            throw PostgresWireError.auth(.invalidSCRAMMessage, "SCRAM server-first-message lacks r=, s= or i=")
        }
        guard nonce.count > self.clientNonce.count, nonce.hasPrefix(self.clientNonce),
            nonce.utf8.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E && $0 != UInt8(ascii: ",") })
        else {
            throw PostgresWireError.auth(.invalidSCRAMMessage, "SCRAM server nonce does not extend the client nonce")
        }
        guard let salt = Base64.decode(saltText), !salt.isEmpty else {
            throw PostgresWireError.auth(.invalidSCRAMMessage, "SCRAM salt is not valid base64")
        }
        guard iterationsText.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let iterations = Int(iterationsText), iterations > 0
        else {
            throw PostgresWireError.auth(.invalidSCRAMMessage, "SCRAM iteration count is not a positive integer")
        }
        guard iterations <= self.maximumIterations else {
            throw PostgresWireError.auth(
                .invalidSCRAMMessage,
                "SCRAM iteration count \(iterations) exceeds the limit of \(self.maximumIterations)"
            )
        }

        let keys: Keys
        if let cached = self.keys, cached.salt == salt, cached.iterations == iterations {
            keys = cached
        } else {
            keys = try Self.deriveKeys(password: self.password, salt: salt, iterations: iterations)
            self.keys = keys
        }

        // c= is base64 of the gs2 header "n,,".
        let clientFinalWithoutProof = "c=biws,r=\(nonce)"
        let authMessage = Array("\(clientFirstBare),\(serverFirst),\(clientFinalWithoutProof)".utf8)
        let storedKey = Array(SHA256.hash(data: keys.clientKey))
        let clientSignature = Self.hmac(key: storedKey, authMessage)
        let proof = zip(keys.clientKey, clientSignature).map { $0 ^ $1 }
        let serverSignature = Self.hmac(key: keys.serverKey, authMessage)

        self.state = .clientFinalSent(expectedServerSignature: serverSignature)
        return ByteBuffer(string: "\(clientFinalWithoutProof),p=\(Base64.encode(proof))")
    }

    /// Takes the server-final-message (`AuthenticationSASLFinal` data) and checks the server's signature.
    /// Throws when the server reports an error (`e=`) or its signature is wrong.
    public mutating func receiveServerFinalMessage(_ message: ByteBuffer) throws {
        guard case .clientFinalSent(let expected) = self.state else {
            self.state = .failed
            throw PostgresWireError.auth(.unexpectedAuthenticationMessage, "SCRAM server-final-message out of order")
        }
        self.state = .failed
        let serverFinal = String(decoding: message.readableBytesView, as: UTF8.self)
        let first = serverFinal.split(separator: ",", omittingEmptySubsequences: false).first
        if let error = Self.attribute("e", first) {
            throw PostgresWireError.auth(.invalidSCRAMMessage, "SCRAM server reports error: \(error)")
        }
        guard let verifierText = Self.attribute("v", first), let verifier = Base64.decode(verifierText) else {
            throw PostgresWireError.auth(.invalidSCRAMMessage, "SCRAM server-final-message lacks v=")
        }
        guard Self.constantTimeEqual(verifier, expected) else {
            throw PostgresWireError(
                code: .serverSignatureMismatch,
                message: "SCRAM server signature is wrong: the server does not know the password",
                sqlState: SQLState.invalidAuthorizationSpecification
            )
        }
        self.state = .finished
    }

    /// Whether the server's signature was verified.
    public var isFinished: Bool {
        if case .finished = self.state {
            return true
        }
        return false
    }

    static func deriveKeys(password: [UInt8], salt: [UInt8], iterations: Int) throws -> Keys {
        let salted = try KDF.Insecure.PBKDF2.deriveKey(
            from: password,
            salt: salt,
            using: .sha256,
            outputByteCount: 32,
            unsafeUncheckedRounds: iterations
        )
        let saltedPassword = salted.withUnsafeBytes { Array($0) }
        return Keys(
            salt: salt,
            iterations: iterations,
            clientKey: Self.hmac(key: saltedPassword, Array("Client Key".utf8)),
            serverKey: Self.hmac(key: saltedPassword, Array("Server Key".utf8))
        )
    }

    static func hmac(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: key)))
    }

    private static func attribute(_ name: Character, _ text: Substring?) -> Substring? {
        guard let text, text.count >= 2, text.first == name, text.dropFirst().first == "=" else {
            return nil
        }
        return text.dropFirst(2)
    }

    /// RFC 5802 saslname: `,` and `=` escaped.
    private static func saslName(_ name: String) -> String {
        var escaped = ""
        for character in name {
            switch character {
            case ",": escaped += "=2C"
            case "=": escaped += "=3D"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    private static func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else {
            return false
        }
        var difference: UInt8 = 0
        for (left, right) in zip(lhs, rhs) {
            difference |= left ^ right
        }
        return difference == 0
    }
}

/// PostgreSQL's MD5 password response: `"md5" + hex(md5(hex(md5(password + user)) + salt))`.
///
/// Exists for servers still configured with `md5` authentication. MD5 is broken; prefer SCRAM on the server.
public enum PostgresMD5Password {
    public static func response(user: String, password: String, salt: UInt32) -> String {
        let inner = Self.hex(Insecure.MD5.hash(data: Array(password.utf8) + Array(user.utf8)))
        let saltBytes = [
            UInt8(salt >> 24 & 0xFF), UInt8(salt >> 16 & 0xFF), UInt8(salt >> 8 & 0xFF), UInt8(salt & 0xFF),
        ]
        return "md5" + Self.hex(Insecure.MD5.hash(data: Array(inner.utf8) + saltBytes))
    }

    private static func hex(_ digest: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var output = [UInt8]()
        for byte in digest {
            output.append(digits[Int(byte >> 4)])
            output.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: output, as: UTF8.self)
    }
}
