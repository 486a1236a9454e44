"""The daemon itself: privileges dropped, start and stop recorded, evidence kept across restarts."""

import os
import pwd
import socket
import time

from harness import sessions


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def test_daemon_drops_to_its_user_keeping_only_cap_net_admin(world, daemon):
    st = proc_status(daemon.pid)
    uid = pwd.getpwnam("interlock").pw_uid
    assert st["Uid"].split() == [str(uid)] * 4, st["Uid"]
    assert st["Gid"].split()[0] == str(pwd.getpwnam("interlock").pw_gid), st["Gid"]
    cap_net_admin = 1 << 12
    assert int(st["CapEff"], 16) == cap_net_admin, st["CapEff"]
    assert int(st["CapPrm"], 16) == cap_net_admin, st["CapPrm"]


def test_start_is_recorded(world, daemon):
    kinds = [e["kind"] for e in daemon.audit()]
    # The log's own genesis first (its signing key), then the start.
    assert kinds[:2] == ["log.genesis", "daemon.started"], kinds
    assert "ruleset.installed" in kinds
    loads = [e for e in daemon.audit() if e["kind"] == "policy.loaded"]
    assert loads and loads[0]["outcome"] == "ok", loads


def test_evidence_survives_a_restart_and_stop_is_recorded(world, make_daemon):
    first = make_daemon()
    assert world.psql("svc-ci").returncode == 0
    first.wait_entries(lambda es: sessions(es, user="svc-ci"), what="a session before restart")
    # session.close is a deferred entry (committed with the next one, or within 50 ms): wait for it,
    # so that what follows in the log is exactly the stop and the next start.
    first.wait_entries(lambda es: [e for e in es if e["kind"] == "session.close"], what="its session.close")
    before = first.audit()
    assert first.stop() == 0, f"interlockd exit code after SIGTERM: {first.proc.returncode}"
    second = make_daemon(directory=first.dir)
    after = second.audit()
    assert after[:len(before)] == before, "entries changed across a restart"
    kinds = [e["kind"] for e in after[len(before):]]
    assert kinds[:2] == ["daemon.stopped", "daemon.started"], kinds
    idx = [e["index"] for e in after]
    assert idx == list(range(idx[0], idx[0] + len(idx)))


def test_uninstall_removes_the_table_and_stops_the_daemon(world, daemon):
    r = daemon.cli("uninstall", check=False, timeout=20)
    assert r.returncode == 0, r.stderr
    assert world.nft("list", "table", "inet", "interlock").returncode != 0
    daemon.proc.wait(timeout=10)
    # With the table gone, svc-ci is no longer captured: it goes direct.
    p = world.psql("svc-ci")
    assert p.returncode == 0, p.stderr


def test_systemd_notify_ready_and_watchdog(world, make_daemon):
    d = make_daemon(start=False)
    path = d.dir / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    os.chmod(path, 0o777)  # the daemon sends after dropping to user interlock
    s.settimeout(0.5)
    try:
        d.start(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})
        got = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not ("READY=1" in got and "WATCHDOG=1" in got):
            try:
                got += s.recv(4096).decode().split("\n")
            except socket.timeout:
                pass
        assert "READY=1" in got, got
        assert "WATCHDOG=1" in got, got
        d.stop()
        try:
            while True:
                got += s.recv(4096).decode().split("\n")
        except socket.timeout:
            pass
        assert "STOPPING=1" in got, got
    finally:
        s.close()
