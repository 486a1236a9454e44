import Policy
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Turns the kernel's answer about a socket (`SocketOwner`) into the `Identity` policy and
/// evidence speak about: user and group names, the cgroup v2 path and systemd unit, and, best
/// effort, the process.
///
/// The uid and cgroup come from the kernel and are authoritative. Everything else is looked up
/// afterwards and may be missing: the daemon runs as its own uid with only CAP_NET_ADMIN, so it
/// cannot read other users' `/proc/PID/fd` or `exe`, and the process may already be gone. A
/// missing field is nil, never an error: resolution does not fail.
///
/// Costs on the accept path: names are cached per uid (60 s); cgroup ids map to paths through a
/// cache filled by walking the cgroup2 tree, rescanned on a miss at most every `rescanInterval`
/// and never past `maxDirectories`. Process lookup reads `/proc/PID/status` (and the fd table
/// when readable) of each process in the socket's cgroup, so it is skipped for a cgroup holding
/// more than `maxProcesses` processes: a captured user cannot make every accept expensive by
/// forking, and a pid among hundreds could not be pinned down anyway.
public final class IdentityResolver: Sendable {
    let procRoot: String
    let cgroupRoot: String?
    let accounts: any AccountDatabase
    let nameTTL: Duration
    let rescanInterval: Duration
    let maxDirectories: Int
    let maxProcesses: Int
    let now: @Sendable () -> ContinuousClock.Instant
    private let state: Mutex<State>

    private struct Names {
        var user: String
        var gid: UInt32
        var groups: [String]
    }

    /// The process found for a (cgroup, uid) pair, reused for `processTTL` while it still runs:
    /// a service that opens many connections (a pool, `pgbench -C`) is looked up once, not per
    /// connection.
    private struct ProcessKey: Hashable {
        var cgroupID: UInt64
        var uid: UInt32
    }

    private struct ProcessInfo {
        var expires: ContinuousClock.Instant
        var pid: Int32
        var executable: String?
        var commandLine: [String]?
    }

    static let processTTL: Duration = .seconds(1)

    private struct State {
        var processes: [ProcessKey: ProcessInfo] = [:]
        var names: [UInt32: (expires: ContinuousClock.Instant, names: Names?)] = [:]
        var cgroups: [UInt64: String] = [:]
        var lastRescan: ContinuousClock.Instant? = nil
        var rescans = 0
    }

    /// - Parameters:
    ///   - procRoot: where procfs is mounted.
    ///   - cgroupRoot: the cgroup2 mount; nil finds it in `procRoot/self/mountinfo`
    ///     (`/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified` on a hybrid one).
    ///   - accounts: the passwd and group databases.
    public convenience init(
        procRoot: String = "/proc",
        cgroupRoot: String? = nil,
        accounts: any AccountDatabase = SystemAccounts()
    ) {
        self.init(
            procRoot: procRoot,
            cgroupRoot: cgroupRoot,
            accounts: accounts,
            nameTTL: .seconds(60),
            rescanInterval: .milliseconds(100),
            maxDirectories: 100_000,
            maxProcesses: 64,
            now: { ContinuousClock.now }
        )
    }

    init(
        procRoot: String,
        cgroupRoot: String?,
        accounts: any AccountDatabase,
        nameTTL: Duration,
        rescanInterval: Duration,
        maxDirectories: Int,
        maxProcesses: Int = 64,
        now: @escaping @Sendable () -> ContinuousClock.Instant
    ) {
        self.procRoot = procRoot
        self.cgroupRoot =
            cgroupRoot
            ?? readSmallFile(procRoot + "/self/mountinfo", limit: 1 << 20).flatMap {
                Self.cgroup2Mount(mountinfo: String(decoding: $0, as: UTF8.self))
            }
        self.accounts = accounts
        self.nameTTL = nameTTL
        self.rescanInterval = rescanInterval
        self.maxDirectories = maxDirectories
        self.maxProcesses = maxProcesses
        self.now = now
        self.state = Mutex(State())
    }

    /// The identity of a socket's owner. Never fails: what cannot be found is nil.
    public func resolve(_ owner: SocketOwner) -> Identity {
        var identity = Identity(uid: owner.uid)
        if let names = names(uid: owner.uid) {
            identity.user = names.user
            identity.gid = names.gid
            identity.groups = names.groups
        }
        if let id = owner.cgroupID, let path = cgroupPath(id: id) {
            identity.cgroup = path
            identity.unit = Self.unit(ofCgroup: path)
            if let info = processInfo(owner: owner, cgroupID: id, cgroupPath: path) {
                identity.pid = info.pid
                identity.executable = info.executable
                identity.commandLine = info.commandLine
            }
        }
        return identity
    }

    private func processInfo(owner: SocketOwner, cgroupID: UInt64, cgroupPath path: String) -> ProcessInfo? {
        let key = ProcessKey(cgroupID: cgroupID, uid: owner.uid)
        let t = now()
        if let cached = state.withLock({ $0.processes[key] }), cached.expires > t {
            // Still the owner? A readable fd table must show the socket; an unreadable one only
            // tells that the process still runs as that uid.
            switch holdsSocket(pid: cached.pid, link: "socket:[\(owner.inode)]", inode: owner.inode) {
            case .yes: return cached
            case .unknown where stillRunsAs(pid: cached.pid, uid: owner.uid): return cached
            case .unknown, .no: break
            }
        }
        guard let pid = process(owning: owner, cgroupPath: path) else { return nil }
        let info = ProcessInfo(
            expires: t.advanced(by: Self.processTTL), pid: pid, executable: executable(pid: pid),
            commandLine: commandLine(pid: pid))
        state.withLock { state in
            if state.processes.count > 4096 { state.processes.removeAll(keepingCapacity: true) }
            state.processes[key] = info
        }
        return info
    }

    // MARK: - Names

    private func names(uid: UInt32) -> Names? {
        let t = now()
        if let cached = state.withLock({ $0.names[uid] }), cached.expires > t { return cached.names }
        var names: Names? = nil
        if let user = accounts.user(uid: uid) {
            names = Names(
                user: user.name,
                gid: user.gid,
                groups: accounts.groupNames(ofUser: user.name, primaryGID: user.gid)
            )
        }
        state.withLock { state in
            if state.names.count >= 4096 { state.names.removeAll(keepingCapacity: true) }
            state.names[uid] = (t + nameTTL, names)
        }
        return names
    }

    // MARK: - Cgroups

    /// The systemd unit a cgroup path belongs to: the deepest component naming a unit that can
    /// hold processes (`.service`, `.scope`, and the units whose commands run in their own
    /// cgroup: `.socket`, `.mount`, `.swap`). Slices only group units, so `/user.slice` alone is
    /// no unit; sub-cgroups a delegated service makes for itself (`/system.slice/x.service/worker`)
    /// belong to that service.
    static func unit(ofCgroup path: String) -> String? {
        let suffixes = [".service", ".scope", ".socket", ".mount", ".swap"]
        for component in path.split(separator: "/").reversed() {
            if suffixes.contains(where: { component.hasSuffix($0) && component.count > $0.count }) {
                return String(component)
            }
        }
        return nil
    }

    /// The mount point of the cgroup2 file system in a `/proc/PID/mountinfo` text.
    static func cgroup2Mount(mountinfo: String) -> String? {
        for line in mountinfo.split(separator: "\n") {
            // id parent major:minor root mountpoint options [optional...] - fstype source superopts
            let fields = line.split(separator: " ")
            guard let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count, fields.count > 4 else { continue }
            if fields[dash + 1] == "cgroup2" { return unescapeMountField(fields[4]) }
        }
        return nil
    }

    /// mountinfo escapes space, tab, newline and backslash as three octal digits.
    private static func unescapeMountField(_ field: Substring) -> String {
        var out: [UInt8] = []
        let bytes = Array(field.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), i + 3 < bytes.count,
                let v = UInt8(String(decoding: bytes[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                out.append(v)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The cgroup v2 path (relative to the mount, starting with `/`) whose directory inode is `id`.
    func cgroupPath(id: UInt64) -> String? {
        guard let root = cgroupRoot else { return nil }
        let t = now()
        let cached: String?? = state.withLock { state in
            if let path = state.cgroups[id] { return .some(path) }
            if let last = state.lastRescan, t < last + rescanInterval { return .some(nil) }
            state.lastRescan = t
            return nil
        }
        if let cached { return cached }
        let map = scanCgroups(root: root)
        return state.withLock { state in
            state.cgroups = map
            state.rescans += 1
            return map[id]
        }
    }

    /// How many times the cgroup tree was walked (for tests).
    var cgroupRescans: Int { state.withLock { $0.rescans } }

    /// Walks the cgroup tree breadth first, at most `maxDirectories` directories.
    private func scanCgroups(root: String) -> [UInt64: String] {
        var map: [UInt64: String] = [:]
        var st = stat()
        guard lstat(root, &st) == 0 else { return map }
        map[UInt64(st.st_ino)] = "/"
        var queue: [String] = ["/"]
        var visited = 1
        var next = 0
        while next < queue.count, visited < maxDirectories {
            let relative = queue[next]
            next += 1
            let directory = relative == "/" ? root : root + relative
            guard let dir = opendir(directory) else { continue }
            defer { closedir(dir) }
            while visited < maxDirectories, let entry = readdir(dir) {
                let type = entry.pointee.d_type
                guard type == UInt8(DT_DIR) || type == UInt8(DT_UNKNOWN) else { continue }
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                let child = relative == "/" ? "/" + name : relative + "/" + name
                guard lstat(root + child, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { continue }
                map[UInt64(st.st_ino)] = child
                queue.append(child)
                visited += 1
            }
        }
        return map
    }

    // MARK: - Processes

    /// The pid that most likely owns the socket, among the processes of its cgroup running as
    /// its uid: the one whose fd table shows `socket:[inode]`; failing that, when fd tables are
    /// unreadable (another user's process), the only candidate if there is exactly one. A
    /// candidate whose fd table was readable and lacks the socket is not the owner. Nil when the
    /// cgroup holds more than `maxProcesses` processes.
    func process(owning owner: SocketOwner, cgroupPath path: String) -> Int32? {
        guard let root = cgroupRoot,
            let procs = readSmallFile((path == "/" ? root : root + path) + "/cgroup.procs", limit: 1 << 20)
        else { return nil }
        let lines = procs.split(separator: UInt8(ascii: "\n"))
        guard lines.count <= maxProcesses else { return nil }
        var unreadable: [Int32] = []
        let target = "socket:[\(owner.inode)]"
        for line in lines {
            guard let pid = Int32(String(decoding: line, as: UTF8.self)), pid > 0,
                runsAs(pid: pid, uid: owner.uid)
            else { continue }
            switch holdsSocket(pid: pid, link: target, inode: owner.inode) {
            case .yes: return pid
            case .no: continue
            case .unknown: unreadable.append(pid)
            }
        }
        return unreadable.count == 1 ? unreadable[0] : nil
    }

    /// A cheap liveness check for a cached process: `/proc/PID` exists and belongs to `uid` (its
    /// owner is the process's effective uid). One stat instead of reading and parsing `status`.
    private func stillRunsAs(pid: Int32, uid: UInt32) -> Bool {
        var st = stat()
        return stat("\(procRoot)/\(pid)", &st) == 0 && st.st_uid == uid
    }

    /// True when any of the real, effective, saved or file-system uids of `pid` is `uid`.
    private func runsAs(pid: Int32, uid: UInt32) -> Bool {
        guard let status = readSmallFile("\(procRoot)/\(pid)/status", limit: 1 << 16) else { return false }
        for line in status.split(separator: UInt8(ascii: "\n")) where line.starts(with: "Uid:".utf8) {
            let values = String(decoding: line.dropFirst(4), as: UTF8.self)
                .split(whereSeparator: { $0 == " " || $0 == "\t" })
                .compactMap { UInt32($0) }
            return values.contains(uid)
        }
        return false
    }

    private enum Holding {
        case yes, no, unknown
    }

    private func holdsSocket(pid: Int32, link target: String, inode: UInt64) -> Holding {
        guard inode != 0 else { return .unknown }
        let fdDirectory = "\(procRoot)/\(pid)/fd"
        guard let dir = opendir(fdDirectory) else { return .unknown }
        defer { closedir(dir) }
        var seen = 0
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            seen += 1
            if seen > 65536 { return .unknown }
            if readLink(fdDirectory + "/" + name) == target { return .yes }
        }
        return .no
    }

    func executable(pid: Int32) -> String? {
        if let path = readLink("\(procRoot)/\(pid)/exe") { return path }
        guard let comm = readSmallFile("\(procRoot)/\(pid)/comm", limit: 256) else { return nil }
        let name = String(decoding: comm, as: UTF8.self).trimmingNewline()
        return name.isEmpty ? nil : name
    }

    func commandLine(pid: Int32) -> [String]? {
        guard let raw = readSmallFile("\(procRoot)/\(pid)/cmdline", limit: 1 << 17), !raw.isEmpty else { return nil }
        var parts = raw.split(separator: 0, omittingEmptySubsequences: false).map {
            String(decoding: $0, as: UTF8.self)
        }
        if parts.last == "" { parts.removeLast() }
        return parts.isEmpty ? nil : parts
    }
}

extension String {
    fileprivate func trimmingNewline() -> String {
        var s = Substring(self)
        while let last = s.last, last == "\n" || last == "\r" { s = s.dropLast() }
        return String(s)
    }
}

/// Reads a small file (procfs and cgroupfs report size 0, so read until EOF), at most `limit`
/// bytes. Nil when it cannot be opened or read.
private func readSmallFile(_ path: String, limit: Int) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while out.count < limit {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return nil
        }
        if n == 0 { break }
        out.append(contentsOf: chunk[0..<n])
    }
    return out.count > limit ? Array(out.prefix(limit)) : out
}

/// The target of a symbolic link, or nil.
private func readLink(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink(path, &buffer, buffer.count)
    guard n >= 0 else { return nil }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
