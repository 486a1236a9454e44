"""Evidence before forwarding, when the store cannot write: a full disk refuses the statement with a
protocol-correct error (FATAL 58030), never forwards it unrecorded, loses nothing already recorded,
and the daemon records again once there is space."""

import json
import os
import sqlite3
import subprocess
import time

import pytest

from harness import PYTHON, REMOTE4, run
from pgtest import PGRAW, admin_sql, credentials_yaml, psql, statements


@pytest.fixture
def small_disk(world):
    mnt = world.workdir / "smallfs"
    mnt.mkdir(exist_ok=True)
    p = run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(mnt)])
    assert p.returncode == 0, p.stderr
    try:
        yield mnt
    finally:
        run(["umount", "-l", str(mnt)])


def fill(path):
    """Writes zeros to `path` until the file system is full (bounded: the tmpfs is 8 MiB)."""
    with open(path, "wb") as f:
        chunk = b"\0" * 65536
        for _ in range(1024):
            try:
                f.write(chunk)
                f.flush()
            except OSError:
                return
    raise AssertionError("the file system never filled up")


def test_a_full_disk_refuses_the_statement_and_keeps_what_was_recorded(world, make_daemon, small_disk):
    admin_sql(world, "DROP TABLE IF EXISTS marks; CREATE TABLE marks (n int)")
    # Injected credentials: pgraw (which keeps a session open) speaks no SCRAM itself.
    d = make_daemon(directory=small_disk, start=False)
    d.write_config(orders_db=credentials_yaml(d))
    d.start()
    p = psql(world, "svc-ci", "INSERT INTO marks VALUES (1)")
    assert p.returncode == 0, p.stderr
    holder = subprocess.Popen(world.as_user_cmd("svc-ci", [PYTHON, "-c", PGRAW, "key", REMOTE4, "5432"]),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(holder.stdout.readline())["pid"] > 0
        holder.stdin.write("INSERT INTO marks VALUES (2)\n")
        holder.stdin.flush()
        assert json.loads(holder.stdout.readline())["error"] is None
        time.sleep(0.3)  # let the deferred statement.end reach the disk before it fills
        fill(small_disk / "filler")
        # The WAL may still have room it already owns (checkpoints let the writer reuse it), so
        # statements may be recorded for a while: send large ones until the store refuses one.
        # Each that ran must have its entry; the refused one must not have run.
        padding = "x" * 8000
        refused = None
        for n in range(3, 400):
            holder.stdin.write(f"INSERT INTO marks VALUES ({n}) -- {padding}\n")
            holder.stdin.flush()
            r = json.loads(holder.stdout.readline())
            if r.get("closed"):
                assert r["error"] and r["error"]["C"] == "58030", r
                assert "evidence" in r["error"]["M"], r
                refused = n
                break
            assert r["error"] is None, r
        assert refused is not None, "the full disk never refused a statement"
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    # The statement that could not be recorded never ran; every one before it did.
    ran = [int(x) for x in admin_sql(world, "SELECT n FROM marks ORDER BY n").split()]
    assert ran == list(range(1, refused)), (ran, refused)
    assert d.running(), d.stderr()
    os.unlink(small_disk / "filler")
    # Space again: new sessions are recorded and run; nothing recorded before was lost.
    deadline = time.monotonic() + 15
    while True:
        p = psql(world, "svc-ci", "INSERT INTO marks VALUES (1000)")
        if p.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert p.returncode == 0, p.stderr
    texts = [s["text"].split(" --")[0] for s in statements(d.audit())]
    for n in ran + [1000]:
        assert f"INSERT INTO marks VALUES ({n})" in texts, (n, texts)
    assert f"INSERT INTO marks VALUES ({refused})" not in texts
    db = sqlite3.connect(f"file:{small_disk / 'audit.db'}?mode=ro", uri=True)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    indexes = [r[0] for r in db.execute("SELECT idx FROM entries ORDER BY idx")]
    assert indexes == list(range(1, len(indexes) + 1)), "the log has a gap"
