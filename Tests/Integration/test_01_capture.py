"""1. A captured account's unchanged client reaches the remote server through interlockd, and the
evidence shows its user, uid, groups, unit or process, the original destination and the byte counts."""

import os
import pwd

from harness import (CGROUP_UNIT, HTTP_FILE_SIZE, REMOTE4, REMOTE4_HTTP, close_of, sessions, user_groups)


def assert_identity(open_entry, user, in_unit=True, exe_hint=None):
    ident = open_entry["identity"]
    pw = pwd.getpwnam(user)
    assert ident["user"] == user
    assert ident["uid"] == pw.pw_uid
    assert ident["gid"] == pw.pw_gid
    assert set(ident["groups"]) == user_groups(user), ident
    if in_unit:
        assert ident["unit"] == CGROUP_UNIT, ident
        assert ident["cgroup"].endswith("/" + CGROUP_UNIT), ident
    # pid, executable and command line are best-effort enrichment; when present they must be right.
    if exe_hint and ident.get("pid") is not None:
        assert ident.get("executable") and exe_hint in os.path.basename(ident["executable"]), ident


def test_captured_psql_is_forwarded_and_recorded_with_its_identity(world, daemon):
    before = daemon.last_index()
    p = world.psql("svc-ci", "SELECT name FROM items ORDER BY id", in_unit=True)
    assert p.returncode == 0, f"captured psql failed: {p.stderr}"
    assert p.stdout.split() == ["widget", "gadget", "gizmo"]

    entries = daemon.wait_entries(
        lambda es: [o for o in sessions(es, user="svc-ci", destination=(REMOTE4, 5432)) if close_of(es, o)],
        after=before, what="session.open and session.close for svc-ci → 198.18.0.10:5432")
    opens = sessions(entries, user="svc-ci", destination=(REMOTE4, 5432))
    assert len(opens) == 1, opens
    o = opens[0]
    assert o["decision"] == "allow"
    assert o["resource"] == "orders-db"
    assert o["protocol"] == "postgres"
    assert o["source"]["port"] > 0
    assert_identity(o, "svc-ci", exe_hint="psql")
    c = close_of(entries, o)
    assert c["bytes_up"] > 0 and c["bytes_down"] > 0, c
    assert c["duration_ms"] >= 0


def test_captured_curl_download_is_counted(world, daemon):
    before = daemon.last_index()
    p = world.as_user("svc-ci", ["curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{size_download}",
                                 f"http://{REMOTE4_HTTP}:8080/blob.bin"], in_unit=True)
    assert p.returncode == 0, f"captured curl failed: {p.stderr}"
    assert int(p.stdout) == HTTP_FILE_SIZE

    entries = daemon.wait_entries(
        lambda es: [o for o in sessions(es, user="svc-ci", destination=(REMOTE4_HTTP, 8080)) if close_of(es, o)],
        after=before, what="curl's session.open and session.close")
    o = sessions(entries, user="svc-ci", destination=(REMOTE4_HTTP, 8080))[0]
    assert o["resource"] == "artifacts"
    assert o["decision"] == "allow"
    assert_identity(o, "svc-ci", exe_hint="curl")
    c = close_of(entries, o)
    assert c["bytes_down"] >= HTTP_FILE_SIZE, c
    assert 0 < c["bytes_up"] < 10_000, c


def test_group_member_is_captured_through_the_group(world, daemon):
    before = daemon.last_index()
    p = world.psql("svc-bot", in_unit=True)
    assert p.returncode == 0, p.stderr
    entries = daemon.wait_entries(
        lambda es: sessions(es, user="svc-bot", destination=(REMOTE4, 5432)), after=before,
        what="session.open for svc-bot (member of bots)")
    o = sessions(entries, user="svc-bot", destination=(REMOTE4, 5432))[0]
    assert "bots" in o["identity"]["groups"]
    assert_identity(o, "svc-bot", exe_hint="psql")


def test_client_outside_a_unit_is_still_identified(world, daemon):
    before = daemon.last_index()
    p = world.psql("svc-ci", in_unit=False)
    assert p.returncode == 0, p.stderr
    entries = daemon.wait_entries(
        lambda es: sessions(es, user="svc-ci", destination=(REMOTE4, 5432)), after=before,
        what="session.open for svc-ci outside the unit cgroup")
    o = sessions(entries, user="svc-ci")[0]
    assert o["identity"]["unit"] != CGROUP_UNIT


SAME_PORT = r"""
import socket, sys, time
port = int(sys.argv[1])
def conn(dst):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("198.18.0.1", port))
    s.settimeout(5)
    s.connect(dst)
    return s
a = conn(("198.18.0.10", 5432))
time.sleep(0.3)
try:
    b = conn(("198.18.0.11", 8080))
    b.sendall(b"GET /blob.bin HTTP/1.0\r\n\r\n")
    print("http:" + b.recv(12).decode())
    b.close()
except OSError as e:
    print("http-error:" + type(e).__name__)
a.close()
"""


def test_source_port_shared_by_two_connections_is_still_identified(world, daemon):
    # Two sockets of svc-ci with the same local address and port (SO_REUSEADDR) to two different
    # destinations are two distinct connections. Both are redirected to the same listener, so the
    # kernel's NAT has to give the second one another source port on the way to interlockd. The
    # daemon must still find the real socket (its original tuple) and identify it: a client that
    # happens to reuse a port must neither be refused nor be attributed to someone else.
    before = daemon.last_index()
    port = 41000 + (os.getpid() % 1000)
    p = world.python("svc-ci", SAME_PORT, str(port))
    assert p.returncode == 0, p.stderr
    entries = daemon.audit(before)
    opens = sessions(entries)
    assert p.stdout.strip() == "http:HTTP/1.0 200", (
        f"second connection was not forwarded: {p.stdout.strip()}; session.open entries:\n"
        + "\n".join(str({k: o.get(k) for k in ('source', 'destination', 'decision', 'reason')}) for o in opens))
    http = sessions(entries, destination=(REMOTE4_HTTP, 8080))
    assert http and http[0]["identity"]["user"] == "svc-ci", http
    assert http[0]["source"]["port"] == port, "the evidence must show the client's real source port"
