#ifndef INTERLOCK_CNETFILTER_SHIM_H
#define INTERLOCK_CNETFILTER_SHIM_H
// The one C room of Interlock: libmnl, libnftnl and the kernel headers for netfilter and sock_diag.
// Macros and variadic helpers Swift cannot call are wrapped in static inline functions here.
//
// Order matters: glibc's <netinet/in.h> must come before any <linux/...> header that pulls in
// <linux/in.h>, so that <linux/libc-compat.h> sees glibc's definitions and does not redefine them.
#include <netinet/in.h>
#include <sys/socket.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>

// MARK: - nftables shims

/// The netlink message type nf_tables uses for `msg` (NFT_MSG_*), i.e. `NFNL_SUBSYS_NFTABLES << 8 | msg`.
static inline uint16_t interlock_nft_msg_type(uint16_t msg) {
    return (uint16_t)((NFNL_SUBSYS_NFTABLES << 8) | msg);
}

/// The low byte of an nf_tables message type: the NFT_MSG_* value.
static inline uint16_t interlock_nft_msg_of_type(uint16_t type) {
    return (uint16_t)(type & 0x00ff);
}

/// The subsystem of a netfilter netlink message type (NFNL_SUBSYS_*).
static inline uint16_t interlock_nfnl_subsys_of_type(uint16_t type) {
    return (uint16_t)(type >> 8);
}

/// `res_id` of the nfgenmsg after a netlink header: in nf_tables dumps it carries the low 16 bits
/// of the ruleset generation (network byte order), which tells whether several dumps saw one ruleset.
static inline uint16_t interlock_nfgen_res_id(const struct nlmsghdr *nlh) {
    const struct nfgenmsg *g = (const struct nfgenmsg *)mnl_nlmsg_get_payload(nlh);
    return ntohs(g->res_id);
}

/// The error code carried by an NLMSG_ERROR message (0 for an acknowledgement, else -errno).
static inline int interlock_nlmsg_error_code(const struct nlmsghdr *nlh) {
    const struct nlmsgerr *e = (const struct nlmsgerr *)mnl_nlmsg_get_payload(nlh);
    return e->error;
}

/// Sequence number of the request an NLMSG_ERROR message answers.
static inline uint32_t interlock_nlmsg_error_seq(const struct nlmsghdr *nlh) {
    const struct nlmsgerr *e = (const struct nlmsgerr *)mnl_nlmsg_get_payload(nlh);
    return e->msg.nlmsg_seq;
}

/// `errno` as a function: Swift cannot always read the thread-local macro reliably across modules.
static inline int interlock_errno(void) { return errno; }


// MARK: - process privileges (interlockd drops to its own uid keeping only CAP_NET_ADMIN)

#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

/// prctl(2) with one argument; prctl is variadic in glibc, which Swift cannot call.
static inline int interlock_prctl(int option, unsigned long arg) {
    return prctl(option, arg, 0UL, 0UL, 0UL);
}

/// Sets the calling thread's capability sets (64-bit masks, _LINUX_CAPABILITY_VERSION_3).
static inline int interlock_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2] = {
        { (uint32_t)effective, (uint32_t)permitted, (uint32_t)inheritable },
        { (uint32_t)(effective >> 32), (uint32_t)(permitted >> 32), (uint32_t)(inheritable >> 32) },
    };
    return (int)syscall(SYS_capset, &header, data);
}

/// Reads the calling thread's effective and permitted capability sets.
static inline int interlock_capget(uint64_t *effective, uint64_t *permitted) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    int rc = (int)syscall(SYS_capget, &header, data);
    if (rc == 0) {
        *effective = (uint64_t)data[0].effective | ((uint64_t)data[1].effective << 32);
        *permitted = (uint64_t)data[0].permitted | ((uint64_t)data[1].permitted << 32);
    }
    return rc;
}

#endif
