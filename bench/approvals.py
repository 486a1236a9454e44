#!/usr/bin/env python3
"""How long approvals take on the machine path (issue 4): the same world as the integration tests
(real PostgreSQL in a namespace, svc-ci's psycopg2 captured through interlockd, approvers calling the
real CLI), measured in one run:

- decision round trip: from the start of `interlock approvals approve` to the held statement's
  result reaching the waiting client (CLI start, control socket, the durable approval entry, the
  release, the statement on the server, the answer), next to the CLI's own wall time and to
  `interlock status` (a CLI call that does nothing);
- grant window: a statement let through an open window (the durable `grant.used` entry before it is
  forwarded) next to an allowed statement of the same shape on the same connection, interleaved.

    sudo /usr/bin/python3 bench/approvals.py            # APPROVAL_CYCLES=20 GRANT_STATEMENTS=300

Uses INTERLOCK_BIN_DIR (default .build/debug) like the tests. Bounded: every wait has a timeout;
traffic stays inside the two namespaces it creates.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "Tests" / "Integration"))

import harness  # noqa: E402
from harness import PYTHON, REMOTE4, Daemon, bin_path, render_config, start_world, stop_world  # noqa: E402
from pgtest import admin_sql, credentials_yaml  # noqa: E402

CYCLES = int(os.environ.get("APPROVAL_CYCLES", "20"))
GRANT_STATEMENTS = int(os.environ.get("GRANT_STATEMENTS", "300"))

RULE = """\
  - name: prod-deletes-need-approval
    identities: [user:svc-ci]
    resources: [orders-db]
    approve:
      statements: [DELETE]
      approvers: [group:dba]
      timeout: 1m
      grant: 10m
"""

# Runs as svc-ci. Mode "held": N DELETEs, one at a time, each printing when its result arrived.
# Mode "grant": alternating UPDATE (allowed) and DELETE (through the grant window), timed per statement.
CLIENT = r"""
import json, sys, time, psycopg2
mode, n = sys.argv[2], int(sys.argv[3])
c = psycopg2.connect(host=sys.argv[1], dbname="orders", user="postgres", connect_timeout=5)
c.autocommit = True
cur = c.cursor()
if mode == "held":
    for i in range(1, n + 1):
        cur.execute("DELETE FROM bench_accounts WHERE id = %s" % i)
        print(json.dumps({"i": i, "done": time.time()}), flush=True)
else:
    out = {"allowed": [], "granted": []}
    for i in range(1, n + 1):
        t = time.perf_counter()
        cur.execute("UPDATE bench_accounts SET balance = balance + 1 WHERE id = %s" % (100000 + i))
        out["allowed"].append(time.perf_counter() - t)
        t = time.perf_counter()
        cur.execute("DELETE FROM bench_accounts WHERE id = %s" % (100000 + i))
        out["granted"].append(time.perf_counter() - t)
    print(json.dumps(out), flush=True)
"""


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def ms(v):
    return f"{v * 1000:.2f}"


def cli(d, *args, user="dana"):
    t = time.time()
    p = d.cli(*args, user=user, timeout=30)
    return p, time.time() - t


def pending(d):
    p, _ = cli(d, "approvals", "list", "--json")
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def main():
    world = start_world()
    d = Daemon(world)
    try:
        admin_sql(world, "DROP TABLE IF EXISTS bench_accounts; CREATE TABLE bench_accounts (id int PRIMARY KEY, "
                         "balance int); INSERT INTO bench_accounts SELECT g, 0 FROM generate_series(1, 200000) g")
        d.write_config(render_config(d, orders_db=credentials_yaml(d), rules=RULE))
        d.start()

        # Decision round trips.
        client = subprocess.Popen(world.as_user_cmd("svc-ci", [PYTHON, "-c", CLIENT, REMOTE4, "held", str(CYCLES)]),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "PGCONNECT_TIMEOUT": "5"}, start_new_session=True)
        round_trips, cli_times, status_times = [], [], []
        deadline = time.monotonic() + 60 + CYCLES * 10
        for i in range(1, CYCLES + 1):
            reqs = []
            while not reqs:
                if time.monotonic() > deadline or client.poll() is not None:
                    raise RuntimeError(f"no request for cycle {i}: {client.stderr.read() if client.poll() else ''}")
                reqs = pending(d)
                if not reqs:
                    time.sleep(0.02)
            [req] = reqs
            _, status_time = cli(d, "status", user=None)
            status_times.append(status_time)
            started = time.time()
            _, cli_time = cli(d, "approvals", "approve", req["id"], "--digest", req["digest"])
            line = client.stdout.readline()
            done = json.loads(line)["done"]
            assert json.loads(line)["i"] == i
            round_trips.append(done - started)
            cli_times.append(cli_time)
        client.wait(timeout=30)

        # Grant window against allowed statements.
        client = subprocess.Popen(world.as_user_cmd("svc-ci", [PYTHON, "-c", CLIENT, REMOTE4, "held", "1"]),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "PGCONNECT_TIMEOUT": "5"}, start_new_session=True)
        reqs = []
        t_end = time.monotonic() + 30
        while not reqs and time.monotonic() < t_end:
            reqs = pending(d)
            time.sleep(0.05)
        cli(d, "approvals", "approve", reqs[0]["id"], "--digest", reqs[0]["digest"], "--grant", "10m")
        client.wait(timeout=30)
        p = world.as_user("svc-ci", [PYTHON, "-c", CLIENT, REMOTE4, "grant", str(GRANT_STATEMENTS)],
                          timeout=300, env={"PGCONNECT_TIMEOUT": "5"})
        if p.returncode != 0:
            raise RuntimeError(p.stderr)
        g = json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        d.cleanup()
        stop_world(world)

    binaries = os.environ.get("INTERLOCK_BIN_DIR", str(harness.SOURCE_BIN_DIR))
    print(f"## Approvals ({CYCLES} decisions, {GRANT_STATEMENTS} statement pairs; binaries {binaries})\n")
    print("| path | p50 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in (("`interlock status` (a CLI call doing nothing)", status_times),
                         ("`interlock approvals approve` (CLI wall time)", cli_times),
                         ("approve started → held statement's result at the client", round_trips),
                         ("allowed UPDATE (statement entry, then forwarded)", g["allowed"]),
                         ("DELETE under a grant window (+ durable grant.used)", g["granted"])):
        print(f"| {name} | {ms(pct(values, 50))} | {ms(pct(values, 99))} | {ms(max(values))} |")
    print(f"\ngrant window ÷ allowed (p50): {statistics.median(g['granted']) / statistics.median(g['allowed']):.2f}×")


if __name__ == "__main__":
    main()
