"""The integration harness: a world of two network namespaces with real servers, interlockd in the
host namespace, and clients run as the test accounts.

The namespaces, the accounts, PostgreSQL and the client runner are defined once, in
scripts/lib/world.sh (the demo uses the same functions); this module calls them through bash and adds
what only the tests need: the HTTP/UDP/banner servers, the daemon's lifecycle and evidence queries.

Every wait here is bounded in time; every traffic goes to loopback or into our own namespaces.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import grp
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORLD_SH = REPO / "scripts" / "lib" / "world.sh"
SERVERS_PY = Path(__file__).resolve().parent / "servers.py"
# Where the binaries come from. start_world() copies them into the world's directory, so a rebuild
# in the same checkout during a run ("Text file busy") cannot change or break the binaries under test.
SOURCE_BIN_DIR = Path(os.environ.get("INTERLOCK_BIN_DIR", REPO / ".build" / "debug"))
BIN_DIR = SOURCE_BIN_DIR


def bin_path(name: str) -> Path:
    """The binary under test (the snapshot once the world exists)."""
    return BIN_DIR / name
PYTHON = "/usr/bin/python3"  # Debian's, with psycopg2 from python3-psycopg2

REMOTE4 = "198.18.0.10"
REMOTE4_HTTP = "198.18.0.11"
REMOTE6 = "2001:db8:18::10"
HOST4 = "198.18.0.1"
LISTEN_PORT = 15001
HTTP_FILE_SIZE = 1_234_567  # bytes served by the HTTP server as /blob.bin
# One slice per test process: concurrent runs (a developer's and a benchmark's) must not remove each
# other's unit cgroup.
CGROUP_SLICE = f"interlock-test-{os.getpid()}.slice"
CGROUP_UNIT = "ci-job.service"

IN_CI = os.environ.get("CI", "").lower() == "true"

# PostgreSQL logins of the world (scripts/lib/world.sh reads these from the environment): clients run
# as the test accounts get PG_PASSWORD in PGPASSWORD; APP_USER is the role a resource's injected
# credentials log in as, with a password made for this run that no client is ever given.
PG_PASSWORD = os.environ.setdefault("IL_PG_PASSWORD", "orders-postgres-pw")
APP_USER = "orders_app"
APP_PASSWORD = os.environ.setdefault("IL_PG_APP_PASSWORD", "app-" + secrets.token_hex(12))
# The world's PostgreSQL speaks TLS (certificate of a "remote site" CA at <workdir>/pg/tls/ca.crt).
os.environ["IL_PG_SSL"] = "1"


def require(condition: bool, why: str) -> None:
    """A missing prerequisite skips locally and fails in CI (where skipping is not allowed)."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing under CI: {why}", pytrace=False)
    pytest.skip(why)


def sh(*args: str, timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a function of scripts/lib/world.sh: sh("il_world_up", "ilh-x", "ilr-x")."""
    cmd = ["bash", "-c", f'source "{WORLD_SH}" && "$@"', "world"] + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/tmp", **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def run(cmd: list[str], timeout: float = 30, check: bool = False, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("cwd", "/tmp")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll `predicate` until it returns something truthy (returned), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            return last
        time.sleep(interval)


def norm_addr(a: str) -> str:
    return str(ipaddress.ip_address(a.strip("[]")))


def cgroup2_mount() -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            if parts[sep + 1] == "cgroup2":
                return parts[4]
    return None


# --------------------------------------------------------------------------------------------------
# The world


@dataclass
class World:
    host: str
    remote: str
    workdir: Path
    cgroup: str  # directory of the unit-named cgroup for captured clients
    procs: list = field(default_factory=list)

    @property
    def pg_log(self) -> Path:
        return self.workdir / "pg" / "postgresql.log"

    @property
    def servers_log(self) -> Path:
        return self.workdir / "servers.log"

    # ---- running things in the namespaces

    def netns(self, name: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{name}"]

    def in_host(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        return run(self.netns(self.host) + cmd, **kw)

    def nft(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.in_host(["nft"] + list(args), **kw)

    def as_user_cmd(self, user: str, cmd: list[str], in_unit: bool = False) -> list[str]:
        """The command line that runs `cmd` as `user` in the host namespace (il_run_as)."""
        return ["bash", "-c", f'source "{WORLD_SH}" && il_run_as "$@"', "run-as", self.host, user,
                self.cgroup if in_unit else ""] + cmd

    def as_user(self, user: str, cmd: list[str], in_unit: bool = False, timeout: float = 30,
                env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
        e = dict(os.environ)
        if env:
            e.update(env)
        return run(self.as_user_cmd(user, cmd, in_unit), timeout=timeout, env=e, input=input)

    def psql(self, user: str, sql: str = "SELECT count(*) FROM items", host: str = REMOTE4,
             in_unit: bool = False, appname: str | None = None, timeout: float = 30,
             connect_timeout: int = 5) -> subprocess.CompletedProcess:
        env = {"PGCONNECT_TIMEOUT": str(connect_timeout), "PGAPPNAME": appname or f"it-{user}"}
        return self.as_user(user, ["psql", "-X", "-At", "-h", host, "-d", "orders", "-U", "postgres", "-c", sql],
                            in_unit=in_unit, timeout=timeout, env=env)

    def python(self, user: str, code: str, *args: str, in_unit: bool = False,
               timeout: float = 30) -> subprocess.CompletedProcess:
        return self.as_user(user, [PYTHON, "-c", code] + list(args), in_unit=in_unit, timeout=timeout)

    def tcp_probe(self, user: str, host: str, port: int, timeout: float = 3) -> str:
        """Connect as `user` and read what comes back. Returns `refused`, `timeout`, `reset`,
        `eof` (accepted, closed without data), `data:<text>` or `error:<errno name>`."""
        p = self.python(user, TCP_PROBE, host, str(port), str(timeout), timeout=timeout * 3 + 10)
        assert p.returncode == 0, f"probe crashed: {p.stderr}"
        return p.stdout.strip()

    def udp_probe(self, user: str, host: str, port: int, payload: str, timeout: float = 2) -> str:
        """Send one datagram as `user` and wait for a reply: `reply:<text>`, `noreply`, `error:<..>`."""
        p = self.python(user, UDP_PROBE, host, str(port), payload, str(timeout), timeout=timeout * 3 + 10)
        assert p.returncode == 0, f"probe crashed: {p.stderr}"
        return p.stdout.strip()

    def servers_log_lines(self) -> list[str]:
        try:
            return self.servers_log.read_text().splitlines()
        except FileNotFoundError:
            return []

    def pg_log_text(self) -> str:
        try:
            return self.pg_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


TCP_PROBE = r"""
import socket, sys, errno
host, port, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(t)
try:
    s.connect((host, port))
except ConnectionRefusedError:
    print("refused"); sys.exit(0)
except ConnectionResetError:
    print("reset"); sys.exit(0)
except socket.timeout:
    print("timeout"); sys.exit(0)
except OSError as e:
    print("error:" + (errno.errorcode.get(e.errno, str(e.errno)))); sys.exit(0)
try:
    data = s.recv(4096)
    print("data:" + data.decode("ascii", "replace").strip() if data else "eof")
except socket.timeout:
    print("timeout-after-connect")
except ConnectionResetError:
    print("reset")
except OSError as e:
    print("error:" + (errno.errorcode.get(e.errno, str(e.errno))))
"""

UDP_PROBE = r"""
import socket, sys, errno
host, port, payload, t = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), float(sys.argv[4])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(t)
try:
    s.connect((host, port))
    s.send(payload)
    data = s.recv(4096)
    print("reply:" + data.decode("ascii", "replace"))
except socket.timeout:
    print("noreply")
except OSError as e:
    print("error:" + (errno.errorcode.get(e.errno, str(e.errno))))
"""

# A psycopg2 session kept open across a reload: queries, waits for a line on stdin, queries again.
PG_SESSION = r"""
import sys, psycopg2
c = psycopg2.connect(host=sys.argv[1], dbname="orders", user="postgres", connect_timeout=5,
                     application_name="it-live-session")
c.autocommit = True
cur = c.cursor()
cur.execute("SELECT pg_backend_pid(), count(*) FROM items")
pid, n = cur.fetchone()
print(f"q1 {pid} {n}", flush=True)
for line in sys.stdin:
    if line.strip() == "quit":
        break
    try:
        cur.execute("SELECT pg_backend_pid(), count(*) FROM items")
        pid, n = cur.fetchone()
        print(f"q {pid} {n}", flush=True)
    except Exception as e:
        print(f"error {type(e).__name__}: {e}".replace("\n", " "), flush=True)
c.close()
"""


def reap_stale_worlds() -> None:
    """Tear down worlds left behind by runs that were killed hard (their owner process is gone)."""
    for meta in Path("/tmp").glob("interlock-it-*/world.json"):
        try:
            info = json.loads(meta.read_text())
            os.kill(info["pid"], 0)
            continue  # its run is still alive
        except ProcessLookupError:
            pass
        except (OSError, ValueError, KeyError):
            continue
        sh("il_pg_stop", str(meta.parent / "pg"), check=False, timeout=60)
        sh("il_world_down", info["host"], info["remote"], check=False, timeout=60)
        shutil.rmtree(meta.parent, ignore_errors=True)


def start_world() -> World:
    reap_stale_worlds()
    rand = secrets.token_hex(3)
    host, remote = f"ilh-{rand}", f"ilr-{rand}"
    workdir = Path(tempfile.mkdtemp(prefix=f"interlock-it-{rand}-", dir="/tmp"))
    os.chmod(workdir, 0o755)
    mnt = cgroup2_mount()
    if mnt is None:
        raise RuntimeError("no cgroup2 mount in /proc/self/mountinfo")
    world = World(host=host, remote=remote, workdir=workdir, cgroup=f"{mnt}/{CGROUP_SLICE}/{CGROUP_UNIT}")
    (workdir / "world.json").write_text(json.dumps({"host": host, "remote": remote, "pid": os.getpid()}))
    try:
        snapshot_binaries(workdir / "bin")
        sh("il_accounts_test")
        sh("il_world_up", host, remote)
        sh("il_pg_start", remote, str(workdir / "pg"), timeout=120)
        sh("il_cgroup_make", CGROUP_SLICE, CGROUP_UNIT)
        www = workdir / "www"
        www.mkdir()
        (www / "blob.bin").write_bytes(os.urandom(HTTP_FILE_SIZE))
        os.chmod(www, 0o755)
        os.chmod(www / "blob.bin", 0o644)
        http_log = open(workdir / "http.log", "w")
        world.procs.append(subprocess.Popen(
            world.netns(remote) + ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                   PYTHON, "-m", "http.server", "8080", "--bind", REMOTE4_HTTP,
                                   "--directory", str(www)],
            stdout=http_log, stderr=subprocess.STDOUT, cwd="/tmp", start_new_session=True))
        srv_out = open(workdir / "servers.out", "w")
        world.procs.append(subprocess.Popen(
            world.netns(remote) + [PYTHON, str(SERVERS_PY), "--log", str(world.servers_log),
                                   "--udp-echo", f"{REMOTE4}:9999", "--dns", f"{REMOTE4}:53",
                                   "--banner", f"{REMOTE4}:7777", "--sink", f"{REMOTE4}:7778"],
            stdout=srv_out, stderr=subprocess.STDOUT, cwd="/tmp", start_new_session=True))
        for port, addr in ((8080, REMOTE4_HTTP), (7777, REMOTE4), (7778, REMOTE4), (5432, REMOTE4)):
            ok = wait_until(lambda: world.in_host([PYTHON, "-c", CONNECT_OK, addr, str(port)]).returncode == 0,
                            timeout=15, what=f"{addr}:{port}")
            if not ok:
                raise RuntimeError(f"{addr}:{port} not reachable from {host} within 15 s")
        return world
    except BaseException:
        stop_world(world, keep=False)
        raise


def snapshot_binaries(dest: Path) -> None:
    """Copy interlockd and interlock (when built) into `dest` and point BIN_DIR there."""
    global BIN_DIR
    names = ("interlockd", "interlock")
    if not all((SOURCE_BIN_DIR / n).exists() for n in names):
        return  # the daemon fixtures report the missing build
    dest.mkdir(mode=0o755)
    for n in names:
        for attempt in range(20):  # the linker may be rewriting it right now: bounded retry
            try:
                shutil.copy2(SOURCE_BIN_DIR / n, dest / n)
                break
            except OSError:
                time.sleep(0.5)
        os.chmod(dest / n, 0o755)
    BIN_DIR = dest


CONNECT_OK = r"""
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
"""


def stop_world(world: World, keep: bool = False) -> None:
    for p in world.procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in world.procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)
    sh("il_pg_stop", str(world.workdir / "pg"), check=False, timeout=60)
    sh("il_world_down", world.host, world.remote, check=False, timeout=60)
    sh("il_cgroup_remove", CGROUP_SLICE, check=False)
    if not keep:
        shutil.rmtree(world.workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# The daemon

DEFAULT_CAPTURE = {"users": ["svc-ci"], "groups": ["bots"], "unregistered": "deny", "dns": "allow"}


DEFAULT_DAEMON = {"connect_timeout": "5s", "idle_timeout": "1h", "ruleset_check_interval": "2s"}


def render_config(d: "Daemon", capture: dict | None = None, extra_resources: list[str] | None = None,
                  daemon: dict | None = None, orders_db: str = "", rules: str = "", sections: str = "",
                  audit: dict | None = None) -> str:
    """The daemon's policy file. `orders_db` adds keys to the orders-db resource (a flow mapping's
    inside: `credentials: {...}, tls: {...}`), `rules` is the YAML of the `rules:` list's items,
    `sections` more top-level YAML, `audit` more `audit:` keys."""
    c = dict(DEFAULT_CAPTURE)
    c.update(capture or {})
    dd = dict(DEFAULT_DAEMON)
    dd.update(daemon or {})
    lines = [
        "# written by Tests/Integration/harness.py",
        "daemon:",
        "  user: interlock",
        f"  listen_port: {LISTEN_PORT}",
        f"  control_socket: {d.socket}",
    ] + [f"  {k}: {v}" for k, v in dd.items()] + [
        "audit:",
        f"  database: {d.dir / 'audit.db'}",
    ] + [f"  {k}: {v}" for k, v in (audit or {}).items()] + [
        "capture:",
        f"  users: [{', '.join(c['users'])}]",
        f"  groups: [{', '.join(c['groups'])}]",
        f"  unregistered: {c['unregistered']}",
        f"  dns: {c['dns']}",
        "resources:",
        f'  - {{ name: orders-db, protocol: postgres, address: "{REMOTE4}:5432"'
        + (f", {orders_db}" if orders_db else "") + " }",
        f'  - {{ name: orders-db-v6, protocol: postgres, address: "[{REMOTE6}]:5432" }}',
        '  - { name: artifacts, protocol: tcp, address: "198.18.0.0/24:8080" }',
    ]
    lines += extra_resources or []
    if rules:
        lines += ["rules:", rules.rstrip("\n")]
    if sections:
        lines += [sections.rstrip("\n")]
    return "\n".join(lines) + "\n"


class DaemonFailed(Exception):
    pass


class Daemon:
    """One interlockd in the host namespace, with its own directory (config, audit DB, socket)."""

    def __init__(self, world: World, directory: Path | None = None):
        self.world = world
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="interlockd-", dir=world.workdir))
        self.dir = directory
        pw = pwd.getpwnam("interlock")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o755)
        self.config = self.dir / "interlock.yaml"
        self.socket = self.dir / "control.sock"
        self.stderr_path = self.dir / "interlockd.stderr"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    # ---- lifecycle

    def write_config(self, text: str | None = None, **kw) -> None:
        self.config.write_text(text if text is not None else render_config(self, **kw))
        os.chmod(self.config, 0o644)

    def start(self, timeout: float = 20, env: dict | None = None) -> "Daemon":
        if not self.config.exists():
            self.write_config()
        self.starts += 1
        err = open(self.stderr_path, "a")
        err.write(f"----- start #{self.starts} -----\n")
        err.flush()
        self.proc = subprocess.Popen(
            self.world.netns(self.world.host) + [str(bin_path("interlockd")), "--config", str(self.config)],
            stdout=err, stderr=err, cwd="/tmp", start_new_session=True,
            env={**os.environ, **(env or {})})
        err.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonFailed(f"interlockd exited with {self.proc.returncode} during start:\n{self.stderr()}")
            if self.socket.exists():
                p = self.cli("status", check=False, timeout=5)
                if p.returncode == 0:
                    return self
            time.sleep(0.2)
        raise DaemonFailed(f"interlock status did not answer within {timeout} s:\n{self.stderr()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit code. The table stays (fail closed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with open(self.stderr_path, "a") as f:
                    f.write(f"[harness] interlockd did not exit within {timeout} s of SIGTERM; SIGKILL\n")
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode

    def cleanup(self) -> None:
        """Stop the daemon and leave the host namespace without the table."""
        self.stop()
        if self.world_alive():
            self.cli("uninstall", check=False, timeout=15)
            if self.world.nft("list", "table", "inet", "interlock").returncode == 0:
                self.world.nft("delete", "table", "inet", "interlock")

    def world_alive(self) -> bool:
        return Path(f"/run/netns/{self.world.host}").exists()

    def stderr(self, tail: int = 200) -> str:
        try:
            lines = self.stderr_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no stderr file)"
        return "\n".join(lines[-tail:])

    # ---- the CLI

    def cli(self, *args: str, user: str | None = None, check: bool = True, timeout: float = 30,
            socket_path: Path | None = None) -> subprocess.CompletedProcess:
        argv = [str(bin_path("interlock"))] + list(args) + ["--socket", str(socket_path or self.socket)]
        if user is None:
            p = self.world.in_host(argv, timeout=timeout)
        else:
            p = self.world.as_user(user, argv, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"`interlock {' '.join(args)}` as {user or 'root'} failed ({p.returncode}):\n"
                                 f"stdout: {p.stdout}\nstderr: {p.stderr}\n--- interlockd stderr ---\n"
                                 f"{self.stderr(60)}")
        return p

    def audit(self, after: int = 0, *filters: str, user: str | None = None) -> list[dict]:
        """All evidence entries with index > after, oldest first (parsed from `audit list --json`)."""
        p = self.cli("audit", "list", "--json", "--limit", "100000", *filters, user=user)
        entries = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
        return [e for e in entries if e["index"] > after]

    def last_index(self) -> int:
        entries = self.audit()
        return max((e["index"] for e in entries), default=0)

    def wait_entries(self, predicate, after: int = 0, timeout: float = 10, what: str = "entries") -> list[dict]:
        """Poll the evidence until `predicate(entries)` is truthy; returns the entries (asserts on timeout)."""
        entries: list[dict] = []

        def check():
            nonlocal entries
            entries = self.audit(after)
            return predicate(entries)

        ok = wait_until(check, timeout=timeout, interval=0.25)
        assert ok, (f"timed out after {timeout} s waiting for {what}; entries after {after}:\n"
                    + "\n".join(json.dumps(e) for e in entries) + f"\n--- interlockd stderr ---\n{self.stderr(60)}")
        return entries


def sessions(entries: list[dict], kind: str = "session.open", **match) -> list[dict]:
    """Entries of `kind` whose fields equal `match` (destination=("1.2.3.4", 5) compares normalized)."""
    out = []
    for e in entries:
        if e.get("kind") != kind:
            continue
        ok = True
        for k, v in match.items():
            if k == "destination":
                d = e.get("destination") or {}
                ok = ok and d.get("port") == v[1] and norm_addr(str(d.get("address", "::"))) == norm_addr(v[0])
            elif k == "user":
                ok = ok and (e.get("identity") or {}).get("user") == v
            else:
                ok = ok and e.get(k) == v
        if ok:
            out.append(e)
    return out


def close_of(entries: list[dict], open_entry: dict) -> dict | None:
    for e in entries:
        if e.get("kind") == "session.close" and e.get("session") == open_entry.get("session"):
            return e
    return None


def user_groups(user: str) -> set[str]:
    pw = pwd.getpwnam(user)
    names = {grp.getgrgid(pw.pw_gid).gr_name}
    names |= {g.gr_name for g in grp.getgrall() if user in g.gr_mem}
    return names
