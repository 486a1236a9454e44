"""5. With the daemon stopped, a captured account's connection is refused, not sent direct."""

import secrets
import time

from harness import REMOTE4, REMOTE6, wait_until


def test_stopped_daemon_refuses_captured_connections(world, daemon):
    assert daemon.stop() is not None
    assert not daemon.running()
    listing = world.nft("list", "table", "inet", "interlock")
    assert listing.returncode == 0, "the table must stay installed when the daemon stops (fail closed)"

    marker = "it-failclosed-" + secrets.token_hex(4)
    t0 = time.monotonic()
    p = world.psql("svc-ci", appname=marker, connect_timeout=8)
    elapsed = time.monotonic() - t0
    assert p.returncode != 0, f"svc-ci's psql succeeded with the daemon stopped: {p.stdout}"
    assert elapsed < 4, f"psql took {elapsed:.1f} s to fail: it should be refused at once, not time out"

    marker6 = marker + "-v6"
    p6 = world.psql("svc-ci", host=REMOTE6, appname=marker6, connect_timeout=8)
    assert p6.returncode != 0, "svc-ci's IPv6 psql succeeded with the daemon stopped"

    alice_marker = "it-failclosed-alice-" + secrets.token_hex(4)
    q = world.psql("alice", appname=alice_marker)
    assert q.returncode == 0, f"uncaptured alice must still connect: {q.stderr}"
    assert wait_until(lambda: alice_marker in world.pg_log_text(), timeout=5), "PostgreSQL log misses alice"
    assert marker not in world.pg_log_text(), "svc-ci's connection reached PostgreSQL directly"


def test_stopped_daemon_keeps_udp_rejected(world, daemon):
    daemon.stop()
    got = world.udp_probe("svc-ci", REMOTE4, 9999, "after-stop")
    assert not got.startswith("reply:"), got
