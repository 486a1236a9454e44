#if canImport(Glibc)
import Glibc
#endif

/// The one error type of the Capture module: everything that talks to the kernel (nftables over
/// netlink, sock_diag, original destination) fails with it.
///
/// `code` is stable and meant for programs (the daemon decides "retry", "give up", "tell the
/// operator to run as root" from it); `message` is for a person and says what to do; `errno` keeps
/// the kernel's own answer when there was one.
public struct CaptureError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure this is. New cases are added here as the module grows; switch over it
    /// with a `default` outside this module.
    public enum Code: String, Sendable, Equatable, CustomStringConvertible {
        /// The netlink conversation failed: no answer, a malformed answer, or the kernel refused a request.
        case netlink
        /// The ruleset asked for is not one Interlock can install (for example it would capture the daemon).
        case rulesetInvalid
        /// The thing asked about does not exist (a table, a socket, an original destination).
        case notFound
        /// The caller lacks the privilege (root or CAP_NET_ADMIN) the kernel requires.
        case permission
        /// Any other system call failure.
        case system

        public var description: String { rawValue }
    }

    public var code: Code
    /// What went wrong and what to do about it, in words an operator can act on.
    public var message: String
    /// The kernel's errno when the failure came from a system call or a netlink error answer.
    public var errno: Int32?

    public init(code: Code, message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String {
        if let errno {
            return "\(code): \(message) (errno \(errno): \(CaptureError.errnoText(errno)))"
        }
        return "\(code): \(message)"
    }

    /// Maps an errno from a system call or a netlink answer to an error, with a hint a person can
    /// act on for the common cases. `context` says what was being done ("installing table inet interlock").
    public static func fromErrno(_ errno: Int32, _ context: String) -> CaptureError {
        switch errno {
        case EPERM, EACCES:
            return CaptureError(
                code: .permission,
                message: "\(context): permission denied; run as root or grant CAP_NET_ADMIN",
                errno: errno
            )
        case ENOENT:
            return CaptureError(code: .notFound, message: "\(context): not found", errno: errno)
        case EPROTONOSUPPORT, EAFNOSUPPORT:
            return CaptureError(
                code: .netlink,
                message:
                    "\(context): the kernel does not offer nf_tables over netlink; load it with `modprobe nf_tables`",
                errno: errno
            )
        case EOPNOTSUPP:
            return CaptureError(
                code: .netlink,
                message: "\(context): the kernel does not support an expression of the ruleset; "
                    + "check that nft_redir, nft_reject_inet, nft_ct and nf_nat are available (modprobe them)",
                errno: errno
            )
        case ENOBUFS:
            return CaptureError(
                code: .netlink,
                message: "\(context): netlink answer lost (socket buffer full); retry",
                errno: errno
            )
        case EINVAL, ERANGE, E2BIG, EMSGSIZE:
            return CaptureError(
                code: .netlink,
                message: "\(context): the kernel rejected the request as malformed",
                errno: errno
            )
        default:
            return CaptureError(code: .system, message: context, errno: errno)
        }
    }

    /// The current thread's errno, mapped with `fromErrno`.
    static func lastErrno(_ context: String) -> CaptureError {
        fromErrno(Glibc.errno, context)
    }

    static func errnoText(_ errno: Int32) -> String {
        guard let text = strerror(errno) else { return "unknown error" }
        return String(cString: text)
    }
}
