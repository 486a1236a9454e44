import Foundation
import Testing

@testable import Capture

/// The ruleset as a value: normalisation, validation, nft text, and the lowering to kernel
/// expressions (checked against what `nft --debug=netlink` emits for the same rules).
@Suite struct RulesetTextTests {
    static let example = CaptureRuleset(
        capturedUIDs: [1001, 1002],
        daemonUID: 999,
        listenPort: 15001,
        upstreamMark: 0x1f0c_0001,
        allowDNS: true
    )

    /// The path of the checked-in operator copy, relative to this file.
    static var nftFilePath: String {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("nft/interlock.nft").path
    }

    @Test func checkedInNftFileEqualsTheGeneratedText() throws {
        let expected = Self.example.nftText()
        // Regenerate after an intended change with: INTERLOCK_REGENERATE_NFT=1 swift test --filter RulesetTextTests
        if ProcessInfo.processInfo.environment["INTERLOCK_REGENERATE_NFT"] == "1" {
            try expected.write(toFile: Self.nftFilePath, atomically: true, encoding: .utf8)
        }
        let onDisk = try String(contentsOfFile: Self.nftFilePath, encoding: .utf8)
        #expect(onDisk == expected, "nft/interlock.nft drifted from CaptureRuleset.nftText(); regenerate it")
    }

    @Test func capturedUIDsAreSortedAndUniqueEvenWhenAssigned() {
        var ruleset = CaptureRuleset(
            capturedUIDs: [1002, 1001, 1002],
            daemonUID: 999,
            listenPort: 1,
            upstreamMark: 1,
            allowDNS: false
        )
        #expect(ruleset.capturedUIDs == [1001, 1002])
        ruleset.capturedUIDs = [7, 3, 7, 5]
        #expect(ruleset.capturedUIDs == [3, 5, 7])
        #expect(
            ruleset
                == CaptureRuleset(
                    capturedUIDs: [5, 3, 7],
                    daemonUID: 999,
                    listenPort: 1,
                    upstreamMark: 1,
                    allowDNS: false
                )
        )
    }

    @Test func validationRefusesRulesetsThatWouldLoopOrExemptEverything() throws {
        try Self.example.validate()
        var capturesDaemon = Self.example
        capturesDaemon.capturedUIDs.append(999)
        #expect(throws: CaptureError.self) { try capturesDaemon.validate() }
        do {
            try capturesDaemon.validate()
        } catch let error as CaptureError {
            #expect(error.code == .rulesetInvalid)
            #expect(error.message.contains("999"))
        }
        var zeroMark = Self.example
        zeroMark.upstreamMark = 0
        #expect(throws: CaptureError(code: .rulesetInvalid, message: zeroMarkMessage)) { try zeroMark.validate() }
        var zeroPort = Self.example
        zeroPort.listenPort = 0
        #expect { try zeroPort.validate() } throws: { ($0 as? CaptureError)?.code == .rulesetInvalid }
        var invalidUID = Self.example
        invalidUID.capturedUIDs = [UInt32.max]
        #expect { try invalidUID.validate() } throws: { ($0 as? CaptureError)?.code == .rulesetInvalid }
    }

    private var zeroMarkMessage: String {
        "the upstream mark is 0, which every unmarked socket carries: it would exempt all traffic "
            + "from capture; configure a non-zero mark"
    }

    @Test func textHasTheTableSetAndChainsWithHooksAndComments() {
        let text = Self.example.nftText()
        #expect(text.contains("table inet interlock {"))
        #expect(text.contains("\tset captured_uids {\n\t\ttype uid\n\t\telements = { 1001, 1002 }\n\t}"))
        #expect(text.contains("type nat hook output priority -100; policy accept;"))
        #expect(text.contains("type filter hook output priority 0; policy accept;"))
        #expect(
            text.contains(
                "meta l4proto tcp meta skuid @captured_uids redirect to :15001 "
                    + "comment \"captured accounts: all TCP goes to interlockd\""
            )
        )
        #expect(text.contains("meta skuid 999 return comment"))
        #expect(text.contains("meta mark 0x1f0c0001 return comment"))
        #expect(text.contains("meta skuid @captured_uids jump captured_egress comment"))
        #expect(
            text.contains(
                "meta l4proto tcp ct original proto-dst 15001 ct original ip daddr 127.0.0.0/8 reject with tcp reset"
            )
        )
        #expect(
            text.contains(
                "meta l4proto tcp ct original proto-dst 15001 ct original ip6 daddr ::1 reject with tcp reset"
            )
        )
        #expect(text.contains("meta l4proto tcp ct status dnat accept"))
        #expect(text.contains("udp dport 53 accept"))
        #expect(text.contains("reject with icmpx admin-prohibited"))
        // Loading the text replaces the table atomically.
        #expect(text.contains("table inet interlock\ndelete table inet interlock\n"))
    }

    @Test func emptySetHasNoElementsLineAndDNSCanBeRefused() {
        let ruleset = CaptureRuleset(
            capturedUIDs: [],
            daemonUID: 999,
            listenPort: 15001,
            upstreamMark: 7,
            allowDNS: false
        )
        let text = ruleset.nftText()
        #expect(!text.contains("elements"))
        #expect(!text.contains("dport 53"))
        #expect(text.contains("#   captured uids (set captured_uids)  none"))
    }

    @Test func everyRuleCommentFitsTheKernelLimit() throws {
        for chain in Self.example.tableSpec.chains {
            for rule in chain.rules {
                let userdata = try NftnlRule.commentUserdata(rule.comment)
                #expect(userdata.count <= 130)
                #expect(NftnlRule.comment(inUserdata: userdata) == rule.comment)
                #expect(!rule.comment.contains("\""))
            }
        }
    }

    /// The chains and rule order the kernel gets (see RulesetProgram.swift for why there is a
    /// captured_egress sub-chain instead of `meta skuid != @captured_uids accept`).
    @Test func chainLayout() {
        let spec = Self.example.tableSpec
        #expect(spec.chains.map(\.name) == ["nat_output", "filter_output", "captured_egress"])
        #expect(spec.chains.map { $0.hook?.priority } == [-100, 0, nil])
        #expect(spec.chains.map(\.rules.count) == [3, 3, 7])
        var noDNS = Self.example
        noDNS.allowDNS = false
        #expect(noDNS.tableSpec.chains.map(\.rules.count) == [3, 3, 6])
    }

    /// The expressions as libnftnl prints them must match `nft --debug=netlink` for the same text
    /// (recorded from nftables 1.0.6), which is what makes the two listings equal. Two deliberate
    /// differences, both what the kernel dumps back anyway: redir names proto_max, lookup its flags.
    @Test func loweringMatchesWhatNftEmits() throws {
        let spec = Self.example.tableSpec
        func texts(_ chain: Int, _ rule: Int) throws -> [String] {
            let chainSpec = spec.chains[chain]
            return try NftnlRule(table: "interlock", chain: chainSpec.name, spec: chainSpec.rules[rule], setID: 1)
                .expressionTexts()
        }
        #expect(
            try texts(0, 0) == [
                "[ meta load skuid => reg 1 ]", "[ cmp eq reg 1 0x000003e7 ]", "[ immediate reg 0 return ]",
            ]
        )
        #expect(
            try texts(0, 1) == [
                "[ meta load mark => reg 1 ]", "[ cmp eq reg 1 0x1f0c0001 ]", "[ immediate reg 0 return ]",
            ]
        )
        #expect(
            try texts(0, 2) == [
                "[ meta load l4proto => reg 1 ]", "[ cmp eq reg 1 0x00000006 ]",
                "[ meta load skuid => reg 1 ]", "[ lookup reg 1 set captured_uids 0x0 ]",
                "[ immediate reg 1 0x0000993a ]", "[ redir proto_min reg 1 proto_max reg 1 flags 0x2 ]",
            ]
        )
        #expect(
            try texts(2, 1) == [
                "[ meta load l4proto => reg 1 ]", "[ cmp eq reg 1 0x00000006 ]",
                "[ ct load proto_dst => reg 1 , dir original ]", "[ cmp eq reg 1 0x0000993a ]",
                "[ ct load dst_ip => reg 1 , dir original ]", "[ cmp eq reg 1 0x0000007f ]",
                "[ reject type 1 code 0 ]",
            ]
        )
        #expect(
            try texts(2, 2)[4...5] == [
                "[ ct load dst_ip6 => reg 1 , dir original ]",
                "[ cmp eq reg 1 0x00000000 0x00000000 0x00000000 0x01000000 ]",
            ]
        )
        #expect(
            try texts(2, 3) == [
                "[ meta load l4proto => reg 1 ]", "[ cmp eq reg 1 0x00000006 ]",
                "[ ct load status => reg 1 ]", "[ bitwise reg 1 = ( reg 1 & 0x00000020 ) ^ 0x00000000 ]",
                "[ cmp neq reg 1 0x00000000 ]", "[ immediate reg 0 accept ]",
            ]
        )
        #expect(
            try texts(2, 4) == [
                "[ meta load l4proto => reg 1 ]", "[ cmp eq reg 1 0x00000011 ]",
                "[ payload load 2b @ transport header + 2 => reg 1 ]", "[ cmp eq reg 1 0x00003500 ]",
                "[ immediate reg 0 accept ]",
            ]
        )
        #expect(try texts(2, 6) == ["[ reject type 2 code 3 ]"])
        #expect(try texts(1, 2).last == "[ immediate reg 0 jump -> captured_egress ]")
    }
}

/// The in-memory installer other modules test against.
@Suite struct RulesetInMemoryInstallerTests {
    @Test func installReportsIntactThenFlushAndTamperAreSeen() throws {
        let installer = InMemoryRulesetInstaller()
        let ruleset = RulesetTextTests.example
        #expect(try installer.health(expected: ruleset) == .missing)
        try installer.install(ruleset)
        #expect(try installer.health(expected: ruleset) == .intact)
        #expect(installer.installed == ruleset)
        installer.simulateTamper()
        guard case .drifted = try installer.health(expected: ruleset) else {
            Issue.record("tamper not reported")
            return
        }
        try installer.install(ruleset)
        #expect(try installer.health(expected: ruleset) == .intact)
        installer.simulateFlush()
        #expect(try installer.health(expected: ruleset) == .missing)
        try installer.install(ruleset)
        var other = ruleset
        other.capturedUIDs.append(1003)
        guard case .drifted(let what) = try installer.health(expected: other) else {
            Issue.record("a different expected ruleset must be drift")
            return
        }
        #expect(what.contains("1003"))
        try installer.remove()
        try installer.remove()
        #expect(try installer.health(expected: ruleset) == .missing)
        #expect(installer.installCount == 3)
        #expect(installer.removeCount == 2)
    }

    @Test func installValidatesAndCanBeToldToFail() throws {
        let installer = InMemoryRulesetInstaller()
        var bad = RulesetTextTests.example
        bad.upstreamMark = 0
        #expect { try installer.install(bad) } throws: { ($0 as? CaptureError)?.code == .rulesetInvalid }
        installer.failNextInstall(with: CaptureError(code: .permission, message: "no CAP_NET_ADMIN"))
        #expect { try installer.install(RulesetTextTests.example) } throws: {
            ($0 as? CaptureError)?.code == .permission
        }
        try installer.install(RulesetTextTests.example)
        #expect(installer.installed == RulesetTextTests.example)
    }

    @Test func concurrentUseIsSafe() async throws {
        let installer = InMemoryRulesetInstaller()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<50 {
                group.addTask {
                    let ruleset = CaptureRuleset(
                        capturedUIDs: [UInt32(2000 + index)],
                        daemonUID: 999,
                        listenPort: 15001,
                        upstreamMark: 1,
                        allowDNS: true
                    )
                    try installer.install(ruleset)
                    _ = try installer.health(expected: ruleset)
                }
            }
            try await group.waitForAll()
        }
        #expect(installer.installCount == 50)
    }
}

@Suite struct RulesetErrorTests {
    @Test func errnoMapsToActionableCodes() {
        #expect(CaptureError.fromErrno(EPERM, "installing").code == .permission)
        #expect(CaptureError.fromErrno(EPERM, "installing").message.contains("CAP_NET_ADMIN"))
        #expect(CaptureError.fromErrno(ENOENT, "x").code == .notFound)
        #expect(CaptureError.fromErrno(EOPNOTSUPP, "x").code == .netlink)
        #expect(CaptureError.fromErrno(EIO, "x").code == .system)
        #expect(CaptureError.fromErrno(EPERM, "installing").description.contains("errno 1"))
    }
}
