"""Forwarding behaviour the issue asks for beyond the checklist: half-close propagated, uploads
counted, upstream failures and timeouts closing the client and recorded, idle timeout, many
connections at once, and a daemon that survives garbage on its control socket."""

import socket
import subprocess
import time

from harness import PG_SESSION, PYTHON, REMOTE4, REMOTE4_HTTP, HTTP_FILE_SIZE, close_of, sessions

SINK_RESOURCE = ['  - { name: sink, protocol: tcp, address: "198.18.0.10:7778" }']

UPLOAD = r"""
import socket, sys
n = int(sys.argv[1])
s = socket.create_connection(("198.18.0.10", 7778), timeout=20)
chunk = b"x" * 65536
sent = 0
while sent < n:
    sent += s.send(chunk[: min(len(chunk), n - sent)])
s.shutdown(socket.SHUT_WR)
reply = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    reply += b
print(reply.decode().strip())
"""


def test_half_close_is_propagated_and_upload_is_counted(world, make_daemon):
    daemon = make_daemon(extra_resources=SINK_RESOURCE)
    before = daemon.last_index()
    size = 5 * 1024 * 1024
    p = world.python("svc-ci", UPLOAD, str(size), timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"got {size}", "the server must see the client's EOF and answer after it"
    entries = daemon.wait_entries(
        lambda es: [o for o in sessions(es, user="svc-ci", destination=(REMOTE4, 7778)) if close_of(es, o)],
        after=before, what="the upload's session.close")
    o = sessions(entries, user="svc-ci", destination=(REMOTE4, 7778))[0]
    assert o["resource"] == "sink"
    c = close_of(entries, o)
    assert c["bytes_up"] == size, c
    assert c["bytes_down"] == len(f"got {size}\n"), c


def test_upstream_refusal_closes_the_client_and_is_recorded(world, daemon):
    # 198.18.0.10:8080 is inside the `artifacts` CIDR, but nothing listens there.
    before = daemon.last_index()
    t0 = time.monotonic()
    got = world.tcp_probe("svc-ci", REMOTE4, 8080, timeout=8)
    assert got in ("eof", "reset", "refused"), got
    assert time.monotonic() - t0 < 5
    entries = daemon.wait_entries(
        lambda es: [o for o in sessions(es, user="svc-ci", destination=(REMOTE4, 8080)) if close_of(es, o)],
        after=before, what="session.close after the upstream refused")
    o = sessions(entries, user="svc-ci", destination=(REMOTE4, 8080))[0]
    c = close_of(entries, o)
    assert "connect" in c["reason"], c
    assert daemon.running()


def test_connect_timeout_closes_the_client(world, make_daemon):
    daemon = make_daemon(daemon={"connect_timeout": "2s"})
    # In the remote namespace (ours), silently drop SYNs to :8080 so the upstream connect hangs.
    rules = "table inet blackhole {\n chain input {\n  type filter hook input priority 0;\n  tcp dport 8080 drop\n }\n}\n"
    nft = ["nsenter", f"--net=/run/netns/{world.remote}", "nft"]
    subprocess.run(nft + ["-f", "-"], input=rules, text=True, check=True, timeout=10)
    try:
        before = daemon.last_index()
        t0 = time.monotonic()
        got = world.tcp_probe("svc-ci", REMOTE4, 8080, timeout=10)
        elapsed = time.monotonic() - t0
        assert got in ("eof", "reset"), got
        assert 1.5 <= elapsed < 6, f"closed after {elapsed:.1f} s with connect_timeout 2s"
        entries = daemon.wait_entries(
            lambda es: [o for o in sessions(es, destination=(REMOTE4, 8080)) if close_of(es, o)],
            after=before, what="session.close after the connect timeout")
        c = close_of(entries, sessions(entries, destination=(REMOTE4, 8080))[0])
        assert "connect" in c["reason"] or "timeout" in c["reason"], c
    finally:
        subprocess.run(nft + ["delete", "table", "inet", "blackhole"], timeout=10)


def test_idle_timeout_closes_and_records(world, make_daemon):
    daemon = make_daemon(daemon={"idle_timeout": "2s"})
    before = daemon.last_index()
    live = subprocess.Popen(world.as_user_cmd("svc-ci", [PYTHON, "-c", PG_SESSION, REMOTE4]),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd="/tmp")
    try:
        assert live.stdout.readline().startswith("q1 "), "session did not start"
        entries = daemon.wait_entries(
            lambda es: [o for o in sessions(es, user="svc-ci") if close_of(es, o)], after=before, timeout=8,
            what="an idle_timeout session.close")
        c = close_of(entries, sessions(entries, user="svc-ci")[0])
        assert "idle" in c["reason"], c
        assert c["duration_ms"] >= 1500, c
        live.stdin.write("again\n")
        live.stdin.flush()
        assert live.stdout.readline().startswith("error "), "the idle connection should have been closed"
    finally:
        live.kill()
        live.wait(timeout=5)


PARALLEL = r"""
import concurrent.futures, socket, sys
n = int(sys.argv[1])
def fetch(_):
    s = socket.create_connection(("198.18.0.11", 8080), timeout=30)
    s.sendall(b"GET /blob.bin HTTP/1.0\r\nHost: x\r\n\r\n")
    total = 0
    while True:
        b = s.recv(65536)
        if not b:
            break
        total += len(b)
    s.close()
    return total
with concurrent.futures.ThreadPoolExecutor(n) as ex:
    sizes = list(ex.map(fetch, range(n)))
print(" ".join(map(str, sizes)))
"""


def test_many_parallel_connections_are_each_recorded(world, daemon):
    n = 40
    before = daemon.last_index()
    p = world.python("svc-ci", PARALLEL, str(n), timeout=120)
    assert p.returncode == 0, p.stderr
    sizes = [int(x) for x in p.stdout.split()]
    assert len(sizes) == n and all(s > HTTP_FILE_SIZE for s in sizes), sizes
    entries = daemon.wait_entries(
        lambda es: len([o for o in sessions(es, destination=(REMOTE4_HTTP, 8080)) if close_of(es, o)]) >= n,
        after=before, timeout=20, what=f"{n} closed sessions")
    opens = sessions(entries, destination=(REMOTE4_HTTP, 8080))
    assert len(opens) == n
    assert len({o["session"] for o in opens}) == n
    assert len({o["source"]["port"] for o in opens}) == n
    for o in opens:
        assert close_of(entries, o)["bytes_down"] > HTTP_FILE_SIZE


def test_garbage_on_the_control_socket_does_not_hurt_the_daemon(world, daemon):
    for payload in (b"\x00\xff garbage\n", b"{\"command\": \"nope\"}\n", b"[" * 100_000 + b"\n", b"x" * 2_000_000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(str(daemon.socket))
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            s.recv(65536)
        except OSError:
            pass
        finally:
            s.close()
    assert daemon.running()
    assert daemon.cli("status").returncode == 0
    assert world.psql("svc-ci").returncode == 0
