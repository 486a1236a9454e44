"""4. UDP to a non-DNS port from a captured account is rejected; the daemon's own upstream
connections are not captured (no loop); a captured account connecting to the listener port directly
is refused."""

import secrets
import time

import pytest

from harness import LISTEN_PORT, REMOTE4, close_of, sessions


def test_non_dns_udp_from_captured_account_is_rejected(world, daemon):
    marker = "quic-" + secrets.token_hex(4)
    got = world.udp_probe("svc-ci", REMOTE4, 9999, marker)
    assert not got.startswith("reply:"), f"captured UDP to :9999 got through: {got}"
    # Control: the same datagram from an uncaptured account is echoed.
    assert world.udp_probe("alice", REMOTE4, 9999, marker + "-alice") == f"reply:{marker}-alice"
    time.sleep(0.3)
    arrived = [l for l in world.servers_log_lines() if marker in l]
    assert all("-alice" in l for l in arrived), f"svc-ci's datagram reached the server: {arrived}"


def test_non_dns_udp_over_ipv6_is_rejected_too(world, daemon):
    got = world.udp_probe("svc-ci", "2001:db8:18::10", 9999, "v6")
    assert not got.startswith("reply:"), got


def test_dns_passes_when_allowed(world, daemon):
    got = world.udp_probe("svc-ci", REMOTE4, 53, "dnsq")
    assert got.startswith("reply:"), f"captured DNS with dns: allow did not get a reply: {got}"


def test_dns_is_rejected_when_denied(world, make_daemon):
    make_daemon(capture={"dns": "deny"})
    got = world.udp_probe("svc-ci", REMOTE4, 53, "dnsq")
    assert not got.startswith("reply:"), f"captured DNS with dns: deny got a reply: {got}"
    assert world.udp_probe("alice", REMOTE4, 53, "dnsq").startswith("reply:")


def test_daemon_upstream_is_not_captured_again(world, daemon):
    before = daemon.last_index()
    for _ in range(3):
        p = world.psql("svc-ci")
        assert p.returncode == 0, p.stderr
    entries = daemon.wait_entries(
        lambda es: len([o for o in sessions(es) if close_of(es, o)]) >= 3, after=before,
        what="three closed sessions")
    time.sleep(1)
    entries = daemon.audit(before)
    opens = sessions(entries)
    # Exactly one session per client connection: the daemon's own upstream connection was not
    # redirected back into itself.
    assert len(opens) == 3, opens
    assert all(o["identity"]["user"] == "svc-ci" for o in opens), opens
    assert not [o for o in opens if o["destination"]["port"] == LISTEN_PORT]


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_captured_account_cannot_connect_to_the_listener(world, daemon, address):
    before = daemon.last_index()
    got = world.tcp_probe("svc-ci", address, LISTEN_PORT)
    assert got == "refused", f"svc-ci connecting to {address}:{LISTEN_PORT} directly: {got}"
    # Nothing reached the daemon as a session.
    time.sleep(0.5)
    assert sessions(daemon.audit(before)) == []


def test_listener_port_on_another_local_address_does_not_loop(world, make_daemon):
    # 198.18.0.1:15001 is not the listener (that is loopback only): the connection is captured like
    # any other, forwarded under `record` by the daemon's own (uncaptured) socket, and refused there.
    daemon = make_daemon(capture={"unregistered": "record"})
    before = daemon.last_index()
    got = world.tcp_probe("svc-ci", "198.18.0.1", LISTEN_PORT)
    assert not got.startswith("data:"), got
    time.sleep(1)
    opens = sessions(daemon.audit(before))
    assert len(opens) == 1, f"expected exactly one session (no recursion), got {opens}"
    assert opens[0]["identity"]["user"] == "svc-ci"


SET_MARK = r"""
import socket
s = socket.socket()
try:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 0x1f0c0001)
    print("mark-set")
except PermissionError:
    print("eperm")
"""


def test_captured_account_cannot_borrow_the_daemons_socket_mark(world, daemon):
    # The upstream mark exempts the daemon's sockets; setting it needs CAP_NET_ADMIN.
    assert world.python("svc-ci", SET_MARK).stdout.strip() == "eperm"
