import ArgumentParser
import Foundation
import Gateway
import Policy

#if canImport(Glibc)
import Glibc
#endif

/// `interlock tls`: the appliance's CA, which clients of `client: offer` resources trust.
struct TLSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls", abstract: "The appliance's TLS certificate authority.", subcommands: [Init.self, Show.self])

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the appliance CA (ca.crt, ca.key) that signs the certificates shown to clients.",
            discussion: """
                Writes DIR/ca.crt (mode 0644: hand it to clients as sslrootcert) and DIR/ca.key (mode 0600, \
                owned by the daemon's user so that interlockd can read it after dropping privileges). \
                An existing CA is kept unless --force is given; after replacing it, restart interlockd \
                and give clients the new ca.crt.
                """)
        @Option(help: "Where to write ca.crt and ca.key.") var dir = "/etc/interlock/tls"
        @Option(help: "The CA's common name (default: Interlock appliance CA (HOSTNAME)).") var commonName: String?
        @Option(help: "The daemon's user, owner of ca.key (root keeps it when no such user exists).")
        var user = DaemonSettings().user
        @Flag(help: "Replace an existing CA.") var force = false

        func run() throws {
            let certificatePath = dir + "/ca.crt"
            let keyPath = dir + "/ca.key"
            if !force {
                for path in [certificatePath, keyPath] where FileManager.default.fileExists(atPath: path) {
                    throw CLIError(
                        "\(path) exists; keep it, or replace the CA with --force "
                            + "(clients must then be given the new ca.crt)")
                }
            }
            let name = commonName ?? "Interlock appliance CA (\(hostName()))"
            let generated = try ApplianceCA.generate(commonName: name)
            try makeDirectory(dir)
            let owner = ownerOfKey()
            // Both files are complete on disk before either name changes, so a crash never leaves a
            // certificate beside the key of another.
            let keyTemp = try writeTemporary(in: dir, Array(generated.keyPEM.utf8), mode: 0o600, owner: owner)
            let certificateTemp: String
            do {
                certificateTemp = try writeTemporary(
                    in: dir, Array(generated.certificatePEM.utf8), mode: 0o644, owner: nil)
            } catch {
                unlink(keyTemp)
                throw error
            }
            try rename(keyTemp, keyPath)
            try rename(certificateTemp, certificatePath)
            let summary = try CertificateSummary(pem: generated.certificatePEM, source: certificatePath)
            print("\(certificatePath): \(summary.subject)")
            print("  sha256 \(summary.sha256Fingerprint)")
            print("  valid until \(summary.notValidAfter.formatted(.iso8601))")
            let ownerName = owner == nil ? "root" : user
            print("\(keyPath): mode 0600, owner \(ownerName)")
            print("Clients: sslmode=verify-full sslrootcert=\(certificatePath); restart interlockd to use a new CA.")
        }

        /// The daemon user's uid and gid, or nil when it does not exist (the key stays root's).
        func ownerOfKey() -> (uid: uid_t, gid: gid_t)? {
            guard let pw = getpwnam(user) else { return nil }
            return (pw.pointee.pw_uid, pw.pointee.pw_gid)
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the appliance CA's subject, fingerprint and validity.")
        @Option(
            help:
                "The CA certificate (default: tls.ca_certificate of \(defaultConfigPath), else /etc/interlock/tls/ca.crt)."
        )
        var certificate: String?

        func run() throws {
            let path = certificate ?? configuredCertificate()
            let text: String
            do {
                text = try ConfigLoader.readFile(path)
            } catch {
                throw CLIError("\(error.message); create the CA with: interlock tls init")
            }
            let s = try CertificateSummary(pem: text, source: path)
            let now = Date()
            print("certificate: \(path)")
            print("subject:     \(s.subject)")
            if s.issuer != s.subject { print("issuer:      \(s.issuer)") }
            print("sha256:      \(s.sha256Fingerprint)")
            print("serial:      \(s.serialNumber)")
            print("valid from:  \(s.notValidBefore.formatted(.iso8601))")
            let state = now >= s.notValidAfter ? " (EXPIRED)" : now < s.notValidBefore ? " (NOT YET VALID)" : ""
            print("valid until: \(s.notValidAfter.formatted(.iso8601))\(state)")
            if !s.isCertificateAuthority { print("warning:     not a CA certificate (basicConstraints CA:false)") }
        }

        func configuredCertificate() -> String {
            if let text = try? ConfigLoader.readFile(defaultConfigPath),
                let config = try? ConfigLoader.parse(text, path: defaultConfigPath)
            {
                return config.tls.caCertificate.value
            }
            return ApplianceTLSSettings.defaultCACertificate
        }
    }
}

private func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

private func errnoText() -> String { String(cString: strerror(errno)) }

private func makeDirectory(_ path: String) throws {
    if mkdir(path, 0o755) != 0, errno != EEXIST {
        throw CLIError("cannot create \(path): \(errnoText())")
    }
}

/// Writes `bytes` to a new file in `dir` with exactly `mode` (not reduced by the umask) and, when
/// given, `owner`; synced before it is returned.
private func writeTemporary(
    in dir: String, _ bytes: [UInt8], mode: mode_t, owner: (uid: uid_t, gid: gid_t)?
) throws
    -> String
{
    var template = Array("\(dir)/.ca.XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { throw CLIError("cannot create a file in \(dir): \(errnoText())") }
    let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    var ok = false
    defer {
        close(fd)
        if !ok { unlink(path) }
    }
    // mkstemp creates 0600; change the owner before widening anything.
    if let owner, fchown(fd, owner.uid, owner.gid) != 0 {
        throw CLIError("cannot give \(path) to uid \(owner.uid): \(errnoText()) (run as root)")
    }
    guard fchmod(fd, mode) == 0 else { throw CLIError("cannot chmod \(path): \(errnoText())") }
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw CLIError("cannot write \(path): \(errnoText())")
        }
        offset += n
    }
    guard fsync(fd) == 0 else { throw CLIError("cannot sync \(path): \(errnoText())") }
    ok = true
    return path
}

private func rename(_ from: String, _ to: String) throws {
    guard Glibc.rename(from, to) == 0 else {
        let text = errnoText()
        unlink(from)
        throw CLIError("cannot move \(from) to \(to): \(text)")
    }
}
