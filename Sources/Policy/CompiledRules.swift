/// The `rules:` of a loaded policy, ready to be asked once per session which rules apply.
///
/// Build it once per policy load (it is a value: keep it next to the `ResourceTable`), call
/// `rules(for:resource:)` when a session's identity and resource are known, and keep the answer
/// for the session's life: a reload gives new sessions the new rules, running sessions keep theirs
/// unless the gateway asks again.
public struct CompiledRules: Sendable {
    private struct Entry: Sendable {
        var name: String
        var identities: IdentityMatcher
        var resources: Set<String>?
        var block: BlockSpec?
        var mask: MaskSpec?
        var approve: ApproveSpec?
    }

    private let entries: [Entry]

    public init(_ rules: [Rule]) {
        entries = rules.map { r in
            Entry(
                name: r.name, identities: r.identities, resources: r.resources.map { Set($0.map(\.value)) },
                block: r.block, mask: r.mask, approve: r.approve)
        }
    }

    public var isEmpty: Bool { entries.isEmpty }

    /// The block, mask and approve specs of every rule that applies to `identity` on `resource`,
    /// each list in file order.
    ///
    /// - Parameter resource: the session's resource name; nil for a destination no resource
    ///   names, to which only rules without `resources:` apply.
    public func rules(for identity: Identity, resource: String?) -> ApplicableRules {
        var out = ApplicableRules()
        for e in entries {
            if let names = e.resources {
                guard let resource, names.contains(resource) else { continue }
            }
            guard e.identities.matches(identity) else { continue }
            if let b = e.block { out.blocks.append(Applied(rule: e.name, spec: b)) }
            if let m = e.mask { out.masks.append(Applied(rule: e.name, spec: m)) }
            if let a = e.approve { out.approvals.append(Applied(rule: e.name, spec: a)) }
        }
        out.detectorMethods = Self.detectorMethods(out.masks)
        return out
    }

    private static func detectorMethods(_ masks: [Applied<MaskSpec>]) -> [Applied<DetectorMask>] {
        var seen = Set<DetectorName>()
        var out: [Applied<DetectorMask>] = []
        for m in masks {
            for d in m.spec.detectors where seen.insert(d).inserted {
                out.append(Applied(rule: m.rule, spec: DetectorMask(detector: d, method: m.spec.method)))
            }
        }
        return out
    }
}

/// A spec with the name of the rule it came from (for the client's error and the evidence).
public struct Applied<Spec: Sendable & Equatable>: Sendable, Equatable {
    public var rule: String
    public var spec: Spec

    public init(rule: String, spec: Spec) {
        self.rule = rule
        self.spec = spec
    }
}

/// One content detector and the method its values are masked with.
public struct DetectorMask: Sendable, Hashable {
    public var detector: DetectorName
    public var method: MaskMethodName
}

/// What applies to one session: computed once when the session's identity and resource are
/// known, then consulted per statement and per result column.
///
/// Precedence (the wire module must follow it):
/// - A statement matched by any block is blocked (the first matching block, in file order, is the
///   one reported); block wins over approve.
/// - Otherwise a statement matched by any approve is held under the first matching approve rule.
/// - A result column is masked by the first mask rule (file order) with a matching column
///   pattern, with that rule's method. Values of other columns go through `detectorMethods`: each
///   detector once, with the method of the first rule that lists it.
public struct ApplicableRules: Sendable, Equatable {
    public var blocks: [Applied<BlockSpec>] = []
    public var masks: [Applied<MaskSpec>] = []
    public var approvals: [Applied<ApproveSpec>] = []
    /// The detectors to run on values not masked by a column rule, each once, in file order.
    public var detectorMethods: [Applied<DetectorMask>] = []

    public init() {}

    /// No rule applies: the session can take the fast path (no classification needed for policy).
    public var isEmpty: Bool { blocks.isEmpty && masks.isEmpty && approvals.isEmpty }

    /// Whether statements need classifying at all for policy (evidence may still want it).
    public var inspectsStatements: Bool { !blocks.isEmpty || !approvals.isEmpty }

    /// Whether result values may be rewritten.
    public var masksResults: Bool { !masks.isEmpty }

    /// The first block (file order) that catches `statement`.
    public func block(for statement: StatementFacts) -> Applied<BlockSpec>? {
        blocks.first { $0.spec.match.matches(statement) }
    }

    /// The first approve rule (file order) that catches `statement`; ask only when `block(for:)`
    /// found nothing.
    public func approval(for statement: StatementFacts) -> Applied<ApproveSpec>? {
        approvals.first { $0.spec.match.matches(statement) }
    }

    /// The mask rule for a result column whose source is `schema.table.column`, if any.
    public func columnMask(schema: String, table: String, column: String) -> Applied<MaskSpec>? {
        masks.first { m in m.spec.columns.contains { $0.matches(schema: schema, table: table, column: column) } }
    }
}
