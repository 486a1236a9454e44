"""Rotating the checkpoint signing key on a running daemon: an admin (opal) rotates while a captured
psql client (svc-ci) is running statements, an auditor (audra) may not; every statement is still
recorded; an export verifies offline with the old public key and with the new one; the daemon
restarts on the new key and `verify --local` passes with either."""

import json
import os
import subprocess
import time

from harness import REMOTE4, wait_until
from pgtest import statements
from test_15_evidence_log import auditor_dir, export, offline, start, traffic, verify, verify_local


def test_an_admin_rotates_the_key_under_load_and_both_keys_verify_the_evidence(world, make_daemon):
    d = start(make_daemon)
    keys = auditor_dir(d, "keys")
    old_key = d.cli("audit", "public-key", user="audra").stdout.strip()
    (keys / "old.pub").write_text(old_key + "\n")

    # A captured client running statements the whole time.
    count = 400
    script = "".join(f"SELECT {i}, pg_sleep(0.005);\n" for i in range(count))
    client = subprocess.Popen(
        world.as_user_cmd("svc-ci", ["psql", "-X", "-q", "-At", "-h", REMOTE4, "-d", "orders", "-U", "postgres"]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"}, start_new_session=True)
    client.stdin.write(script)
    client.stdin.close()
    client.stdin = None
    assert wait_until(lambda: len(statements(d.audit())) > 20, timeout=30, what="the client's first statements")

    # Auditors read evidence; they do not rotate keys.
    refused = d.cli("audit", "rotate-key", user="audra", check=False)
    assert refused.returncode != 0 and "audit.rotate-key needs root or a member of" in refused.stderr, refused.stderr
    assert d.cli("audit", "public-key", user="audra").stdout.strip() == old_key

    p = d.cli("audit", "rotate-key", "--reason", "yearly rotation", "--json", user="opal", timeout=60)
    rotation = json.loads(p.stdout)
    assert rotation["old_key"] == old_key and rotation["new_key"] != old_key, rotation
    new_key, index = rotation["new_key"], rotation["index"]
    assert new_key.split("+")[0] == old_key.split("+")[0], "the key keeps its name"

    out, err = client.communicate(timeout=120)
    assert client.returncode == 0, err
    entries = d.audit()
    texts = {s["text"] for s in statements(entries)}
    missing = [i for i in range(count) if f"SELECT {i}, pg_sleep(0.005)" not in texts]
    assert not missing, f"statements without an entry: {missing[:10]}"
    assert any(s["index"] > index for s in statements(entries)), "statements recorded after the rotation"
    [entry] = [e for e in entries if e["kind"] == "log.key_rotated"]
    assert entry["index"] == index and entry["old_key"] == old_key and entry["new_key"] == new_key
    assert entry["reason"] == "yearly rotation" and entry["requested_by"]["user"] == "opal"
    assert entry["statement"].startswith("interlock key rotation\n")

    # The files hold the new key only.
    assert (d.dir / "checkpoint.pub").read_text().strip() == new_key
    assert oct((d.dir / "checkpoint.key").stat().st_mode & 0o777) == "0o600"
    assert (d.dir / "checkpoint.key").owner() == "interlock"
    assert not (d.dir / "checkpoint.key.new").exists()
    assert d.cli("audit", "public-key", user="audra").stdout.strip() == new_key
    chain = d.cli("audit", "public-key", "--all", user="audra").stdout.splitlines()
    assert chain[0] == f"genesis {old_key}" and chain[1].startswith(f"entry {index} {new_key}"), chain
    (keys / "new.pub").write_text(new_key + "\n")

    # An auditor's export verifies offline with either key.
    bundle = auditor_dir(d, "export") / "bundle"
    export(d, bundle)
    assert (bundle / "chain.jsonl").exists() and (bundle / f"checkpoints/{index}.note").exists()
    for key in ("old.pub", "new.pub"):
        v = verify(d, bundle, keys / key)
        assert v.returncode == 0 and "PASS" in v.stdout, key + ": " + v.stdout + v.stderr
    # Even filtered to statements, the bundle carries the genesis and the rotation.
    filtered = auditor_dir(d, "filtered") / "bundle"
    export(d, filtered, "--kind", "statement")
    chain_kinds = [json.loads(line)["kind"] for line in (filtered / "chain.jsonl").read_text().splitlines()]
    assert chain_kinds == ["log.genesis", "log.key_rotated"], chain_kinds
    v = verify(d, filtered, keys / "old.pub")
    assert v.returncode == 0 and "PASS" in v.stdout, v.stdout + v.stderr

    # A restart opens the log with the new key; the evidence goes on and verifies.
    d.stop()
    d.start()
    traffic(world, 2)
    time.sleep(1.5)
    for key in (d.dir / "checkpoint.pub", keys / "old.pub"):
        p = offline(d, "audit", "verify", "--local", "--database", str(d.dir / "audit.db"), "--key", str(key))
        assert p.returncode == 0 and "PASS" in p.stdout, p.stdout + p.stderr
    p = verify_local(d)
    assert p.returncode == 0 and "PASS" in p.stdout, p.stdout + p.stderr
