import CNetfilter

#if canImport(Glibc)
import Glibc
#endif

// One owning final class per C object of libmnl/libnftnl. Each frees its object in deinit unless
// ownership moved into another object (an expression added to a rule, an element added to a set).
// None of these leaves the Capture module, and none is shared between threads: an installer call
// builds, uses and drops them on one thread.

/// libnftnl attribute numbers come from anonymous C enums (imported as Int); the API takes uint16_t.
@inline(__always)
private func attr<T: BinaryInteger>(_ value: T) -> UInt16 { UInt16(truncatingIfNeeded: value) }

/// A libnftnl table (`struct nftnl_table`).
final class NftnlTable {
    let pointer: OpaquePointer

    init() throws {
        guard let pointer = nftnl_table_alloc() else { throw CaptureError.lastErrno("allocating an nftnl table") }
        self.pointer = pointer
    }

    convenience init(name: String) throws {
        try self.init()
        nftnl_table_set_str(pointer, attr(NFTNL_TABLE_NAME.rawValue), name)
    }

    var name: String? { string(nftnl_table_get_str(pointer, attr(NFTNL_TABLE_NAME.rawValue))) }
    var flags: UInt32 { nftnl_table_get_u32(pointer, attr(NFTNL_TABLE_FLAGS.rawValue)) }
    /// How many chains, sets, stateful objects and flowtables the table holds (the kernel's `use`).
    var use: UInt32 { nftnl_table_get_u32(pointer, attr(NFTNL_TABLE_USE.rawValue)) }

    func build(into nlh: UnsafeMutablePointer<nlmsghdr>) { nftnl_table_nlmsg_build_payload(nlh, pointer) }
    func parse(_ nlh: UnsafePointer<nlmsghdr>) -> Int32 { nftnl_table_nlmsg_parse(nlh, pointer) }

    deinit { nftnl_table_free(pointer) }
}

/// A libnftnl chain (`struct nftnl_chain`).
final class NftnlChain {
    let pointer: OpaquePointer

    init() throws {
        guard let pointer = nftnl_chain_alloc() else { throw CaptureError.lastErrno("allocating an nftnl chain") }
        self.pointer = pointer
    }

    convenience init(table: String, spec: ChainSpec) throws {
        try self.init()
        nftnl_chain_set_str(pointer, attr(NFTNL_CHAIN_TABLE.rawValue), table)
        nftnl_chain_set_str(pointer, attr(NFTNL_CHAIN_NAME.rawValue), spec.name)
        if let hook = spec.hook {
            nftnl_chain_set_str(pointer, attr(NFTNL_CHAIN_TYPE.rawValue), hook.type.rawValue)
            nftnl_chain_set_u32(pointer, attr(NFTNL_CHAIN_HOOKNUM.rawValue), hook.hookNumber)
            nftnl_chain_set_s32(pointer, attr(NFTNL_CHAIN_PRIO.rawValue), hook.priority)
            nftnl_chain_set_u32(
                pointer,
                attr(NFTNL_CHAIN_POLICY.rawValue),
                UInt32(bitPattern: hook.policyAccept ? NF_ACCEPT : NF_DROP)
            )
        }
    }

    var table: String? { string(nftnl_chain_get_str(pointer, attr(NFTNL_CHAIN_TABLE.rawValue))) }
    var name: String? { string(nftnl_chain_get_str(pointer, attr(NFTNL_CHAIN_NAME.rawValue))) }
    var isBase: Bool { nftnl_chain_is_set(pointer, attr(NFTNL_CHAIN_HOOKNUM.rawValue)) }
    var type: String? { string(nftnl_chain_get_str(pointer, attr(NFTNL_CHAIN_TYPE.rawValue))) }
    var hookNumber: UInt32 { nftnl_chain_get_u32(pointer, attr(NFTNL_CHAIN_HOOKNUM.rawValue)) }
    var priority: Int32 { nftnl_chain_get_s32(pointer, attr(NFTNL_CHAIN_PRIO.rawValue)) }
    var policy: UInt32 { nftnl_chain_get_u32(pointer, attr(NFTNL_CHAIN_POLICY.rawValue)) }

    func build(into nlh: UnsafeMutablePointer<nlmsghdr>) { nftnl_chain_nlmsg_build_payload(nlh, pointer) }
    func parse(_ nlh: UnsafePointer<nlmsghdr>) -> Int32 { nftnl_chain_nlmsg_parse(nlh, pointer) }

    deinit { nftnl_chain_free(pointer) }
}

/// A libnftnl set with its elements (`struct nftnl_set`).
final class NftnlSet {
    let pointer: OpaquePointer

    init() throws {
        guard let pointer = nftnl_set_alloc() else { throw CaptureError.lastErrno("allocating an nftnl set") }
        self.pointer = pointer
    }

    /// A set of uids as nft creates it for `type uid`: 4-byte host-order keys, datatype uid, and
    /// userdata saying the key byte order is host (so `nft list` prints the elements as numbers).
    convenience init(table: String, name: String, id: UInt32, uids: [UInt32]) throws {
        try self.init()
        nftnl_set_set_str(pointer, attr(NFTNL_SET_TABLE.rawValue), table)
        nftnl_set_set_str(pointer, attr(NFTNL_SET_NAME.rawValue), name)
        nftnl_set_set_u32(pointer, attr(NFTNL_SET_FLAGS.rawValue), 0)
        nftnl_set_set_u32(pointer, attr(NFTNL_SET_KEY_TYPE.rawValue), TableSpec.uidDatatype)
        nftnl_set_set_u32(pointer, attr(NFTNL_SET_KEY_LEN.rawValue), 4)
        nftnl_set_set_u32(pointer, attr(NFTNL_SET_ID.rawValue), id)
        let userdata = Self.keyByteOrderHost
        userdata.withUnsafeBytes { bytes in
            _ = nftnl_set_set_data(
                pointer,
                attr(NFTNL_SET_USERDATA.rawValue),
                bytes.baseAddress,
                UInt32(bytes.count)
            )
        }
        for uid in uids {
            guard let element = nftnl_set_elem_alloc() else {
                throw CaptureError.lastErrno("allocating an nftnl set element")
            }
            var key = uid
            _ = withUnsafeBytes(of: &key) { bytes in
                nftnl_set_elem_set(element, attr(NFTNL_SET_ELEM_KEY), bytes.baseAddress, UInt32(bytes.count))
            }
            // The set owns the element from here on.
            nftnl_set_elem_add(pointer, element)
        }
    }

    /// Set userdata nft writes for a host-order key: TLV (NFTNL_UDATA_SET_KEYBYTEORDER, 4, 1).
    static var keyByteOrderHost: [UInt8] {
        [UInt8(NFTNL_UDATA_SET_KEYBYTEORDER.rawValue), 4] + nftHostBytes(UInt32(1))
    }

    var table: String? { string(nftnl_set_get_str(pointer, attr(NFTNL_SET_TABLE.rawValue))) }
    var name: String? { string(nftnl_set_get_str(pointer, attr(NFTNL_SET_NAME.rawValue))) }
    var flags: UInt32 { nftnl_set_get_u32(pointer, attr(NFTNL_SET_FLAGS.rawValue)) }
    var keyType: UInt32 { nftnl_set_get_u32(pointer, attr(NFTNL_SET_KEY_TYPE.rawValue)) }
    var keyLength: UInt32 { nftnl_set_get_u32(pointer, attr(NFTNL_SET_KEY_LEN.rawValue)) }
    var isMap: Bool { nftnl_set_is_set(pointer, attr(NFTNL_SET_DATA_TYPE.rawValue)) }
    var userdata: [UInt8] {
        var length: UInt32 = 0
        guard let data = nftnl_set_get_data(pointer, attr(NFTNL_SET_USERDATA.rawValue), &length) else { return [] }
        return Array(UnsafeRawBufferPointer(start: data, count: Int(length)))
    }

    /// Element keys as raw bytes, in the order the set holds them.
    func elementKeys() throws -> [[UInt8]] {
        guard let iterator = nftnl_set_elems_iter_create(pointer) else {
            throw CaptureError.lastErrno("iterating set elements")
        }
        defer { nftnl_set_elems_iter_destroy(iterator) }
        var keys: [[UInt8]] = []
        var element = nftnl_set_elems_iter_cur(iterator)
        while let current = element {
            var length: UInt32 = 0
            if let data = nftnl_set_elem_get(current, attr(NFTNL_SET_ELEM_KEY), &length) {
                keys.append(Array(UnsafeRawBufferPointer(start: data, count: Int(length))))
            } else {
                keys.append([])
            }
            element = nftnl_set_elems_iter_next(iterator)
        }
        return keys
    }

    func build(into nlh: UnsafeMutablePointer<nlmsghdr>) { nftnl_set_nlmsg_build_payload(nlh, pointer) }
    func buildElements(into nlh: UnsafeMutablePointer<nlmsghdr>) { nftnl_set_elems_nlmsg_build_payload(nlh, pointer) }
    func parse(_ nlh: UnsafePointer<nlmsghdr>) -> Int32 { nftnl_set_nlmsg_parse(nlh, pointer) }
    func parseElements(_ nlh: UnsafePointer<nlmsghdr>) -> Int32 { nftnl_set_elems_nlmsg_parse(nlh, pointer) }

    deinit { nftnl_set_free(pointer) }
}

/// A libnftnl expression before it is added to a rule (`struct nftnl_expr`).
final class NftnlExpr {
    private var owned: OpaquePointer?

    init(name: String) throws {
        guard let pointer = nftnl_expr_alloc(name) else {
            throw CaptureError.lastErrno("allocating an nftnl \(name) expression")
        }
        owned = pointer
    }

    /// Builds the libnftnl expression for one kernel expression of the model.
    convenience init(_ expr: NftExpr) throws {
        let reg1 = UInt32(NFT_REG_1.rawValue)
        switch expr {
        case .metaLoad(let key):
            try self.init(name: "meta")
            let value: nft_meta_keys
            switch key {
            case .skuid: value = NFT_META_SKUID
            case .mark: value = NFT_META_MARK
            case .l4proto: value = NFT_META_L4PROTO
            }
            set(NFTNL_EXPR_META_KEY, value.rawValue)
            set(NFTNL_EXPR_META_DREG, reg1)
        case .ctLoad(let key, let original):
            try self.init(name: "ct")
            let value: nft_ct_keys
            switch key {
            case .direction: value = NFT_CT_DIRECTION
            case .status: value = NFT_CT_STATUS
            case .protoDst: value = NFT_CT_PROTO_DST
            case .dstIPv4: value = NFT_CT_DST_IP
            case .dstIPv6: value = NFT_CT_DST_IP6
            }
            set(NFTNL_EXPR_CT_KEY, value.rawValue)
            set(NFTNL_EXPR_CT_DREG, reg1)
            if original {
                nftnl_expr_set_u8(pointer, attr(NFTNL_EXPR_CT_DIR), UInt8(IP_CT_DIR_ORIGINAL.rawValue))
            }
        case .transportPayloadLoad(let offset, let length):
            try self.init(name: "payload")
            set(NFTNL_EXPR_PAYLOAD_DREG, reg1)
            set(NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER.rawValue)
            set(NFTNL_EXPR_PAYLOAD_OFFSET, offset)
            set(NFTNL_EXPR_PAYLOAD_LEN, length)
        case .cmp(let op, let data):
            try self.init(name: "cmp")
            set(NFTNL_EXPR_CMP_SREG, reg1)
            set(NFTNL_EXPR_CMP_OP, (op == .eq ? NFT_CMP_EQ : NFT_CMP_NEQ).rawValue)
            set(NFTNL_EXPR_CMP_DATA, data)
        case .bitwise(let mask, let xor):
            try self.init(name: "bitwise")
            set(NFTNL_EXPR_BITWISE_SREG, reg1)
            set(NFTNL_EXPR_BITWISE_DREG, reg1)
            set(NFTNL_EXPR_BITWISE_LEN, UInt32(mask.count))
            set(NFTNL_EXPR_BITWISE_MASK, mask)
            set(NFTNL_EXPR_BITWISE_XOR, xor)
        case .lookup(let set, let setID, let inverted):
            try self.init(name: "lookup")
            self.set(NFTNL_EXPR_LOOKUP_SREG, reg1)
            nftnl_expr_set_str(pointer, attr(NFTNL_EXPR_LOOKUP_SET), set)
            self.set(NFTNL_EXPR_LOOKUP_SET_ID, setID)
            self.set(NFTNL_EXPR_LOOKUP_FLAGS, inverted ? NFT_LOOKUP_F_INV.rawValue : 0)
        case .immediateData(let data):
            try self.init(name: "immediate")
            set(NFTNL_EXPR_IMM_DREG, reg1)
            set(NFTNL_EXPR_IMM_DATA, data)
        case .verdict(let verdict):
            try self.init(name: "immediate")
            set(NFTNL_EXPR_IMM_DREG, UInt32(NFT_REG_VERDICT.rawValue))
            switch verdict {
            case .accept:
                set(NFTNL_EXPR_IMM_VERDICT, UInt32(bitPattern: NF_ACCEPT))
            case .return:
                set(NFTNL_EXPR_IMM_VERDICT, UInt32(bitPattern: NFT_RETURN.rawValue))
            case .jump(let chain):
                set(NFTNL_EXPR_IMM_VERDICT, UInt32(bitPattern: NFT_JUMP.rawValue))
                nftnl_expr_set_str(pointer, attr(NFTNL_EXPR_IMM_CHAIN), chain)
            }
        case .redirectToPortInRegister:
            try self.init(name: "redir")
            // nft sends only proto_min; the kernel then stores max = min and dumps both. Sending
            // both makes what we send and what the kernel dumps the same (same listing either way).
            set(NFTNL_EXPR_REDIR_REG_PROTO_MIN, reg1)
            set(NFTNL_EXPR_REDIR_REG_PROTO_MAX, reg1)
            set(NFTNL_EXPR_REDIR_FLAGS, UInt32(NF_NAT_RANGE_PROTO_SPECIFIED))
        case .reject(let type, let code):
            try self.init(name: "reject")
            set(NFTNL_EXPR_REJECT_TYPE, type)
            nftnl_expr_set_u8(pointer, attr(NFTNL_EXPR_REJECT_CODE), UInt8(truncatingIfNeeded: code))
        }
    }

    private var pointer: OpaquePointer {
        guard let owned else { preconditionFailure("nftnl expression used after its rule took it") }
        return owned
    }

    private func set(_ attribute: some BinaryInteger, _ value: UInt32) {
        nftnl_expr_set_u32(pointer, attr(attribute), value)
    }

    private func set(_ attribute: some BinaryInteger, _ data: [UInt8]) {
        data.withUnsafeBytes { bytes in
            _ = nftnl_expr_set(pointer, attr(attribute), bytes.baseAddress, UInt32(bytes.count))
        }
    }

    /// Hands the expression to `rule`, which frees it from now on.
    func move(into rule: NftnlRule) {
        nftnl_rule_add_expr(rule.pointer, pointer)
        owned = nil
    }

    deinit {
        if let owned { nftnl_expr_free(owned) }
    }
}

/// A libnftnl rule (`struct nftnl_rule`) with its expressions.
final class NftnlRule {
    let pointer: OpaquePointer

    init() throws {
        guard let pointer = nftnl_rule_alloc() else { throw CaptureError.lastErrno("allocating an nftnl rule") }
        self.pointer = pointer
    }

    convenience init(table: String, chain: String, spec: RuleSpec, setID: UInt32) throws {
        try self.init()
        nftnl_rule_set_str(pointer, attr(NFTNL_RULE_TABLE.rawValue), table)
        nftnl_rule_set_str(pointer, attr(NFTNL_RULE_CHAIN.rawValue), chain)
        for expr in spec.expressions(setID: setID) {
            try NftnlExpr(expr).move(into: self)
        }
        let userdata = try Self.commentUserdata(spec.comment)
        userdata.withUnsafeBytes { bytes in
            _ = nftnl_rule_set_data(pointer, attr(NFTNL_RULE_USERDATA.rawValue), bytes.baseAddress, UInt32(bytes.count))
        }
    }

    /// Rule userdata as nft writes a comment: TLV (NFTNL_UDATA_RULE_COMMENT, length, text + NUL).
    static func commentUserdata(_ comment: String) throws -> [UInt8] {
        let text = Array(comment.utf8) + [0]
        guard text.count <= Int(NFTNL_UDATA_COMMENT_MAXLEN) else {
            throw CaptureError(
                code: .rulesetInvalid,
                message: "rule comment longer than \(NFTNL_UDATA_COMMENT_MAXLEN) bytes: \(comment)"
            )
        }
        return [UInt8(NFTNL_UDATA_RULE_COMMENT.rawValue), UInt8(text.count)] + text
    }

    /// The comment in rule userdata, if any (nil when the userdata holds none).
    static func comment(inUserdata bytes: [UInt8]) -> String? {
        var index = 0
        while index + 2 <= bytes.count {
            let type = bytes[index]
            let length = Int(bytes[index + 1])
            let start = index + 2
            guard start + length <= bytes.count else { return nil }
            if type == UInt8(NFTNL_UDATA_RULE_COMMENT.rawValue) {
                return String(decoding: bytes[start..<(start + length)].prefix { $0 != 0 }, as: UTF8.self)
            }
            index = start + length
        }
        return nil
    }

    var table: String? { string(nftnl_rule_get_str(pointer, attr(NFTNL_RULE_TABLE.rawValue))) }
    var chain: String? { string(nftnl_rule_get_str(pointer, attr(NFTNL_RULE_CHAIN.rawValue))) }
    var userdata: [UInt8] {
        var length: UInt32 = 0
        guard let data = nftnl_rule_get_data(pointer, attr(NFTNL_RULE_USERDATA.rawValue), &length) else { return [] }
        return Array(UnsafeRawBufferPointer(start: data, count: Int(length)))
    }

    /// Each expression as libnftnl prints it, e.g. `[ meta load skuid => reg 1 ]`: the canonical
    /// form in which the expected ruleset and the kernel's dump are compared.
    func expressionTexts() throws -> [String] {
        guard let iterator = nftnl_expr_iter_create(pointer) else {
            throw CaptureError.lastErrno("iterating rule expressions")
        }
        defer { nftnl_expr_iter_destroy(iterator) }
        var texts: [String] = []
        var buffer = [CChar](repeating: 0, count: 4096)
        while let expr = nftnl_expr_iter_next(iterator) {
            let name = string(nftnl_expr_get_str(expr, attr(NFTNL_EXPR_NAME))) ?? "?"
            let written = buffer.withUnsafeMutableBufferPointer { out in
                nftnl_expr_snprintf(out.baseAddress, out.count, expr, UInt32(NFTNL_OUTPUT_DEFAULT.rawValue), 0)
            }
            let body = written > 0 ? buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } : ""
            let trimmed = body.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            texts.append("[ \(name) \(trimmed) ]")
        }
        return texts
    }

    func build(into nlh: UnsafeMutablePointer<nlmsghdr>) { nftnl_rule_nlmsg_build_payload(nlh, pointer) }
    func parse(_ nlh: UnsafePointer<nlmsghdr>) -> Int32 { nftnl_rule_nlmsg_parse(nlh, pointer) }

    deinit { nftnl_rule_free(pointer) }
}

/// A netlink socket for NETLINK_NETFILTER (`struct mnl_socket`), bound in the calling thread's
/// network namespace.
final class NftablesSocket {
    let pointer: OpaquePointer
    let portID: UInt32
    var fd: Int32 { mnl_socket_get_fd(pointer) }

    init() throws {
        guard let pointer = mnl_socket_open(NETLINK_NETFILTER) else {
            throw CaptureError.lastErrno("opening a netfilter netlink socket")
        }
        guard mnl_socket_bind(pointer, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let error = CaptureError.lastErrno("binding a netfilter netlink socket")
            mnl_socket_close(pointer)
            throw error
        }
        self.pointer = pointer
        self.portID = mnl_socket_get_portid(pointer)
        // Acknowledgements need not echo the whole request back (large element lists).
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(SOL_NETLINK), NETLINK_CAP_ACK, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Makes the kernel accept a batch of `bytes` in one sendmsg (root may exceed wmem_max).
    func ensureSendBuffer(_ bytes: Int) {
        var size = Int32(clamping: bytes * 2)
        var current: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &current, &length) == 0, current >= size { return }
        if setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    func send(_ bytes: UnsafeRawBufferPointer, _ context: String) throws {
        let sent = mnl_socket_sendto(pointer, bytes.baseAddress, bytes.count)
        if sent < 0 { throw CaptureError.lastErrno(context) }
        if sent != bytes.count {
            throw CaptureError(code: .netlink, message: "\(context): the kernel took \(sent) of \(bytes.count) bytes")
        }
    }

    /// Waits up to `timeoutMilliseconds` for an answer, then reads one datagram (possibly several
    /// netlink messages). Returns nil when nothing arrived in time.
    func receive(
        into buffer: UnsafeMutableRawBufferPointer, timeoutMilliseconds: Int32, _ context: String
    ) throws
        -> Int?
    {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&poller, 1, timeoutMilliseconds)
            if ready < 0 {
                if Glibc.errno == EINTR { continue }
                throw CaptureError.lastErrno("\(context): waiting for the kernel")
            }
            if ready == 0 { return nil }
            let count = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
            if count < 0 {
                let code = Glibc.errno
                if code == EINTR || code == EAGAIN { continue }
                throw CaptureError.fromErrno(code, "\(context): reading the kernel's answer")
            }
            return count
        }
    }

    deinit { mnl_socket_close(pointer) }
}

/// A batch of nf_tables messages in one buffer (`struct mnl_nlmsg_batch`), committed by the kernel
/// as one transaction: all of it applies, or none.
final class NftablesBatch {
    private let buffer: UnsafeMutableRawPointer
    private let batch: OpaquePointer
    private let limit: Int
    private var nextSequence: UInt32
    /// What each acknowledged message did, by sequence number, to name the one the kernel refused.
    private(set) var descriptions: [UInt32: String] = [:]

    /// `limit` bounds the batch; the buffer is twice as large because libmnl lets the last message overrun.
    init(limit: Int, firstSequence: UInt32) throws {
        guard let buffer = malloc(limit * 2) else { throw CaptureError.lastErrno("allocating a netlink batch") }
        guard let batch = mnl_nlmsg_batch_start(buffer, limit) else {
            free(buffer)
            throw CaptureError.lastErrno("starting a netlink batch")
        }
        self.buffer = buffer
        self.batch = batch
        self.limit = limit
        self.nextSequence = firstSequence
        nftnl_batch_begin(current, takeSequence())
        try advance("batch begin")
    }

    private var current: UnsafeMutablePointer<CChar> {
        mnl_nlmsg_batch_current(batch).assumingMemoryBound(to: CChar.self)
    }

    private func takeSequence() -> UInt32 {
        defer { nextSequence &+= 1 }
        return nextSequence
    }

    private func advance(_ what: String) throws {
        if !mnl_nlmsg_batch_next(batch) {
            throw CaptureError(
                code: .rulesetInvalid,
                message: "the ruleset does not fit in one netlink batch of \(limit) bytes (at \(what)); too many uids?"
            )
        }
    }

    /// Appends one nf_tables message; `fill` writes the payload. Every message asks for an
    /// acknowledgement so a refusal can be tied to the message that caused it.
    func add(
        _ message: nf_tables_msg_types,
        flags: Int32,
        description: String,
        _ fill: (UnsafeMutablePointer<nlmsghdr>) -> Void
    ) throws {
        let sequence = takeSequence()
        guard
            let nlh = nftnl_nlmsg_build_hdr(
                current,
                UInt16(message.rawValue),
                UInt16(NFPROTO_INET),
                UInt16(truncatingIfNeeded: flags | NLM_F_ACK),
                sequence
            )
        else { throw CaptureError(code: .netlink, message: "building the netlink header for \(description)") }
        fill(nlh)
        descriptions[sequence] = description
        try advance(description)
    }

    /// Closes the batch; returns the bytes to send.
    func finish() throws -> UnsafeRawBufferPointer {
        nftnl_batch_end(current, takeSequence())
        try advance("batch end")
        let head = mnl_nlmsg_batch_head(batch)
        return UnsafeRawBufferPointer(start: head, count: mnl_nlmsg_batch_size(batch))
    }

    deinit {
        mnl_nlmsg_batch_stop(batch)
        free(buffer)
    }
}

@inline(__always)
private func string(_ pointer: UnsafePointer<CChar>?) -> String? {
    pointer.map { String(cString: $0) }
}
