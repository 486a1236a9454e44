import Foundation
import Testing

@testable import Control

/// The control socket's JSON is a documented interface (`--json` output uses the same names): the
/// field names are snake_case and stable, and every message survives a round trip.
@Suite struct MessagesTests {
    static func json<T: Encodable>(_ value: T) throws -> [String: Any] {
        let data = try JSONEncoder().encode(value)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test func approvalRequestsUseTheDocumentedNames() throws {
        let request = ControlRequest(
            command: .approvalsApprove,
            approval: ApprovalArgs(id: "apr-0123456789", digest: "ab", reason: "ok", grant: "30m", waitSeconds: 5))
        let o = try Self.json(request)
        #expect(o["command"] as? String == "approvals.approve")
        let args = try #require(o["approval"] as? [String: Any])
        #expect(Set(args.keys) == ["id", "digest", "reason", "grant", "wait_seconds"])
        let back = try JSONDecoder().decode(ControlRequest.self, from: JSONEncoder().encode(request))
        #expect(back == request)
    }

    @Test func approvalListingsUseTheDocumentedNames() throws {
        let info = ApprovalInfo(
            id: "apr-0123456789",
            requester: RequesterInfo(uid: 1001, user: "svc-ci", unit: nil, pid: 7, executable: nil),
            resource: "orders-db", session: "s", rule: "r", statement: "DELETE", digest: "ab", approvers: "group:dba",
            required: 2, approvedBy: ["dana"], createdAt: "t0", deadline: "t1", ageSeconds: 3, secondsLeft: 57,
            maximumGrantSeconds: 1800, mayDecide: true)
        let o = try Self.json(info)
        for key in ["approved_by", "created_at", "age_seconds", "seconds_left", "maximum_grant_seconds", "may_decide"] {
            #expect(o[key] != nil, "missing \(key)")
        }
        #expect(try JSONDecoder().decode(ApprovalInfo.self, from: JSONEncoder().encode(info)) == info)
        let grant = GrantInfo(
            id: "grt-0123456789", holder: info.requester, rule: "r", resource: "orders-db", request: info.id,
            approvedBy: ["dana"], openedAt: "t0", until: "t1", secondsLeft: 10, uses: 2)
        #expect(Set(try Self.json(grant).keys).isSuperset(of: ["approved_by", "opened_at", "seconds_left", "uses"]))
    }

    @Test func approverCommandsNeedNoSocketAccessLevel() {
        // Approvers are whoever the rules name; the daemon checks each decision against them.
        for command in ControlCommand.allCases where command.rawValue.hasPrefix("approvals.") {
            #expect(command.requiredAccess == .none)
        }
        #expect(ControlCommand.reload.requiredAccess == .admin)
    }
}
