"""Session recordings on a real daemon: a captured psql session is recorded as the client saw it
(masked values, never the originals; no authentication secret), listed and replayed by an auditor
(a wait, a blocked statement and result rows included), exported with its chunks and verified
offline, replayed from the bundle, and a changed or missing chunk is named. A session past
`audit.recording_limit` keeps its evidence and says what it dropped; `recording: off` records
nothing."""

import json
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import time

from harness import APP_PASSWORD, APP_USER, REMOTE4, bin_path
from pgtest import admin_sql, credentials_yaml, of_kind, psql

TABLE = """
DROP TABLE IF EXISTS rec_customers;
CREATE TABLE rec_customers (id int PRIMARY KEY, name text, email text);
INSERT INTO rec_customers VALUES (1, 'Ada', 'ada@example.com'), (2, 'Bob', 'bob@example.org');
GRANT SELECT ON rec_customers TO {app};
""".format(app=APP_USER)

RULES = """\
  - name: contact
    resources: [orders-db]
    mask: { detectors: [email], with: redact }
  - name: no-drop
    identities: [user:svc-ci]
    resources: [orders-db]
    block:
      statements: [DROP]
      message: "schema changes go through the migration pipeline"
"""

SCRIPT = """\
SELECT id, email FROM rec_customers ORDER BY id;
SELECT pg_sleep(1.3);
DROP TABLE rec_customers;
SELECT 'still here';
"""


def start(make_daemon, audit=None, credentials=True):
    d = make_daemon(start=False)
    d.write_config(rules=RULES, orders_db=credentials_yaml(d) if credentials else "", audit=audit)
    return d.start()


def session_of(d, after):
    entries = d.wait_entries(lambda es: of_kind(es, "session.close") and of_kind(es, "session.recording", final=True),
                             after=after, what="the session's close and last recording chunk")
    [close] = of_kind(entries, "session.close")
    return close["session"], entries


def chunks_from_db(d, session):
    """The blobs of a session straight from the database file, parsed with the documented format."""
    db = sqlite3.connect(f"file:{d.dir / 'audit.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT body FROM entries WHERE kind = 'session.recording' AND session = ? ORDER BY idx",
                          (session,)).fetchall()
        blobs = []
        for (body,) in rows:
            entry = json.loads(body)
            [(data,)] = db.execute("SELECT data FROM blobs WHERE hash = ?", (bytes.fromhex(entry["blob"]),))
            blobs.append(bytes(data))
        return blobs
    finally:
        db.close()


def frames(blob):
    assert blob[:7] == b"ILREC1\n"
    (n,) = struct.unpack(">I", blob[7:11])
    header = json.loads(blob[11:11 + n])
    at = 11 + n
    out = []
    while at < len(blob):
        kind, offset, length = struct.unpack(">cQI", blob[at:at + 13])
        out.append((kind, offset, blob[at + 13:at + 13 + length]))
        at += 13 + length
    assert at == len(blob)
    return header, out


def auditor_dir(d, name):
    path = d.dir / name
    path.mkdir()
    shutil.chown(path, "audra")
    return path


def test_a_session_is_recorded_as_the_client_saw_it_and_replayed(world, make_daemon):
    admin_sql(world, TABLE)
    # No injected credentials: the client authenticates itself, through the gateway.
    d = start(make_daemon, credentials=False)
    before = d.last_index()
    p = psql(world, "svc-ci", "", db_user=APP_USER, password=APP_PASSWORD, input=SCRIPT,
             extra=["-v", "ON_ERROR_STOP=0"])
    assert "still here" in p.stdout and "42501" in p.stderr, p.stdout + p.stderr
    session, entries = session_of(d, before)

    # The recording holds masked values, never the originals, and no authentication secret.
    blobs = chunks_from_db(d, session)
    everything = b"".join(blobs)
    assert b"ada@example.com" not in everything and b"bob@example.org" not in everything
    assert b"rec_customers" in everything
    seen = []
    for n, blob in enumerate(blobs):
        header, fs = frames(blob)
        assert header["session"] == session and header["seq"] == n and header["protocol"] == "postgres"
        seen += fs
    auth = [f for f in seen if f[0] == b"c" and f[2][:1] == b"p"]
    assert auth and all(f[2] == b"p\x00\x00\x00\x04" for f in auth), auth
    assert APP_PASSWORD.encode() not in everything
    offsets = [f[1] for f in seen]
    assert offsets == sorted(offsets)

    # An auditor lists and replays it.
    listed = [json.loads(line) for line in d.cli("sessions", "list", "--json", user="audra").stdout.splitlines()]
    [mine] = [s for s in listed if s["id"] == session]
    assert mine["user"] == "svc-ci" and mine["resource"] == "orders-db" and mine["recording_complete"], mine
    assert mine["recording_chunks"] == len(blobs) and mine["reason"] == "client_closed"
    out = d.cli("sessions", "replay", session, user="audra").stdout
    assert "→ connect" in out and "user=" + APP_USER in out, out
    assert "authentication response (not recorded)" in out
    assert "SELECT id, email FROM rec_customers ORDER BY id;" in out
    assert "(2 rows)" in out and "ada@example.com" not in out and "bob@example.org" not in out, out
    assert "# waited 1." in out, out
    assert "ERROR 42501" in out and "migration pipeline" in out, out
    assert "still here" in out and "→ disconnect" in out
    # Lines in time order, as JSON too.
    lines = [json.loads(line) for line in d.cli("sessions", "replay", session, "--json", user="audra").stdout.splitlines()]
    assert [l["offset_us"] for l in lines] == sorted(l["offset_us"] for l in lines)
    assert {l["direction"] for l in lines} >= {"client", "server", "note"}

    # Not for everyone.
    p = d.cli("sessions", "replay", session, user="alice", check=False)
    assert p.returncode != 0 and "interlock-auditors" in p.stderr


def test_an_exported_session_carries_its_recording_and_a_changed_chunk_is_named(world, make_daemon):
    admin_sql(world, TABLE)
    d = start(make_daemon)
    before = d.last_index()
    p = psql(world, "svc-ci", "", input=SCRIPT, extra=["-v", "ON_ERROR_STOP=0"])
    assert "still here" in p.stdout, p.stdout + p.stderr
    session, _ = session_of(d, before)

    keys = auditor_dir(d, "keys")
    key = keys / "interlock.pub"
    key.write_text(d.cli("audit", "public-key", user="audra").stdout)
    bundle = auditor_dir(d, "out") / "bundle"
    out = d.cli("audit", "export", "--out", str(bundle), "--session", session, user="audra", timeout=120).stdout
    assert "recording chunk(s)" in out, out
    blobs = sorted(os.listdir(bundle / "blobs"))
    assert blobs, "the bundle holds the session's chunks"
    argv = [str(bin_path("interlock")), "audit", "verify", str(bundle), "--key", str(key)]
    p = world.as_user("audra", argv, timeout=120)
    assert p.returncode == 0 and "PASS" in p.stdout and "blob(s) checked" in p.stdout, p.stdout + p.stderr

    # Replayed offline from the bundle, with no daemon.
    d.stop()
    p = world.as_user("audra", [str(bin_path("interlock")), "sessions", "replay", session, "--bundle", str(bundle),
                                "--key", str(key)], timeout=60)
    assert p.returncode == 0 and "(2 rows)" in p.stdout and "ERROR 42501" in p.stdout, p.stdout + p.stderr

    # A changed chunk is named (and the replay refuses the bundle).
    target = bundle / "blobs" / blobs[0]
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))
    p = world.as_user("audra", argv, timeout=120)
    assert p.returncode == 1 and f"blobs/{blobs[0]} does not hash to its name" in p.stdout, p.stdout
    assert "entry " in p.stdout
    p = world.as_user("audra", [str(bin_path("interlock")), "sessions", "replay", session, "--bundle", str(bundle),
                                "--key", str(key)], timeout=60)
    assert p.returncode != 0 and "does not verify" in p.stderr, p.stdout + p.stderr
    # A removed one too.
    target.unlink()
    p = world.as_user("audra", argv, timeout=120)
    assert p.returncode == 1 and "blobs" in p.stdout, p.stdout


def test_a_session_past_the_recording_limit_keeps_its_evidence_and_says_what_it_dropped(world, make_daemon):
    d = start(make_daemon, audit={"recording_limit": "1MiB"})
    before = d.last_index()
    p = psql(world, "svc-ci", "SELECT repeat('x', 1000) FROM generate_series(1, 3000)")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 3000, p.stderr
    p = psql(world, "svc-ci", "SELECT 'after the limit'")  # another session, recorded in full
    assert p.returncode == 0
    entries = d.wait_entries(lambda es: len(of_kind(es, "session.recording", final=True)) >= 2, after=before,
                             what="both sessions' last chunks")
    [big, small] = of_kind(entries, "session.close")
    final = of_kind(entries, "session.recording", final=True, session=big["session"])[0]
    assert final["dropped_bytes"] > 1_000_000, final
    assert sum(e["size"] for e in of_kind(entries, "session.recording", session=big["session"])) <= 1 << 20
    [s] = [s for s in (json.loads(line) for line in d.cli("sessions", "list", "--json").stdout.splitlines())
           if s["id"] == big["session"]]
    assert s["recording_dropped"] == final["dropped_bytes"]
    out = d.cli("sessions", "replay", big["session"]).stdout
    assert "recording limit reached" in out, out
    # The statement's own evidence is whole.
    [end] = of_kind(entries, "statement.end", session=big["session"])
    assert end.get("command_tag") == "SELECT 3000", end
    assert "dropped_bytes" not in of_kind(entries, "session.recording", final=True, session=small["session"])[0]


def test_recording_off_records_no_recording(world, make_daemon):
    # Off for the resource (over audit.recording: full): bulk-export resources can opt out.
    d = make_daemon(start=False)
    d.write_config(rules=RULES, orders_db=credentials_yaml(d) + ", recording: off")
    d.start()
    before = d.last_index()
    p = psql(world, "svc-ci", "SELECT 1")
    assert p.returncode == 0
    entries = d.wait_entries(lambda es: of_kind(es, "session.close"), after=before)
    time.sleep(1.5)
    assert not of_kind(d.audit(before), "session.recording")
    [close] = of_kind(entries, "session.close")
    # The session ends when its client leaves: closing the upstream TLS leg does not wait NIOSSL's
    # default 5 s for a close_notify the server (gone after Terminate) never sends.
    assert close["duration_ms"] < 2000, close
    p = d.cli("sessions", "replay", close["session"], check=False)
    assert p.returncode != 0 and "no recording" in p.stderr


def test_a_kill_9_loses_at_most_the_chunk_being_filled_and_the_log_still_verifies(world, make_daemon):
    d = start(make_daemon)
    before = d.last_index()
    client = world.as_user_cmd("svc-ci", ["psql", "-X", "-At", "-h", REMOTE4, "-d", "orders", "-U", "postgres"])
    proc = subprocess.Popen(client, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
    try:
        for i in range(5):
            proc.stdin.write(f"SELECT 'chunk-{i}';\n")
            proc.stdin.flush()
            time.sleep(0.4)
        # The chunks of the first seconds are committed (one a second); then the daemon dies.
        d.wait_entries(lambda es: of_kind(es, "session.recording"), after=before, what="a first chunk")
        os.kill(d.pid, signal.SIGKILL)
        d.proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    d.start()
    entries = d.audit(before)
    chunks = of_kind(entries, "session.recording")
    assert chunks and not any(c["final"] for c in chunks), chunks
    session = chunks[0]["session"]
    [listed] = [s for s in (json.loads(line) for line in d.cli("sessions", "list", "--json").stdout.splitlines())
                if s["id"] == session]
    assert not listed["recording_complete"]
    out = d.cli("sessions", "replay", session).stdout
    assert "chunk-0" in out and "the recording continues" in out, out
    p = world.in_host([str(bin_path("interlock")), "audit", "verify", "--local", "--database", str(d.dir / "audit.db"),
                       "--key", str(d.dir / "checkpoint.pub")], timeout=120)
    assert p.returncode == 0 and "PASS" in p.stdout and "blob(s) checked" in p.stdout, p.stdout + p.stderr
