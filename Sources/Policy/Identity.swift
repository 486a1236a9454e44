/// Who opened a captured connection.
///
/// `uid` and `cgroup` come from the kernel (sock_diag) and are authoritative; the names and the
/// process fields are resolved from them afterwards and are best effort (a process may have exited,
/// or the daemon may lack the right to read it). Policy decisions use only the authoritative
/// parts and the names derived from them.
public struct Identity: Sendable, Hashable, Codable {
    /// The socket owner's uid, from `NETLINK_SOCK_DIAG`.
    public var uid: UInt32
    /// The user name for `uid`, or nil when the uid has no passwd entry.
    public var user: String?
    /// The primary gid of `user`, when known.
    public var gid: UInt32?
    /// Every group `user` belongs to (primary and supplementary), by name, sorted.
    public var groups: [String]
    /// The cgroup v2 path of the socket, e.g. `/system.slice/ci-runner.service`.
    public var cgroup: String?
    /// The systemd unit derived from `cgroup` (`ci-runner.service`, `session-3.scope`), if any.
    public var unit: String?
    /// Best effort: the process that owns the socket.
    public var pid: Int32?
    /// Best effort: its executable path (or `comm` when the path cannot be read).
    public var executable: String?
    /// Best effort: its command line.
    public var commandLine: [String]?

    public init(
        uid: UInt32,
        user: String? = nil,
        gid: UInt32? = nil,
        groups: [String] = [],
        cgroup: String? = nil,
        unit: String? = nil,
        pid: Int32? = nil,
        executable: String? = nil,
        commandLine: [String]? = nil
    ) {
        self.uid = uid
        self.user = user
        self.gid = gid
        self.groups = groups
        self.cgroup = cgroup
        self.unit = unit
        self.pid = pid
        self.executable = executable
        self.commandLine = commandLine
    }

    /// `user` when known, else `uid:N`: how logs and the CLI name this identity.
    public var displayName: String { user ?? "uid:\(uid)" }
}
