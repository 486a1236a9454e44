#if canImport(Glibc)
import Glibc
#endif

/// Where a secret (an upstream password, a webhook signing key) is kept outside the policy file.
///
/// The policy file is readable by auditors and shown by `interlock policy show`, so it only ever
/// says where a secret lives; the secret itself is read by the daemon when needed.
public enum SecretSource: Sendable, Hashable, CustomStringConvertible {
    /// An absolute path; the file must not be readable by every user (mode & 0o007 == 0).
    case file(String)
    /// A systemd credential (`LoadCredential=NAME:...` or `SetCredentialEncrypted=` in the unit),
    /// read from `$CREDENTIALS_DIRECTORY/NAME`.
    case systemdCredential(String)

    public var description: String {
        switch self {
        case .file(let path): "file \(path)"
        case .systemdCredential(let name): "systemd credential \(name)"
        }
    }
}

/// A `SecretSource` with the place in the policy file that named it, so a secret that cannot be
/// read is reported like a parse error: `FILE:LINE:COL: KEY: MESSAGE`.
public struct SecretReference: Sendable, Hashable {
    public var source: SecretSource
    /// The key that named it, e.g. `resources[0].credentials.password_file`.
    public var key: String
    public var location: SourceLocation?

    public init(_ source: SecretSource, key: String, location: SourceLocation? = nil) {
        self.source = source
        self.key = key
        self.location = location
    }

    /// The largest secret read: a password or a key, not a file someone pointed at by mistake.
    public static let maxSize = 64 << 10

    /// `$CREDENTIALS_DIRECTORY` of this process (set by systemd when the unit loads credentials).
    public static var environmentCredentialsDirectory: String? {
        getenv("CREDENTIALS_DIRECTORY").map { String(cString: $0) }
    }

    /// Reads the secret now.
    ///
    /// The file is opened first and checked through its descriptor (no race with a rename): it must
    /// be a regular file, not readable, writable or executable by every user (`mode & 0o007 == 0`;
    /// `0600` or `0640 root:interlock` are fine), at most `maxSize` bytes, and not empty. One
    /// trailing newline (`\n` or `\r\n`) is removed, since `echo secret > file` adds one.
    ///
    /// - Parameter credentialsDirectory: where systemd credentials are; the process environment's
    ///   `$CREDENTIALS_DIRECTORY` unless a test passes another.
    public func read(
        credentialsDirectory: String? = SecretReference.environmentCredentialsDirectory
    ) throws(ConfigError) -> Secret {
        let path: String
        switch source {
        case .file(let p):
            path = p
        case .systemdCredential(let name):
            guard let dir = credentialsDirectory, !dir.isEmpty else {
                throw failure(
                    "systemd credential '\(name)' cannot be read: CREDENTIALS_DIRECTORY is not set "
                        + "(add LoadCredential=\(name):/path/to/file to the interlockd unit)")
            }
            path = dir.hasSuffix("/") ? dir + name : dir + "/" + name
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { throw failure("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw failure("cannot stat \(path): \(String(cString: strerror(errno)))") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw failure("\(path) is not a regular file") }
        let mode = st.st_mode & 0o7777
        guard mode & 0o007 == 0 else {
            throw failure(
                "\(path) is accessible to every user (mode \(String(mode, radix: 8))); "
                    + "it must be readable only by the daemon: chmod o-rwx \(path)")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
            if bytes.count > Self.maxSize { throw failure("\(path) is larger than \(Self.maxSize) bytes") }
        }
        if bytes.last == UInt8(ascii: "\n") {
            bytes.removeLast()
            if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        }
        guard !bytes.isEmpty else { throw failure("\(path) is empty") }
        return Secret(bytes: bytes)
    }

    private func failure(_ message: String) -> ConfigError {
        ConfigError(location: location, key: key, message: message)
    }
}

/// A secret read from a `SecretReference`: the bytes are available to the code that needs them,
/// and every way of printing the value (interpolation, `dump`, a logger's metadata) shows
/// `<secret>` instead.
public struct Secret: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// The secret as text, or nil when it is not UTF-8 (a password must be text).
    public var string: String? { String(validating: bytes, as: UTF8.self) }

    public var description: String { "<secret>" }
    public var debugDescription: String { "<secret>" }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
