/// The nftables ruleset Interlock keeps in the kernel, as a value.
///
/// It exists so that the daemon, the CLI and the tests all speak of one thing: the same value is
/// rendered as nft text (`nftText()`, what `interlock rules show` prints and `nft -f` loads) and
/// programmed into the kernel as one netlink batch by a `RulesetInstaller`, which also checks that
/// the kernel still holds exactly it (`health(expected:)`).
///
/// Table `inet interlock` (IPv4 and IPv6 alike) holds:
/// - set `captured_uids` (type uid): the service accounts whose TCP is captured;
/// - chain `nat_output` (nat, output, -100): the daemon's uid and its marked upstream sockets
///   return; every other TCP connection of a captured uid is redirected to the listener;
/// - chain `filter_output` (filter, output, 0): the daemon passes; captured uids jump to
/// - chain `captured_egress`: replies and redirected TCP pass, DNS over UDP passes when allowed,
///   the listener port itself and everything else is refused.
public struct CaptureRuleset: Sendable, Equatable {
    public static let family = "inet"
    public static let tableName = "interlock"

    /// The captured accounts; always sorted and without duplicates.
    public var capturedUIDs: [UInt32] {
        didSet { capturedUIDs = Self.normalized(capturedUIDs) }
    }
    /// interlockd's own uid: never captured, so its upstream connections do not loop back.
    public var daemonUID: UInt32
    /// The port interlockd listens on, on 127.0.0.1 and ::1.
    public var listenPort: UInt16
    /// The SO_MARK interlockd puts on its upstream sockets; exempt from capture and filtering.
    public var upstreamMark: UInt32
    /// Whether captured accounts may send DNS over UDP (port 53). DNS over TCP is redirected anyway.
    public var allowDNS: Bool

    public init(capturedUIDs: [UInt32], daemonUID: UInt32, listenPort: UInt16, upstreamMark: UInt32, allowDNS: Bool) {
        self.capturedUIDs = Self.normalized(capturedUIDs)
        self.daemonUID = daemonUID
        self.listenPort = listenPort
        self.upstreamMark = upstreamMark
        self.allowDNS = allowDNS
    }

    private static func normalized(_ uids: [UInt32]) -> [UInt32] {
        var seen = Set<UInt32>()
        return uids.sorted().filter { seen.insert($0).inserted }
    }

    /// Checks that the ruleset is safe to install; installers call it before touching the kernel.
    ///
    /// Throws `CaptureError` `.rulesetInvalid` when the daemon's uid is captured (its upstream
    /// connections would loop), when the mark is 0 (every unmarked socket would be exempt), when
    /// the port is 0, or when a uid is the invalid uid 4294967295.
    public func validate() throws {
        if listenPort == 0 {
            throw CaptureError(
                code: .rulesetInvalid,
                message: "the listen port is 0; configure the port interlockd listens on"
            )
        }
        if upstreamMark == 0 {
            throw CaptureError(
                code: .rulesetInvalid,
                message: "the upstream mark is 0, which every unmarked socket carries: it would exempt all traffic "
                    + "from capture; configure a non-zero mark"
            )
        }
        if capturedUIDs.contains(daemonUID) {
            throw CaptureError(
                code: .rulesetInvalid,
                message: "uid \(daemonUID) is interlockd's own uid and cannot be captured (its upstream connections "
                    + "would loop back to itself); remove it from the captured accounts or run interlockd "
                    + "as another user"
            )
        }
        if capturedUIDs.contains(UInt32.max) || daemonUID == UInt32.max {
            throw CaptureError(code: .rulesetInvalid, message: "uid 4294967295 is not a valid uid")
        }
    }

    /// The whole table as nft text that `nft -f` loads, with comments; what `interlock rules show` prints.
    ///
    /// Loading it replaces the table atomically (it declares, deletes and redefines the table in
    /// one transaction). `nft list table inet interlock` after loading it equals the listing after
    /// `NetfilterRulesetInstaller.install(self)`: both come from the same `tableSpec`.
    public func nftText() -> String {
        let spec = tableSpec
        let uids = capturedUIDs.isEmpty ? "none" : capturedUIDs.map(String.init).joined(separator: ", ")
        var lines: [String] = [
            "#!/usr/sbin/nft -f",
            "# Interlock capture ruleset: table \(spec.family) \(spec.name) (IPv4 and IPv6 alike).",
            "#",
            "# interlockd generates this from its configuration and keeps it installed (it restores the table",
            "# if someone flushes it); `interlock rules show` prints the live one. The values in this copy:",
            "#   captured uids (set captured_uids)  \(uids)",
            "#   interlockd's uid, never captured   \(daemonUID)",
            "#   listener port (127.0.0.1 and ::1)  \(listenPort)",
            "#   upstream socket mark (SO_MARK)     \(nftHex32(upstreamMark))",
            "#   DNS over UDP for captured uids     \(allowDNS ? "allowed" : "refused")",
            "#",
            "# Loading this file with `nft -f` replaces the table atomically: the first two lines create the",
            "# table if absent and delete it in the same transaction that defines it anew, so there is never",
            "# a moment without rules.",
            "",
            "table \(spec.family) \(spec.name)",
            "delete table \(spec.family) \(spec.name)",
            "",
            "table \(spec.family) \(spec.name) {",
            "\t# Service accounts whose TCP is captured, by the uid owning the socket.",
            "\tset \(TableSpec.capturedSetName) {",
            "\t\ttype uid",
        ]
        if !capturedUIDs.isEmpty {
            lines.append("\t\telements = { \(capturedUIDs.map(String.init).joined(separator: ", ")) }")
        }
        lines.append("\t}")
        for chain in spec.chains {
            lines.append("")
            lines += chain.explanation.map { "\t# \($0)" }
            lines.append("\tchain \(chain.name) {")
            if let hook = chain.hook {
                let policy = hook.policyAccept ? "accept" : "drop"
                lines.append(
                    "\t\ttype \(hook.type.rawValue) hook \(hook.hookName) priority \(hook.priority); policy \(policy);"
                )
            }
            lines += chain.rules.map { "\t\t\($0.text)" }
            lines.append("\t}")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Whether the kernel still holds the ruleset Interlock installed; the reconciler reinstalls on
/// anything but `.intact`.
public enum RulesetHealth: Sendable, Equatable, CustomStringConvertible {
    /// The kernel's table equals the expected ruleset exactly.
    case intact
    /// There is no `inet interlock` table (never installed, removed, or flushed with the ruleset).
    case missing
    /// The table exists but differs; the text says what differs, for a person.
    case drifted(String)

    public var description: String {
        switch self {
        case .intact: return "intact"
        case .missing: return "missing: table \(CaptureRuleset.family) \(CaptureRuleset.tableName) is not installed"
        case .drifted(let what): return "drifted: \(what)"
        }
    }
}

/// The kernel side of the ruleset, behind a protocol so the gateway and CLI can be tested with
/// `InMemoryRulesetInstaller`; `NetfilterRulesetInstaller` is the real one.
public protocol RulesetInstaller: Sendable {
    /// Replaces the whole table atomically in ONE netlink batch (add table; delete table; add
    /// table, set, elements, chains, rules), so there is never a moment without rules.
    func install(_ ruleset: CaptureRuleset) throws
    /// Dumps the kernel's table and compares it exactly with `expected`: table, chains (type,
    /// hook, priority, policy), set (key type, elements), every rule's expressions in order.
    /// Extra chains, rules or sets count as drift.
    func health(expected: CaptureRuleset) throws -> RulesetHealth
    /// Deletes the table if present (no error when absent).
    func remove() throws
}
