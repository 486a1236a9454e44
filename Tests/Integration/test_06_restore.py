"""6. `nft flush table inet interlock` is undone by the daemon within seconds, and audited."""

import re

from harness import REMOTE4, sessions, wait_until


def normalized_table(world) -> str | None:
    p = world.nft("list", "table", "inet", "interlock")
    if p.returncode != 0:
        return None
    # Counters change with traffic; the rules themselves must come back identical.
    return re.sub(r"counter packets \d+ bytes \d+", "counter", p.stdout).strip()


def restored(daemon, after, problem):
    return [e for e in daemon.audit(after) if e["kind"] == "ruleset.restored" and e.get("problem") == problem]


def test_flushed_table_is_restored_and_audited(world, daemon):
    original = normalized_table(world)
    assert original and "redirect" in original, original
    before = daemon.last_index()
    assert world.nft("flush", "table", "inet", "interlock").returncode == 0
    assert "redirect" not in (normalized_table(world) or "")

    back = wait_until(lambda: normalized_table(world) == original, timeout=10, interval=0.25)
    assert back, f"ruleset not restored within 10 s; now:\n{normalized_table(world)}\nwas:\n{original}"
    entries = daemon.wait_entries(lambda es: [e for e in es if e["kind"] == "ruleset.restored"],
                                  after=before, what="ruleset.restored after a flush")
    r = [e for e in entries if e["kind"] == "ruleset.restored"][0]
    assert r["problem"] == "drifted", r
    assert r.get("detail"), r

    # Capture works again.
    mark = daemon.last_index()
    p = world.psql("svc-ci")
    assert p.returncode == 0, p.stderr
    daemon.wait_entries(lambda es: sessions(es, user="svc-ci", destination=(REMOTE4, 5432)), after=mark,
                        what="a captured session after the restore")


def test_deleted_table_is_restored_and_audited(world, daemon):
    original = normalized_table(world)
    before = daemon.last_index()
    assert world.nft("delete", "table", "inet", "interlock").returncode == 0
    back = wait_until(lambda: normalized_table(world) == original, timeout=10, interval=0.25)
    assert back, f"table not recreated within 10 s; now:\n{normalized_table(world)}"
    entries = daemon.wait_entries(lambda es: [e for e in es if e["kind"] == "ruleset.restored"],
                                  after=before, what="ruleset.restored after the table was deleted")
    r = [e for e in entries if e["kind"] == "ruleset.restored"][0]
    assert r["problem"] == "missing", r


def test_rules_show_matches_the_kernel(world, daemon):
    shown = daemon.cli("rules", "show").stdout
    assert "table inet interlock" in shown
    assert "redirect" in shown
    kernel = normalized_table(world)
    for needle in ("hook output", "redirect"):
        assert needle in kernel
