import Audit
import Control
import Foundation

/// `sessions.list` and `audit.blob`: what `interlock sessions list|replay` and an export's blobs
/// are made of. Both read the evidence log only.
extension ControlService {
    /// Sessions whose entries match `args` (time range, user, resource, session), newest last.
    func sessionsList(_ args: AuditQueryArgs) -> ControlResponse {
        var q: AuditQuery
        switch auditQuery(args) {
        case .success(let query): q = query
        case .failure(let f): return ControlResponse(ok: false, error: f)
        }
        let wanted = args.limit ?? 50
        guard wanted > 0, wanted <= 10_000 else { return .failure("bad_request", "--limit must be 1...10000") }
        q.kind = "session."
        q.limit = 100_000
        do {
            var byID: [String: SessionSummary] = [:]
            var order: [String] = []
            for record in try runtime.audit.query(q) {
                guard case .object(let m)? = try? CanonicalJSON.decode(record.body),
                    case .string(let id)? = m["session"]
                else { continue }
                if byID[id] == nil { order.append(id) }
                var s = byID[id] ?? SessionSummary(id: id)
                Self.summarize(record, m, into: &s)
                byID[id] = s
            }
            var response = ControlResponse(ok: true)
            response.sessions = order.suffix(wanted).compactMap { byID[$0] }
            return response
        } catch {
            return .failure("internal", "cannot read the evidence log: \(error)")
        }
    }

    static func summarize(_ record: AuditRecord, _ m: [String: AuditValue], into s: inout SessionSummary) {
        func string(_ k: String) -> String? { m[k]?.stringValue }
        func uint(_ k: String) -> UInt64? { m[k]?.uint64Value }
        s.user = s.user ?? string("user")
        s.resource = s.resource ?? string("resource")
        switch record.kind {
        case AuditKind.sessionOpen:
            s.opened = string("time")
            s.protocol = string("protocol")
            s.decision = string("decision")
            if case .object(let identity)? = m["identity"], case .string(let unit)? = identity["unit"] {
                s.unit = unit
            }
            if case .object(let d)? = m["destination"], case .string(let address)? = d["address"],
                let port = d["port"]?.uint64Value
            {
                s.destination = address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
            }
        case AuditKind.sessionClose:
            s.closed = string("time")
            s.reason = string("reason")
            s.bytesUp = uint("bytes_up")
            s.bytesDown = uint("bytes_down")
            s.durationMs = m["duration_ms"]?.int64Value
        case AuditKind.recording:
            s.recordingChunks += 1
            s.recordingBytes += uint("size") ?? 0
            if case .bool(true)? = m["final"] { s.recordingComplete = true }
            if let dropped = uint("dropped_bytes") { s.recordingDropped = dropped }
        default:
            break
        }
    }

    /// One blob, base64; `not_found` when it was never written or retention removed it.
    func auditBlob(_ hash: String) -> ControlResponse {
        guard hash.count == 64, MerkleHash(hex: hash) != nil, hash == hash.lowercased() else {
            return .failure("bad_request", "a blob is named by its SHA-256 in lower-case hex")
        }
        do {
            guard let data = try runtime.audit.blob(hash) else {
                return .failure(
                    "not_found", "no blob \(hash) (never written, or removed by audit.retention.recordings)")
            }
            var response = ControlResponse(ok: true)
            response.blob = data.base64EncodedString()
            return response
        } catch {
            return .failure("internal", "cannot read the evidence log: \(error)")
        }
    }
}

extension ControlService {
    /// The blob an entry references (`blob` member), if any: only kinds that carry one are decoded.
    static func blobReference(_ record: AuditRecord) -> String? {
        guard record.kind == AuditKind.recording, case .object(let m)? = try? CanonicalJSON.decode(record.body),
            case .string(let hash)? = m["blob"]
        else { return nil }
        return hash
    }
}
