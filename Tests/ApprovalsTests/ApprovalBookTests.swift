import Crypto
import Foundation
import Policy
import Testing

@testable import Approvals

/// People and a rule shaped like issue 4's example; time is a fixed start plus seconds.
enum Fixture {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    static func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

    static let svcCI = Identity(uid: 1001, user: "svc-ci", groups: ["svc-ci"], unit: "ci-runner.service")
    /// The requester, also (wrongly, but it happens) in the approvers' group.
    static let svcCIInDBA = Identity(uid: 1001, user: "svc-ci", groups: ["dba", "svc-ci"])
    static let alice = Identity(uid: 2001, user: "alice", groups: ["alice", "dba"])
    static let bob = Identity(uid: 2002, user: "bob", groups: ["bob", "dba"])
    static let mallory = Identity(uid: 3001, user: "mallory", groups: ["dev", "mallory"])
    static let svcReport = Identity(uid: 1002, user: "svc-report", groups: ["svc-report"])

    static func rule(
        _ name: String = "prod-writes-need-approval", required: Int = 1, timeout: Duration = .seconds(600),
        grant: Duration? = .seconds(1800)
    ) -> Applied<ApproveSpec> {
        Applied(
            rule: name,
            spec: ApproveSpec(
                match: StatementMatcher(unboundedWrites: true), approvers: IdentityMatcher([.group("dba")]),
                required: required, timeout: timeout, grant: grant))
    }

    static let delete = HeldStatement(text: "DELETE FROM orders")
    static let update = HeldStatement(text: "UPDATE orders SET state = 'void'")

    static func held(
        _ book: inout ApprovalBook, _ statement: HeldStatement = delete, rule: Applied<ApproveSpec> = Fixture.rule(),
        requester: Identity = svcCI, resource: String = "orders-db", at seconds: Double = 0
    ) -> ApprovalRequest {
        book.request(
            requester: requester, resource: resource, session: "s-1", rule: rule, statement: statement,
            recordedText: statement.text, now: at(seconds))
    }
}

@Suite struct ApprovalBookTests {
    typealias F = Fixture

    // MARK: Requests

    @Test func requestCarriesTheRuleDeadlineAndAShortID() throws {
        var book = ApprovalBook()
        let r = F.held(&book, rule: F.rule(timeout: .seconds(300)))
        #expect(r.id.hasPrefix("apr-"))
        #expect(r.id.count == 14)
        #expect(r.id.dropFirst(4).allSatisfy { "0123456789abcdefghjkmnpqrstvwxyz".contains($0) })
        #expect(r.deadline == F.at(300))
        #expect(r.required == 1)
        #expect(r.maximumGrant == .seconds(1800))
        #expect(r.statementDigest == book.digest(of: F.delete))
        #expect(r.statementDigest.count == 64)
        #expect(book.pending(now: F.at(1)).map(\.request) == [r])
    }

    @Test func oneApproverCompletesARuleThatNeedsOne() throws {
        var book = ApprovalBook()
        let r = F.held(&book)
        let events = try book.approve(
            r.id, approver: F.alice, reason: " looks right ", grant: nil, digest: r.statementDigest, now: F.at(30))
        #expect(events == [.approved(r, by: F.alice, reason: "looks right", complete: true)])
        #expect(book.pending(now: F.at(31)).isEmpty)
        #expect(book.grants(now: F.at(31)).isEmpty)
    }

    @Test func idsAreAcceptedInUpperCase() throws {
        var book = ApprovalBook()
        let r = F.held(&book)
        let events = try book.approve(
            r.id.uppercased(), approver: F.alice, reason: nil, grant: nil, digest: r.statementDigest.uppercased(),
            now: F.at(1))
        #expect(events.count == 1)
    }

    @Test func twoApproverRuleNeedsTwoDistinctApprovers() throws {
        var book = ApprovalBook()
        let r = F.held(&book, rule: F.rule(required: 2))
        let first = try book.approve(
            r.id, approver: F.alice, reason: nil, grant: nil, digest: r.statementDigest, now: F.at(10))
        #expect(first == [.approved(r, by: F.alice, reason: nil, complete: false)])

        // Same uid again (even under another name lookup) does not count twice.
        let aliceAgain = Identity(uid: 2001, user: "alice", groups: ["dba"])
        let e = #expect(throws: ApprovalError.self) {
            try book.approve(
                r.id, approver: aliceAgain, reason: nil, grant: nil, digest: r.statementDigest, now: F.at(11))
        }
        #expect(e?.code == .alreadyApproved)
        let listed = try #require(book.pending(now: F.at(12)).first)
        #expect(listed.approvals.map(\.approver) == [F.alice])

        let second = try book.approve(
            r.id, approver: F.bob, reason: "ok", grant: nil, digest: r.statementDigest, now: F.at(20))
        #expect(second == [.approved(r, by: F.bob, reason: "ok", complete: true)])
        #expect(book.pending(now: F.at(21)).isEmpty)
    }

    @Test func requesterCannotApproveOwnRequestEvenInTheApproversGroup() throws {
        var book = ApprovalBook()
        let r = F.held(&book, requester: F.svcCIInDBA)
        let e = #expect(throws: ApprovalError.self) {
            try book.approve(
                r.id, approver: F.svcCIInDBA, reason: nil, grant: nil, digest: r.statementDigest, now: F.at(1))
        }
        #expect(e?.code == .ownRequest)
        #expect(e?.message == "svc-ci cannot approve their own request \(r.id)")
        let d = #expect(throws: ApprovalError.self) {
            try book.deny(r.id, approver: F.svcCIInDBA, reason: "never mind", now: F.at(1))
        }
        #expect(d?.code == .ownRequest)
        #expect(book.pending(now: F.at(2)).count == 1)
    }

    @Test func approverOutsideTheGroupIsRefused() throws {
        var book = ApprovalBook()
        let r = F.held(&book)
        let e = #expect(throws: ApprovalError.self) {
            try book.approve(
                r.id, approver: F.mallory, reason: nil, grant: nil, digest: r.statementDigest, now: F.at(1))
        }
        #expect(e?.code == .notAnApprover)
        #expect(e?.message.contains("group:dba") == true)
        let d = #expect(throws: ApprovalError.self) {
            try book.deny(r.id, approver: F.mallory, reason: "no", now: F.at(1))
        }
        #expect(d?.code == .notAnApprover)
        #expect(book.pending(now: F.at(2)).count == 1)
    }

    @Test func denialEndsTheRequestAndLaterApprovalIsRefused() throws {
        var book = ApprovalBook()
        let r = F.held(&book, rule: F.rule(required: 2))
        _ = try book.approve(r.id, approver: F.alice, reason: nil, grant: nil, digest: r.statementDigest, now: F.at(5))
        let events = try book.deny(r.id, approver: F.bob, reason: "not during the sale", now: F.at(6))
        #expect(events == [.denied(r, by: F.bob, reason: "not during the sale")])
        #expect(book.pending(now: F.at(7)).isEmpty)
        let e = #expect(throws: ApprovalError.self) {
            try book.approve(r.id, approver: F.bob, reason: nil, grant: nil, digest: r.statementDigest, now: F.at(8))
        }
        #expect(e?.code == .alreadyFinished)
        #expect(e?.message == "\(r.id) was already denied by bob")
    }

    @Test func denialNeedsAReason() throws {
        var book = ApprovalBook()
        let r = F.held(&book)
        let e = #expect(throws: ApprovalError.self) {
            try book.deny(r.id, approver: F.alice, reason: "  \n", now: F.at(1))
        }
        #expect(e?.code == .reasonRequired)
        #expect(book.pending(now: F.at(2)).count == 1)
    }

    @Test func unknownRequestIsRefused() throws {
        var book = ApprovalBook()
        let e = #expect(throws: ApprovalError.self) {
            try book.approve("apr-0000000000", approver: F.alice, reason: nil, grant: nil, digest: "00", now: F.at(1))
        }
        #expect(e?.code == .unknownRequest)
    }

    @Test func anApproverWhoApprovedMayStillDeny() throws {
        var book = ApprovalBook()
        let r = F.held(&book, rule: F.rule(required: 2))
        _ = try book.approve(r.id, approver: F.alice, reason: nil, grant: nil, digest: r.statementDigest, now: F.at(1))
        #expect(
            try book.deny(r.id, approver: F.alice, reason: "wrong table", now: F.at(2)) == [
                .denied(r, by: F.alice, reason: "wrong table")
            ])
        #expect(book.pending(now: F.at(3)).isEmpty)
    }

    @Test func finishedRequestsAreRememberedOnlyForAWhile() throws {
        var book = ApprovalBook()
        let first = F.held(&book)
        _ = book.withdraw(first.id, now: F.at(0))
        for _ in 0..<ApprovalBook.finishedMemory {
            let r = F.held(&book)
            _ = book.withdraw(r.id, now: F.at(0))
        }
        let e = #expect(throws: ApprovalError.self) {
            try book.approve(
                first.id, approver: F.alice, reason: nil, grant: nil, digest: first.statementDigest, now: F.at(1))
        }
        #expect(e?.code == .unknownRequest)
    }

    // MARK: Time

    @Test func requestTimesOutAtItsDeadline() throws {
        var book = ApprovalBook()
        let r = F.held(&book, rule: F.rule(timeout: .seconds(60)))
        #expect(book.expire(now: F.at(59)).isEmpty)
        // Past the deadline but before the sweep: a decision is refused all the same.
        let e = #expect(throws: ApprovalError.self) {
            try book.approve(r.id, approver: F.alice, reason: nil, grant: nil, digest: r.statementDigest, now: F.at(60))
        }
        #expect(e?.code == .timedOut)
        #expect(book.expire(now: F.at(60)) == [.timedOut(r)])
        #expect(book.expire(now: F.at(61)).isEmpty)
        #expect(book.pending(now: F.at(61)).isEmpty)
        let late = #expect(throws: ApprovalError.self) {
            try book.approve(r.id, approver: F.alice, reason: nil, grant: nil, digest: r.statementDigest, now: F.at(62))
        }
        #expect(late?.code == .alreadyFinished)
    }

    @Test func withdrawEndsTheRequestOnce() throws {
        var book = ApprovalBook()
        let r = F.held(&book)
        #expect(book.withdraw(r.id, now: F.at(3)) == [.withdrawn(r)])
        #expect(book.withdraw(r.id, now: F.at(4)).isEmpty)
        #expect(book.pending(now: F.at(4)).isEmpty)
        let e = #expect(throws: ApprovalError.self) {
            try book.approve(r.id, approver: F.alice, reason: nil, grant: nil, digest: r.statementDigest, now: F.at(5))
        }
        #expect(e?.code == .alreadyFinished)
        #expect(book.expire(now: F.at(10_000)).isEmpty)
    }

    // MARK: Binding to the statement

    @Test func approvalOfOneStatementDoesNotReleaseAnother() throws {
        var book = ApprovalBook()
        let del = F.held(&book, F.delete)
        let upd = F.held(&book, F.update)
        #expect(del.statementDigest != upd.statementDigest)
        let e = #expect(throws: ApprovalError.self) {
            try book.approve(
                upd.id, approver: F.alice, reason: nil, grant: nil, digest: del.statementDigest, now: F.at(1))
        }
        #expect(e?.code == .digestMismatch)
        #expect(book.pending(now: F.at(2)).count == 2)
        let ok = try book.approve(
            del.id, approver: F.alice, reason: nil, grant: nil, digest: del.statementDigest, now: F.at(3))
        #expect(ok == [.approved(del, by: F.alice, reason: nil, complete: true)])
        #expect(book.pending(now: F.at(4)).map(\.request) == [upd])
    }

    @Test func digestCoversParametersAndTheirFormat() {
        let book = ApprovalBook(digestKey: SymmetricKey(size: .bits256))
        let text = "DELETE FROM orders WHERE id = $1"
        let a = book.digest(of: HeldStatement(text: text, parameters: [.text(Array("1".utf8))]))
        let b = book.digest(of: HeldStatement(text: text, parameters: [.text(Array("2".utf8))]))
        let c = book.digest(of: HeldStatement(text: text, parameters: [.binary(Array("1".utf8))]))
        let d = book.digest(of: HeldStatement(text: text, parameters: [.null]))
        let e = book.digest(of: HeldStatement(text: text, parameters: []))
        #expect(Set([a, b, c, d, e]).count == 5)
        // Length prefixes: moving bytes between parts changes the digest.
        let split = book.digest(of: HeldStatement(text: "x", parameters: [.text([0x61]), .text([0x62])]))
        let joined = book.digest(of: HeldStatement(text: "x", parameters: [.text([0x61, 0x62])]))
        #expect(split != joined)
        #expect(a == book.digest(of: HeldStatement(text: text, parameters: [.text(Array("1".utf8))])))
    }

    @Test func digestIsKeyed() {
        let one = ApprovalBook(digestKey: SymmetricKey(data: [UInt8](repeating: 1, count: 32)))
        let two = ApprovalBook(digestKey: SymmetricKey(data: [UInt8](repeating: 2, count: 32)))
        #expect(one.digest(of: F.delete) != two.digest(of: F.delete))
        let plain = SHA256.hash(data: F.delete.encoded()).map { String(format: "%02x", $0) }.joined()
        #expect(one.digest(of: F.delete) != plain)
    }

    // MARK: Grants

    @Test func grantWindowLetsLaterMatchingStatementsRunUntilItExpires() throws {
        var book = ApprovalBook()
        let r = F.held(&book)
        let events = try book.approve(
            r.id, approver: F.alice, reason: "release week", grant: .seconds(900), digest: r.statementDigest,
            now: F.at(100))
        #expect(events.count == 2)
        guard case .grantOpened(let g) = events.last else {
            Issue.record("no grant opened: \(events)")
            return
        }
        #expect(g.id.hasPrefix("grt-"))
        #expect(g.holder == F.svcCI)
        #expect(g.rule == "prod-writes-need-approval")
        #expect(g.resource == "orders-db")
        #expect(g.requestID == r.id)
        #expect(g.approvedBy == [F.alice])
        #expect(g.until == F.at(1000))

        // Same uid (a different process of svc-ci), same rule, same resource: runs.
        let otherProcess = Identity(uid: 1001, user: "svc-ci", groups: ["svc-ci"], pid: 4242)
        let used = book.useGrant(identity: otherProcess, rule: g.rule, resource: "orders-db", now: F.at(200))
        guard case .grantUsed(let after)? = used else {
            Issue.record("grant not used: \(String(describing: used))")
            return
        }
        #expect(after.id == g.id)
        #expect(after.uses == 1)
        if case .grantUsed(let again)? = book.useGrant(
            identity: F.svcCI, rule: g.rule, resource: "orders-db", now: F.at(300))
        {
            #expect(again.uses == 2)
        } else {
            Issue.record("second use refused")
        }

        // Another identity, rule or resource: a new request.
        #expect(book.useGrant(identity: F.svcReport, rule: g.rule, resource: "orders-db", now: F.at(300)) == nil)
        #expect(
            book.useGrant(identity: F.svcCI, rule: "ddl-needs-approval", resource: "orders-db", now: F.at(300)) == nil)
        #expect(book.useGrant(identity: F.svcCI, rule: g.rule, resource: "billing-db", now: F.at(300)) == nil)

        // At its end: not usable, even before the sweep; then the sweep reports it once.
        #expect(book.grant(for: F.svcCI, rule: g.rule, resource: "orders-db", now: F.at(999)) != nil)
        #expect(book.useGrant(identity: F.svcCI, rule: g.rule, resource: "orders-db", now: F.at(1000)) == nil)
        let expired = book.expire(now: F.at(1000))
        #expect(expired.count == 1)
        if case .grantExpired(let x)? = expired.first {
            #expect(x.id == g.id)
            #expect(x.uses == 2)
        } else {
            Issue.record("no grantExpired: \(expired)")
        }
        #expect(book.grants(now: F.at(1000)).isEmpty)
        #expect(book.expire(now: F.at(1001)).isEmpty)
    }

    @Test func grantLongerThanTheRuleAllowsIsRefused() throws {
        var book = ApprovalBook()
        let r = F.held(&book, rule: F.rule(grant: .seconds(1800)))
        let e = #expect(throws: ApprovalError.self) {
            try book.approve(
                r.id, approver: F.alice, reason: nil, grant: .seconds(3600), digest: r.statementDigest, now: F.at(1))
        }
        #expect(e?.code == .grantTooLong)
        #expect(e?.message == "rule prod-writes-need-approval allows grant windows of at most 30m, not 1h")
        let zero = #expect(throws: ApprovalError.self) {
            try book.approve(
                r.id, approver: F.alice, reason: nil, grant: .zero, digest: r.statementDigest, now: F.at(1))
        }
        #expect(zero?.code == .invalidGrant)
        // Exactly the maximum is fine.
        let ok = try book.approve(
            r.id, approver: F.alice, reason: nil, grant: .seconds(1800), digest: r.statementDigest, now: F.at(2))
        #expect(ok.count == 2)
    }

    @Test func grantOnARuleWithoutGrantIsRefused() throws {
        var book = ApprovalBook()
        let r = F.held(&book, rule: F.rule(grant: nil))
        let e = #expect(throws: ApprovalError.self) {
            try book.approve(
                r.id, approver: F.alice, reason: nil, grant: .seconds(60), digest: r.statementDigest, now: F.at(1))
        }
        #expect(e?.code == .grantNotAllowed)
        #expect(book.pending(now: F.at(1)).count == 1)
    }

    @Test func withTwoApproversTheWindowIsTheShortestBothAgreedTo() throws {
        var book = ApprovalBook()
        let r = F.held(&book, rule: F.rule(required: 2))
        _ = try book.approve(
            r.id, approver: F.alice, reason: nil, grant: .seconds(1800), digest: r.statementDigest, now: F.at(0))
        let events = try book.approve(
            r.id, approver: F.bob, reason: nil, grant: .seconds(600), digest: r.statementDigest, now: F.at(10))
        guard case .grantOpened(let g)? = events.last else {
            Issue.record("no grant: \(events)")
            return
        }
        #expect(g.until == F.at(610))
        #expect(g.approvedBy == [F.alice, F.bob])

        // One approver without --grant: no window at all.
        let r2 = F.held(&book, rule: F.rule(required: 2), at: 20)
        _ = try book.approve(
            r2.id, approver: F.alice, reason: nil, grant: .seconds(1800), digest: r2.statementDigest, now: F.at(20))
        let e2 = try book.approve(
            r2.id, approver: F.bob, reason: nil, grant: nil, digest: r2.statementDigest, now: F.at(21))
        #expect(e2 == [.approved(r2, by: F.bob, reason: nil, complete: true)])
        #expect(book.grants(now: F.at(22)).map(\.grant.id) == [g.id])
    }

    @Test func revokeEndsAWindowEarly() throws {
        var book = ApprovalBook()
        let r = F.held(&book)
        let events = try book.approve(
            r.id, approver: F.alice, reason: nil, grant: .seconds(900), digest: r.statementDigest, now: F.at(0))
        guard case .grantOpened(let g)? = events.last else {
            Issue.record("no grant: \(events)")
            return
        }
        let e = #expect(throws: ApprovalError.self) { try book.revokeGrant(g.id, by: F.mallory, now: F.at(10)) }
        #expect(e?.code == .notAnApprover)
        #expect(try book.revokeGrant(g.id, by: F.bob, now: F.at(10)) == [.grantRevoked(g, by: F.bob)])
        #expect(book.useGrant(identity: F.svcCI, rule: g.rule, resource: "orders-db", now: F.at(11)) == nil)
        #expect(book.grants(now: F.at(11)).isEmpty)
        let again = #expect(throws: ApprovalError.self) { try book.revokeGrant(g.id, by: F.bob, now: F.at(12)) }
        #expect(again?.code == .unknownGrant)
        #expect(book.expire(now: F.at(10_000)).isEmpty)
    }

    @Test func revokingAWindowPastItsEndReportsItExpired() throws {
        var book = ApprovalBook()
        let r = F.held(&book)
        let events = try book.approve(
            r.id, approver: F.alice, reason: nil, grant: .seconds(60), digest: r.statementDigest, now: F.at(0))
        guard case .grantOpened(let g)? = events.last else {
            Issue.record("no grant: \(events)")
            return
        }
        #expect(try book.revokeGrant(g.id, by: F.alice, now: F.at(61)) == [.grantExpired(g)])
        #expect(book.expire(now: F.at(62)).isEmpty)
    }

    @Test func holderMayGiveUpTheirWindow() throws {
        var book = ApprovalBook()
        let r = F.held(&book)
        let events = try book.approve(
            r.id, approver: F.alice, reason: nil, grant: .seconds(900), digest: r.statementDigest, now: F.at(0))
        guard case .grantOpened(let g)? = events.last else {
            Issue.record("no grant: \(events)")
            return
        }
        #expect(try book.revokeGrant(g.id, by: F.svcCI, now: F.at(5)) == [.grantRevoked(g, by: F.svcCI)])
    }

    // MARK: Listings

    @Test func listingShowsAgeAndTimeLeft() throws {
        var book = ApprovalBook()
        let first = F.held(&book, F.delete, rule: F.rule(timeout: .seconds(600)), at: 0)
        let second = F.held(&book, F.update, rule: F.rule(required: 2, timeout: .seconds(120)), at: 30)
        _ = try book.approve(
            second.id, approver: F.bob, reason: "fine", grant: nil, digest: second.statementDigest, now: F.at(40))
        let list = book.pending(now: F.at(90))
        #expect(list.map(\.request.id) == [first.id, second.id])
        #expect(list[0].age == .seconds(90))
        #expect(list[0].timeLeft == .seconds(510))
        #expect(list[1].age == .seconds(60))
        #expect(list[1].timeLeft == .seconds(60))
        #expect(list[1].approvals.map(\.approver) == [F.bob])
        #expect(list[1].approvals.first?.reason == "fine")
        // Past a deadline before the sweep: time left is zero, never negative.
        #expect(book.pending(now: F.at(200)).last?.timeLeft == .zero)
    }

    @Test func grantListingShowsTimeLeft() throws {
        var book = ApprovalBook()
        let r = F.held(&book)
        _ = try book.approve(
            r.id, approver: F.alice, reason: nil, grant: .seconds(900), digest: r.statementDigest, now: F.at(0))
        let list = book.grants(now: F.at(300))
        #expect(list.count == 1)
        #expect(list.first?.timeLeft == .seconds(600))
        #expect(list.first?.grant.holder == F.svcCI)
    }

    @Test func durationsAreWrittenLikeThePolicyFile() {
        #expect(ApprovalBook.describe(.seconds(1800)) == "30m")
        #expect(ApprovalBook.describe(.seconds(5400)) == "1h30m")
        #expect(ApprovalBook.describe(.seconds(45)) == "45s")
        #expect(ApprovalBook.describe(.zero) == "0s")
    }
}
