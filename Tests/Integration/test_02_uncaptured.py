"""2. An uncaptured account connects directly, and nothing is recorded."""

from harness import REMOTE4, REMOTE4_HTTP, REMOTE6, sessions


def test_uncaptured_account_goes_direct_and_is_not_recorded(world, daemon):
    before = daemon.last_index()
    marker = "it-alice-direct"
    p = world.psql("alice", "SELECT host(inet_client_addr())", appname=marker, in_unit=True)
    assert p.returncode == 0, p.stderr
    # Direct: PostgreSQL sees the host namespace's own address, not the daemon's upstream socket
    # (which would also be 198.18.0.1, so the evidence below is the real check).
    assert p.stdout.strip() == "198.18.0.1"
    p6 = world.psql("alice", "SELECT 1", host=REMOTE6)
    assert p6.returncode == 0, p6.stderr
    c = world.as_user("alice", ["curl", "-sS", "--max-time", "10", "-o", "/dev/null",
                                f"http://{REMOTE4_HTTP}:8080/blob.bin"])
    assert c.returncode == 0, c.stderr

    # Give a (wrong) session.open time to appear before asserting its absence.
    import time
    time.sleep(1.5)
    after = daemon.audit(before)
    assert [e for e in after if e["kind"].startswith("session.")] == [], after
    assert sessions(daemon.audit(0), user="alice") == []
