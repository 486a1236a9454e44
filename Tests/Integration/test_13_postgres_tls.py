"""TLS on both legs of a PostgreSQL session: the client leg terminated on this host with a
certificate the appliance CA issues for the address the client dialled (psql sslmode=require and
verify-full), and the upstream leg per resource (disable, prefer, require, verify-full with a CA)."""

import json

import pytest

from harness import REMOTE4, bin_path
from pgtest import credentials_yaml, of_kind, psql


@pytest.fixture
def appliance_ca(world):
    """The appliance CA, made by `interlock tls init` as an operator would."""
    d = world.workdir / "appliance-tls"
    if not (d / "ca.crt").exists():
        p = world.in_host([str(bin_path("interlock")), "tls", "init", "--dir", str(d)])
        assert p.returncode == 0, p.stderr
        d.chmod(0o755)
        (d / "ca.crt").chmod(0o644)
    return d


def remote_ca(world):
    return world.workdir / "pg" / "tls" / "ca.crt"


def tls_daemon(make_daemon, appliance_ca, orders_db: str):
    d = make_daemon(start=False)
    d.write_config(orders_db=orders_db,
                   sections=f"tls: {{ ca_certificate: {appliance_ca / 'ca.crt'}, ca_key: {appliance_ca / 'ca.key'} }}")
    d.start()
    return d


SSL_QUERY = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def test_clients_get_tls_from_the_appliance_and_verify_full_passes_against_its_ca(world, make_daemon, appliance_ca):
    d = make_daemon(start=False)
    d.write_config(orders_db=credentials_yaml(d) + ", tls: { client: offer }",
                   sections=f"tls: {{ ca_certificate: {appliance_ca / 'ca.crt'}, ca_key: {appliance_ca / 'ca.key'} }}")
    d.start()
    before = d.last_index()
    p = psql(world, "svc-ci", SSL_QUERY, password="", env={"PGSSLMODE": "require"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "t"  # and upstream is TLS too (prefer, the server offers it)
    p = psql(world, "svc-ci", "SELECT 1", password="", env={"PGSSLMODE": "verify-full",
                                                            "PGSSLROOTCERT": str(appliance_ca / "ca.crt")})
    assert p.returncode == 0, p.stderr
    # The remote site's own CA did not sign what the client sees: verify-full against it fails.
    p = psql(world, "svc-ci", "SELECT 1", password="",
             env={"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(remote_ca(world))})
    assert p.returncode != 0 and "certificate" in p.stderr, p.stderr
    entries = d.wait_entries(lambda es: len(of_kind(es, "postgres.login")) >= 2, after=before, what="logins")
    assert all(e["client_tls"] and e["upstream_tls"] for e in of_kind(entries, "postgres.login"))


def test_client_tls_with_the_clients_own_password_needs_a_plain_upstream(world, make_daemon, appliance_ca):
    # SCRAM channel binding is per connection: pass-through over TLS on both legs cannot log in.
    sections = f"tls: {{ ca_certificate: {appliance_ca / 'ca.crt'}, ca_key: {appliance_ca / 'ca.key'} }}"
    d = make_daemon(start=False)
    d.write_config(orders_db="tls: { client: offer }", sections=sections)
    p = world.in_host([str(bin_path("interlock")), "policy", "check", str(d.config)])
    assert p.returncode != 0 and "channel binding" in p.stderr + p.stdout, p.stderr
    d.write_config(orders_db="tls: { client: offer, upstream: disable }", sections=sections)
    d.start()
    p = psql(world, "svc-ci", SSL_QUERY, env={"PGSSLMODE": "verify-full",
                                              "PGSSLROOTCERT": str(appliance_ca / "ca.crt")})
    assert p.returncode == 0 and p.stdout.strip() == "f", p.stderr


def test_without_client_offer_sslmode_require_is_refused_and_prefer_falls_back(world, make_daemon, appliance_ca):
    tls_daemon(make_daemon, appliance_ca, "")
    p = psql(world, "svc-ci", "SELECT 1", env={"PGSSLMODE": "require"})
    assert p.returncode != 0 and "SSL" in p.stderr, p.stderr
    p = psql(world, "svc-ci", "SELECT 1", env={"PGSSLMODE": "prefer"})
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("mode", ["disable", "require", "verify-full"])
def test_upstream_tls_modes(world, make_daemon, appliance_ca, mode):
    extra = f", ca_file: {remote_ca(world)}" if mode == "verify-full" else ""
    d = tls_daemon(make_daemon, appliance_ca, f"tls: {{ upstream: {mode}{extra} }}")
    before = d.last_index()
    p = psql(world, "svc-ci", SSL_QUERY)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == ("f" if mode == "disable" else "t")
    entries = d.wait_entries(lambda es: of_kind(es, "postgres.login"), after=before, what="login")
    assert of_kind(entries, "postgres.login")[0]["upstream_tls"] == (mode != "disable")


def test_verify_full_against_the_wrong_ca_gives_the_client_a_clear_error(world, make_daemon, appliance_ca):
    tls_daemon(make_daemon, appliance_ca, f"tls: {{ upstream: verify-full, ca_file: {appliance_ca / 'ca.crt'} }}")
    p = psql(world, "svc-ci", "SELECT 1")
    assert p.returncode != 0
    assert "interlock could not connect" in p.stderr and "orders-db" in p.stderr, p.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in p.stderr and "verify-full" in p.stderr, p.stderr


def test_column_masks_work_over_tls_with_injected_credentials(world, make_daemon, appliance_ca):
    d = make_daemon(start=False)
    d.write_config(
        orders_db=credentials_yaml(d) + f", tls: {{ client: offer, upstream: verify-full, ca_file: {remote_ca(world)} }}",
        rules="  - name: item-names\n    resources: [orders-db]\n    mask: { columns: [items.name], with: redact }\n",
        sections=f"tls: {{ ca_certificate: {appliance_ca / 'ca.crt'}, ca_key: {appliance_ca / 'ca.key'} }}")
    d.start()
    p = psql(world, "svc-ci", "SELECT name, id FROM items ORDER BY id", password="",
             env={"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(appliance_ca / "ca.crt")})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["[REDACTED]|1", "[REDACTED]|2", "[REDACTED]|3"]


def test_a_resource_offering_tls_without_a_usable_ca_is_a_policy_error(world, make_daemon):
    d = make_daemon(start=False)
    missing = world.workdir / "no-such-ca"
    d.write_config(orders_db="tls: { client: offer, upstream: disable }",
                   sections=f"tls: {{ ca_certificate: {missing}/ca.crt, ca_key: {missing}/ca.key }}")
    p = world.in_host([str(bin_path("interlock")), "policy", "check", str(d.config)])
    assert p.returncode != 0
    assert "interlock tls init" in p.stderr + p.stdout, p.stderr
