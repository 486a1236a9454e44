"""8. A broken policy file is rejected with its line, and the running policy keeps working; a good
reload applies (a newly captured user) without dropping live connections."""

import re
import signal
import subprocess
import time

import pytest

from harness import PG_SESSION, bin_path, PYTHON, REMOTE4, render_config, run, sessions


def good_text(daemon, **kw):
    return render_config(daemon, **kw)


def line_of(text, needle):
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise ValueError(needle)


# Each case: (name, transform of the good text, needle identifying the offending line, word in message)
BROKEN = [
    ("bad-yaml", lambda t: t.replace("  dns: allow", "  dns: allow: really"), "dns: allow: really", None),
    ("unknown-key", lambda t: t.replace("  dns: allow", "  dns: allow\n  userz: [mallory]"), "userz", "userz"),
    ("bad-address", lambda t: t.replace('"198.18.0.10:5432"', '"198.18.0.300:5432"'), "198.18.0.300", "address"),
    ("bad-cidr", lambda t: t.replace('"198.18.0.0/24:8080"', '"198.18.0.0/33:8080"'), "/33", "address"),
    ("bad-enum", lambda t: t.replace("unregistered: deny", "unregistered: maybe"), "maybe", "unregistered"),
]


@pytest.mark.parametrize("name,transform,needle,word", BROKEN, ids=[b[0] for b in BROKEN])
def test_policy_check_rejects_broken_file_with_its_line(world, make_daemon, name, transform, needle, word):
    d = make_daemon(start=False)
    text = transform(good_text(d))
    path = d.dir / f"{name}.yaml"
    path.write_text(text)
    p = run([str(bin_path("interlock")), "policy", "check", str(path)])
    assert p.returncode != 0, f"policy check accepted a broken file ({name}):\n{text}"
    line = line_of(text, needle)
    m = re.search(re.escape(str(path)) + r":(\d+):(\d+): ", p.stderr)
    assert m, f"no FILE:LINE:COL: in stderr: {p.stderr!r}"
    assert int(m.group(1)) == line, f"reported line {m.group(1)}, offending line is {line}: {p.stderr!r}"
    if word:
        assert word in p.stderr, p.stderr


def test_policy_check_accepts_the_good_file(world, make_daemon):
    d = make_daemon(start=False)
    p = run([str(bin_path("interlock")), "policy", "check", str(d.config)])
    assert p.returncode == 0, p.stderr


def rejected_loads(entries):
    return [e for e in entries if e["kind"] == "policy.loaded" and e.get("outcome") == "rejected"]


def ok_loads(entries):
    return [e for e in entries if e["kind"] == "policy.loaded" and e.get("outcome") == "ok"]


def test_broken_reload_keeps_the_running_policy(world, daemon):
    good = daemon.config.read_text()
    broken = good.replace("  dns: allow", "  dns: allow\n  userz: [mallory]")

    # SIGHUP with a broken file.
    before = daemon.last_index()
    daemon.config.write_text(broken)
    daemon.signal(signal.SIGHUP)
    daemon.wait_entries(rejected_loads, after=before, what="policy.loaded rejected after SIGHUP")
    assert daemon.running()

    # `interlock reload` with the broken file fails and says why.
    mark = daemon.last_index()
    r = daemon.cli("reload", check=False)
    assert r.returncode != 0, f"reload of a broken file succeeded: {r.stdout}"
    assert "userz" in (r.stderr + r.stdout), r.stderr
    daemon.wait_entries(rejected_loads, after=mark, what="policy.loaded rejected after interlock reload")

    # The old policy is still in force: svc-ci is captured and forwarded.
    mark = daemon.last_index()
    p = world.psql("svc-ci")
    assert p.returncode == 0, p.stderr
    entries = daemon.wait_entries(lambda es: sessions(es, user="svc-ci", destination=(REMOTE4, 5432)),
                                  after=mark, what="a captured session under the old policy")
    assert sessions(entries, user="svc-ci")[0]["resource"] == "orders-db"

    # Fixing the file and sending SIGHUP again loads it.
    mark = daemon.last_index()
    daemon.config.write_text(good)
    daemon.signal(signal.SIGHUP)
    daemon.wait_entries(ok_loads, after=mark, what="policy.loaded ok after the fix")


def test_good_reload_captures_new_user_without_dropping_live_connections(world, daemon):
    # A live captured session (psycopg2 as svc-ci) held open across the reload.
    live = subprocess.Popen(world.as_user_cmd("svc-ci", [PYTHON, "-c", PG_SESSION, REMOTE4]),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd="/tmp")
    try:
        first = live.stdout.readline().split()
        assert first[:1] == ["q1"], f"live session did not start: {first} {live.stderr.read() if live.poll() is not None else ''}"
        backend = first[1]

        before = daemon.last_index()
        # alice is not captured yet: direct, unrecorded.
        assert world.psql("alice").returncode == 0
        daemon.write_config(capture={"users": ["svc-ci", "alice"]})
        r = daemon.cli("reload")
        assert r.returncode == 0
        daemon.wait_entries(ok_loads, after=before, what="policy.loaded ok")
        assert not sessions(daemon.audit(before), user="alice")

        mark = daemon.last_index()
        p = world.psql("alice")
        assert p.returncode == 0, p.stderr
        daemon.wait_entries(lambda es: sessions(es, user="alice", destination=(REMOTE4, 5432)),
                            after=mark, what="alice captured after the reload")

        live.stdin.write("again\n")
        live.stdin.flush()
        second = live.stdout.readline().split()
        assert second[:2] == ["q", backend], f"live session after reload: {second}"
    finally:
        if live.poll() is None:
            try:
                live.stdin.write("quit\n")
                live.stdin.flush()
                live.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                live.kill()
                live.wait(timeout=5)


def test_reload_re_expands_groups(world, daemon):
    # svc-late is not captured until it joins the group `bots` and the policy is reloaded.
    subprocess.run(["gpasswd", "-d", "svc-late", "bots"], capture_output=True, timeout=10)
    try:
        before = daemon.last_index()
        assert world.psql("svc-late").returncode == 0
        subprocess.run(["usermod", "-a", "-G", "bots", "svc-late"], check=True, timeout=10)
        time.sleep(0.5)
        assert not sessions(daemon.audit(before), user="svc-late"), "captured before the reload"
        daemon.signal(signal.SIGHUP)
        daemon.wait_entries(ok_loads, after=before, what="policy.loaded ok after SIGHUP")
        mark = daemon.last_index()
        assert world.psql("svc-late").returncode == 0
        entries = daemon.wait_entries(lambda es: sessions(es, user="svc-late"), after=mark,
                                      what="svc-late captured through bots after the reload")
        assert "bots" in sessions(entries, user="svc-late")[0]["identity"]["groups"]
    finally:
        subprocess.run(["gpasswd", "-d", "svc-late", "bots"], capture_output=True, timeout=10)
