import Testing

@testable import Policy

@Suite struct ApplianceTLSConfigTests {
    @Test func absentSectionIsTheInstallDefaults() throws {
        let c = try ConfigLoader.parse("capture: { users: [] }\n", path: "p.yaml")
        #expect(c.tls.caCertificate.value == "/etc/interlock/tls/ca.crt")
        #expect(c.tls.caKey.value == "/etc/interlock/tls/ca.key")
        #expect(c.tls.caCertificate.location == nil)
    }

    @Test func pathsAreReadWithTheirLines() throws {
        let yaml = """
            tls:
              ca_certificate: /srv/pki/appliance.crt
              ca_key: /srv/pki/appliance.key
            """
        let c = try ConfigLoader.parse(yaml, path: "p.yaml")
        #expect(c.tls.caCertificate.value == "/srv/pki/appliance.crt")
        #expect(c.tls.caCertificate.location?.line == 2)
        #expect(c.tls.caKey.value == "/srv/pki/appliance.key")
        #expect(c.tls.caKey.location?.line == 3)
    }

    @Test func oneKeyKeepsTheOtherDefault() throws {
        let c = try ConfigLoader.parse("tls: { ca_key: /srv/pki/ca.key }\n", path: "p.yaml")
        #expect(c.tls.caKey.value == "/srv/pki/ca.key")
        #expect(c.tls.caCertificate.value == ApplianceTLSSettings.defaultCACertificate)
    }

    @Test(arguments: [
        ("tls:\n  ca_cert: /etc/ca.crt\n", 2, "tls.ca_cert", "unknown key"),
        ("tls:\n  ca_certificate: tls/ca.crt\n", 2, "tls.ca_certificate", "absolute path"),
        ("tls:\n  ca_key: ''\n", 2, "tls.ca_key", "non-empty"),
        ("tls:\n  ca_key: [a]\n", 2, "tls.ca_key", "non-empty"),
        ("tls: /etc/interlock/tls\n", 1, "tls", "expected a mapping"),
        (
            "tls:\n  ca_certificate: /etc/i/ca.pem\n  ca_key: /etc/i/ca.pem\n", 3, "tls.ca_key",
            "its own file"
        ),
    ])
    func badSectionNamesLineAndKey(yaml: String, line: Int, key: String, message: String) {
        #expect {
            _ = try ConfigLoader.parse(yaml, path: "/etc/interlock/interlock.yaml")
        } throws: { error in
            guard let e = error as? ConfigError else { return false }
            return e.location?.line == line && e.key == key && e.message.contains(message)
        }
    }
}
