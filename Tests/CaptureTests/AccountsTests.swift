import Testing

@testable import Capture

@Suite struct AccountsTests {
    // MARK: The host's databases (/etc/passwd and /etc/group of the test machine)

    @Test func systemRootUserIsUIDZeroInGroupRoot() throws {
        let accounts = SystemAccounts()
        let root = try #require(accounts.user(uid: 0))
        #expect(root.name == "root")
        #expect(root.gid == 0)
        #expect(accounts.uid(ofUser: "root") == 0)
        #expect(accounts.groupNames(ofUser: "root", primaryGID: 0).contains("root"))
    }

    @Test func systemGroupRootHasMemberUIDZero() throws {
        let members = try #require(SystemAccounts().memberUIDs(ofGroup: "root"))
        #expect(members.contains(0))
    }

    @Test func systemPrimaryGroupMembersAreEnumerated() throws {
        // nobody's primary group is nogroup (65534) on Debian, and nogroup lists no members.
        let accounts = SystemAccounts()
        let nobody = try #require(accounts.user(uid: 65534))
        #expect(nobody.name == "nobody")
        let members = try #require(accounts.memberUIDs(ofGroup: "nogroup"))
        #expect(members.contains(65534))
    }

    @Test func systemUnknownNamesAreNil() {
        let accounts = SystemAccounts()
        #expect(accounts.user(uid: 3_999_999_999) == nil)
        #expect(accounts.uid(ofUser: "no-such-user-interlock") == nil)
        #expect(accounts.memberUIDs(ofGroup: "no-such-group-interlock") == nil)
        #expect(accounts.groupNames(ofUser: "no-such-user-interlock", primaryGID: 0) == ["root"])
    }

    // MARK: In memory

    static let accounts = InMemoryAccounts(
        users: [
            .init(name: "svc-ci", uid: 1001, gid: 1001),
            .init(name: "svc-etl", uid: 1002, gid: 1002),
            .init(name: "alice", uid: 1100, gid: 1001),
        ],
        groups: [
            .init(name: "svc-ci", gid: 1001),
            .init(name: "svc-etl", gid: 1002),
            .init(name: "bots", gid: 2000, members: ["svc-ci", "svc-etl"]),
            .init(name: "empty", gid: 2001),
        ]
    )

    @Test func inMemoryLookups() {
        let a = Self.accounts
        #expect(a.user(uid: 1001)?.name == "svc-ci")
        #expect(a.user(uid: 1001)?.gid == 1001)
        #expect(a.user(uid: 5) == nil)
        #expect(a.uid(ofUser: "svc-etl") == 1002)
        #expect(a.uid(ofUser: "bob") == nil)
    }

    @Test func inMemoryGroupsIncludePrimaryAndSupplementarySorted() {
        #expect(Self.accounts.groupNames(ofUser: "svc-ci", primaryGID: 1001) == ["bots", "svc-ci"])
        #expect(Self.accounts.groupNames(ofUser: "alice", primaryGID: 1001) == ["svc-ci"])
    }

    @Test func inMemoryMembersArePrimaryPlusListed() {
        #expect(Self.accounts.memberUIDs(ofGroup: "svc-ci") == [1001, 1100])
        #expect(Self.accounts.memberUIDs(ofGroup: "bots") == [1001, 1002])
        #expect(Self.accounts.memberUIDs(ofGroup: "empty") == [])
        #expect(Self.accounts.memberUIDs(ofGroup: "nope") == nil)
    }
}
