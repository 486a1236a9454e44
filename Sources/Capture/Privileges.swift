import CNetfilter

#if canImport(Glibc)
import Glibc
#endif

/// Dropping root: interlockd needs exactly one privilege after start-up, CAP_NET_ADMIN (to keep
/// the nftables table in shape and mark its upstream sockets). Everything else goes, for good.
public enum Privileges {
    static let netAdmin: UInt64 = 1 << UInt64(CAP_NET_ADMIN)

    /// Whether this thread holds CAP_NET_ADMIN in its effective set.
    public static var hasNetAdmin: Bool {
        var effective: UInt64 = 0
        var permitted: UInt64 = 0
        guard interlock_capget(&effective, &permitted) == 0 else { return false }
        return effective & netAdmin != 0
    }

    /// Switches the process to `uid`/`gid` with the user's supplementary groups, keeping only
    /// CAP_NET_ADMIN (effective and permitted), dropping every other capability from the bounding
    /// set, and setting no_new_privs. Must run before any other thread exists: capabilities are
    /// per thread, and threads created afterwards inherit the reduced set.
    public static func drop(toUser name: String, uid: UInt32, gid: UInt32) throws {
        guard getuid() == 0 else {
            throw CaptureError(
                code: .permission, message: "privilege drop needs root; already running as uid \(getuid())")
        }
        // Everything but CAP_NET_ADMIN leaves the bounding set (needs CAP_SETPCAP, so before setuid).
        var cap: Int32 = 0
        while cap <= 63 {
            if cap != CAP_NET_ADMIN {
                if interlock_prctl(PR_CAPBSET_DROP, UInt(cap)) != 0 && errno != EINVAL {
                    throw CaptureError.fromErrno(errno, "prctl(PR_CAPBSET_DROP, \(cap))")
                }
            }
            cap += 1
        }
        guard interlock_prctl(PR_SET_KEEPCAPS, 1) == 0 else {
            throw CaptureError.fromErrno(errno, "prctl(PR_SET_KEEPCAPS)")
        }
        var groups = [gid_t](repeating: 0, count: 256)
        var count = Int32(groups.count)
        if getgrouplist(name, gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(name, gid, &groups, &count)
        }
        guard setgroups(Int(count), groups) == 0 else { throw CaptureError.fromErrno(errno, "setgroups") }
        // As root, setgid/setuid set the real, effective and saved ids alike.
        guard setgid(gid) == 0 else { throw CaptureError.fromErrno(errno, "setgid(\(gid))") }
        guard setuid(uid) == 0 else { throw CaptureError.fromErrno(errno, "setuid(\(uid))") }
        guard interlock_capset(netAdmin, netAdmin, 0) == 0 else { throw CaptureError.fromErrno(errno, "capset") }
        _ = interlock_prctl(PR_SET_KEEPCAPS, 0)
        guard interlock_prctl(PR_SET_NO_NEW_PRIVS, 1) == 0 else {
            throw CaptureError.fromErrno(errno, "prctl(PR_SET_NO_NEW_PRIVS)")
        }
        // Not dumpable: same-uid processes cannot ptrace it or read its memory.
        _ = interlock_prctl(PR_SET_DUMPABLE, 0)
        guard getuid() == uid, geteuid() == uid, hasNetAdmin else {
            throw CaptureError(code: .permission, message: "privilege drop did not take effect")
        }
    }
}
