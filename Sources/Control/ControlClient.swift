import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A small blocking client of the control socket, for the CLI.
public struct ControlClient {
    public let path: String
    /// How long to wait for an answer (reloads resolve host names, so allow some time).
    public var timeoutSeconds: Int = 30

    public init(path: String) {
        self.path = path
    }

    public func send(_ request: ControlRequest) throws(ControlFailure) -> ControlResponse {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlFailure(code: "unreachable", message: "socket: \(Self.errnoText())") }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw ControlFailure(code: "bad_request", message: "socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes + [0]) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else {
            let why = Self.errnoText()
            let notRunning = errno == ENOENT || errno == ECONNREFUSED
            let hint =
                notRunning
                ? " (is interlockd running? `systemctl status interlockd`)"
                : errno == EACCES ? " (no permission to open the socket)" : ""
            // `not_running` only when nothing listens there: callers may act on the daemon's absence.
            throw ControlFailure(
                code: notRunning ? "not_running" : "unreachable", message: "cannot connect to \(path): \(why)\(hint)")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var payload: [UInt8]
        do {
            payload = Array(try encoder.encode(request))
        } catch {
            throw ControlFailure(code: "bad_request", message: "cannot encode the request: \(error)")
        }
        payload.append(UInt8(ascii: "\n"))
        var sent = 0
        while sent < payload.count {
            let n = payload[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ControlFailure(code: "unreachable", message: "write to \(path): \(Self.errnoText())")
            }
            sent += n
        }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !response.contains(UInt8(ascii: "\n")) {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let timedOut = errno == EAGAIN || errno == EWOULDBLOCK
                throw ControlFailure(
                    code: "unreachable",
                    message: timedOut
                        ? "no answer from interlockd within \(timeoutSeconds) s" : "read: \(Self.errnoText())")
            }
            if n == 0 { throw ControlFailure(code: "unreachable", message: "interlockd closed the connection") }
            response += chunk[0..<n]
        }
        let line = response.prefix { $0 != UInt8(ascii: "\n") }
        do {
            return try JSONDecoder().decode(ControlResponse.self, from: Data(line))
        } catch {
            throw ControlFailure(code: "internal", message: "cannot read interlockd's answer: \(error)")
        }
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}
