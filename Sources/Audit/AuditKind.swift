/// The entry kinds written today, and their fields: the stable, documented evidence schema.
///
/// Every entry also carries `index`, `kind`, `time` and `v` (set by the log), and the subject's
/// `user`, `resource` and `session` when present. Field names are snake_case; durations are integer
/// milliseconds; nothing is a float. `docs/evidence.md` is the auditors' version of this list; keep
/// the two in step, and add a kind here before writing it.
///
/// - `daemon.started`: `version`, `pid`, `uid`, `config` (policy file path).
/// - `daemon.stopped`: `pid`.
/// - `policy.loaded`: `path`, `trigger`, `outcome` (`ok` | `rejected`); when rejected `error`
///   (file:line message); when ok `sha256` (hex of the file's bytes), `resources` (names),
///   `captured` ([{`uid`, `user`, `via`}]: captured accounts and the users/groups entries that
///   captured them), `unregistered`, `dns`.
/// - `ruleset.installed`: `uids`.
/// - `ruleset.restored`: `problem` (`missing` | `drifted`), `detail`.
/// - `ruleset.removed`: `reason`.
/// - `session.open` (subject: user, resource, session): `session`, `identity` {`uid`, `user`,
///   `gid`, `groups`, `cgroup`, `unit`, `pid`, `executable`, `command_line` (argv array)} or null
///   when the owner is unknown, `source` {`address`, `port`}, `destination` {`address`, `port`},
///   `resource` (or null), `protocol`, `decision` (`allow` | `deny`), `reason`.
/// - `session.close` (subject: user, resource, session): `session`, `bytes_up` (client → server),
///   `bytes_down`, `duration_ms`, `reason` (`client_closed` | `upstream_closed` | `idle_timeout` |
///   `connect_failed` | `error` | `shutdown`), optional `detail`.
///
/// The PostgreSQL gateway adds `postgres.login`, `statement`, `statement.end`, `postgres.cancel`
/// (Gateway's `PostgresEvidence`), and approvals add `approval.requested`, `approval.notified`,
/// `approval.approved`, `approval.denied`, `approval.timed_out`, `approval.withdrawn`,
/// `approval.executed`, `approval.lost`, `grant.opened`, `grant.used`, `grant.revoked`,
/// `grant.expired` (Gateway's `ApprovalCenter`); their fields are in docs/evidence.md.
public enum AuditKind {
    public static let daemonStarted = "daemon.started"
    public static let daemonStopped = "daemon.stopped"
    public static let policyLoaded = "policy.loaded"
    public static let rulesetInstalled = "ruleset.installed"
    public static let rulesetRestored = "ruleset.restored"
    public static let rulesetRemoved = "ruleset.removed"
    public static let sessionOpen = "session.open"
    public static let sessionClose = "session.close"
    /// The log's first entry: `public_key` (the checkpoint verifier key), `appliance_id`, `origin`,
    /// `version`.
    public static let genesis = "log.genesis"
    /// Written after a minute without entries: `interval_s`. Its time and checkpoint show the log
    /// was alive and nothing happened. Also written right after a key rotation, with `reason:
    /// key_rotated`, so the new key signs a checkpoint at once.
    public static let heartbeat = "log.heartbeat"
    /// Retention: `pruned_below` (the new first index), `previous_first`, `removed`, `kept` (the key
    /// chain's entries in the range, which stay), `cutoff`,
    /// `policy`, `subtrees` (the perfect subtree hashes covering the removed range). Committed and
    /// checkpointed before any body is removed; leaf hashes and tree nodes stay.
    public static let prune = "log.prune"
    /// One chunk of a session's recording (subject: user, resource, session): `blob` (SHA-256 hex
    /// of the chunk, stored beside the entry), `seq`, `size`, `frames`, `from_ms` and `to_ms` (its
    /// first and last frame, since the session started), `final` (the session ended), `protocol`,
    /// and `dropped_bytes` when the recording reached its limit. See ``RecordingChunk``.
    public static let recording = "session.recording"
    /// Retention of recordings: `cutoff`, `policy`, `removed` (blobs), `bytes`, `first_entry` and
    /// `last_entry` (the `session.recording` entries whose blobs go). Committed and checkpointed
    /// before any blob is removed; the entries that named the blobs stay.
    public static let recordingPrune = "recording.prune"
    /// The checkpoint key was replaced: `old_key`, `new_key` (verifier keys), `reason`,
    /// `requested_by` {`uid`, `user`}, `statement` (a C2SP note by the old key whose text names the
    /// origin and both keys). Committed alone with a checkpoint of exactly its size signed by the old
    /// key; every larger size is the new key's (see ``AuditKeyChain``).
    public static let keyRotated = "log.key_rotated"

    /// Every kind above, for listings and validation.
    public static let all = [
        daemonStarted, daemonStopped, policyLoaded, rulesetInstalled, rulesetRestored, rulesetRemoved,
        sessionOpen, sessionClose, genesis, heartbeat, prune, recording, recordingPrune, keyRotated,
    ]
}
