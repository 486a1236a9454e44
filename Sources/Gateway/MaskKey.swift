import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The HMAC key of `with: hash` masks when the policy names none (`masking.hash_key_file`).
///
/// It exists so hashed values stay joinable across sessions, reloads and restarts without the
/// operator managing a key: the daemon creates 32 random bytes once, beside the evidence log, and
/// reads them at every start. The file is the daemon's own (mode 0600): whoever holds it can test
/// guesses against hashed values, so it is as sensitive as the data it masks.
public enum MaskKey {
    /// Shorter keys weaken the HMAC; the generated one is 32 bytes.
    public static let minimumLength = 16

    /// A random key for one process (`interlock policy check`, tests): hashes made with it are not
    /// comparable with anyone else's.
    public static func ephemeral() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    /// Reads the key at `path`, creating it (0600, 32 random bytes) when it does not exist.
    public static func loadOrCreate(path: String) throws -> [UInt8] {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd >= 0 {
            let key = ephemeral()
            let written = key.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            let synced = fsync(fd)
            close(fd)
            guard written == key.count, synced == 0 else {
                unlink(path)
                throw MaskKeyError(message: "cannot write \(path): \(String(cString: strerror(errno)))")
            }
            return key
        }
        guard errno == EEXIST else {
            throw MaskKeyError(message: "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MaskKeyError(message: "cannot read \(path)")
        }
        guard data.count >= minimumLength else {
            throw MaskKeyError(message: "\(path) holds \(data.count) bytes, fewer than \(minimumLength)")
        }
        return Array(data)
    }
}

public struct MaskKeyError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
