"""The tamper-evident log on a real daemon: a signed genesis, checkpoints, an auditor (audra, in
interlock-auditors, not root) exporting and verifying offline with the public key alone, a trusted
checkpoint carried between exports, tampering caught, a kill -9 in the middle of a client's writes
(every statement the server ran has its entry, and the log still verifies), and many concurrent
sessions leaving a gap-free log."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time

import pytest

from harness import PYTHON, REMOTE4, bin_path, run, wait_until
from pgtest import admin_sql, credentials_yaml, of_kind, statements


def start(make_daemon):
    d = make_daemon(start=False)
    d.write_config(orders_db=credentials_yaml(d))
    return d.start()


def offline(d, *args, user=None):
    """`interlock` with no daemon involved (verify takes no --socket)."""
    argv = [str(bin_path("interlock"))] + list(args)
    if user is None:
        return d.world.in_host(argv, timeout=120)
    return d.world.as_user(user, argv, timeout=120)


def verify_local(d, database=None):
    return offline(d, "audit", "verify", "--local", "--database", str(database or d.dir / "audit.db"),
                   "--key", str(d.dir / "checkpoint.pub"))


def auditor_dir(d, name):
    path = d.dir / name
    path.mkdir()
    shutil.chown(path, "audra")
    return path


def export(d, out, *args, user="audra", check=True):
    return d.cli("audit", "export", "--out", str(out), *args, user=user, check=check, timeout=120)


def verify(d, bundle, key, *args, user="audra"):
    return offline(d, "audit", "verify", str(bundle), "--key", str(key), *args, user=user)


def traffic(world, n=5):
    for i in range(n):
        p = world.as_user("svc-ci", ["psql", "-X", "-At", "-h", REMOTE4, "-d", "orders", "-U", "postgres",
                                     "-c", f"SELECT {i}"], env={"PGCONNECT_TIMEOUT": "5"})
        assert p.returncode == 0, p.stderr


def test_the_log_starts_with_a_signed_genesis_and_verifies_locally(world, make_daemon):
    d = start(make_daemon)
    key = d.cli("audit", "public-key", user="audra").stdout.strip()
    assert (d.dir / "checkpoint.pub").read_text().strip() == key
    assert oct((d.dir / "checkpoint.key").stat().st_mode & 0o777) == "0o600"
    [genesis] = [e for e in d.audit() if e["index"] == 1]
    assert genesis["kind"] == "log.genesis" and genesis["public_key"] == key
    assert genesis["origin"] == "interlock/" + genesis["appliance_id"] and genesis["version"]
    traffic(world, 3)
    time.sleep(1.5)  # a checkpoint at most a second after the entries
    p = verify_local(d)
    assert p.returncode == 0 and "PASS" in p.stdout, p.stdout + p.stderr


def test_an_auditor_exports_and_verifies_offline_with_the_public_key_alone(world, make_daemon):
    d = start(make_daemon)
    traffic(world, 5)
    key = auditor_dir(d, "keys") / "interlock.pub"
    key.write_text(d.cli("audit", "public-key", user="audra").stdout)
    first = auditor_dir(d, "first")
    out = export(d, first / "bundle")
    assert "proven against checkpoint" in out.stdout
    files = sorted(os.listdir(first / "bundle"))
    assert files == ["blobs", "chain-proofs.jsonl", "chain.jsonl", "checkpoint", "checkpoints", "consistency.json",
                     "entries.csv", "entries.jsonl", "manifest", "proofs.jsonl", "public.key"], files
    p = verify(d, first / "bundle", key)
    assert p.returncode == 0 and "PASS" in p.stdout, p.stdout + p.stderr
    entries = [json.loads(line) for line in (first / "bundle" / "entries.jsonl").read_text().splitlines()]
    assert [e["index"] for e in entries] == list(range(1, len(entries) + 1))
    assert len(statements(entries)) == 5
    csv = (first / "bundle" / "entries.csv").read_text().splitlines()
    assert csv[0].startswith("index,leaf_hash,") and len(csv) == len(entries) + 1

    # Later: more traffic, a new export proven consistent with the checkpoint kept from the first.
    traffic(world, 3)
    second = auditor_dir(d, "second")
    export(d, second / "bundle", "--kind", "statement", "--trusted-checkpoint", str(first / "bundle" / "checkpoint"))
    p = verify(d, second / "bundle", key, "--trusted-checkpoint", str(first / "bundle" / "checkpoint"))
    assert p.returncode == 0 and "PASS" in p.stdout, p.stdout + p.stderr
    assert "consistency proofs: 1" in p.stdout or "consistency proofs: 2" in p.stdout, p.stdout

    # A changed entry is named.
    lines = (first / "bundle" / "entries.jsonl").read_text().splitlines()
    target = next(i for i, e in enumerate(entries) if e["kind"] == "statement")
    lines[target] = lines[target].replace("SELECT", "DELETE", 1)
    (first / "bundle" / "entries.jsonl").write_text("\n".join(lines) + "\n")
    p = verify(d, first / "bundle", key)
    assert p.returncode == 1 and f"entry {entries[target]['index']}:" in p.stdout, p.stdout

    # Only auditors and admins export.
    nobody = auditor_dir(d, "nobody")
    shutil.chown(nobody, "alice")
    p = export(d, nobody / "b", user="alice", check=False)
    assert p.returncode != 0 and "interlock-auditors" in p.stderr


def test_tampering_with_the_database_file_is_caught_and_named(world, make_daemon):
    d = start(make_daemon)
    traffic(world, 4)
    time.sleep(1.5)
    d.stop()
    copy = d.dir / "tampered.db"
    for suffix in ("", "-wal", "-shm"):
        if (d.dir / f"audit.db{suffix}").exists():
            shutil.copy(d.dir / f"audit.db{suffix}", f"{copy}{suffix}")
    db = sqlite3.connect(copy)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    [(idx,)] = db.execute("SELECT min(idx) FROM entries WHERE kind = 'statement'").fetchall()
    db.execute("UPDATE entries SET body = CAST(replace(CAST(body AS TEXT), 'SELECT 1', 'SELECT 7') AS BLOB) "
               "WHERE idx = (SELECT min(idx) FROM entries WHERE kind = 'statement' AND CAST(body AS TEXT) LIKE '%SELECT 1%')")
    [(changed,)] = db.execute("SELECT min(idx) FROM entries WHERE CAST(body AS TEXT) LIKE '%SELECT 7%'").fetchall()
    db.commit()
    db.close()
    p = verify_local(d, copy)
    assert p.returncode == 1 and f"entry {changed}:" in p.stdout, p.stdout
    assert verify_local(d).returncode == 0, "the original still verifies"


def test_a_kill_9_loses_no_statement_the_server_ran_and_the_log_still_verifies(world, make_daemon):
    admin_sql(world, "DROP TABLE IF EXISTS crash; CREATE TABLE crash (id int PRIMARY KEY)")
    d = start(make_daemon)
    script = "".join(f"INSERT INTO crash VALUES ({i});\n" for i in range(1, 20001))
    client = subprocess.Popen(
        world.as_user_cmd("svc-ci", ["psql", "-X", "-q", "-h", REMOTE4, "-d", "orders", "-U", "postgres"]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"}, start_new_session=True)
    client.stdin.write(script)
    client.stdin.close()
    client.stdin = None  # communicate() must not touch it again
    assert wait_until(lambda: int(admin_sql(world, "SELECT count(*) FROM crash").strip()) > 300, timeout=30)
    d.signal(signal.SIGKILL)
    d.proc.wait(timeout=10)
    client.communicate(timeout=30)
    ran = {int(x) for x in admin_sql(world, "SELECT id FROM crash").split()}
    assert len(ran) > 300
    d.start()
    # Read straight from the file (tens of thousands of entries; root may read it).
    db = sqlite3.connect(d.dir / "audit.db")
    recorded = set()
    for (body,) in db.execute("SELECT body FROM entries WHERE kind = 'statement'"):
        text = json.loads(body)["text"]
        if text.startswith("INSERT INTO crash VALUES ("):
            recorded.add(int(text.split("(")[1].rstrip(");")))
    db.close()
    assert ran <= recorded, f"statements the server ran without an entry: {sorted(ran - recorded)[:10]}"
    time.sleep(1.5)
    p = verify_local(d)
    assert p.returncode == 0 and "PASS" in p.stdout, p.stdout + p.stderr


def test_many_concurrent_sessions_leave_a_gap_free_verifiable_log(world, make_daemon):
    init = run(["runuser", "-u", "postgres", "--", "pgbench", "-i", "-q", "-s", "1", "-h", str(world.workdir / "pg"),
                "-U", "postgres", "orders"], timeout=120)
    assert init.returncode == 0, init.stderr
    d = start(make_daemon)
    before = d.last_index()
    p = world.as_user("svc-ci", ["pgbench", "-n", "-S", "-c", "16", "-j", "2", "-t", "100", "-h", REMOTE4,
                                 "-U", "postgres", "orders"], timeout=180, env={"PGCONNECT_TIMEOUT": "5"})
    assert p.returncode == 0, p.stderr
    entries = d.wait_entries(lambda es: len(statements(es)) >= 1600, after=before, timeout=30,
                             what="1600 statement entries")
    all_entries = d.audit()
    assert [e["index"] for e in all_entries] == list(range(1, len(all_entries) + 1)), "indexes are gap-free"
    assert len([s for s in statements(entries) if s["text"].startswith("SELECT abalance")]) == 1600
    time.sleep(1.5)
    p = verify_local(d)
    assert p.returncode == 0 and "PASS" in p.stdout, p.stdout + p.stderr


def test_an_auditor_writes_a_period_report_anchored_to_a_verified_checkpoint(world, make_daemon):
    d = start(make_daemon)
    traffic(world, 4)
    key = auditor_dir(d, "keys") / "interlock.pub"
    key.write_text(d.cli("audit", "public-key", user="audra").stdout)
    out = auditor_dir(d, "reports") / "q4"
    p = d.cli("audit", "report", "--since", "1h", "--until", "now", "--out", str(out), "--key", str(key),
              user="audra", check=False, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "svc-ci" in md and "orders-db" in md and "PASS" in md, md[:2000]
    assert "svc-ci" in html and "<html" in html.lower()
    assert "SELECT 0" not in md and "SELECT 0" not in html, "reports carry counts, never statement texts"
    assert "interlock/" in md, "the report names the log (origin) and checkpoint it is anchored to"


def test_the_key_made_at_install_is_the_one_the_log_is_signed_with(world, make_daemon):
    d = make_daemon(start=False)
    key = d.dir / "keys" / "checkpoint.key"
    key.parent.mkdir()
    shutil.chown(key.parent, "interlock")
    p = offline(d, "audit", "init-key", "--path", str(key), "--config", "/nonexistent")
    assert p.returncode == 0, p.stderr
    assert oct(key.stat().st_mode & 0o777) == "0o600" and key.owner() == "interlock"
    public = (d.dir / "keys" / "checkpoint.pub").read_text().strip()
    again = offline(d, "audit", "init-key", "--path", str(key), "--config", "/nonexistent")
    assert again.returncode == 0 and "kept" in again.stdout and public in again.stdout
    d.write_config(orders_db=credentials_yaml(d), audit={"signing_key": str(key)})
    d.start()
    [genesis] = [e for e in d.audit() if e["kind"] == "log.genesis"]
    assert genesis["public_key"] == public == d.cli("audit", "public-key", user="audra").stdout.strip()
