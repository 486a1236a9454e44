import CNetfilter

#if canImport(Glibc)
import Glibc
#endif

// The ruleset lowered one step: chains of rules, each rule a list of matches and one action, and
// each match/action knowing both its nft text and the kernel expressions it stands for. Keeping
// the two side by side in one switch is what makes `nftText()` and the netlink encoding agree.

/// A kernel expression of nf_tables, as nft itself emits it (`nft --debug=netlink`).
enum NftExpr: Equatable, Sendable {
    enum MetaKey: Equatable, Sendable { case skuid, mark, l4proto }
    enum CtKey: Equatable, Sendable { case direction, status, protoDst, dstIPv4, dstIPv6 }
    enum CmpOp: Equatable, Sendable { case eq, neq }
    enum Verdict: Equatable, Sendable {
        case accept
        case `return`
        case jump(String)
    }

    /// `[ meta load key => reg 1 ]`
    case metaLoad(MetaKey)
    /// `[ ct load key => reg 1 (, dir original) ]`
    case ctLoad(CtKey, originalDirection: Bool)
    /// `[ payload load len @ transport header + offset => reg 1 ]`
    case transportPayloadLoad(offset: UInt32, length: UInt32)
    /// `[ cmp op reg 1 data ]`, data in the byte order the kernel compares.
    case cmp(CmpOp, [UInt8])
    /// `[ bitwise reg 1 = ( reg 1 & mask ) ^ xor ]`
    case bitwise(mask: [UInt8], xor: [UInt8])
    /// `[ lookup reg 1 set name (0x1 when inverted) ]`
    case lookup(set: String, setID: UInt32, inverted: Bool)
    /// `[ immediate reg 1 data ]`
    case immediateData([UInt8])
    /// `[ immediate reg 0 verdict ]`
    case verdict(Verdict)
    /// `[ redir proto_min reg 1 proto_max reg 1 flags 0x2 ]`: redirect to the port loaded in reg 1.
    case redirectToPortInRegister
    /// `[ reject type t code c ]`
    case reject(type: UInt32, code: UInt32)
}

/// One condition of a rule; renders as nft text and lowers to expressions.
enum RuleMatch: Equatable, Sendable {
    enum L4: Equatable, Sendable { case tcp, udp }

    case skuid(UInt32)
    case skuidInSet(String)
    case mark(UInt32)
    case l4proto(L4)
    case ctDirectionReply
    case ctOriginalProtoDst(UInt16)
    /// `ct original ip daddr 127.0.0.0/8`: nft compares only the first octet.
    case ctOriginalIPv4DaddrLoopbackNet
    /// `ct original ip6 daddr ::1`
    case ctOriginalIPv6DaddrLoopback
    case ctStatusDNAT
    case udpDport(UInt16)

    var text: String {
        switch self {
        case .skuid(let uid): return "meta skuid \(uid)"
        case .skuidInSet(let set): return "meta skuid @\(set)"
        case .mark(let mark): return "meta mark \(nftHex32(mark))"
        case .l4proto(.tcp): return "meta l4proto tcp"
        case .l4proto(.udp): return "meta l4proto udp"
        case .ctDirectionReply: return "ct direction reply"
        case .ctOriginalProtoDst(let port): return "ct original proto-dst \(port)"
        case .ctOriginalIPv4DaddrLoopbackNet: return "ct original ip daddr 127.0.0.0/8"
        case .ctOriginalIPv6DaddrLoopback: return "ct original ip6 daddr ::1"
        case .ctStatusDNAT: return "ct status dnat"
        case .udpDport(let port): return "udp dport \(port)"
        }
    }

    func expressions(setID: UInt32) -> [NftExpr] {
        switch self {
        case .skuid(let uid):
            return [.metaLoad(.skuid), .cmp(.eq, nftHostBytes(uid))]
        case .skuidInSet(let set):
            return [.metaLoad(.skuid), .lookup(set: set, setID: setID, inverted: false)]
        case .mark(let mark):
            return [.metaLoad(.mark), .cmp(.eq, nftHostBytes(mark))]
        case .l4proto(.tcp):
            return [.metaLoad(.l4proto), .cmp(.eq, [UInt8(IPPROTO_TCP)])]
        case .l4proto(.udp):
            return [.metaLoad(.l4proto), .cmp(.eq, [UInt8(IPPROTO_UDP)])]
        case .ctDirectionReply:
            return [.ctLoad(.direction, originalDirection: false), .cmp(.eq, [1])]
        case .ctOriginalProtoDst(let port):
            return [.ctLoad(.protoDst, originalDirection: true), .cmp(.eq, nftNetworkBytes(port))]
        case .ctOriginalIPv4DaddrLoopbackNet:
            return [.ctLoad(.dstIPv4, originalDirection: true), .cmp(.eq, [127])]
        case .ctOriginalIPv6DaddrLoopback:
            return [.ctLoad(.dstIPv6, originalDirection: true), .cmp(.eq, Array(repeating: 0, count: 15) + [1])]
        case .ctStatusDNAT:
            // IPS_DST_NAT is bit 5 of the host-order status word.
            return [
                .ctLoad(.status, originalDirection: false),
                .bitwise(mask: nftHostBytes(UInt32(1) << 5), xor: nftHostBytes(UInt32(0))),
                .cmp(.neq, nftHostBytes(UInt32(0))),
            ]
        case .udpDport(let port):
            return [
                .metaLoad(.l4proto), .cmp(.eq, [UInt8(IPPROTO_UDP)]),
                .transportPayloadLoad(offset: 2, length: 2), .cmp(.eq, nftNetworkBytes(port)),
            ]
        }
    }
}

/// What a rule does when all its matches hold.
enum RuleAction: Equatable, Sendable {
    case accept
    case `return`
    case jump(String)
    case redirect(toPort: UInt16)
    case rejectTCPReset
    case rejectAdminProhibited

    var text: String {
        switch self {
        case .accept: return "accept"
        case .return: return "return"
        case .jump(let chain): return "jump \(chain)"
        case .redirect(let port): return "redirect to :\(port)"
        case .rejectTCPReset: return "reject with tcp reset"
        case .rejectAdminProhibited: return "reject with icmpx admin-prohibited"
        }
    }

    var expressions: [NftExpr] {
        switch self {
        case .accept: return [.verdict(.accept)]
        case .return: return [.verdict(.return)]
        case .jump(let chain): return [.verdict(.jump(chain))]
        case .redirect(let port): return [.immediateData(nftNetworkBytes(port)), .redirectToPortInRegister]
        case .rejectTCPReset:
            return [.reject(type: UInt32(NFT_REJECT_TCP_RST.rawValue), code: 0)]
        case .rejectAdminProhibited:
            return [
                .reject(
                    type: UInt32(NFT_REJECT_ICMPX_UNREACH.rawValue),
                    code: UInt32(NFT_REJECT_ICMPX_ADMIN_PROHIBITED.rawValue)
                )
            ]
        }
    }
}

/// One rule: matches, an action, and a comment kept in the kernel (rule userdata) so `nft list`
/// explains itself to an operator.
struct RuleSpec: Equatable, Sendable {
    var matches: [RuleMatch]
    var action: RuleAction
    var comment: String

    /// The rule as `nft -f` reads it and `nft list` prints it.
    var text: String {
        (matches.map(\.text) + [action.text, "comment \"\(comment)\""]).joined(separator: " ")
    }

    func expressions(setID: UInt32) -> [NftExpr] {
        matches.flatMap { $0.expressions(setID: setID) } + action.expressions
    }
}

/// A chain; base chains carry their hook.
struct ChainSpec: Equatable, Sendable {
    struct Hook: Equatable, Sendable {
        enum Kind: String, Equatable, Sendable { case nat, filter }
        var type: Kind
        /// NF_INET_* hook number; Interlock only uses `output`.
        var hookNumber: UInt32
        var hookName: String
        var priority: Int32
        /// Base chain policy; always accept here (the rules decide).
        var policyAccept: Bool
    }

    var name: String
    var hook: Hook?
    /// Explains the chain in `nftText()` (nft keeps no comment for it in the kernel).
    var explanation: [String]
    var rules: [RuleSpec]
}

/// The whole table, lowered from a `CaptureRuleset`.
struct TableSpec: Equatable, Sendable {
    static let capturedSetName = "captured_uids"
    /// The set id that links lookups to the set created in the same batch.
    static let capturedSetID: UInt32 = 1
    /// nft's datatype number for `uid` (TYPE_UID in nftables' datatype.h); makes `nft list` print `type uid`.
    static let uidDatatype: UInt32 = 24

    var family: String
    var name: String
    var capturedUIDs: [UInt32]
    var chains: [ChainSpec]
}

extension CaptureRuleset {
    static let natChain = "nat_output"
    static let filterChain = "filter_output"
    static let capturedEgressChain = "captured_egress"

    /// The ruleset as chains of rules. The single source of both `nftText()` and the netlink batch.
    var tableSpec: TableSpec {
        let set = TableSpec.capturedSetName
        let output = UInt32(NF_INET_LOCAL_OUT.rawValue)
        let nat = ChainSpec(
            name: Self.natChain,
            hook: .init(type: .nat, hookNumber: output, hookName: "output", priority: -100, policyAccept: true),
            explanation: [
                "Every TCP connection a captured account opens, IPv4 or IPv6, is redirected to interlockd",
                "(IPv4 to 127.0.0.1, IPv6 to ::1, port \(listenPort)); the original destination stays in conntrack.",
            ],
            rules: [
                RuleSpec(
                    matches: [.skuid(daemonUID)],
                    action: .return,
                    comment: "interlockd itself is never captured (no loop)"
                ),
                RuleSpec(
                    matches: [.mark(upstreamMark)],
                    action: .return,
                    comment: "interlockd upstream sockets carry this mark and are never captured"
                ),
                RuleSpec(
                    matches: [.l4proto(.tcp), .skuidInSet(set)],
                    action: .redirect(toPort: listenPort),
                    comment: "captured accounts: all TCP goes to interlockd"
                ),
            ]
        )
        // Why a sub-chain and not `meta skuid != @captured_uids accept` followed by rejects in this
        // chain: for a packet with no owning socket (IPv6 neighbour solicitations, kernel RSTs and
        // ICMP errors, TIME_WAIT ACKs) `meta skuid` cannot load and the rule stops matching, so
        // `!=` does not match either and such packets fell through to the final reject. In a
        // namespace that broke every IPv6 connection of the host, captured or not (neighbour
        // discovery was rejected). Jumping only on a positive set match leaves sockless packets to
        // the accept policy.
        let filter = ChainSpec(
            name: Self.filterChain,
            hook: .init(type: .filter, hookNumber: output, hookName: "output", priority: 0, policyAccept: true),
            explanation: [
                "Runs after the redirect. Only captured accounts' packets are sent on to captured_egress;",
                "packets without an owning socket (IPv6 neighbour discovery, kernel resets, ICMP errors)",
                "cannot match the set and pass, so the host's own networking keeps working.",
            ],
            rules: [
                RuleSpec(matches: [.skuid(daemonUID)], action: .accept, comment: "interlockd itself"),
                RuleSpec(matches: [.mark(upstreamMark)], action: .accept, comment: "interlockd upstream sockets"),
                RuleSpec(
                    matches: [.skuidInSet(set)],
                    action: .jump(Self.capturedEgressChain),
                    comment: "captured accounts: only redirected TCP and DNS may leave"
                ),
            ]
        )
        var egressRules = [
            RuleSpec(
                matches: [.ctDirectionReply],
                action: .accept,
                comment: "replies on connections others opened to a captured account's server"
            ),
            RuleSpec(
                matches: [.l4proto(.tcp), .ctOriginalProtoDst(listenPort), .ctOriginalIPv4DaddrLoopbackNet],
                action: .rejectTCPReset,
                comment: "the interlockd listener is not a destination (IPv4)"
            ),
            RuleSpec(
                matches: [.l4proto(.tcp), .ctOriginalProtoDst(listenPort), .ctOriginalIPv6DaddrLoopback],
                action: .rejectTCPReset,
                comment: "the interlockd listener is not a destination (IPv6)"
            ),
            RuleSpec(
                matches: [.l4proto(.tcp), .ctStatusDNAT],
                action: .accept,
                comment: "TCP redirected to interlockd"
            ),
        ]
        if allowDNS {
            egressRules.append(
                RuleSpec(
                    matches: [.udpDport(53)],
                    action: .accept,
                    comment: "DNS over UDP (DNS over TCP is redirected like any TCP)"
                )
            )
        }
        egressRules += [
            RuleSpec(
                matches: [.l4proto(.tcp)],
                action: .rejectTCPReset,
                comment: "any other TCP is refused"
            ),
            RuleSpec(
                matches: [],
                action: .rejectAdminProhibited,
                comment: "UDP (QUIC too), ICMP and everything else is refused"
            ),
        ]
        let egress = ChainSpec(
            name: Self.capturedEgressChain,
            hook: nil,
            explanation: [
                "Egress of captured accounts that was not redirected is refused, so there is no other road out:",
                "non-DNS UDP, ICMP, and TCP that somehow escaped the redirect. The listener port is not a destination.",
            ],
            rules: egressRules
        )
        return TableSpec(
            family: Self.family,
            name: Self.tableName,
            capturedUIDs: capturedUIDs,
            chains: [nat, filter, egress]
        )
    }
}

// MARK: - Byte helpers

/// The value's bytes in host byte order, as the kernel keeps meta/ct integers in registers.
func nftHostBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value) { Array($0) }
}

/// The value's bytes in network byte order, as ports appear in packets and conntrack tuples.
func nftNetworkBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}

func nftHex32(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}
