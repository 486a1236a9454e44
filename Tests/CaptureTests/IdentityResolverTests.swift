import Foundation
import Policy
import Synchronization
import Testing

@testable import Capture

#if canImport(Glibc)
import Glibc
#endif

/// A fake `/proc` and cgroup2 tree in a temporary directory. Directories are real, so cgroup ids
/// are real inode numbers.
final class FakeHost {
    let root: String
    var proc: String { root + "/proc" }
    var cgroup: String { root + "/cgroup" }
    let fm = FileManager.default

    init() throws {
        root = NSTemporaryDirectory() + "ilid-" + UUID().uuidString
        try fm.createDirectory(atPath: root + "/proc", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/cgroup", withIntermediateDirectories: true)
    }

    deinit { try? fm.removeItem(atPath: root) }

    /// Creates the cgroup directory and its `cgroup.procs`; returns its id (inode).
    @discardableResult
    func cgroup(_ path: String, pids: [Int32] = []) throws -> UInt64 {
        let dir = cgroup + path
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try pids.map { "\($0)\n" }.joined().write(toFile: dir + "/cgroup.procs", atomically: false, encoding: .utf8)
        var st = stat()
        guard stat(dir, &st) == 0 else { throw TestSockets.fail("stat \(dir)") }
        return UInt64(st.st_ino)
    }

    /// A process. `sockets` are inode numbers shown in its fd table; `fdReadable: false` leaves no
    /// fd directory (as when the daemon may not read another user's fds).
    func process(
        _ pid: Int32,
        uid: UInt32,
        exe: String? = nil,
        comm: String = "proc",
        cmdline: [String] = [],
        sockets: [UInt64] = [],
        fdReadable: Bool = true
    ) throws {
        let dir = "\(proc)/\(pid)"
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // Like procfs: /proc/PID belongs to the process's uid (needs root, as the kernel tests do).
        guard chown(dir, uid, 0) == 0 else { throw TestSockets.fail("chown \(dir) (run the tests as root)") }
        let status = [
            "Name:\t\(comm)", "Umask:\t0022", "State:\tS (sleeping)", "Pid:\t\(pid)",
            "Uid:\t\(uid)\t\(uid)\t\(uid)\t\(uid)", "Gid:\t0\t0\t0\t0", "",
        ].joined(separator: "\n")
        try status.write(toFile: dir + "/status", atomically: false, encoding: .utf8)
        try (comm + "\n").write(toFile: dir + "/comm", atomically: false, encoding: .utf8)
        try Data(cmdline.map { $0 + "\0" }.joined().utf8).write(to: URL(fileURLWithPath: dir + "/cmdline"))
        if let exe { try fm.createSymbolicLink(atPath: dir + "/exe", withDestinationPath: exe) }
        if fdReadable {
            try fm.createDirectory(atPath: dir + "/fd", withIntermediateDirectories: true)
            try fm.createSymbolicLink(atPath: dir + "/fd/0", withDestinationPath: "/dev/null")
            for (i, inode) in sockets.enumerated() {
                try fm.createSymbolicLink(atPath: dir + "/fd/\(i + 3)", withDestinationPath: "socket:[\(inode)]")
            }
        }
    }
}

/// Accounts that count lookups, to observe the name cache.
final class CountingAccounts: AccountDatabase {
    let inner: InMemoryAccounts
    let lookups = Mutex(0)

    init(_ inner: InMemoryAccounts) { self.inner = inner }

    func user(uid: UInt32) -> (name: String, gid: UInt32)? {
        lookups.withLock { $0 += 1 }
        return inner.user(uid: uid)
    }
    func uid(ofUser name: String) -> UInt32? { inner.uid(ofUser: name) }
    func groupNames(ofUser name: String, primaryGID: UInt32) -> [String] {
        inner.groupNames(ofUser: name, primaryGID: primaryGID)
    }
    func memberUIDs(ofGroup name: String) -> [UInt32]? { inner.memberUIDs(ofGroup: name) }
}

/// A clock the test moves by hand.
final class ManualTime: Sendable {
    let start = ContinuousClock.now
    let offset = Mutex(Duration.zero)
    func advance(_ d: Duration) { offset.withLock { $0 += d } }
    var now: ContinuousClock.Instant { start + offset.withLock { $0 } }
}

@Suite struct IdentityResolverTests {
    static let accounts = InMemoryAccounts(
        users: [.init(name: "svc-ci", uid: 1001, gid: 1001), .init(name: "svc-etl", uid: 1002, gid: 1002)],
        groups: [
            .init(name: "svc-ci", gid: 1001),
            .init(name: "svc-etl", gid: 1002),
            .init(name: "bots", gid: 2000, members: ["svc-ci"]),
        ]
    )

    func resolver(
        _ host: FakeHost,
        accounts: any AccountDatabase = accounts,
        time: ManualTime = ManualTime()
    ) -> IdentityResolver {
        IdentityResolver(
            procRoot: host.proc,
            cgroupRoot: host.cgroup,
            accounts: accounts,
            nameTTL: .seconds(60),
            rescanInterval: .milliseconds(100),
            maxDirectories: 10_000,
            now: { time.now }
        )
    }

    // MARK: Units

    @Test(arguments: [
        ("/system.slice/ci-runner.service", "ci-runner.service"),
        ("/user.slice/user-1000.slice/session-3.scope", "session-3.scope"),
        ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo.scope", "app-foo.scope"),
        ("/user.slice/user-1000.slice/user@1000.service/init.scope", "init.scope"),
        ("/system.slice/ci-runner.service/worker", "ci-runner.service"),
        ("/system.slice/docker-0123abcd.scope", "docker-0123abcd.scope"),
        ("/system.slice/sshd.socket", "sshd.socket"),
        ("/system.slice/var-lib-data.mount", "var-lib-data.mount"),
        ("/system.slice/system-getty.slice/getty@tty1.service", "getty@tty1.service"),
    ])
    func unitIsTheDeepestUnitComponent(path: String, unit: String) {
        #expect(IdentityResolver.unit(ofCgroup: path) == unit)
    }

    @Test(arguments: ["/", "/user.slice", "/user.slice/user-1000.slice", "/machine.slice/x", "/.service", "/init"])
    func pathsWithoutAUnitHaveNone(path: String) {
        #expect(IdentityResolver.unit(ofCgroup: path) == nil)
    }

    // MARK: cgroup2 mount

    @Test func cgroup2MountIsFoundOnHybridAndUnifiedHosts() {
        let hybrid = """
            31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
            32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
            """
        #expect(IdentityResolver.cgroup2Mount(mountinfo: hybrid) == "/sys/fs/cgroup/unified")
        let unified = """
            22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw
            26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
            """
        #expect(IdentityResolver.cgroup2Mount(mountinfo: unified) == "/sys/fs/cgroup")
        let escaped = "50 1 0:40 / /mnt/my\\040cgroups rw - cgroup2 none rw"
        #expect(IdentityResolver.cgroup2Mount(mountinfo: escaped) == "/mnt/my cgroups")
        #expect(IdentityResolver.cgroup2Mount(mountinfo: "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw") == nil)
    }

    @Test func cgroupRootIsAutodetectedOnThisHost() throws {
        let root = try #require(IdentityResolver().cgroupRoot)
        // Only a cgroup2 directory has cgroup.controllers (v1 hierarchies do not).
        #expect(FileManager.default.fileExists(atPath: root + "/cgroup.controllers"))
    }

    // MARK: Resolution in a fake tree

    @Test func fullIdentityFromAFakeHost() throws {
        let host = try FakeHost()
        let id = try host.cgroup("/system.slice/ci-runner.service", pids: [100, 101, 102])
        try host.process(100, uid: 1001, exe: "/usr/bin/psql", cmdline: ["psql", "-h", "db", ""], sockets: [5555])
        try host.process(101, uid: 1001, exe: "/usr/bin/bash", sockets: [6666])
        try host.process(102, uid: 0, exe: "/usr/sbin/runner", sockets: [5555])
        try host.cgroup("/user.slice/user-1000.slice/session-3.scope")

        let identity = resolver(host).resolve(SocketOwner(uid: 1001, inode: 5555, cgroupID: id))
        #expect(
            identity
                == Identity(
                    uid: 1001,
                    user: "svc-ci",
                    gid: 1001,
                    groups: ["bots", "svc-ci"],
                    cgroup: "/system.slice/ci-runner.service",
                    unit: "ci-runner.service",
                    pid: 100,
                    executable: "/usr/bin/psql",
                    commandLine: ["psql", "-h", "db", ""]
                )
        )
    }

    @Test func socketHolderWinsOverOtherCandidates() throws {
        let host = try FakeHost()
        let id = try host.cgroup("/system.slice/etl.service", pids: [10, 20, 30])
        try host.process(10, uid: 1002, exe: "/usr/bin/a", sockets: [1])
        try host.process(20, uid: 1002, exe: "/usr/bin/b", sockets: [2, 77])
        try host.process(30, uid: 1002, exe: "/usr/bin/c", fdReadable: false)
        let identity = resolver(host).resolve(SocketOwner(uid: 1002, inode: 77, cgroupID: id))
        #expect(identity.pid == 20)
        #expect(identity.executable == "/usr/bin/b")
    }

    @Test func singleUnreadableCandidateIsTaken() throws {
        let host = try FakeHost()
        let id = try host.cgroup("/system.slice/etl.service", pids: [10, 11])
        try host.process(10, uid: 1002, exe: "/usr/bin/etl", cmdline: ["etl", "--once"], fdReadable: false)
        try host.process(11, uid: 0, exe: "/usr/bin/other", fdReadable: false)  // another uid: not a candidate
        let identity = resolver(host).resolve(SocketOwner(uid: 1002, inode: 77, cgroupID: id))
        #expect(identity.pid == 10)
        #expect(identity.commandLine == ["etl", "--once"])
    }

    @Test func processIsCachedPerCgroupAndUIDWhileItRuns() throws {
        let host = try FakeHost()
        let time = ManualTime()
        let id = try host.cgroup("/system.slice/pool.service", pids: [20])
        try host.process(20, uid: 1001, exe: "/usr/bin/pool", cmdline: ["pool"], fdReadable: false)
        let r = resolver(host, time: time)
        #expect(r.resolve(SocketOwner(uid: 1001, inode: 1, cgroupID: id)).pid == 20)
        // The command line changes on disk: within the TTL the cached process is used.
        try Data("changed\0".utf8).write(to: URL(fileURLWithPath: host.proc + "/20/cmdline"))
        #expect(r.resolve(SocketOwner(uid: 1001, inode: 2, cgroupID: id)).commandLine == ["pool"])
        // The process exits: the cache does not outlive it.
        try FileManager.default.removeItem(atPath: host.proc + "/20")
        #expect(r.resolve(SocketOwner(uid: 1001, inode: 3, cgroupID: id)).pid == nil)
        // Back, and the TTL passed: looked up afresh.
        try host.process(20, uid: 1001, exe: "/usr/bin/pool", cmdline: ["pool", "-v"], fdReadable: false)
        time.advance(.seconds(2))
        #expect(r.resolve(SocketOwner(uid: 1001, inode: 4, cgroupID: id)).commandLine == ["pool", "-v"])
    }

    @Test func cachedProcessWithAReadableFdTableMustHoldTheSocket() throws {
        let host = try FakeHost()
        let id = try host.cgroup("/system.slice/two.service", pids: [30, 31])
        try host.process(30, uid: 1001, sockets: [100])
        try host.process(31, uid: 1001, sockets: [200])
        let r = resolver(host)
        #expect(r.resolve(SocketOwner(uid: 1001, inode: 100, cgroupID: id)).pid == 30)
        #expect(r.resolve(SocketOwner(uid: 1001, inode: 200, cgroupID: id)).pid == 31)
    }

    @Test func twoUnreadableCandidatesGiveNoPid() throws {
        let host = try FakeHost()
        let id = try host.cgroup("/system.slice/etl.service", pids: [10, 11])
        try host.process(10, uid: 1002, fdReadable: false)
        try host.process(11, uid: 1002, fdReadable: false)
        let identity = resolver(host).resolve(SocketOwner(uid: 1002, inode: 77, cgroupID: id))
        #expect(identity.pid == nil)
        #expect(identity.executable == nil)
        #expect(identity.commandLine == nil)
        #expect(identity.unit == "etl.service")
        #expect(identity.user == "svc-etl")
    }

    @Test func readableCandidateWithoutTheSocketIsNotTheOwner() throws {
        let host = try FakeHost()
        let id = try host.cgroup("/system.slice/etl.service", pids: [10])
        try host.process(10, uid: 1002, sockets: [1, 2])
        #expect(resolver(host).resolve(SocketOwner(uid: 1002, inode: 77, cgroupID: id)).pid == nil)
    }

    @Test func crowdedCgroupIsNotSearched() throws {
        let host = try FakeHost()
        let pids = Array(Int32(10)..<Int32(20))
        let id = try host.cgroup("/system.slice/forky.service", pids: pids)
        for pid in pids { try host.process(pid, uid: 1002, sockets: pid == 15 ? [77] : []) }
        let owner = SocketOwner(uid: 1002, inode: 77, cgroupID: id)
        #expect(resolver(host).resolve(owner).pid == 15)
        let strict = IdentityResolver(
            procRoot: host.proc,
            cgroupRoot: host.cgroup,
            accounts: Self.accounts,
            nameTTL: .seconds(60),
            rescanInterval: .zero,
            maxDirectories: 100,
            maxProcesses: 9,
            now: { ContinuousClock.now }
        )
        let identity = strict.resolve(owner)
        #expect(identity.pid == nil)
        #expect(identity.unit == "forky.service")
    }

    @Test func executableFallsBackToComm() throws {
        let host = try FakeHost()
        let id = try host.cgroup("/system.slice/etl.service", pids: [10])
        try host.process(10, uid: 1002, exe: nil, comm: "etl-worker", sockets: [77])
        let identity = resolver(host).resolve(SocketOwner(uid: 1002, inode: 77, cgroupID: id))
        #expect(identity.pid == 10)
        #expect(identity.executable == "etl-worker")
        #expect(identity.commandLine == nil)  // empty cmdline, as for a zombie
    }

    @Test func missingProcessGivesNilFieldsWithoutFailing() throws {
        let host = try FakeHost()
        let id = try host.cgroup("/system.slice/gone.service", pids: [4242])
        let identity = resolver(host).resolve(SocketOwner(uid: 1001, inode: 77, cgroupID: id))
        #expect(identity.pid == nil)
        #expect(identity.cgroup == "/system.slice/gone.service")
        #expect(identity.unit == "gone.service")
        #expect(identity.user == "svc-ci")
    }

    @Test func unknownUIDAndCgroupStillGiveTheUID() throws {
        let host = try FakeHost()
        let identity = resolver(host).resolve(SocketOwner(uid: 4321, inode: 77, cgroupID: 987_654_321))
        #expect(identity == Identity(uid: 4321))
        #expect(identity.displayName == "uid:4321")
        let noCgroup = resolver(host).resolve(SocketOwner(uid: 1001, inode: 77, cgroupID: nil))
        #expect(noCgroup.cgroup == nil)
        #expect(noCgroup.user == "svc-ci")
    }

    @Test func rootCgroupIsSlash() throws {
        let host = try FakeHost()
        var st = stat()
        #expect(stat(host.cgroup, &st) == 0)
        try "".write(toFile: host.cgroup + "/cgroup.procs", atomically: false, encoding: .utf8)
        let identity = resolver(host).resolve(SocketOwner(uid: 1001, inode: 77, cgroupID: UInt64(st.st_ino)))
        #expect(identity.cgroup == "/")
        #expect(identity.unit == nil)
    }

    // MARK: Caches

    @Test func namesAreCachedPerUIDForAMinute() throws {
        let host = try FakeHost()
        let counting = CountingAccounts(Self.accounts)
        let time = ManualTime()
        let r = resolver(host, accounts: counting, time: time)
        let owner = SocketOwner(uid: 1001, inode: 1, cgroupID: nil)
        #expect(r.resolve(owner).user == "svc-ci")
        #expect(r.resolve(owner).user == "svc-ci")
        time.advance(.seconds(59))
        #expect(r.resolve(owner).groups == ["bots", "svc-ci"])
        #expect(counting.lookups.withLock { $0 } == 1)
        time.advance(.seconds(2))
        #expect(r.resolve(owner).user == "svc-ci")
        #expect(counting.lookups.withLock { $0 } == 2)
        // Unknown uids are cached too (negative entries).
        _ = r.resolve(SocketOwner(uid: 9, inode: 1, cgroupID: nil))
        _ = r.resolve(SocketOwner(uid: 9, inode: 1, cgroupID: nil))
        #expect(counting.lookups.withLock { $0 } == 3)
    }

    @Test func cgroupCacheRescansOnAMissAtMostOncePerInterval() throws {
        let host = try FakeHost()
        let time = ManualTime()
        let r = resolver(host, time: time)
        let a = try host.cgroup("/system.slice/a.service")
        #expect(r.cgroupPath(id: a) == "/system.slice/a.service")
        #expect(r.cgroupRescans == 1)
        #expect(r.cgroupPath(id: a) == "/system.slice/a.service")
        #expect(r.cgroupRescans == 1)  // a hit does not walk the tree

        // A unit started afterwards: found by the next rescan once the interval has passed.
        let b = try host.cgroup("/system.slice/b.service")
        #expect(r.cgroupPath(id: b) == nil)  // within 100 ms of the last walk
        #expect(r.cgroupRescans == 1)
        time.advance(.milliseconds(150))
        #expect(r.cgroupPath(id: b) == "/system.slice/b.service")
        #expect(r.cgroupRescans == 2)

        // An id that does not exist rescans at most once per interval.
        time.advance(.milliseconds(150))
        #expect(r.cgroupPath(id: 123_456_789_012) == nil)
        #expect(r.cgroupPath(id: 123_456_789_012) == nil)
        #expect(r.cgroupRescans == 3)
    }

    @Test func cgroupWalkIsBounded() throws {
        let host = try FakeHost()
        for i in 0..<20 { try host.cgroup("/many/d\(i)") }
        let deep = try host.cgroup("/many/d19/deeper/deepest.service")
        let bounded = IdentityResolver(
            procRoot: host.proc,
            cgroupRoot: host.cgroup,
            accounts: Self.accounts,
            nameTTL: .seconds(60),
            rescanInterval: .zero,
            maxDirectories: 10,
            now: { ContinuousClock.now }
        )
        #expect(bounded.cgroupPath(id: deep) == nil)
        #expect(resolver(host).cgroupPath(id: deep) == "/many/d19/deeper/deepest.service")
    }
}
