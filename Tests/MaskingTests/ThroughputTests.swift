import NIOCore
import Testing

@testable import Masking

/// Column values shaped like a typical result set: ids, names, dates, timestamps, amounts,
/// statuses, IP addresses, version strings and free-text comments, with about 1% of the values
/// holding something a detector finds. Deterministic (a fixed LCG), so runs compare.
func realisticValues(totalBytes: Int) -> [[UInt8]] {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    func next(_ bound: Int) -> Int {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Int((state >> 33) % UInt64(bound))
    }
    let names = ["Alice Martin", "Bob Nguyen", "Zoë Müller", "José Álvarez", "Li Wei", "Fatima Zahra", "Ola Nordmann"]
    let statuses = ["shipped", "pending", "cancelled", "refunded", "on_hold"]
    let words = [
        "customer", "asked", "about", "the", "delivery", "window", "and", "invoice", "total", "was", "corrected",
        "after", "review", "by", "support", "team", "for", "order", "réclamation", "größe", "v2.14.3", "retry",
    ]
    let sensitive = [
        "4111 1111 1111 1111", "jane.doe@example.com", "123-45-6789", "+44 20 7946 0958", "(555) 123-4567",
        "DE89370400440532013000", "AKIAIOSFODNN7EXAMPLE", "password=hunter2",
    ]
    var values: [[UInt8]] = []
    var total = 0
    while total < totalBytes {
        var value: String
        switch next(8) {
        case 0: value = String(next(10_000_000))
        case 1: value = names[next(names.count)]
        case 2: value = "2026-\(10 + next(3))-\(10 + next(18)) \(10 + next(13)):\(10 + next(49)):\(10 + next(49))+00"
        case 3: value = "\(next(5000)).\(10 + next(89))"
        case 4: value = statuses[next(statuses.count)]
        case 5: value = "198.18.\(next(255)).\(next(255))"
        default:
            value = (0..<(6 + next(20))).map { _ in words[next(words.count)] }.joined(separator: " ")
        }
        if next(100) == 0 { value += " " + sensitive[next(sensitive.count)] }
        let bytes = Array(value.utf8)
        total += bytes.count
        values.append(bytes)
    }
    return values
}

@Suite struct ThroughputTests {
    /// Prints detector throughput with all detectors on, per core (one thread). No timing
    /// assertion: the machine is shared. Debug builds are far slower than release; the figure
    /// for docs/benchmarks.md comes from a release build.
    @Test func measuresScanThroughputPerCore() {
        let values = realisticValues(totalBytes: 4 << 20)
        let bytes = values.reduce(0) { $0 + $1.count }
        let masker = Masker(hashKey: testKey)
        var stats = MaskStats()
        let start = ContinuousClock.now
        var rewritten = 0
        for value in values {
            let outcome = value.withUnsafeBytes {
                masker.scan($0, detectors: .all, method: .partial, stats: &stats)
            }
            if outcome != nil { rewritten += 1 }
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        #if DEBUG
        let configuration = "debug build"
        #else
        let configuration = "release build"
        #endif
        print(
            "masking throughput (\(configuration)): \(values.count) values, \(bytes) bytes, \(rewritten) rewritten,"
                + " \(stats.totalMatches) matches, \(Int(Double(bytes) / seconds / 1e6)) MB/s per core"
        )
        #expect(rewritten > 0 && rewritten < values.count / 50)
        #expect(stats.valuesScanned == values.count)
    }
}
