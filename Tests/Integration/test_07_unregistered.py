"""7. `unregistered: deny` refuses and records; `record` forwards and records."""

import subprocess
import time

from harness import PYTHON, REMOTE4, SERVERS_PY, sessions


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


def test_resource_by_host_name(world, make_daemon):
    # `localhost` resolves (via /etc/hosts) to 127.0.0.1 and ::1; a server listens on 127.0.0.1:7779 in
    # the host namespace. Under `unregistered: deny`, only a matching resource lets svc-ci through.
    log = world.workdir / "host-banner.log"
    server = subprocess.Popen(world.netns(world.host) + [PYTHON, str(SERVERS_PY), "--log", str(log),
                                                         "--banner", "127.0.0.1:7779"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd="/tmp")
    try:
        assert server.stdout.readline().strip() == b"ready"
        daemon = make_daemon(capture={"unregistered": "deny"},
                             extra_resources=['  - { name: local-banner, protocol: tcp, address: "localhost:7779" }'])
        before = daemon.last_index()
        assert world.tcp_probe("svc-ci", "127.0.0.1", 7779) == "data:banner 7779"
        entries = daemon.wait_entries(lambda es: sessions(es, user="svc-ci", destination=("127.0.0.1", 7779)),
                                      after=before, what="a session to the host-name resource")
        o = sessions(entries, user="svc-ci", destination=("127.0.0.1", 7779))[0]
        assert o["resource"] == "local-banner" and o["decision"] == "allow", o
    finally:
        server.kill()
        server.wait(timeout=5)
