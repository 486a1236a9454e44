/// The words the classifier looks at, recognised once per identifier by the lexer.
///
/// This is not PostgreSQL's full keyword list: only the words a decision depends on. A word that is
/// not here is an ordinary identifier to the classifier, whatever PostgreSQL makes of it. Raw values
/// start at 1 so that 0 can mean "not a keyword" inside a ``Token``.
enum Keyword: UInt8, CaseIterable {
    case abort = 1, access, aggregate, all, alter, analyse, analyze, and, any, array, `as`, atomic
    case begin, between, bit, by, call, `case`, cast, char, character, check, checkpoint, `class`, close
    case cluster, collation, comment, commit, concurrently, conflict, constraint, conversion, copy, create
    case cube, current, cycle, data, database, deallocate, dec, decimal, declare, `default`, delete, discard
    case distinct, `do`, domain, double, drop, `else`, end, `enum`, event, except, exclude, execute, exists
    case explain, `extension`, `false`, family, fetch, filter, float, `for`, foreign, from, function, global
    case grant, group, having, `if`, ilike, `import`, `in`, include, index, inherits, insert, intersect
    case interval, into, `is`, join, key, label, language, large, lateral, like, limit, listen, load, local
    case lock, mapping, matched, materialized, merge, method, move, national, nchar, no, not, notify, null
    case numeric, object, of, off, offset, on, only, `operator`, options, or, order, over, owned, policy
    case precision, prepare, prepared, primary, privileges, procedural, procedure, program, publication
    case recursive, references, refresh, reindex, release, replace, reset, `return`, returning, revoke
    case role, rollback, rollup, routine, row, rule, savepoint, schema, search, security, select, sequence
    case server, set, sets, show, similar, some, start, statistics, stdin, stdout, subscription, system
    case table, tablespace, temp, temporary, text, then, time, timestamp, to, transaction, transform
    case trigger, `true`, truncate, trusted, type, uescape, union, unique, unlisten, unlogged, update, user
    case using, vacuum, values, varchar, varying, verbose, view, when, `where`, window, with, within, work
    case wrapper, variadic, both, leading, trailing, tablesample, rows, returns, setof, authorization, session
    case full, freeze, binary, zone, column, add, tables, admin, inherit, option
}

/// A set of keywords as a 256-bit mask: membership is two shifts, no hashing.
struct KeywordSet: ExpressibleByArrayLiteral {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    init(arrayLiteral elements: Keyword...) {
        for keyword in elements { insert(keyword) }
    }

    private mutating func insert(_ keyword: Keyword) {
        let value = Int(keyword.rawValue)
        let bit = UInt64(1) << UInt64(value & 63)
        switch value >> 6 {
        case 0: words.0 |= bit
        case 1: words.1 |= bit
        case 2: words.2 |= bit
        default: words.3 |= bit
        }
    }

    func contains(_ keyword: Keyword?) -> Bool {
        guard let keyword else { return false }
        let value = Int(keyword.rawValue)
        let bit = UInt64(1) << UInt64(value & 63)
        switch value >> 6 {
        case 0: return words.0 & bit != 0
        case 1: return words.1 & bit != 0
        case 2: return words.2 & bit != 0
        default: return words.3 & bit != 0
        }
    }
}

/// Looks up a lower-cased word of at most 16 ASCII letters, packed little-endian into two 64-bit
/// integers, in an open-addressing table built once. No keyword is longer than 16 bytes, so a longer
/// word (or one with a digit, `$` or a non-ASCII byte) is never a keyword and is not looked up.
struct KeywordTable: Sendable {
    static let shared = KeywordTable()

    private struct Entry {
        var low: UInt64 = 0
        var high: UInt64 = 0
        var value: UInt8 = 0
    }

    private static let capacity = 1024
    private var entries: [Entry]

    private init() {
        entries = Array(repeating: Entry(), count: Self.capacity)
        for keyword in Keyword.allCases {
            var entry = Entry(value: keyword.rawValue)
            for (index, byte) in String(describing: keyword).utf8.enumerated() {
                precondition(index < 16, "keyword longer than 16 bytes")
                if index < 8 {
                    entry.low |= UInt64(byte) << UInt64(index * 8)
                } else {
                    entry.high |= UInt64(byte) << UInt64((index - 8) * 8)
                }
            }
            var slot = Self.slot(entry.low, entry.high)
            while entries[slot].value != 0 { slot = (slot + 1) & (Self.capacity - 1) }
            entries[slot] = entry
        }
    }

    @inline(__always)
    private static func slot(_ low: UInt64, _ high: UInt64) -> Int {
        let mixed = (low &* 0x9E37_79B9_7F4A_7C15) ^ (high &* 0xC2B2_AE3D_27D4_EB4F)
        return Int(truncatingIfNeeded: (mixed ^ (mixed >> 29)) >> 54)
    }

    /// The keyword spelled by the packed lower-case bytes, or nil.
    @inline(__always)
    func lookup(_ packedLow: UInt64, _ packedHigh: UInt64) -> Keyword? {
        entries.withUnsafeBufferPointer { entries in
            var slot = Self.slot(packedLow, packedHigh)
            while true {
                let entry = entries[slot]
                if entry.value == 0 { return nil }
                if entry.low == packedLow && entry.high == packedHigh { return Keyword(rawValue: entry.value) }
                slot = (slot + 1) & (Self.capacity - 1)
            }
        }
    }
}
