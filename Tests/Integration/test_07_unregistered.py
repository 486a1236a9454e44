"""7. `unregistered: deny` refuses and records; `record` forwards and records."""

import time

from harness import REMOTE4, sessions


def banner_connections(world):
    return [l for l in world.servers_log_lines() if l.startswith("banner ")]


def test_unregistered_deny_refuses_and_records(world, make_daemon):
    daemon = make_daemon(capture={"unregistered": "deny"})
    before = daemon.last_index()
    seen = len(banner_connections(world))
    got = world.tcp_probe("svc-ci", REMOTE4, 7777)
    assert not got.startswith("data:"), f"unregistered destination was forwarded under deny: {got}"
    entries = daemon.wait_entries(lambda es: sessions(es, user="svc-ci", destination=(REMOTE4, 7777)),
                                  after=before, what="a recorded deny for 198.18.0.10:7777")
    o = sessions(entries, user="svc-ci", destination=(REMOTE4, 7777))[0]
    assert o["decision"] == "deny", o
    assert o["resource"] is None, o
    assert o.get("reason"), o
    time.sleep(0.3)
    assert len(banner_connections(world)) == seen, "the server saw a connection that policy denied"
    # Control: an uncaptured account reaches the same server.
    assert world.tcp_probe("alice", REMOTE4, 7777) == "data:banner 7777"


def test_unregistered_record_forwards_and_records(world, make_daemon):
    daemon = make_daemon(capture={"unregistered": "record"})
    before = daemon.last_index()
    got = world.tcp_probe("svc-ci", REMOTE4, 7777)
    assert got == "data:banner 7777", f"unregistered destination under record: {got}"
    entries = daemon.wait_entries(lambda es: sessions(es, user="svc-ci", destination=(REMOTE4, 7777)),
                                  after=before, what="a recorded allow for 198.18.0.10:7777")
    o = sessions(entries, user="svc-ci", destination=(REMOTE4, 7777))[0]
    assert o["decision"] == "allow", o
    assert o["resource"] is None, o
    assert o["protocol"] == "tcp", o
