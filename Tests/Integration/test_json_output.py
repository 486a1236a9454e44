"""Every listing takes --json: one JSON object per line, stable snake_case fields."""

import json
from datetime import datetime

from harness import REMOTE4


def parse_lines(text):
    lines = [l for l in text.split("\n") if l != ""]
    objs = []
    for l in lines:
        obj = json.loads(l)
        assert isinstance(obj, dict), l
        objs.append(obj)
    return objs


def test_audit_list_json_is_one_object_per_line_with_gap_free_indexes(world, daemon):
    assert world.psql("svc-ci").returncode == 0
    text = daemon.cli("audit", "list", "--json", "--limit", "100000").stdout
    entries = parse_lines(text)
    assert len(entries) >= 4, text
    for e in entries:
        for k in ("index", "kind", "time", "v"):
            assert k in e, e
        datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
        assert all(k == k.lower() and " " not in k for k in e), e
    idx = [e["index"] for e in entries]
    assert idx == list(range(idx[0], idx[0] + len(idx))), f"indexes not gap-free and increasing: {idx}"
    kinds = [e["kind"] for e in entries]
    for k in ("daemon.started", "policy.loaded", "ruleset.installed", "session.open"):
        assert k in kinds, kinds


def test_audit_entries_are_canonical_json(world, daemon):
    assert world.psql("svc-ci").returncode == 0
    text = daemon.cli("audit", "list", "--json").stdout
    for line in text.splitlines():
        canonical = json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert line == canonical, f"not canonical:\n  got  {line}\n  want {canonical}"


def test_audit_list_filters(world, daemon):
    assert world.psql("svc-ci").returncode == 0
    assert world.psql("svc-bot").returncode == 0
    import time
    time.sleep(1)
    only = parse_lines(daemon.cli("audit", "list", "--json", "--user", "svc-bot").stdout)
    assert only and all(e["user"] == "svc-bot" for e in only), only
    assert all(e.get("identity", {}).get("user") == "svc-bot" for e in only if "identity" in e), only
    assert {e["kind"].split(".")[0] for e in only} == {"session", "statement", "postgres"}, only
    opens = parse_lines(daemon.cli("audit", "list", "--json", "--kind", "session.open").stdout)
    assert opens and all(e["kind"] == "session.open" for e in opens)
    res = parse_lines(daemon.cli("audit", "list", "--json", "--resource", "orders-db").stdout)
    assert res and all(e["resource"] == "orders-db" for e in res), res
    last = parse_lines(daemon.cli("audit", "list", "--json", "--limit", "1").stdout)
    assert len(last) == 1
    future = parse_lines(daemon.cli("audit", "list", "--json", "--since", "2999-01-01T00:00:00Z").stdout)
    assert future == []
    past = parse_lines(daemon.cli("audit", "list", "--json", "--until", "2000-01-01T00:00:00Z").stdout)
    assert past == []


def test_status_and_rules_json_are_objects_per_line(world, daemon):
    status = parse_lines(daemon.cli("status", "--json").stdout)
    assert len(status) == 1, status
    rules = parse_lines(daemon.cli("rules", "show", "--json").stdout)
    assert rules
    text = daemon.cli("status").stdout
    assert "15001" in text, text
    assert "svc-ci" in text, text
