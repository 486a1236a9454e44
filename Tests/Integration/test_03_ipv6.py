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


MAPPED = r"""
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(("::ffff:198.18.0.10", 7777))
    print("data:" + s.recv(100).decode().strip())
except OSError as e:
    print("error:" + type(e).__name__)
"""


def test_ipv4_mapped_destination_from_an_ipv6_socket_is_captured(world, make_daemon):
    # An AF_INET6 socket connecting to ::ffff:198.18.0.10 sends IPv4 packets: it must be captured and
    # identified like any IPv4 connection, not slip through as "IPv6" or be refused as unknown.
    daemon = make_daemon(capture={"unregistered": "record"})
    before = daemon.last_index()
    p = world.python("svc-ci", MAPPED)
    assert p.returncode == 0, p.stderr
    entries = daemon.wait_entries(lambda es: sessions(es, destination=("198.18.0.10", 7777)), after=before,
                                  what="a session for the v4-mapped destination")
    o = sessions(entries, destination=("198.18.0.10", 7777))[0]
    assert o["decision"] == "allow" and o["identity"]["user"] == "svc-ci", o
    assert p.stdout.strip() == "data:banner 7777", p.stdout
