// interlock-bench: content-detector throughput per core (issue 3, "Speed").
//
// Builds corpora in memory (deterministic, a fixed LCG), runs `Masker.scan` with every detector over each value on one
// thread for a bounded time, and prints one JSON object: MB/s and values/s per case, and the matches found next to the
// number planted (a throughput figure of a scan that found nothing it should have is worthless).
//
//   interlock-bench [--seconds S] [--mib M]
//
// Run by bench/bench.py from a release build (.build-release/release/interlock-bench).
import Foundation
import Masking

/// One corpus: values laid out back to back in `bytes`, each value a range.
struct Corpus {
    var name: String
    var description: String
    var detectors: DetectorSet
    var method: MaskMethod
    var bytes: [UInt8] = []
    var ranges: [Range<Int>] = []
    /// Matches the generator put in (nil: not known, for corpora with none planted on purpose it is 0).
    var planted: Int = 0

    mutating func append(_ value: String) {
        let start = self.bytes.count
        self.bytes.append(contentsOf: value.utf8)
        self.ranges.append(start..<self.bytes.count)
    }
}

struct Generator {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15

    mutating func next(_ bound: Int) -> Int {
        self.state = self.state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Int((self.state >> 33) % UInt64(bound))
    }

    mutating func pick<T>(_ items: [T]) -> T { items[self.next(items.count)] }
}

let firstNames = ["Alice", "Bob", "Zoë", "José", "Li", "Fatima", "Ola", "Chidi", "Mei", "Jan", "Priya", "Søren"]
let lastNames = ["Martin", "Nguyen", "Müller", "Álvarez", "Wei", "Zahra", "Nordmann", "Okafor", "Kowalski", "Dubois"]
let streets = ["Main Street", "Rue de la Paix", "Königsallee", "Calle Mayor", "Baker Street", "Via Roma", "Elm Road"]
let cities = ["Springfield", "Lyon", "Düsseldorf", "Madrid", "London", "Milano", "Portland", "Kraków"]
let statuses = ["shipped", "pending", "cancelled", "refunded", "on_hold"]
let words = [
    "customer", "asked", "about", "the", "delivery", "window", "and", "invoice", "total", "was", "corrected", "after",
    "review", "by", "support", "team", "for", "order", "réclamation", "größe", "v2.14.3", "retry", "ticket", "parcel",
]
/// One detector match each (checked by the unit tests' fixtures: Luhn-valid cards, mod-97-valid IBANs).
let sensitive = [
    "4111 1111 1111 1111", "5500 0055 5555 5559", "jane.doe@example.com", "ops+alerts@mail.example.org", "123-45-6789",
    "+44 20 7946 0958", "(555) 123-4567", "DE89370400440532013000", "GB82WEST12345698765432", "AKIAIOSFODNN7EXAMPLE",
    "password=hunter2",
]

/// Column values of a typical result set (ids, names, addresses, dates, amounts, statuses, IPs, free text), with a
/// sensitive value appended to `percent` % of them.
func mixed(name: String, percent: Int, method: MaskMethod, megabytes: Int) -> Corpus {
    var c = Corpus(
        name: name,
        description: "mixed column values (ids, names, addresses, dates, amounts, statuses, IPs, comments), "
            + "\(percent) % with one e-mail/card/IBAN/SSN/phone/secret",
        detectors: .all, method: method)
    var g = Generator()
    while c.bytes.count < megabytes << 20 {
        var value: String
        switch g.next(9) {
        case 0: value = String(g.next(10_000_000))
        case 1: value = "\(g.pick(firstNames)) \(g.pick(lastNames))"
        case 2: value = "\(1 + g.next(300)) \(g.pick(streets)), \(10000 + g.next(89999)) \(g.pick(cities))"
        case 3:
            value =
                "2026-\(10 + g.next(3))-\(10 + g.next(18)) \(10 + g.next(13)):\(10 + g.next(49)):\(10 + g.next(49))+00"
        case 4: value = "\(g.next(5000)).\(10 + g.next(89))"
        case 5: value = g.pick(statuses)
        case 6: value = "198.18.\(g.next(255)).\(g.next(255))"
        default: value = (0..<(6 + g.next(20))).map { _ in g.pick(words) }.joined(separator: " ")
        }
        if g.next(100) < percent {
            value += " " + g.pick(sensitive)
            c.planted += 1
        }
        c.append(value)
    }
    return c
}

/// Lower-case words and spaces only: the common byte's cost, nothing to find.
func asciiText(megabytes: Int) -> Corpus {
    var c = Corpus(
        name: "ascii_text", description: "plain ASCII prose (lower-case words, 40–200 bytes per value), no match",
        detectors: .all, method: .partial)
    var g = Generator()
    let ascii = words.filter { $0.utf8.allSatisfy { $0 < 0x80 } }
    while c.bytes.count < megabytes << 20 {
        c.append((0..<(8 + g.next(25))).map { _ in g.pick(ascii) }.joined(separator: " "))
    }
    return c
}

/// Digit-only values of 6–12 digits (ids, amounts in cents): every value starts a numeric attempt, none matches
/// (too short for a card, no SSN or phone punctuation).
func digits(megabytes: Int) -> Corpus {
    var c = Corpus(
        name: "digits", description: "digit-only values of 6–12 digits (ids), every one a numeric attempt, no match",
        detectors: .all, method: .partial)
    var g = Generator()
    while c.bytes.count < megabytes << 20 {
        let n = 6 + g.next(7)
        var s = String(1 + g.next(9))
        for _ in 1..<n { s += String(g.next(10)) }
        c.append(s)
    }
    return c
}

/// The fields of the COPY benchmark's table (`id`, `user<id>@example.com`, md5 hex), each one a value as the gateway
/// scans COPY text, with the e-mail detector only (the COPY policy's rule).
func copyFields(megabytes: Int) -> Corpus {
    var c = Corpus(
        name: "copy_bench_fields",
        description: "COPY text fields of copy_bench (id, user<n>@example.com, md5 hex), e-mail detector, partial",
        detectors: .email, method: .partial)
    var g = Generator()
    var id = 1
    while c.bytes.count < megabytes << 20 {
        c.append(String(id))
        c.append("user\(id)@example.com")
        c.planted += 1
        var hex = ""
        for _ in 0..<32 { hex.append(Character(String(g.next(16), radix: 16))) }
        c.append(hex)
        id += 1
    }
    return c
}

struct Result {
    var corpus: Corpus
    var passes = 0
    var seconds = 0.0
    var matches = 0
    var rewritten = 0
    var valuesScanned = 0
}

func run(_ corpus: Corpus, seconds: Double, maxPasses: Int) -> Result {
    let masker = Masker(hashKey: [UInt8](repeating: 7, count: 32))
    var result = Result(corpus: corpus)
    let clock = ContinuousClock()
    let start = clock.now
    var elapsed = 0.0
    corpus.bytes.withUnsafeBytes { all in
        while result.passes < maxPasses {
            var stats = MaskStats()
            var rewritten = 0
            for range in corpus.ranges {
                let outcome = masker.scan(
                    UnsafeRawBufferPointer(rebasing: all[range]), detectors: corpus.detectors, method: corpus.method,
                    stats: &stats)
                if outcome != nil { rewritten += 1 }
            }
            result.passes += 1
            if result.passes == 1 {
                result.matches = stats.totalMatches
                result.rewritten = rewritten
            }
            result.valuesScanned += stats.valuesScanned
            let d = clock.now - start
            elapsed = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
            if elapsed >= seconds { break }
        }
    }
    result.seconds = elapsed
    return result
}

var seconds = 3.0
var megabytes = 8
var arguments = CommandLine.arguments.dropFirst()
if arguments.first == "audit" {
    // `interlock-bench audit [--seconds S] [--dir DIR]`: the evidence log (issue 5), see AuditBench.swift.
    arguments.removeFirst()
    runAuditBench(Array(arguments))
    exit(0)
}
while let argument = arguments.popFirst() {
    switch argument {
    case "--seconds": seconds = Double(arguments.popFirst() ?? "") ?? seconds
    case "--mib": megabytes = Int(arguments.popFirst() ?? "") ?? megabytes
    default:
        FileHandle.standardError.write(Data("usage: interlock-bench [--seconds S] [--mib M]\n".utf8))
        exit(2)
    }
}
seconds = min(max(seconds, 0.1), 30)
megabytes = min(max(megabytes, 1), 256)

#if DEBUG
let configuration = "debug"
#else
let configuration = "release"
#endif

let corpora = [
    mixed(name: "mixed_1pct_partial", percent: 1, method: .partial, megabytes: megabytes),
    mixed(name: "mixed_1pct_redact", percent: 1, method: .redact, megabytes: megabytes),
    mixed(name: "mixed_10pct_partial", percent: 10, method: .partial, megabytes: megabytes),
    asciiText(megabytes: megabytes),
    digits(megabytes: megabytes),
    copyFields(megabytes: megabytes),
]

var cases: [[String: Any]] = []
for corpus in corpora {
    let r = run(corpus, seconds: seconds, maxPasses: 1000)
    let bytes = Double(corpus.bytes.count) * Double(r.passes)
    cases.append([
        "case": corpus.name,
        "description": corpus.description,
        "detectors": corpus.detectors == .all ? "all" : corpus.detectors.kinds.map(\.rawValue).joined(separator: ","),
        "method": corpus.method.rawValue,
        "corpus_bytes": corpus.bytes.count,
        "values": corpus.ranges.count,
        "passes": r.passes,
        "seconds": r.seconds,
        "mb_per_s": bytes / r.seconds / 1e6,
        "values_per_s": Double(r.valuesScanned) / r.seconds,
        "matches_per_pass": r.matches,
        "planted_per_pass": corpus.planted,
        "values_rewritten_per_pass": r.rewritten,
    ])
}
let report: [String: Any] = [
    "build": configuration,
    "threads": 1,
    "seconds_per_case": seconds,
    "cases": cases,
]
let json = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys])
FileHandle.standardOutput.write(json)
FileHandle.standardOutput.write(Data("\n".utf8))
