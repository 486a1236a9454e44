import CNetfilter

#if canImport(Glibc)
import Glibc
#endif

/// The real `RulesetInstaller`: programs table `inet interlock` through libnftnl/libmnl, one
/// netlink batch per change, and reads it back to check it.
///
/// Each call opens its own netlink socket in the calling thread's network namespace and closes
/// it before returning, so the installer holds no state and is safe to share between threads.
/// Requires root or CAP_NET_ADMIN (`CaptureError` `.permission` otherwise).
public final class NetfilterRulesetInstaller: RulesetInstaller {
    /// How long to wait for the kernel's answer before giving up. The kernel answers a batch while
    /// handling sendmsg, so this only matters when something is badly wrong.
    private let answerTimeoutMilliseconds: Int32 = 5_000

    /// uids per NEWSETELEM message; about 20 bytes each, well below the 64 KiB attribute limit.
    static let uidsPerMessage = 1_000

    public init() {}

    public func install(_ ruleset: CaptureRuleset) throws {
        try ruleset.validate()
        try install(spec: ruleset.tableSpec)
    }

    /// Installs a lowered table; tests use it directly to make the kernel refuse part of a batch.
    func install(spec: TableSpec) throws {
        let context = "installing table \(spec.family) \(spec.name)"
        let socket = try NftablesSocket()
        // Generous: each rule is a few hundred bytes, each uid about 20.
        let batch = try NftablesBatch(
            limit: 64 * 1024 + 32 * spec.capturedUIDs.count,
            firstSequence: Self.firstSequence()
        )

        let table = try NftnlTable(name: spec.name)
        // Create the table if absent so that deleting it cannot fail, delete it (with everything in
        // it), and define it anew: the kernel commits the whole batch as one transaction.
        try batch.add(NFT_MSG_NEWTABLE, flags: NLM_F_CREATE, description: "creating table \(spec.name)") {
            table.build(into: $0)
        }
        try batch.add(NFT_MSG_DELTABLE, flags: 0, description: "deleting the previous table \(spec.name)") {
            table.build(into: $0)
        }
        try batch.add(NFT_MSG_NEWTABLE, flags: NLM_F_CREATE | NLM_F_EXCL, description: "adding table \(spec.name)") {
            table.build(into: $0)
        }
        let set = try NftnlSet(table: spec.name, name: TableSpec.capturedSetName, id: TableSpec.capturedSetID, uids: [])
        try batch.add(
            NFT_MSG_NEWSET,
            flags: NLM_F_CREATE | NLM_F_EXCL,
            description: "adding set \(TableSpec.capturedSetName)"
        ) {
            set.build(into: $0)
        }
        // Elements go in chunks: the element list is one netlink attribute, whose length is 16 bits,
        // so a single message with thousands of uids would be cut short (seen with 5000 uids).
        var start = 0
        while start < spec.capturedUIDs.count {
            let chunk = Array(spec.capturedUIDs[start..<min(start + Self.uidsPerMessage, spec.capturedUIDs.count)])
            let elements = try NftnlSet(
                table: spec.name,
                name: TableSpec.capturedSetName,
                id: TableSpec.capturedSetID,
                uids: chunk
            )
            try batch.add(
                NFT_MSG_NEWSETELEM,
                flags: NLM_F_CREATE | NLM_F_EXCL,
                description: "adding uids \(chunk.first!)...\(chunk.last!) to set \(TableSpec.capturedSetName)"
            ) { elements.buildElements(into: $0) }
            start += chunk.count
        }
        for chainSpec in spec.chains {
            let chain = try NftnlChain(table: spec.name, spec: chainSpec)
            try batch.add(
                NFT_MSG_NEWCHAIN,
                flags: NLM_F_CREATE | NLM_F_EXCL,
                description: "adding chain \(chainSpec.name)"
            ) {
                chain.build(into: $0)
            }
        }
        for chainSpec in spec.chains {
            for (index, ruleSpec) in chainSpec.rules.enumerated() {
                let rule = try NftnlRule(
                    table: spec.name,
                    chain: chainSpec.name,
                    spec: ruleSpec,
                    setID: TableSpec.capturedSetID
                )
                try batch.add(
                    NFT_MSG_NEWRULE,
                    flags: NLM_F_CREATE | NLM_F_APPEND,
                    description: "adding rule \(index + 1) of chain \(chainSpec.name) (`\(ruleSpec.text)`)"
                ) { rule.build(into: $0) }
            }
        }
        try commit(batch, on: socket, context)
    }

    public func remove() throws {
        let context = "removing table \(CaptureRuleset.family) \(CaptureRuleset.tableName)"
        let socket = try NftablesSocket()
        let batch = try NftablesBatch(limit: 16 * 1024, firstSequence: Self.firstSequence())
        let table = try NftnlTable(name: CaptureRuleset.tableName)
        // Creating it first makes the delete succeed whether or not the table existed.
        try batch.add(NFT_MSG_NEWTABLE, flags: NLM_F_CREATE, description: "creating table \(CaptureRuleset.tableName)")
        {
            table.build(into: $0)
        }
        try batch.add(NFT_MSG_DELTABLE, flags: 0, description: "deleting table \(CaptureRuleset.tableName)") {
            table.build(into: $0)
        }
        try commit(batch, on: socket, context)
    }

    public func health(expected: CaptureRuleset) throws -> RulesetHealth {
        let socket = try NftablesSocket()
        // Several dumps make one reading; if the ruleset changed between them (the generation in
        // the answers differs), read again rather than report a drift that never existed.
        var attempt = 0
        while true {
            attempt += 1
            let snapshot = try KernelTableSnapshot.read(
                socket: socket,
                table: CaptureRuleset.tableName,
                timeoutMilliseconds: answerTimeoutMilliseconds,
                firstSequence: Self.firstSequence()
            )
            if !snapshot.consistent && attempt < 3 { continue }
            guard snapshot.exists else { return .missing }
            let differences = try snapshot.differences(from: expected.tableSpec)
            if !snapshot.consistent {
                return .drifted("the ruleset kept changing while it was read; " + differences.joined(separator: "; "))
            }
            return differences.isEmpty ? .intact : .drifted(differences.joined(separator: "; "))
        }
    }

    // MARK: - Netlink conversation

    private static func firstSequence() -> UInt32 {
        UInt32(truncatingIfNeeded: time(nil)) &* 16
    }

    /// Sends the batch and reads one answer per message. The kernel handles the whole batch during
    /// sendmsg, so all answers are queued once it returns; a refused message aborts the batch and
    /// the error names it.
    private func commit(_ batch: NftablesBatch, on socket: NftablesSocket, _ context: String) throws {
        let bytes = try batch.finish()
        socket.ensureSendBuffer(bytes.count)
        try socket.send(bytes, context)

        let expected = batch.descriptions.count
        var acknowledged = 0
        var failures: [(sequence: UInt32, errno: Int32)] = []
        let capacity = 64 * 1024
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 8)
        defer { buffer.deallocate() }
        while acknowledged + failures.count < expected {
            // After a failure the remaining answers (if any) are already queued: do not wait for more.
            let timeout = failures.isEmpty ? answerTimeoutMilliseconds : 0
            guard let count = try socket.receive(into: buffer, timeoutMilliseconds: timeout, context) else {
                if failures.isEmpty {
                    throw CaptureError(
                        code: .netlink,
                        message:
                            "\(context): the kernel answered \(acknowledged) of \(expected) messages and then nothing"
                    )
                }
                break
            }
            forEachNftablesMessage(in: UnsafeRawBufferPointer(rebasing: buffer[0..<count])) { nlh in
                guard nlh.pointee.nlmsg_type == UInt16(NLMSG_ERROR) else { return }
                let code = interlock_nlmsg_error_code(nlh)
                let sequence = interlock_nlmsg_error_seq(nlh)
                guard batch.descriptions[sequence] != nil else { return }
                if code == 0 {
                    acknowledged += 1
                } else {
                    failures.append((sequence, -code))
                }
            }
        }
        if let first = failures.first {
            let what = batch.descriptions[first.sequence] ?? "an unknown message"
            throw CaptureError.fromErrno(first.errno, "\(context): the kernel refused \(what); nothing was changed")
        }
    }
}

/// Walks the netlink messages in one datagram.
func forEachNftablesMessage(
    in datagram: UnsafeRawBufferPointer, _ body: (UnsafePointer<nlmsghdr>) throws -> Void
)
    rethrows
{
    guard let base = datagram.baseAddress else { return }
    var remaining = Int32(datagram.count)
    var nlh: UnsafePointer<nlmsghdr>? = base.assumingMemoryBound(to: nlmsghdr.self)
    while let current = nlh, mnl_nlmsg_ok(current, remaining) {
        try body(current)
        nlh = UnsafePointer(mnl_nlmsg_next(current, &remaining))
    }
}

/// What the kernel holds for one table, read by dumps, in the canonical form the health check
/// compares: names, hook parameters, set attributes and keys, and each rule's expressions as
/// libnftnl prints them (no handles, no counters).
struct KernelTableSnapshot {
    struct Chain {
        var name: String
        var isBase: Bool
        var type: String?
        var hookNumber: UInt32
        var priority: Int32
        var policy: UInt32
    }
    struct SetInfo {
        var name: String
        var flags: UInt32
        var keyType: UInt32
        var keyLength: UInt32
        var isMap: Bool
        var userdata: [UInt8]
        var keys: [[UInt8]]
    }
    struct Rule {
        var chain: String
        var expressions: [String]
        var userdata: [UInt8]
    }

    var exists = false
    var tableFlags: UInt32 = 0
    var tableUse: UInt32 = 0
    var chains: [Chain] = []
    var sets: [SetInfo] = []
    var rules: [Rule] = []
    /// Whether every answer carried the same ruleset generation.
    var consistent = true

    // MARK: Reading

    static func read(
        socket: NftablesSocket,
        table: String,
        timeoutMilliseconds: Int32,
        firstSequence: UInt32
    ) throws -> KernelTableSnapshot {
        var snapshot = KernelTableSnapshot()
        var sequence = firstSequence
        var generations = Set<UInt16>()
        func dump(
            _ message: nf_tables_msg_types,
            _ what: String,
            fill: (UnsafeMutablePointer<nlmsghdr>) -> Void,
            each: (UnsafePointer<nlmsghdr>) throws -> Void
        ) throws {
            sequence &+= 1
            try dumpRequest(
                socket: socket,
                message: message,
                sequence: sequence,
                timeoutMilliseconds: timeoutMilliseconds,
                context: "reading \(what) of table inet \(table)",
                fill: fill
            ) { nlh in
                generations.insert(interlock_nfgen_res_id(nlh))
                try each(nlh)
            }
        }

        try dump(NFT_MSG_GETTABLE, "the tables", fill: { _ in }) { nlh in
            let object = try NftnlTable()
            guard object.parse(nlh) >= 0 else { throw CaptureError.lastErrno("parsing a table from the kernel") }
            if object.name == table {
                snapshot.exists = true
                snapshot.tableFlags = object.flags
                snapshot.tableUse = object.use
            }
        }
        guard snapshot.exists else { return snapshot }

        try dump(NFT_MSG_GETCHAIN, "the chains", fill: { _ in }) { nlh in
            let object = try NftnlChain()
            guard object.parse(nlh) >= 0 else { throw CaptureError.lastErrno("parsing a chain from the kernel") }
            guard object.table == table, let name = object.name else { return }
            snapshot.chains.append(
                Chain(
                    name: name,
                    isBase: object.isBase,
                    type: object.type,
                    hookNumber: object.hookNumber,
                    priority: object.priority,
                    policy: object.policy
                )
            )
        }

        try dump(NFT_MSG_GETSET, "the sets", fill: { _ in }) { nlh in
            let object = try NftnlSet()
            guard object.parse(nlh) >= 0 else { throw CaptureError.lastErrno("parsing a set from the kernel") }
            guard object.table == table, let name = object.name else { return }
            snapshot.sets.append(
                SetInfo(
                    name: name,
                    flags: object.flags,
                    keyType: object.keyType,
                    keyLength: object.keyLength,
                    isMap: object.isMap,
                    userdata: object.userdata,
                    keys: []
                )
            )
        }

        for index in snapshot.sets.indices {
            let name = snapshot.sets[index].name
            let request = try NftnlSet()
            nftnl_set_set_str(request.pointer, UInt16(NFTNL_SET_TABLE.rawValue), table)
            nftnl_set_set_str(request.pointer, UInt16(NFTNL_SET_NAME.rawValue), name)
            let holder = try NftnlSet()
            try dump(NFT_MSG_GETSETELEM, "the elements of set \(name)", fill: { request.buildElements(into: $0) }) {
                nlh in
                guard holder.parseElements(nlh) >= 0 else {
                    throw CaptureError.lastErrno("parsing set elements from the kernel")
                }
            }
            snapshot.sets[index].keys = try holder.elementKeys()
        }

        let ruleRequest = try NftnlRule()
        nftnl_rule_set_str(ruleRequest.pointer, UInt16(NFTNL_RULE_TABLE.rawValue), table)
        try dump(NFT_MSG_GETRULE, "the rules", fill: { ruleRequest.build(into: $0) }) { nlh in
            let object = try NftnlRule()
            guard object.parse(nlh) >= 0 else { throw CaptureError.lastErrno("parsing a rule from the kernel") }
            guard object.table == table, let chain = object.chain else { return }
            snapshot.rules.append(
                Rule(chain: chain, expressions: try object.expressionTexts(), userdata: object.userdata)
            )
        }

        snapshot.consistent = generations.count <= 1
        return snapshot
    }

    /// Sends one dump request and hands each answer message to `each` until NLMSG_DONE.
    private static func dumpRequest(
        socket: NftablesSocket,
        message: nf_tables_msg_types,
        sequence: UInt32,
        timeoutMilliseconds: Int32,
        context: String,
        fill: (UnsafeMutablePointer<nlmsghdr>) -> Void,
        each: (UnsafePointer<nlmsghdr>) throws -> Void
    ) throws {
        let request = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 8)
        defer { request.deallocate() }
        request.initializeMemory(as: UInt8.self, repeating: 0)
        guard
            let nlh = nftnl_nlmsg_build_hdr(
                request.baseAddress!.assumingMemoryBound(to: CChar.self),
                UInt16(message.rawValue),
                UInt16(NFPROTO_INET),
                UInt16(NLM_F_DUMP),
                sequence
            )
        else { throw CaptureError(code: .netlink, message: "\(context): building the request") }
        fill(nlh)
        try socket.send(UnsafeRawBufferPointer(start: nlh, count: Int(nlh.pointee.nlmsg_len)), context)

        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 8)
        defer { buffer.deallocate() }
        var done = false
        while !done {
            guard let count = try socket.receive(into: buffer, timeoutMilliseconds: timeoutMilliseconds, context) else {
                throw CaptureError(code: .netlink, message: "\(context): the kernel stopped answering")
            }
            try forEachNftablesMessage(in: UnsafeRawBufferPointer(rebasing: buffer[0..<count])) { nlh in
                guard !done, nlh.pointee.nlmsg_seq == sequence else { return }
                switch Int32(nlh.pointee.nlmsg_type) {
                case NLMSG_DONE:
                    done = true
                case NLMSG_ERROR:
                    let code = interlock_nlmsg_error_code(nlh)
                    if code != 0 { throw CaptureError.fromErrno(-code, context) }
                    done = true
                default:
                    try each(nlh)
                }
            }
        }
    }

    // MARK: Comparing

    /// What differs between the kernel's table and `spec`, one phrase per difference, for a person.
    func differences(from spec: TableSpec) throws -> [String] {
        var out: [String] = []
        if tableFlags != 0 {
            let dormant = tableFlags & UInt32(NFT_TABLE_F_DORMANT.rawValue) != 0
            out.append("table flags \(nftHex32(tableFlags))\(dormant ? " (dormant: no rule is evaluated)" : "")")
        }

        // Chains.
        let expectedNames = spec.chains.map(\.name)
        for chain in chains where !expectedNames.contains(chain.name) {
            out.append("unexpected chain \(chain.name)")
        }
        for expectedChain in spec.chains {
            guard let chain = chains.first(where: { $0.name == expectedChain.name }) else {
                out.append("chain \(expectedChain.name) is missing")
                continue
            }
            if let hook = expectedChain.hook {
                let policy = UInt32(bitPattern: hook.policyAccept ? NF_ACCEPT : NF_DROP)
                if !chain.isBase || chain.type != hook.type.rawValue || chain.hookNumber != hook.hookNumber
                    || chain.priority != hook.priority || chain.policy != policy
                {
                    out.append(
                        "chain \(chain.name) is \(Self.describe(chain)), expected type \(hook.type.rawValue) hook "
                            + "\(hook.hookName) priority \(hook.priority) "
                            + "policy \(hook.policyAccept ? "accept" : "drop")"
                    )
                }
            } else if chain.isBase {
                out.append("chain \(chain.name) is \(Self.describe(chain)), expected a regular chain")
            }
        }

        // Sets.
        for set in sets where set.name != TableSpec.capturedSetName {
            out.append("unexpected set \(set.name)")
        }
        if let set = sets.first(where: { $0.name == TableSpec.capturedSetName }) {
            if set.keyType != TableSpec.uidDatatype || set.keyLength != 4 || set.flags != 0 || set.isMap
                || set.userdata != NftnlSet.keyByteOrderHost
            {
                out.append(
                    "set \(set.name) has key type \(set.keyType) length \(set.keyLength) flags \(nftHex32(set.flags))"
                        + "\(set.isMap ? " (a map)" : ""), "
                        + "expected type uid (\(TableSpec.uidDatatype)) length 4 flags 0"
                )
            }
            let kernelUIDs = set.keys.map { key -> UInt32? in
                key.count == 4 ? key.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) } : nil
            }
            if kernelUIDs.contains(nil) {
                out.append("set \(set.name) holds keys that are not 4-byte uids")
            }
            let held = Set(kernelUIDs.compactMap { $0 })
            let wanted = Set(spec.capturedUIDs)
            let missing = wanted.subtracting(held).sorted()
            let extra = held.subtracting(wanted).sorted()
            if !missing.isEmpty {
                out.append("set \(set.name) lacks uid(s) \(Self.list(missing))")
            }
            if !extra.isEmpty {
                out.append("set \(set.name) holds unexpected uid(s) \(Self.list(extra))")
            }
        } else {
            out.append("set \(TableSpec.capturedSetName) is missing")
        }

        // Stateful objects and flowtables are not dumped; the table's use count reveals them.
        let accounted = UInt32(chains.count + sets.count)
        if tableUse > accounted {
            out.append("the table holds \(tableUse - accounted) object(s) besides its chains and sets")
        }

        // Rules, in order, chain by chain.
        for chain in spec.chains {
            let kernel = rules.filter { $0.chain == chain.name }
            var wanted: [(text: String, expressions: [String], userdata: [UInt8])] = []
            for rule in chain.rules {
                let built = try NftnlRule(
                    table: spec.name,
                    chain: chain.name,
                    spec: rule,
                    setID: TableSpec.capturedSetID
                )
                wanted.append((rule.text, try built.expressionTexts(), built.userdata))
            }
            for index in 0..<max(kernel.count, wanted.count) {
                let position = "chain \(chain.name) rule \(index + 1)"
                if index >= kernel.count {
                    out.append("\(position) is missing: `\(wanted[index].text)`")
                } else if index >= wanted.count {
                    out.append("\(position) is unexpected: \(Self.describe(kernel[index]))")
                } else if kernel[index].expressions != wanted[index].expressions
                    || kernel[index].userdata != wanted[index].userdata
                {
                    out.append(
                        "\(position) is \(Self.describe(kernel[index])), expected `\(wanted[index].text)` = "
                            + wanted[index].expressions.joined(separator: " ")
                    )
                }
            }
        }
        return out
    }

    /// At most 20 uids, then how many more: a drift message stays readable with thousands of uids.
    private static func list(_ uids: [UInt32]) -> String {
        let shown = uids.prefix(20).map(String.init).joined(separator: ", ")
        return uids.count > 20 ? "\(shown) and \(uids.count - 20) more" : shown
    }

    private static func describe(_ chain: Chain) -> String {
        guard chain.isBase else { return "a regular chain" }
        let policy = chain.policy == UInt32(bitPattern: NF_ACCEPT) ? "accept" : "drop"
        return "type \(chain.type ?? "?") hook \(chain.hookNumber) priority \(chain.priority) policy \(policy)"
    }

    private static func describe(_ rule: Rule) -> String {
        let body = rule.expressions.isEmpty ? "(no expressions)" : rule.expressions.joined(separator: " ")
        if let comment = NftnlRule.comment(inUserdata: rule.userdata) {
            return "\(body) comment \"\(comment)\""
        }
        return body
    }
}
