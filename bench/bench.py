"""Interlock's speed benchmark; run it through bench/run.sh (which checks root and the binaries).

The world (namespaces, accounts, PostgreSQL, the unit cgroup) and interlockd's lifecycle come from
Tests/Integration/harness.py, which takes them from scripts/lib/world.sh: nothing is redefined here.
This file adds the peers (pgbouncer, haproxy), an idle TCP sink in the remote namespace, the
interleaved pgbench rounds, the CPU and memory bookkeeping and the report.

Variants (clients always run in the host namespace, inside the world's unit cgroup):
  direct     alice (not captured) -> 198.18.0.10:5432
  pgbouncer  alice -> 127.0.0.1:6432, pgbouncer (session mode, user nobody) -> 198.18.0.10:5432
  haproxy    alice -> 127.0.0.1:6433, haproxy (mode tcp, user nobody)       -> 198.18.0.10:5432
  interlock  svc-ci (captured) -> 198.18.0.10:5432, redirected by nftables to interlockd

Workloads (one round runs each on every variant): pgbench -S -c 8 -j 2 -M simple and -M prepared (issue 3:
forwarding with interlockd's per-statement policy and evidence on); pgbench -C -S -c 8 -j 2 and -C -S -c 1 -j 1
(issue 2: connection setup); COPY of BENCH_COPY_ROWS rows out (issue 3: direct, the peers, and interlockd plain and
with a column rule masking copy_bench.email). After the rounds: the connection-setup probe (issue 2) and the
content-detector micro-benchmark (`interlock-bench`, issue 3). Idle memory (issue 2) runs first.

interlockd's policy (the issue-3 one): orders-db with injected credentials (role orders_app), a block rule (DROP,
TRUNCATE, unbounded writes) and a column mask on pgbench_branches.filler (a column pgbench -S never reads) for
everyone, and for svc-bot only a column mask on copy_bench.email (partial), which the COPY figure uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))
import harness  # noqa: E402  (INTERLOCK_BIN_DIR is read at import; run.sh exports it)
from harness import REMOTE4, PYTHON, PG_PASSWORD  # noqa: E402
from pgtest import credentials_yaml  # noqa: E402

# Our own unit cgroup: harness's default slice is shared with (and removed by) concurrent test runs.
harness.CGROUP_SLICE = "interlock-bench.slice"
harness.CGROUP_UNIT = "pgbench-job.service"

REPS = int(os.environ.get("BENCH_REPS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
IDLE_N = int(os.environ.get("BENCH_IDLE", "1000"))
PROFILE = os.environ.get("BENCH_PROFILE", "0") == "1"
# Issue 2's connection figures (-C workloads, idle memory, connection-setup probe); 0 skips them.
CONNECT = os.environ.get("BENCH_CONNECT", "1") == "1"
COPY_ROWS = int(os.environ.get("BENCH_COPY_ROWS", "3000000"))
DETECTOR_SECONDS = float(os.environ.get("BENCH_DETECTOR_SECONDS", "3"))
OUT = Path(os.environ.get("BENCH_OUT", "/tmp/interlock-bench/latest.md"))
SCALE = 1  # pgbench -i -s: 100,000 rows, fits in shared_buffers; -S measures the path, not the disk

PGBOUNCER_PORT = 6432
HAPROXY_PORT = 6433
HAPROXY_SINK_PORT = 6434
SINK_PORT = 7000  # idle TCP sink in the remote namespace (registered as a tcp resource)
HAPROXY_BANNER_PORT = 6435
BANNER_PORT = 7777  # the harness's banner server: writes a line to each client and closes
PROBE_N = int(os.environ.get("BENCH_PROBE_N", "2000"))
PROBE_REPS = 3
# Sequential connections, each timed from connect() to the first byte of the server's banner.
PROBE = r"""
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ts = []
deadline = time.monotonic() + 120
for i in range(n):
    if time.monotonic() > deadline:
        break
    t0 = time.perf_counter_ns()
    s = socket.create_connection((host, port), timeout=5)
    b = s.recv(64)
    s.close()
    if not b:
        sys.exit(2)
    ts.append(time.perf_counter_ns() - t0)
ts.sort()
print(len(ts), ts[len(ts) // 2] // 1000, sum(ts) // len(ts) // 1000, ts[len(ts) * 99 // 100] // 1000)
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

WORKLOADS = [
    ("S", "-S -c 8 -j 2 -M simple", ["-S", "-c", "8", "-j", "2", "-M", "simple"]),
    ("SP", "-S -c 8 -j 2 -M prepared", ["-S", "-c", "8", "-j", "2", "-M", "prepared"]),
]
if CONNECT:
    WORKLOADS += [
        ("C", "-C -S -c 8 -j 2", ["-C", "-S", "-c", "8", "-j", "2"]),
        ("C1", "-C -S -c 1 -j 1", ["-C", "-S", "-c", "1", "-j", "1"]),
    ]
VARIANTS = ["direct", "pgbouncer", "haproxy", "interlock"]
# COPY out: the peers, interlockd with the column-rule policy on a table no rule covers (svc-ci: the plain gateway
# rate), and interlockd with a column rule masking copy_bench.email in every row (svc-bot: the COPY is described on
# the catalog connection, then masked field by field).
COPY_VARIANTS = ["direct", "pgbouncer", "haproxy", "interlock", "interlock-detect"]
COPY_SQL = "COPY copy_bench TO STDOUT"

# The daemon's rules (issue 3): a block rule and a column mask on a column pgbench -S does not read, for everyone;
# a column mask on copy_bench.email for svc-bot only (the COPY run). Column masks need injected credentials on the resource.
RULES = """\
  - name: no-ddl
    resources: [orders-db]
    block: { statements: [DROP, TRUNCATE], unbounded_writes: true }
  - name: pii
    resources: [orders-db]
    mask: { columns: [pgbench_branches.filler], with: redact }
  - name: copy-emails
    identities: [user:svc-bot]
    resources: [orders-db]
    mask: { columns: [copy_bench.email], with: partial }
"""

# Reads `psql -c COPY ... TO STDOUT` from a pipe: bytes, lines and seconds, and a sample of the data (its first
# 256 KiB) checked for e-mail addresses in clear and masked (`u****@example.com`).
COPY_CLIENT = r"""
import json, re, subprocess, sys, time
host, port, sql = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
p = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-U", "postgres",
                      "-d", "orders", "-c", sql], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
n = lines = 0
sample = b""
while True:
    b = p.stdout.read1(1 << 20)
    if not b:
        break
    n += len(b)
    lines += b.count(b"\n")
    if len(sample) < 262144:
        sample += b[:262144 - len(sample)]
err = p.stderr.read().decode(errors="replace")
rc = p.wait()
secs = time.perf_counter() - t0
print(json.dumps({"rc": rc, "bytes": n, "lines": lines, "seconds": secs, "stderr": err[-500:],
                  "clear_emails": len(re.findall(rb"\tuser\d+@example\.com\t", sample)),
                  "masked_emails": len(re.findall(rb"\tu\*+@example\.com\t", sample)),
                  "sample_lines": sample.count(b"\n"), "first_line": sample.split(b"\n", 1)[0].decode(errors="replace")}))
"""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# /proc bookkeeping


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])  # fields 14 and 15 of proc(5)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_ticks(pid: int) -> dict[str, int]:
    """utime + stime per thread class: NIO event loops ("loops") and everything else ("other":
    in interlockd that is the audit writer thread, the main thread and the ruleset checker)."""
    out = {"loops": 0, "other": 0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                st = f.read()
        except FileNotFoundError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        rest = st.rsplit(")", 1)[1].split()
        out["loops" if comm.startswith("NIO-ELT") else "other"] += int(rest[11]) + int(rest[12])
    return out


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# --------------------------------------------------------------------------------------------------
# Processes we start (all in their own session, stopped by pid in `Bench.stop`)

SINK = r"""
import selectors, signal, socket, sys
signal.alarm(int(sys.argv[3]))          # bounded lifetime, whatever happens to the benchmark
sel = selectors.DefaultSelector()
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[1], int(sys.argv[2]))); ls.listen(4096); ls.setblocking(False)
sel.register(ls, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is ls:
            try:
                c, _ = ls.accept()
            except OSError:
                continue
            c.setblocking(False); sel.register(c, selectors.EVENT_READ)
        else:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s); s.close()
"""

HOLDER = r"""
import select, socket, sys, time
host, port, n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks, deadline = [], time.monotonic() + 60
while len(socks) < n and time.monotonic() < deadline:
    try:
        socks.append(socket.create_connection((host, port), timeout=5))
    except OSError as e:
        print(f"connect error {e}", file=sys.stderr, flush=True); time.sleep(0.05)
print(f"open {len(socks)}", flush=True)
select.select([sys.stdin], [], [], hold)  # until told (a line or EOF on stdin), at most `hold` s
for s in socks:
    s.close()
"""


class Bench:
    def __init__(self) -> None:
        self.world: harness.World | None = None
        self.daemon: harness.Daemon | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.dir = Path(tempfile.mkdtemp(prefix="interlock-bench-", dir="/tmp"))
        os.chmod(self.dir, 0o755)

    # ---- setup

    def start(self) -> None:
        log("world: namespaces, accounts, PostgreSQL (scripts/lib/world.sh via harness.py)")
        self.world = harness.start_world()
        w = self.world
        # More ephemeral ports in the host namespace (ours): -C runs leave tens of thousands of
        # TIME_WAIT sockets towards 198.18.0.10:5432, and interlockd's path uses two per connection.
        w.in_host(["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=10000 65000"], check=True)
        harness.run(w.netns(w.remote) + ["sysctl", "-q", "-w", "net.core.somaxconn=4096"], check=True)
        harness.run(w.netns(w.host) + ["sysctl", "-q", "-w", "net.core.somaxconn=4096"], check=True)

        log(f"pgbench -i -s {SCALE} (as alice, direct)")
        p = w.as_user("alice", ["pgbench", "-i", "-q", "-s", str(SCALE), "-h", REMOTE4, "-U", "postgres",
                                "orders"], timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"pgbench -i failed:\n{p.stdout}\n{p.stderr}")
        # pgbench leaves pgbench_branches.filler NULL: give the masked column values, so the policy check below
        # can see the mask at work (pgbench -S never reads that table).
        self.admin_sql("UPDATE pgbench_branches SET filler = 'branch ' || bid || ' internal note'")
        if COPY_ROWS > 0:
            log(f"copy_bench: {COPY_ROWS:,} rows (as postgres on the Unix socket)")
            self.admin_sql("CREATE TABLE copy_bench AS SELECT g AS id, 'user' || g || '@example.com' AS email, "
                           f"md5(g::text) AS note FROM generate_series(1, {COPY_ROWS}) g")
            self.admin_sql("VACUUM ANALYZE copy_bench")

        self.spawn("sink", w.netns(w.remote) + ["setpriv", "--reuid=nobody", "--regid=nogroup",
                                                   "--clear-groups", PYTHON, "-c", SINK, REMOTE4,
                                                   str(SINK_PORT), "7200"], wait_line="ready")

        log("interlockd (release build): orders-db with injected credentials, block + column mask rules, "
            "a copy_bench.email column mask for svc-bot, plus the idle sink and the banner as tcp resources")
        self.daemon = harness.Daemon(w, Path(tempfile.mkdtemp(prefix="interlockd-", dir=self.dir)))
        recording = os.environ.get("BENCH_RECORDING")  # full | off: the daemon's audit.recording (default full)
        self.daemon.write_config(orders_db=credentials_yaml(self.daemon), rules=RULES,
                                 audit={"recording": recording} if recording else None, extra_resources=[
            f'  - {{ name: idle-sink, protocol: tcp, address: "{REMOTE4}:{SINK_PORT}" }}',
            f'  - {{ name: banner, protocol: tcp, address: "{REMOTE4}:{BANNER_PORT}" }}'])
        self.daemon.start()
        self.check_policy()

        self.start_pgbouncer()
        self.start_haproxy()
        for port in (PGBOUNCER_PORT, HAPROXY_PORT, HAPROXY_SINK_PORT, HAPROXY_BANNER_PORT):
            ok = harness.wait_until(
                lambda: w.in_host([PYTHON, "-c", harness.CONNECT_OK, "127.0.0.1", str(port)]).returncode == 0,
                timeout=15)
            if not ok:
                raise RuntimeError(f"127.0.0.1:{port} not listening in {w.host}")

    def admin_sql(self, sql: str) -> str:
        """`sql` as the superuser on PostgreSQL's Unix socket (not captured, not proxied)."""
        p = harness.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1",
                         "-h", str(self.world.workdir / "pg"), "-U", "postgres", "-d", "orders", "-c", sql],
                        timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"admin SQL failed: {sql}\n{p.stderr}")
        return p.stdout

    def check_policy(self) -> None:
        """The policy the figures claim is the one in force: credentials injected, the column masked, DDL
        blocked, and every statement recorded (a benchmark of a path that does not do the work is worthless)."""
        w = self.world
        idx0 = self.audit_last()

        def psql(user: str, sql: str) -> subprocess.CompletedProcess:
            return w.as_user(user, ["psql", "-X", "-At", "-h", REMOTE4, "-d", "orders", "-U", "postgres", "-c", sql],
                             timeout=30, env={"PGCONNECT_TIMEOUT": "10"})

        p = psql("svc-ci", "SELECT current_user")
        if p.returncode != 0 or p.stdout.strip() != harness.APP_USER:
            raise RuntimeError(f"injected credentials not in force: {p.stdout!r} {p.stderr!r}")
        p = psql("svc-ci", "SELECT filler FROM pgbench_branches LIMIT 1")
        if p.returncode != 0 or "internal note" in p.stdout or "[REDACTED]" not in p.stdout:
            raise RuntimeError(f"column mask not in force: {p.stdout!r} {p.stderr!r}")
        p = psql("svc-ci", "TRUNCATE pgbench_history")
        if p.returncode == 0:
            raise RuntimeError("block rule not in force: TRUNCATE went through")
        log(f"policy in force: injected credentials, filler masked, TRUNCATE refused ({p.stderr.strip()[:120]})")
        harness.wait_until(lambda: self.audit_kinds(idx0).get("statement", 0) >= 3, timeout=10)
        kinds = self.audit_kinds(idx0)
        if kinds.get("statement", 0) < 3:
            raise RuntimeError(f"statements not recorded: {kinds}")

    # ---- the evidence store (read-only, by the root benchmark; SQLite WAL lets a reader run beside the writer)

    def audit_db(self):
        import sqlite3
        return sqlite3.connect(f"file:{self.daemon.dir / 'audit.db'}?mode=ro", uri=True, timeout=10)

    def audit_last(self) -> int:
        with contextlib.closing(self.audit_db()) as db:
            return db.execute("SELECT coalesce(max(idx), 0) FROM entries").fetchone()[0]

    def audit_kinds(self, after: int, upto: int | None = None) -> dict[str, int]:
        with contextlib.closing(self.audit_db()) as db:
            rows = db.execute("SELECT kind, count(*) FROM entries WHERE idx > ? AND idx <= ? GROUP BY kind",
                              (after, upto if upto is not None else 1 << 62)).fetchall()
        return dict(rows)

    def spawn(self, name: str, cmd: list[str], wait_line: str | None = None) -> subprocess.Popen:
        out = open(self.dir / f"{name}.log", "w")
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE if wait_line else out, stderr=out,
                             stdin=subprocess.DEVNULL, cwd="/tmp", start_new_session=True, text=True)
        self.procs[name] = p
        if wait_line:
            line = p.stdout.readline()  # the sink prints at once; a crash gives EOF
            if wait_line not in line:
                raise RuntimeError(f"{name} did not start: {(self.dir / f'{name}.log').read_text()}")
        return p

    def peer_dir(self, name: str) -> Path:
        d = self.dir / name
        d.mkdir()
        os.chown(d, 65534, 65534)  # nobody:nogroup
        return d

    def as_nobody(self, cmd: list[str]) -> list[str]:
        w = self.world
        return w.netns(w.host) + ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + cmd

    def start_pgbouncer(self) -> None:
        d = self.peer_dir("pgbouncer")
        (d / "userlist.txt").write_text('"postgres" ""\n')
        # PostgreSQL wants a password over the network (SCRAM): pgbouncer logs in upstream with the world's
        # postgres password; clients are trusted (as they are by haproxy, which does no auth, and by interlockd,
        # which injects its own credentials), so no variant spends a client-side handshake the others skip.
        (d / "pgbouncer.ini").write_text(f"""\
[databases]
orders = host={REMOTE4} port=5432 dbname=orders user=postgres password={PG_PASSWORD}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {PGBOUNCER_PORT}
unix_socket_dir =
auth_type = trust
auth_file = {d}/userlist.txt
pool_mode = session
max_client_conn = {IDLE_N + 500}
default_pool_size = 20
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
logfile = {d}/pgbouncer.log
ignore_startup_parameters = extra_float_digits
""")
        for f in d.iterdir():
            os.chown(f, 65534, 65534)
            os.chmod(f, 0o600)  # holds the upstream password
        log("pgbouncer (session mode, user nobody) on 127.0.0.1:6432")
        self.spawn("pgbouncer", self.as_nobody(["pgbouncer", str(d / "pgbouncer.ini")]))

    def start_haproxy(self) -> None:
        d = self.peer_dir("haproxy")
        (d / "haproxy.cfg").write_text(f"""\
global
    maxconn {2 * IDLE_N + 1000}
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
listen pg
    bind 127.0.0.1:{HAPROXY_PORT}
    server pg {REMOTE4}:5432
listen sink
    bind 127.0.0.1:{HAPROXY_SINK_PORT}
    server sink {REMOTE4}:{SINK_PORT}
listen banner
    bind 127.0.0.1:{HAPROXY_BANNER_PORT}
    server banner {REMOTE4}:{BANNER_PORT}
""")
        os.chmod(d / "haproxy.cfg", 0o644)
        log("haproxy (mode tcp, user nobody, default threads) on 127.0.0.1:6433")
        self.spawn("haproxy", self.as_nobody(["haproxy", "-db", "-f", str(d / "haproxy.cfg")]))

    # ---- the variants

    def target(self, variant: str) -> tuple[str, str, int, int | None]:
        """(user, host, port, pid of the proxy or None)."""
        if variant == "direct":
            return "alice", REMOTE4, 5432, None
        if variant == "pgbouncer":
            return "alice", "127.0.0.1", PGBOUNCER_PORT, self.procs["pgbouncer"].pid
        if variant == "haproxy":
            return "alice", "127.0.0.1", HAPROXY_PORT, self.procs["haproxy"].pid
        if variant == "interlock":
            return "svc-ci", REMOTE4, 5432, self.daemon.pid
        if variant == "interlock-detect":  # svc-bot: the same policy plus the copy_bench.email column rule
            return "svc-bot", REMOTE4, 5432, self.daemon.pid
        raise ValueError(variant)

    def connect_probe(self, variant: str) -> dict:
        """PROBE_N sequential connect → first byte → close, one client, against the banner server."""
        user, host, port, pid = {
            "direct": ("alice", REMOTE4, BANNER_PORT, None),
            "haproxy": ("alice", "127.0.0.1", HAPROXY_BANNER_PORT, self.procs["haproxy"].pid),
            "interlock": ("svc-ci", REMOTE4, BANNER_PORT, self.daemon.pid),
        }[variant]
        c0 = cpu_ticks(pid) if pid else 0
        p = self.world.as_user(user, [PYTHON, "-c", PROBE, host, str(port), str(PROBE_N)], in_unit=True,
                               timeout=180)
        c1 = cpu_ticks(pid) if pid else 0
        if p.returncode != 0:
            raise RuntimeError(f"connect probe through {variant} failed: {p.stderr}")
        n, median, mean, p99 = (int(x) for x in p.stdout.split())
        return {"variant": variant, "n": n, "median_us": median, "mean_us": mean, "p99_us": p99,
                "cpu_us_conn": (c1 - c0) / CLK_TCK * 1e6 / n if pid else None}

    def pgbench(self, variant: str, args: list[str], seconds: int) -> dict:
        user, host, port, pid = self.target(variant)
        cmd = ["pgbench", "-n", "-T", str(seconds)] + args + ["-h", host, "-p", str(port), "-U", "postgres",
                                                               "orders"]
        for p in self.procs.values():
            if p.poll() is not None:
                raise RuntimeError(f"a peer process exited ({p.args[-1]}): see {self.dir}")
        if not self.daemon.running():
            raise RuntimeError(f"interlockd exited:\n{self.daemon.stderr(40)}")
        idx0 = self.audit_last() if variant == "interlock" else None
        c0 = cpu_ticks(pid) if pid else 0
        th0 = thread_ticks(pid) if variant == "interlock" else None
        b0 = machine_busy()
        l0 = loadavg()
        t0 = time.monotonic()
        p = self.world.as_user(user, cmd, in_unit=True, timeout=seconds + 60,
                               env={"PGCONNECT_TIMEOUT": "10"})
        wall = time.monotonic() - t0
        c1 = cpu_ticks(pid) if pid else 0
        th1 = thread_ticks(pid) if variant == "interlock" else None
        b1 = machine_busy()
        out = p.stdout
        r = {"variant": variant, "rc": p.returncode, "wall": wall, "load": (l0 + loadavg()) / 2,
             "busy": (b1[0] - b0[0]) / max(1, b1[1] - b0[1])}

        def num(pattern: str) -> float | None:
            m = re.search(pattern, out)
            return float(m.group(1)) if m else None

        r["tx"] = num(r"number of transactions actually processed: (\d+)")
        r["failed"] = num(r"number of failed transactions: (\d+)") or 0
        r["tps"] = num(r"tps = ([\d.]+)")
        r["lat_ms"] = num(r"latency average = ([\d.]+) ms")
        r["conn_ms"] = num(r"average connection time = ([\d.]+) ms")
        if pid and r["tx"]:
            r["cpu_us_tx"] = (c1 - c0) / CLK_TCK * 1e6 / r["tx"]
        else:
            r["cpu_us_tx"] = None
        if th0 is not None and th1 is not None and r["tx"]:
            r["loops_us_tx"] = (th1["loops"] - th0["loops"]) / CLK_TCK * 1e6 / r["tx"]
            r["other_us_tx"] = (th1["other"] - th0["other"]) / CLK_TCK * 1e6 / r["tx"]
        if idx0 is not None and r["tx"]:
            # Evidence of the run: statement entries (durable before each statement is forwarded) per transaction.
            # The last statement.end entries are deferred to the next commit; let them land before counting.
            time.sleep(0.5)
            kinds = self.audit_kinds(idx0)
            r["statements_per_tx"] = kinds.get("statement", 0) / r["tx"]
            r["entries_per_tx"] = sum(kinds.values()) / r["tx"]
        if p.returncode != 0 or r["tps"] is None:
            r["error"] = (p.stderr or p.stdout).strip().splitlines()[-3:]
            log(f"  {variant}: pgbench failed rc={p.returncode}: {r['error']}")
        return r

    # ---- COPY out

    def copy_out(self, variant: str) -> dict:
        """`psql -c 'COPY copy_bench TO STDOUT'` read from a pipe: MB/s of COPY data the client received, the
        proxy's CPU, and whether the data was masked (interlock-detect) or clear (every other path)."""
        user, host, port, pid = self.target(variant)
        if not self.daemon.running():
            raise RuntimeError(f"interlockd exited:\n{self.daemon.stderr(40)}")
        idx0 = self.audit_last() if variant.startswith("interlock") else None
        c0 = cpu_ticks(pid) if pid else 0
        l0 = loadavg()
        p = self.world.as_user(user, [PYTHON, "-c", COPY_CLIENT, host, str(port), COPY_SQL], in_unit=True,
                               timeout=600, env={"PGCONNECT_TIMEOUT": "10"})
        c1 = cpu_ticks(pid) if pid else 0
        r = {"variant": variant, "load": (l0 + loadavg()) / 2}
        try:
            r.update(json.loads(p.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            r["error"] = f"COPY client failed rc={p.returncode}: {p.stderr.strip()[-500:]}"
            log(f"  {variant}: {r['error']}")
            return r
        if r["rc"] != 0 or r["lines"] != COPY_ROWS:
            r["error"] = f"psql rc={r['rc']}, {r['lines']} lines: {r['stderr']}"
        elif variant == "interlock-detect" and (r["clear_emails"] or not r["masked_emails"]):
            r["error"] = f"not masked: {r['clear_emails']} clear, {r['masked_emails']} masked in the sample"
        elif variant != "interlock-detect" and (r["masked_emails"] or not r["clear_emails"]):
            r["error"] = f"unexpected data: {r['clear_emails']} clear, {r['masked_emails']} masked in the sample"
        if "error" in r:
            log(f"  {variant}: COPY failed: {r['error']}")
        r["mb_s"] = r["bytes"] / r["seconds"] / 1e6
        r["cpu_s"] = (c1 - c0) / CLK_TCK if pid else None
        r["cpu_us_mb"] = r["cpu_s"] * 1e6 / (r["bytes"] / 1e6) if pid else None
        if idx0 is not None:
            time.sleep(0.5)
            r["evidence"] = self.audit_kinds(idx0)
        return r

    # ---- content detectors (interlock-bench, single-threaded)

    def detectors(self) -> dict | None:
        exe = Path(os.environ["INTERLOCK_BIN_DIR"]) / "interlock-bench"
        if not exe.exists():
            log(f"no {exe}: detector throughput skipped")
            return None
        l0 = loadavg()
        p = subprocess.run([str(exe), "--seconds", str(DETECTOR_SECONDS)], capture_output=True, text=True,
                           timeout=60 + 10 * DETECTOR_SECONDS)
        if p.returncode != 0:
            raise RuntimeError(f"interlock-bench failed: {p.stderr}")
        out = json.loads(p.stdout)
        out["load"] = (l0 + loadavg()) / 2
        return out

    # ---- idle connections

    def idle_rss(self, variant: str) -> dict:
        """RSS of the proxy before and while IDLE_N idle connections are open through it."""
        w = self.world
        if variant == "interlock":
            user, host, port, pid, per_conn_fds = "svc-ci", REMOTE4, SINK_PORT, self.daemon.pid, 2
        elif variant == "haproxy":
            user, host, port, pid, per_conn_fds = "alice", "127.0.0.1", HAPROXY_SINK_PORT, self.procs["haproxy"].pid, 2
        else:  # pgbouncer: a TCP connection without a startup packet holds only a client slot
            user, host, port, pid, per_conn_fds = "alice", "127.0.0.1", PGBOUNCER_PORT, self.procs["pgbouncer"].pid, 1
        time.sleep(1)
        rss0, fd0 = rss_kib(pid), fd_count(pid)
        active0 = self.daemon_active() if variant == "interlock" else 0
        holder = subprocess.Popen(w.as_user_cmd(user, [PYTHON, "-c", HOLDER, host, str(port), str(IDLE_N), "120"],
                                                in_unit=True),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd="/tmp", start_new_session=True)
        try:
            line = ""
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not line:
                line = holder.stdout.readline()
            opened = int(line.split()[1]) if line.startswith("open") else 0
            if variant == "interlock":
                # The daemon's own count of forwarded, open sessions (interlock status --json).
                held_now = lambda: self.daemon_active() - active0  # noqa: E731
            else:
                held_now = lambda: (fd_count(pid) - fd0) // per_conn_fds  # noqa: E731
            harness.wait_until(lambda: held_now() >= opened, timeout=30, interval=0.2)
            time.sleep(2)  # let the proxy settle (pending admission, audit batches)
            held, rss1 = held_now(), rss_kib(pid)
        finally:
            try:
                holder.stdin.write("done\n")
                holder.stdin.close()
            except OSError:
                pass
            try:
                holder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(holder.pid, signal.SIGKILL)
                holder.wait(timeout=5)
        harness.wait_until(lambda: fd_count(pid) <= fd0 + 4, timeout=30, interval=0.2)
        return {"variant": variant, "opened": opened, "held": held, "rss0": rss0, "rss1": rss1,
                "kib_per_conn": (rss1 - rss0) / held if held > 0 else None,
                "rss_after_close": rss_kib(pid)}

    def daemon_active(self) -> int:
        import json
        p = self.daemon.cli("status", "--json", check=False, timeout=10)
        try:
            return int(json.loads(p.stdout)["counters"]["active"])
        except (ValueError, KeyError, TypeError):
            return -1

    # ---- profile

    def profile(self) -> str:
        """perf record (DWARF call graphs) of interlockd during one `-S -M simple` run: the share of its CPU
        time by library, the hottest functions (self) and the inclusive share of Interlock's own stages. The
        full reports (symbols demangled) are kept next to the report: perf-children.txt, perf-self.txt."""
        pid = self.daemon.pid
        data = self.dir / "perf.data"
        secs = min(SECONDS, 8)
        perf = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,16384", "-o", str(data),
                                 "-p", str(pid), "--", "sleep", str(secs)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = self.pgbench("interlock", WORKLOADS[0][2], secs)
        perf.wait(timeout=secs + 60)
        demangle = shutil.which("swift-demangle") or "/opt/swift/usr/bin/swift-demangle"

        def perf_report(args: list[str]) -> str:
            out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "-g", "none"] + args,
                                 capture_output=True, text=True, timeout=900).stdout
            if os.path.exists(demangle):
                out = subprocess.run([demangle, "--simplified"], input=out, capture_output=True, text=True,
                                     timeout=120).stdout or out
            return out

        dso = perf_report(["--no-children", "--sort", "dso", "--percent-limit", "1"])
        self_ = perf_report(["--no-children", "--sort", "sym", "--percent-limit", "0.3"])
        children = perf_report(["--children", "--sort", "sym", "--percent-limit", "0.3"])
        OUT.parent.mkdir(parents=True, exist_ok=True)
        (OUT.parent / "perf-self.txt").write_text(self_)
        (OUT.parent / "perf-children.txt").write_text(children)
        stages = [
            ("audit writer thread (AuditWriter.run)", r"\] AuditWriter\.run\(\)$"),
            ("  SQLite inserts and commits (sqlite3_step)", r"\] sqlite3_step$"),
            ("  WAL file writes (pwrite64)", r"\] __x64_sys_pwrite64$"),
            ("NIO event loops (SelectableEventLoop.run)", r"\] SelectableEventLoop\.run\(\)$"),
            ("  client messages (PostgresProxy.clientRead)", r"\] PostgresProxy\.clientRead\("),
            ("    policy (SessionPolicy.evaluate)", r"\] SessionPolicy\.evaluate\("),
            ("    SQL classification (Classifier.classify)", r"\] static Classifier\.classify\("),
            ("  evidence rendering and hand-off, both entries (AuditLog.append)", r"\] AuditLog\.append\("),
            ("  server messages (PostgresProxy.serverRead)", r"\] PostgresProxy\.serverRead\("),
            ("    statement ends (PostgresProxy.completed)", r"\] PostgresProxy\.completed\("),
            ("  kernel: TCP send (tcp_sendmsg)", r"\] tcp_sendmsg$"),
            ("  kernel: epoll_wait(2)", r"\] __x64_sys_epoll_wait$"),
            ("canonical JSON of evidence (CanonicalJSON, self)", r"CanonicalJSON\."),
            ("swift_retain / swift_release (self)", r"\] swift_(retain|release)$"),
            ("malloc / free (self)", r"\] (malloc|free|_int_malloc|_int_free|cfree)(@@GLIBC[\w.]*)?$"),
        ]

        def share(text: str, pattern: str) -> float | None:
            total = 0.0  # self: summed over matching symbols; children: the largest (the outermost frame)
            best = None
            for l in text.splitlines():
                parts = l.split()
                if len(parts) >= 3 and parts[0].endswith("%") and re.search(pattern, l.strip()):
                    v = float(parts[0].rstrip("%"))
                    total += v
                    best = v if best is None else max(best, v)
            return total if text is self_ and best is not None else best

        lines = [f"run: {fmt(r.get('tps'))} TPS, {fmt(r.get('cpu_us_tx'), 1)} µs of interlockd CPU per transaction",
                 "share of interlockd's CPU samples by library (self):"]
        lines += ["  " + l.strip() for l in dso.splitlines() if l.strip() and not l.startswith("#")][:8]
        lines.append("hottest functions (self):")
        hot = [l.strip() for l in self_.splitlines() if l.strip() and not l.startswith("#") and "%" in l]
        lines += ["  " + (l if len(l) < 150 else l[:147] + "...") for l in hot[:15]]
        lines.append("inclusive share of stages (children included):")
        for label, pattern in stages:
            text = self_ if "(self)" in label else children
            v = share(text, pattern)
            lines.append(f"  {label:<58} {fmt(v, 1, ' %') if v is not None else '< 0.3 %'}")
        return "\n".join(lines)

    # ---- teardown

    def stop(self) -> None:
        if self.daemon is not None:
            try:
                self.daemon.cleanup()
            except Exception as e:  # keep tearing down
                log(f"daemon cleanup: {e}")
        for name, p in self.procs.items():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for name, p in self.procs.items():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        if self.world is not None:
            harness.stop_world(self.world, keep=False)
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)


# --------------------------------------------------------------------------------------------------
# Report


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=0, suffix=""):
    if x is None:
        return "–"
    return f"{x:,.{nd}f}{suffix}"


def report(results: list[dict], rounds: int, idle: list[dict], env: dict, prof: str | None,
           probes: list[dict], copies: list[dict], det: dict | None) -> str:
    by = {}
    for r in results:
        by.setdefault((r["workload"], r["variant"]), []).append(r)

    def ratio(w, v, key="tps", ref="direct"):
        """Median over rounds of (variant / reference in the same round)."""
        xs = []
        for rnd in range(rounds):
            a = [r for r in by.get((w, v), []) if r["round"] == rnd and r.get(key) and "error" not in r]
            d = [r for r in by.get((w, ref), []) if r["round"] == rnd and r.get(key) and "error" not in r]
            if a and d:
                xs.append(a[0][key] / d[0][key])
        return med(xs)

    def m(w, v, key):
        return med([r.get(key) for r in by.get((w, v), []) if "error" not in r])

    L = []
    L.append(f"Interlock benchmark, {env['date']}; {env['cpus']} CPUs ({env['cpu_model']}), "
             f"{env['rounds']} rounds x {SECONDS} s per run, interleaved; medians.")
    L.append(f"interlockd: {env['bin']} ({env['commit']}); {env['pg']}; {env['pgbouncer']}; {env['haproxy']}.")
    L.append(f"Machine load average during runs: median {fmt(env['load_med'], 2)}, max {fmt(env['load_max'], 2)}; "
             f"CPU busy during runs: median {fmt(env['busy_med'] * 100, 0)} %.")
    L.append("")
    L.append("| workload | variant | TPS | vs direct | latency avg (ms) | connect avg (ms) | proxy CPU µs/tx | failed runs |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for wname, wdesc, _ in WORKLOADS:
        for v in VARIANTS:
            rs = by.get((wname, v), [])
            bad = sum(1 for r in rs if "error" in r or r.get("failed"))
            L.append(f"| `pgbench {wdesc}` | {v} | {fmt(m(wname, v, 'tps'))} | "
                     f"{fmt(ratio(wname, v), 2) if v != 'direct' else '1.00'} | {fmt(m(wname, v, 'lat_ms'), 3)} | "
                     f"{fmt(m(wname, v, 'conn_ms'), 3)} | {fmt(m(wname, v, 'cpu_us_tx'), 1)} | {bad}/{len(rs)} |")
    L.append("")

    # Added latency per new connection (from -C): difference of the medians of pgbench's latency average.
    L.append("interlockd CPU per transaction by thread (medians, µs): NIO event loops (accept, "
             "SO_ORIGINAL_DST, sock_diag, identity, forwarding) and the other threads (mostly the audit writer):")
    L.append("")
    L.append("| workload | event loops | other threads (audit writer) | total | statement entries per tx | "
             "evidence entries per tx |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for wname, wdesc, _ in WORKLOADS:
        L.append(f"| `pgbench {wdesc}` | {fmt(m(wname, 'interlock', 'loops_us_tx'), 1)} | "
                 f"{fmt(m(wname, 'interlock', 'other_us_tx'), 1)} | {fmt(m(wname, 'interlock', 'cpu_us_tx'), 1)} | "
                 f"{fmt(m(wname, 'interlock', 'statements_per_tx'), 2)} | "
                 f"{fmt(m(wname, 'interlock', 'entries_per_tx'), 2)} |")
    L.append("")

    # Issue 3: forwarding with policy and evidence against the peers.
    L.append("Forwarding with policy (issue 3): TPS and proxy CPU per transaction against pgbouncer "
             "(ratios are medians of per-round ratios):")
    L.append("")
    L.append("| workload | direct TPS | pgbouncer TPS | haproxy TPS | interlock TPS | interlock ÷ pgbouncer TPS | "
             "pgbouncer CPU µs/tx | haproxy CPU µs/tx | interlock CPU µs/tx | interlock ÷ pgbouncer CPU |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    fwd = {}
    for wname, wdesc, _ in WORKLOADS:
        if wname not in ("S", "SP"):
            continue
        tr = ratio(wname, "interlock", "tps", "pgbouncer")
        cr = ratio(wname, "interlock", "cpu_us_tx", "pgbouncer")
        fwd[wname] = (tr, cr, m(wname, "interlock", "tps"), m(wname, "pgbouncer", "tps"),
                      m(wname, "interlock", "cpu_us_tx"), m(wname, "pgbouncer", "cpu_us_tx"))
        L.append(f"| `pgbench {wdesc}` | {fmt(m(wname, 'direct', 'tps'))} | {fmt(m(wname, 'pgbouncer', 'tps'))} | "
                 f"{fmt(m(wname, 'haproxy', 'tps'))} | {fmt(m(wname, 'interlock', 'tps'))} | {fmt(tr, 2)} | "
                 f"{fmt(m(wname, 'pgbouncer', 'cpu_us_tx'), 1)} | {fmt(m(wname, 'haproxy', 'cpu_us_tx'), 1)} | "
                 f"{fmt(m(wname, 'interlock', 'cpu_us_tx'), 1)} | {fmt(cr, 2)} |")
    L.append("")

    cm = {}
    if copies:
        table_mb = copies[0]["bytes"] / 1e6 if copies and copies[0].get("bytes") else None
        L.append(f"COPY out (issue 3): `psql -c \"{COPY_SQL}\"` ({COPY_ROWS:,} rows, {fmt(table_mb, 0)} MB of COPY "
                 "text), read from a pipe by the client; MB/s = bytes received ÷ seconds from psql's start to EOF; "
                 "medians over rounds:")
        L.append("")
        L.append("| path | MB/s | vs direct | proxy CPU µs per MB | masked e-mails in a 256 KiB sample | "
                 "clear e-mails in it | failed runs |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        labels = {
            "direct": "direct",
            "pgbouncer": "pgbouncer",
            "haproxy": "haproxy",
            "interlock": "interlock, column-rule policy, table not covered (svc-ci)",
            "interlock-detect": "interlock, column rule masking copy_bench.email in every row (svc-bot)",
        }
        for v in COPY_VARIANTS:
            rs = [r for r in copies if r["variant"] == v]
            ok = [r for r in rs if "error" not in r]
            rr = []
            for rnd in range(rounds):
                a = [r for r in ok if r["round"] == rnd]
                d = [r for r in copies if r["variant"] == "direct" and r["round"] == rnd and "error" not in r]
                if a and d:
                    rr.append(a[0]["mb_s"] / d[0]["mb_s"])
            cm[v] = (med([r["mb_s"] for r in ok]), med(rr), med([r.get("cpu_us_mb") for r in ok]))
            L.append(f"| {labels[v]} | {fmt(cm[v][0], 1)} | {fmt(cm[v][1], 2) if v != 'direct' else '1.00'} | "
                     f"{fmt(cm[v][2], 0)} | {fmt(med([r.get('masked_emails') for r in rs]))} | "
                     f"{fmt(med([r.get('clear_emails') for r in rs]))} | {len(rs) - len(ok)}/{len(rs)} |")
        ev = [r.get("evidence") for r in copies if r["variant"] == "interlock-detect" and r.get("evidence")]
        if ev:
            L.append("")
            L.append(f"Evidence of one masked COPY (entry kinds): {ev[-1]}")
        L.append("")

    if det:
        L.append(f"Content detectors (issue 3): `interlock-bench` ({det['build']} build), `Masker.scan` over each "
                 f"value on one thread, {fmt(det['seconds_per_case'], 0)} s per case; load average "
                 f"{fmt(det['load'], 2)}:")
        L.append("")
        L.append("| case | detectors | method | MB/s per core | values/s | matches per pass | planted per pass |")
        L.append("| --- | --- | --- | ---: | ---: | ---: | ---: |")
        for c in det["cases"]:
            L.append(f"| {c['case']}: {c['description']} | {c['detectors']} | {c['method']} | "
                     f"{fmt(c['mb_per_s'], 0)} | {fmt(c['values_per_s'], 0)} | {fmt(c['matches_per_pass'])} | "
                     f"{fmt(c['planted_per_pass'])} |")
        L.append("")

    # Aims of issue 3.
    L.append("Aims (issue 3):")
    L.append("")
    L.append("| aim | measured | result |")
    L.append("| --- | --- | --- |")
    for wname, wdesc, _ in WORKLOADS:
        if wname not in fwd:
            continue
        tr, cr, ti, tb, ci, cb = fwd[wname]
        L.append(f"| `{wdesc}`: TPS ≥ pgbouncer's | {fmt(ti)} vs {fmt(tb)} (per-round ratio {fmt(tr, 2)}) | "
                 f"{'n/a' if tr is None else ('pass' if tr >= 1 else 'FAIL')} |")
        L.append(f"| `{wdesc}`: CPU per select ≤ 1.5× pgbouncer's | {fmt(ci, 1)} vs {fmt(cb, 1)} µs "
                 f"(per-round ratio {fmt(cr, 2)}) | {'n/a' if cr is None else ('pass' if cr <= 1.5 else 'FAIL')} |")
    if "interlock-detect" in cm:
        r = cm["interlock-detect"][1]
        L.append(f"| COPY with masking ≥ half of direct | {fmt(cm['interlock-detect'][0], 1)} vs "
                 f"{fmt(cm['direct'][0], 1)} MB/s (per-round ratio {fmt(r, 2)}) | "
                 f"{'n/a' if r is None else ('pass' if r >= 0.5 else 'FAIL')} |")
    L.append("")

    if not CONNECT:
        if prof:
            L += ["perf profile of interlockd during one extra `pgbench -S -c 8 -j 2 -M simple` run:", "", "```",
                  prof, "```", ""]
        return "\n".join(L)

    L.append("Added latency per new connection (pgbench -C: latency average of the variant minus the reference):")
    L.append("")
    L.append("| workload | interlock − direct | interlock − haproxy | haproxy − direct | pgbouncer − direct |")
    L.append("| --- | ---: | ---: | ---: | ---: |")
    added = {}
    for wname, wdesc, _ in WORKLOADS:
        if wname not in ("C", "C1"):
            continue
        d, h, i, b = (m(wname, v, "lat_ms") for v in ("direct", "haproxy", "interlock", "pgbouncer"))
        us = lambda a, c: (a - c) * 1000 if a is not None and c is not None else None  # noqa: E731
        added[wname] = (us(i, d), us(i, h))
        L.append(f"| `pgbench {wdesc}` | {fmt(us(i, d), 0, ' µs')} | {fmt(us(i, h), 0, ' µs')} | "
                 f"{fmt(us(h, d), 0, ' µs')} | {fmt(us(b, d), 0, ' µs')} |")
    L.append("")

    L.append(f"Memory per idle connection ({IDLE_N} plain TCP connections opened and held; VmRSS of the proxy):")
    L.append("")
    L.append("| proxy | held | RSS before (KiB) | RSS with them (KiB) | KiB per connection | RSS after close (KiB) |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in idle:
        note = " (client slot only: no startup packet, so no server connection)" if r["variant"] == "pgbouncer" else ""
        L.append(f"| {r['variant']}{note} | {r['held']} | {fmt(r['rss0'])} | {fmt(r['rss1'])} | "
                 f"{fmt(r['kib_per_conn'], 2)} | {fmt(r['rss_after_close'])} |")
    L.append("")

    L.append(f"Connection setup ({PROBE_REPS} interleaved rounds of {PROBE_N} sequential connections, one client, "
             "each timed from connect() to the first byte of a banner the server sends at once, then closed; "
             "medians over rounds):")
    L.append("")
    L.append("| path | median µs | mean µs | p99 µs | added vs direct (median) | proxy CPU µs per connection |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    pm = {v: {k: med([r[k] for r in probes if r["variant"] == v and r.get(k) is not None])
              for k in ("median_us", "mean_us", "p99_us", "cpu_us_conn")}
          for v in ("direct", "haproxy", "interlock")}
    for v in ("direct", "haproxy", "interlock"):
        d = pm["direct"]["median_us"]
        add = pm[v]["median_us"] - d if pm[v]["median_us"] is not None and d is not None else None
        L.append(f"| {v} | {fmt(pm[v]['median_us'])} | {fmt(pm[v]['mean_us'])} | {fmt(pm[v]['p99_us'])} | "
                 f"{fmt(add) if v != 'direct' else '–'} | {fmt(pm[v]['cpu_us_conn'], 1)} |")
    L.append("")
    probe_added = (pm["interlock"]["median_us"] - pm["direct"]["median_us"]
                   if pm["interlock"]["median_us"] is not None and pm["direct"]["median_us"] is not None else None)

    # Aims of issue 2.
    def aim(ok, text, value):
        if ok is None:
            return f"| {text} | {value} | n/a |"
        return f"| {text} | {value} | {'pass' if ok else 'FAIL'} |"

    s_i, s_b = m("S", "interlock", "tps"), m("S", "pgbouncer", "tps")
    c_i, c_h = m("C", "interlock", "tps"), m("C", "haproxy", "tps")
    add_d, add_h = added.get("C1", (None, None))
    kib = next((r["kib_per_conn"] for r in idle if r["variant"] == "interlock"), None)
    L.append("Aims (issue 2):")
    L.append("")
    L.append("| aim | measured | result |")
    L.append("| --- | --- | --- |")
    L.append(aim(None if s_i is None or s_b is None else s_i >= s_b, "`-S` TPS ≥ pgbouncer's",
                 f"{fmt(s_i)} vs {fmt(s_b)} ({fmt(s_i / s_b if s_i and s_b else None, 2)}x)"))
    L.append(aim(None if c_i is None or c_h is None else c_i >= c_h, "`-C` TPS ≥ haproxy's",
                 f"{fmt(c_i)} vs {fmt(c_h)} ({fmt(c_i / c_h if c_i and c_h else None, 2)}x)"))
    L.append(aim(None if probe_added is None else probe_added < 100,
                 "< 100 µs added per new connection (connection-setup probe, median vs direct)",
                 f"{fmt(probe_added, 0, ' µs')} (pgbench -C -c 1 latency vs direct: {fmt(add_d, 0, ' µs')}, "
                 f"vs haproxy: {fmt(add_h, 0, ' µs')})"))
    L.append(aim(None if kib is None else kib < 12, "< 12 KiB per idle captured connection", f"{fmt(kib, 2)} KiB"))
    L.append("")
    if prof:
        L.append("perf profile of interlockd during one extra `pgbench -S -c 8 -j 2 -M simple` run:")
        L.append("")
        L.append("```")
        L.append(prof)
        L.append("```")
        L.append("")
    return "\n".join(L)


def checkout() -> str:
    """HEAD and whether Sources/ or Package.swift differ from it (a release build compiles the working tree)."""
    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(REPO)] + list(args), capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except Exception:
            return "?"
    dirty = git("status", "--porcelain", "--", "Sources", "Package.swift")
    return git("rev-parse", "--short", "HEAD") + (" with uncommitted changes in Sources/" if dirty else "")


START_COMMIT = checkout()


def env_info(results: list[dict]) -> dict:
    def first(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except Exception:
            return "?"

    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    b = Path(os.environ.get("INTERLOCK_BIN_DIR", "")) / "interlockd"
    commit = START_COMMIT
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "bin": str(b),
        "commit": f"checkout at {commit}, binary built {time.strftime('%Y-%m-%d %H:%M', time.localtime(b.stat().st_mtime))}",
        "pg": first(["pgbench", "--version"]),
        "pgbouncer": first(["pgbouncer", "--version"]),
        "haproxy": " ".join(first(["haproxy", "-v"]).split()[:3]),
        "load_med": med([r["load"] for r in results]),
        "load_max": max((r["load"] for r in results), default=None),
        "busy_med": med([r["busy"] for r in results]) or 0,
        "rounds": REPS,
    }


def main() -> int:
    if os.geteuid() != 0:
        print("bench: run as root (bench/run.sh)", file=sys.stderr)
        return 1
    # Room for 1,000 idle connections (two descriptors each in a proxy); inherited by everything below.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(65536, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    b = Bench()
    results: list[dict] = []
    idle: list[dict] = []
    probes: list[dict] = []
    copies: list[dict] = []
    det = None
    prof = None
    try:
        b.start()
        # Memory first, on freshly started proxies (before the load leaves allocator state behind).
        for v in ("interlock", "haproxy", "pgbouncer") if CONNECT else ():
            log(f"idle connections: {IDLE_N} through {v}")
            idle.append(b.idle_rss(v))
            log(f"  {idle[-1]}")
        log("warm-up: one 3 s run per workload and variant, one COPY per variant (not counted)")
        for wname, _, args in WORKLOADS:
            for v in VARIANTS:
                r = b.pgbench(v, args, 3)
                if "error" in r:
                    raise RuntimeError(f"warm-up {wname}/{v} failed: {r['error']}")
        for v in COPY_VARIANTS if COPY_ROWS > 0 else ():
            r = b.copy_out(v)
            if "error" in r:
                raise RuntimeError(f"warm-up COPY {v} failed: {r['error']}")
            log(f"warm-up COPY {v:<16} {fmt(r['mb_s'], 1)} MB/s, first line {r['first_line']!r}")
        total = REPS * len(WORKLOADS) * len(VARIANTS)
        log(f"{REPS} rounds x {len(WORKLOADS)} workloads x {len(VARIANTS)} variants x {SECONDS} s "
            f"(~{total * (SECONDS + 1) // 60 + 1} min) + COPY")
        for rnd in range(REPS):
            for wi, (wname, _, args) in enumerate(WORKLOADS):
                k = (rnd + wi) % len(VARIANTS)
                order = VARIANTS[k:] + VARIANTS[:k]  # rotate who goes first
                for v in order:
                    r = b.pgbench(v, args, SECONDS)
                    r.update(workload=wname, round=rnd)
                    results.append(r)
                    log(f"round {rnd + 1}/{REPS} {wname:>2} {v:<9} tps={fmt(r['tps'])} lat={fmt(r['lat_ms'], 3)} ms "
                        f"cpu/tx={fmt(r['cpu_us_tx'], 1)} µs load={r['load']:.2f}"
                        + (f" stmts/tx={r['statements_per_tx']:.2f}" if r.get("statements_per_tx") is not None else ""))
            if COPY_ROWS > 0:
                k = rnd % len(COPY_VARIANTS)
                for v in COPY_VARIANTS[k:] + COPY_VARIANTS[:k]:
                    r = b.copy_out(v)
                    r.update(round=rnd)
                    copies.append(r)
                    log(f"round {rnd + 1}/{REPS} COPY {v:<16} {fmt(r.get('mb_s'), 1)} MB/s "
                        f"cpu={fmt(r.get('cpu_us_mb'), 0)} µs/MB load={r['load']:.2f}")
        log("content detectors: interlock-bench (one thread)")
        det = b.detectors()
        for rep in range(PROBE_REPS if CONNECT else 0):
            order = ["direct", "haproxy", "interlock"]
            order = order[rep % 3:] + order[:rep % 3]
            for v in order:
                probes.append(b.connect_probe(v))
                log(f"connect probe {rep + 1}/{PROBE_REPS} {v:<9} {probes[-1]}")
        if PROFILE and subprocess.run(["which", "perf"], capture_output=True).returncode == 0:
            log("perf record of interlockd during one -S -M simple run")
            prof = b.profile()
        env = env_info(results)
    finally:
        log("teardown")
        b.stop()
    text = report(results, REPS, idle, env, prof, probes, copies, det)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text + "\n")
    print(text)
    log(f"report written to {OUT}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        print(f"bench: interrupted ({e}); cleaned up", file=sys.stderr)
        sys.exit(130)
