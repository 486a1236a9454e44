#if canImport(Glibc)
import Glibc
#endif

/// One netlink socket for request/answer conversations with the kernel (sock_diag, ctnetlink):
/// send one request with a fresh sequence number, read until the answer to *that* sequence
/// arrives. A receive timeout bounds the wait so a kernel that never answers cannot hang the
/// caller (an event loop). Not thread-safe: its owner keeps it behind a mutex.
final class NetlinkRequester {
    /// What a decoder says about one datagram: not ours or not decisive (keep reading), or done.
    enum Outcome<T> {
        case keepReading
        case done(Result<T, CaptureError>)
    }

    private let fd: Int32
    private let name: String
    private var sequence: UInt32
    private let sendBuffer: UnsafeMutableRawBufferPointer
    private let receiveBuffer: UnsafeMutableRawBufferPointer

    /// - Parameters:
    ///   - netlinkProtocol: `NETLINK_SOCK_DIAG` (4), `NETLINK_NETFILTER` (12), ...
    ///   - name: how errors name this socket ("sock_diag", "conntrack").
    init(netlinkProtocol: Int32, name: String, receiveTimeoutMilliseconds: Int) throws {
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), netlinkProtocol)
        guard fd >= 0 else {
            throw netlinkErrno(.netlink, "cannot open a netlink socket for \(name)")
        }
        var timeout = timeval(
            tv_sec: receiveTimeoutMilliseconds / 1000,
            tv_usec: (receiveTimeoutMilliseconds % 1000) * 1000
        )
        // struct sockaddr_nl { sa_family_t nl_family; u16 nl_pad; u32 nl_pid; u32 nl_groups; }:
        // pid 0 is the kernel.
        var kernel = sockaddr_storage()
        withUnsafeMutableBytes(of: &kernel) { $0.storeBytes(of: sa_family_t(AF_NETLINK), as: sa_family_t.self) }
        let ok =
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0
            && withUnsafePointer(to: &kernel) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, 12) == 0 }
            }
        guard ok else {
            let error = netlinkErrno(.netlink, "cannot set up the netlink socket for \(name)")
            close(fd)
            throw error
        }
        self.fd = fd
        self.name = name
        // Start somewhere unpredictable so two sockets do not share sequence numbers.
        self.sequence = UInt32.random(in: 1...UInt32.max / 2)
        self.sendBuffer = .allocate(byteCount: 256, alignment: 8)
        self.receiveBuffer = .allocate(byteCount: 16384, alignment: 8)
    }

    deinit {
        close(fd)
        sendBuffer.deallocate()
        receiveBuffer.deallocate()
    }

    /// Sends the request `encode` writes (given the sequence number; it returns the length) and
    /// hands every datagram received to `decode` until it is done.
    func exchange<T>(
        _ what: String,
        encode: (UnsafeMutableRawBufferPointer, UInt32) -> Int,
        decode: (UnsafeRawBufferPointer, UInt32) -> Outcome<T>
    ) throws -> T {
        sequence &+= 1
        if sequence == 0 { sequence = 1 }
        let length = encode(sendBuffer, sequence)
        while send(fd, sendBuffer.baseAddress, length, 0) < 0 {
            if errno == EINTR { continue }
            throw netlinkErrno(.netlink, "\(name) request for \(what) failed")
        }
        // The kernel answers synchronously, so the reply is normally queued already; a few reads
        // at most skip stale answers to earlier requests that timed out.
        for _ in 0..<16 {
            let n = recv(fd, receiveBuffer.baseAddress, receiveBuffer.count, 0)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    throw CaptureError(
                        code: .netlink, message: "\(name): no answer from the kernel for \(what)", errno: errno)
                }
                throw netlinkErrno(.netlink, "\(name) receive failed")
            }
            switch decode(UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<n]), sequence) {
            case .keepReading:
                continue
            case .done(let result):
                return try result.get()
            }
        }
        throw CaptureError(code: .netlink, message: "\(name): no matching answer for \(what)", errno: nil)
    }
}

/// Netlink framing shared by the request/answer users.
enum NetlinkWire {
    static let headerSize = 16
    static let nlmsgError: UInt16 = 2
    static let nlmsgDone: UInt16 = 3
    static let requestFlag: UInt16 = 1  // NLM_F_REQUEST

    /// Calls `body(type, payload)` for each message of `sequence` in a datagram, until it returns
    /// something other than `.keepReading`.
    static func forEachMessage<T>(
        in buf: UnsafeRawBufferPointer,
        sequence: UInt32,
        name: String,
        _ body: (UInt16, UnsafeRawBufferPointer) -> NetlinkRequester.Outcome<T>
    ) -> NetlinkRequester.Outcome<T> {
        var offset = 0
        while offset + headerSize <= buf.count {
            let length = Int(buf.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            guard length >= headerSize, offset + length <= buf.count else {
                return .done(.failure(CaptureError(code: .netlink, message: "\(name): truncated netlink message")))
            }
            let type = buf.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)
            let seq = buf.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
            let payload = UnsafeRawBufferPointer(rebasing: buf[(offset + headerSize)..<(offset + length)])
            offset += (length + 3) & ~3
            guard seq == sequence else { continue }
            let outcome = body(type, payload)
            if case .done = outcome { return outcome }
        }
        return .keepReading
    }
}

/// A `CaptureError` carrying the current `errno` (its text is shown by `description`).
func netlinkErrno(_ code: CaptureError.Code, _ message: String) -> CaptureError {
    let e = errno
    return CaptureError(code: e == EPERM || e == EACCES ? .permission : code, message: message, errno: e)
}
