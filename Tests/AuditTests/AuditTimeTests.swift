import Foundation
import Testing

@testable import Audit

@Suite struct AuditTimeTests {
    @Test func formatsRFC3339UTCWithMicroseconds() {
        #expect(AuditTime.format(micros: 0) == "1970-01-01T00:00:00.000000Z")
        #expect(AuditTime.format(micros: 1_795_290_000_123_456) == "2026-11-21T19:40:00.123456Z")
        #expect(AuditTime.format(micros: 951_782_400_000_001) == "2000-02-29T00:00:00.000001Z")
        #expect(AuditTime.format(micros: -1) == "1969-12-31T23:59:59.999999Z")
        #expect(AuditTime.format(micros: Int64.max) == "9999-12-31T23:59:59.999999Z")
    }

    @Test func parsesRFC3339() throws {
        let base = try #require(AuditLog.parseTime("2026-11-21T19:40:00.123456Z"))
        #expect(AuditTime.micros(base) == 1_795_290_000_123_456)
        #expect(AuditLog.parseTime("2026-11-21T21:40:00.123456+02:00") == base)
        #expect(AuditLog.parseTime("2026-11-21t19:40:00.123456789z") == base)
        #expect(AuditLog.parseTime("2026-11-21 19:40:00.1234564Z") == base)
        #expect(AuditTime.micros(try #require(AuditLog.parseTime("2026-11-21T19:40:00Z"))) == 1_795_290_000_000_000)
        #expect(
            AuditTime.micros(try #require(AuditLog.parseTime("2026-11-21T19:40:00.5-00:30"))) == 1_795_291_800_500_000
        )
        #expect(AuditTime.micros(try #require(AuditLog.parseTime("2026-11-21"))) == 1_795_219_200_000_000)
    }

    @Test(arguments: [
        "", "yesterday", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-11-21T24:00:00Z",
        "2026-11-21T19:40:00", "2026-11-21T19:40:00.Z", "2026-11-21T19:40:00Z junk", "15x", "m", "-5m",
    ])
    func rejectsWhatIsNotATime(_ text: String) {
        #expect(AuditLog.parseTime(text) == nil)
    }

    @Test func relativeFormsMeanThatLongAgo() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(AuditTime.parse("15m", now: now) == now.addingTimeInterval(-900))
        #expect(AuditTime.parse("2h", now: now) == now.addingTimeInterval(-7200))
        #expect(AuditTime.parse("7d", now: now) == now.addingTimeInterval(-604_800))
        #expect(AuditTime.parse("90s", now: now) == now.addingTimeInterval(-90))
        #expect(AuditTime.parse("1w", now: now) == now.addingTimeInterval(-604_800))
        #expect(AuditTime.parse("now", now: now) == now)
        let live = try #require(AuditLog.parseTime("15m"))
        #expect(abs(live.timeIntervalSinceNow + 900) < 5)
    }

    @Test func formatAndParseRoundTrip() {
        for micros: Int64 in [0, 1, 999_999, 1_795_290_000_123_456, 4_102_444_800_000_000, -86_400_000_000] {
            let text = AuditTime.format(micros: micros)
            #expect(AuditTime.parse(text, now: Date()).map(AuditTime.micros) == micros)
        }
    }
}
