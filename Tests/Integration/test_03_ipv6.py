"""3. IPv6 destinations are captured the same way."""

from harness import REMOTE6, close_of, sessions
from test_01_capture import assert_identity


def test_ipv6_destination_is_captured_and_recorded(world, daemon):
    before = daemon.last_index()
    p = world.psql("svc-ci", "SELECT count(*) FROM items", host=REMOTE6, in_unit=True)
    assert p.returncode == 0, f"captured psql over IPv6 failed: {p.stderr}"
    assert p.stdout.strip() == "3"
    entries = daemon.wait_entries(
        lambda es: [o for o in sessions(es, user="svc-ci", destination=(REMOTE6, 5432)) if close_of(es, o)],
        after=before, what="session.open/close for svc-ci → [2001:db8:18::10]:5432")
    o = sessions(entries, user="svc-ci", destination=(REMOTE6, 5432))[0]
    assert o["resource"] == "orders-db-v6"
    assert o["decision"] == "allow"
    assert ":" in o["source"]["address"], o["source"]
    assert_identity(o, "svc-ci", exe_hint="psql")
    c = close_of(entries, o)
    assert c["bytes_up"] > 0 and c["bytes_down"] > 0, c
