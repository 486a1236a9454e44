import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The passwd and group databases, as Interlock needs them.
///
/// Identity resolution turns a socket's uid into names, and the policy layer turns group names
/// in the config into uids to capture. Both go through this protocol so tests (and the gateway's
/// tests) can use `InMemoryAccounts` instead of the host's `/etc/passwd`.
public protocol AccountDatabase: Sendable {
    /// The user name and primary gid of `uid`, or nil when it has no passwd entry.
    func user(uid: UInt32) -> (name: String, gid: UInt32)?
    /// The uid of the user called `name`, or nil when there is none.
    func uid(ofUser name: String) -> UInt32?
    /// Every group `name` belongs to (the primary one included), by name, sorted, without duplicates.
    func groupNames(ofUser name: String, primaryGID: UInt32) -> [String]
    /// Every uid whose primary gid is the group's, plus the group's listed (supplementary) members;
    /// nil when the group does not exist.
    func memberUIDs(ofGroup name: String) -> [UInt32]?
}

/// The host's account databases through NSS (`getpwuid_r`, `getpwnam_r`, `getgrnam_r`,
/// `getgrouplist`), so LDAP or sssd users resolve like local ones.
public struct SystemAccounts: AccountDatabase {
    public init() {}

    public func user(uid: UInt32) -> (name: String, gid: UInt32)? {
        Self.withPasswd({ pw, buf, len, result in getpwuid_r(uid, pw, buf, len, result) }) { pw in
            (String(cString: pw.pw_name), pw.pw_gid)
        }
    }

    public func uid(ofUser name: String) -> UInt32? {
        Self.withPasswd({ pw, buf, len, result in getpwnam_r(name, pw, buf, len, result) }) { $0.pw_uid }
    }

    public func groupNames(ofUser name: String, primaryGID: UInt32) -> [String] {
        var count: Int32 = 32
        var gids = [gid_t](repeating: 0, count: Int(count))
        while true {
            var n = count
            let rc = getgrouplist(name, primaryGID, &gids, &n)
            if rc >= 0 {
                gids.removeSubrange(Int(n)...)
                break
            }
            // -1 with n set to the number needed (glibc); guard against a library that leaves it.
            count = max(n, count * 2)
            if count > 65536 { return [] }
            gids = [gid_t](repeating: 0, count: Int(count))
        }
        var names = Set<String>()
        for gid in gids {
            if let name = Self.groupName(gid: gid) { names.insert(name) }
        }
        return names.sorted()
    }

    public func memberUIDs(ofGroup name: String) -> [UInt32]? {
        guard let group = Self.lookupGroup(named: name) else { return nil }
        var uids = Set<UInt32>()
        for member in group.members {
            if let uid = uid(ofUser: member) { uids.insert(uid) }
        }
        // Primary-group members are not listed in /etc/group: enumerate passwd. The enumeration
        // state of getpwent is process-global, so one lock serializes every enumeration.
        Self.enumerationLock.withLock { _ in
            setpwent()
            defer { endpwent() }
            while let pw = getpwent() {
                if pw.pointee.pw_gid == group.gid { uids.insert(pw.pointee.pw_uid) }
            }
        }
        return uids.sorted()
    }

    // MARK: - NSS plumbing

    private static let enumerationLock = Mutex<Void>(())

    /// Calls a `get*_r` passwd function with a buffer that grows on ERANGE.
    private static func withPasswd<T>(
        _ call: (
            UnsafeMutablePointer<passwd>, UnsafeMutablePointer<CChar>, Int,
            UnsafeMutablePointer<UnsafeMutablePointer<passwd>?>
        ) -> Int32,
        _ body: (passwd) -> T
    ) -> T? {
        withReentrant(passwd(), initialSize: 1024, maximumSize: 1 << 20, call, body)
    }

    /// Calls a `get*_r` group function with a buffer that grows on ERANGE (member lists can be long).
    private static func withGroup<T>(
        _ call: (
            UnsafeMutablePointer<group>, UnsafeMutablePointer<CChar>, Int,
            UnsafeMutablePointer<UnsafeMutablePointer<group>?>
        ) -> Int32,
        _ body: (group) -> T
    ) -> T? {
        withReentrant(group(), initialSize: 4096, maximumSize: 1 << 22, call, body)
    }

    /// The reentrant NSS calling convention shared by `getpw*_r` and `getgr*_r`.
    private static func withReentrant<Entry, T>(
        _ empty: Entry,
        initialSize: Int,
        maximumSize: Int,
        _ call: (
            UnsafeMutablePointer<Entry>, UnsafeMutablePointer<CChar>, Int,
            UnsafeMutablePointer<UnsafeMutablePointer<Entry>?>
        ) -> Int32,
        _ body: (Entry) -> T
    ) -> T? {
        var size = initialSize
        while size <= maximumSize {
            var entry = empty
            var result: UnsafeMutablePointer<Entry>? = nil
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
            defer { buffer.deallocate() }
            let rc = call(&entry, buffer, size, &result)
            if rc == ERANGE {
                size *= 4
                continue
            }
            guard rc == 0, let found = result else { return nil }
            return body(found.pointee)
        }
        return nil
    }

    private static func groupName(gid: UInt32) -> String? {
        withGroup({ gr, buf, len, result in getgrgid_r(gid, gr, buf, len, result) }) { String(cString: $0.gr_name) }
    }

    private static func lookupGroup(named name: String) -> (gid: UInt32, members: [String])? {
        withGroup({ gr, buf, len, result in getgrnam_r(name, gr, buf, len, result) }) { gr in
            var members: [String] = []
            if var p = gr.gr_mem {
                while let m = p.pointee {
                    members.append(String(cString: m))
                    p += 1
                }
            }
            return (gr.gr_gid, members)
        }
    }
}

/// Accounts held in memory: for tests, and for anything that must not depend on the host's NSS.
public struct InMemoryAccounts: AccountDatabase {
    public struct User: Sendable, Hashable {
        public var name: String
        public var uid: UInt32
        public var gid: UInt32
        public init(name: String, uid: UInt32, gid: UInt32) {
            self.name = name
            self.uid = uid
            self.gid = gid
        }
    }

    public struct Group: Sendable, Hashable {
        public var name: String
        public var gid: UInt32
        /// Supplementary members by user name, as in `/etc/group`.
        public var members: [String]
        public init(name: String, gid: UInt32, members: [String] = []) {
            self.name = name
            self.gid = gid
            self.members = members
        }
    }

    public var users: [User]
    public var groups: [Group]

    public init(users: [User], groups: [Group]) {
        self.users = users
        self.groups = groups
    }

    public func user(uid: UInt32) -> (name: String, gid: UInt32)? {
        users.first { $0.uid == uid }.map { ($0.name, $0.gid) }
    }

    public func uid(ofUser name: String) -> UInt32? {
        users.first { $0.name == name }?.uid
    }

    public func groupNames(ofUser name: String, primaryGID: UInt32) -> [String] {
        var names = Set<String>()
        for group in groups where group.gid == primaryGID || group.members.contains(name) {
            names.insert(group.name)
        }
        return names.sorted()
    }

    public func memberUIDs(ofGroup name: String) -> [UInt32]? {
        guard let group = groups.first(where: { $0.name == name }) else { return nil }
        var uids = Set<UInt32>()
        for user in users where user.gid == group.gid || group.members.contains(user.name) {
            uids.insert(user.uid)
        }
        return uids.sorted()
    }
}
