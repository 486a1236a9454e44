"""The world itself, with no daemon: every server answers from the host namespace, directly.
If these fail, every other result is meaningless."""

import pytest

from harness import HTTP_FILE_SIZE, REMOTE4, REMOTE4_HTTP, REMOTE6, CGROUP_UNIT


@pytest.mark.parametrize("user", ["svc-ci", "alice"])
def test_postgres_reachable_directly_over_ipv4_and_ipv6(world, user):
    for host in (REMOTE4, REMOTE6):
        p = world.psql(user, "SELECT count(*) FROM items", host=host)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == "3"


def test_http_serves_the_known_file(world):
    p = world.as_user("alice", ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}",
                                f"http://{REMOTE4_HTTP}:8080/blob.bin"])
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) == HTTP_FILE_SIZE


def test_udp_echo_dns_and_banner_answer(world):
    assert world.udp_probe("alice", REMOTE4, 9999, "hello") == "reply:hello"
    assert world.udp_probe("alice", REMOTE4, 53, "abcd").startswith("reply:")
    assert world.tcp_probe("alice", REMOTE4, 7777) == "data:banner 7777"


def test_client_runs_in_the_unit_cgroup_with_its_own_identity(world):
    p = world.as_user("svc-bot", ["sh", "-c", "id -un; id -Gn; cat /proc/self/cgroup"], in_unit=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "svc-bot"
    assert "bots" in lines[1].split()
    assert any(l.startswith("0::") and l.endswith("/" + CGROUP_UNIT) for l in lines), p.stdout
