import Capture
import Crypto
import Foundation
import Policy

/// A policy file turned into what the data path needs: resolved accounts, resolved host names,
/// the resource table, and the kernel ruleset that goes with it.
///
/// Compiling is where a file that parsed can still be wrong for this host (an unknown user, a
/// group that does not exist, the daemon's own account in the capture list); those errors carry
/// the file and line of the offending entry, like parse errors.
public struct ActivePolicy: Sendable {
    public struct CapturedAccount: Sendable, Equatable {
        public var uid: UInt32
        public var user: String?
        public var via: [String]
    }

    public var config: PolicyConfig
    public var resources: ResourceTable
    public var captured: [CapturedAccount]
    public var ruleset: CaptureRuleset
    public var daemonUID: UInt32
    /// Hex SHA-256 of the policy file's bytes, recorded in `policy.loaded`.
    public var digest: String
    public var loadedAt: Date

    public var capturedUIDs: Set<UInt32> { Set(captured.map(\.uid)) }

    /// Compiles a parsed file for this host.
    ///
    /// - Parameters:
    ///   - resolveHosts: resolves resource host names (blocking); tests pass a fake.
    public static func compile(
        _ config: PolicyConfig,
        text: String,
        accounts: any AccountDatabase,
        resolveHosts: ([Resource]) -> [String: [IPAddress]] = HostResolver.resolveAll,
        now: Date = Date()
    ) throws(ConfigError) -> ActivePolicy {
        guard let daemonUID = accounts.uid(ofUser: config.daemon.user) else {
            throw ConfigError(
                location: nil, key: "daemon.user",
                message: "no such user '\(config.daemon.user)' (create it: useradd --system \(config.daemon.user))")
        }
        var reasons: [UInt32: [String]] = [:]
        for user in config.capture.users {
            guard let uid = accounts.uid(ofUser: user.value) else {
                throw ConfigError(
                    location: user.location, key: "capture.users", message: "no such user '\(user.value)'")
            }
            reasons[uid, default: []].append("user:\(user.value)")
        }
        for group in config.capture.groups {
            guard let members = accounts.memberUIDs(ofGroup: group.value) else {
                throw ConfigError(
                    location: group.location, key: "capture.groups", message: "no such group '\(group.value)'")
            }
            for uid in members { reasons[uid, default: []].append("group:\(group.value)") }
        }
        if let why = reasons[daemonUID] {
            throw ConfigError(
                location: config.capture.users.first { $0.value == config.daemon.user }?.location
                    ?? config.capture.groups.first?.location,
                key: "capture",
                message:
                    "the daemon's own account '\(config.daemon.user)' cannot be captured (via \(why.joined(separator: ", ")))"
            )
        }
        let captured = reasons.keys.sorted().map { uid in
            CapturedAccount(uid: uid, user: accounts.user(uid: uid)?.name, via: reasons[uid]!)
        }
        let table = ResourceTable(resources: config.resources, resolved: resolveHosts(config.resources))
        let ruleset = CaptureRuleset(
            capturedUIDs: captured.map(\.uid), daemonUID: daemonUID, listenPort: config.daemon.listenPort,
            upstreamMark: config.daemon.upstreamMark, allowDNS: config.capture.allowDNS)
        let digest = SHA256.hash(data: Array(text.utf8)).map { String(format: "%02x", $0) }.joined()
        return ActivePolicy(
            config: config, resources: table, captured: captured, ruleset: ruleset, daemonUID: daemonUID,
            digest: digest, loadedAt: now)
    }

    /// Reads, parses and compiles the file at `path`.
    public static func load(path: String, accounts: any AccountDatabase) throws(ConfigError) -> ActivePolicy {
        let text = try ConfigLoader.readFile(path)
        let config = try ConfigLoader.parse(text, path: path)
        return try compile(config, text: text, accounts: accounts)
    }

    /// The same policy with host names resolved again (addresses of DNS-named resources change).
    public func reresolved(
        resolveHosts: ([Resource]) -> [String: [IPAddress]] = HostResolver.resolveAll
    ) -> ActivePolicy {
        var copy = self
        copy.resources = ResourceTable(resources: config.resources, resolved: resolveHosts(config.resources))
        return copy
    }
}
