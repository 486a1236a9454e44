"""The control socket authenticates peers: root and interlock-admin may change things,
interlock-auditors may read, everyone else is refused."""


def test_unprivileged_user_is_refused(world, daemon):
    p = daemon.cli("audit", "list", "--json", user="alice", check=False)
    assert p.returncode != 0, f"alice could read the evidence: {p.stdout[:500]}"
    assert p.stdout.strip() == "", p.stdout[:500]
    assert daemon.cli("reload", user="alice", check=False).returncode != 0
    assert daemon.cli("status", user="alice", check=False).returncode != 0


def test_auditor_reads_but_cannot_reload(world, daemon):
    p = daemon.cli("audit", "list", "--json", user="audra", check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip(), "auditor got an empty log (daemon.started etc. expected)"
    assert daemon.cli("status", user="audra", check=False).returncode == 0
    assert daemon.cli("rules", "show", user="audra", check=False).returncode == 0
    r = daemon.cli("reload", user="audra", check=False)
    assert r.returncode != 0, "an auditor could reload the policy"
    u = daemon.cli("uninstall", user="audra", check=False)
    assert u.returncode != 0, "an auditor could uninstall"
    assert daemon.running()
    assert daemon.world.nft("list", "table", "inet", "interlock").returncode == 0


def test_admin_may_reload(world, daemon):
    before = daemon.last_index()
    r = daemon.cli("reload", user="opal", check=False)
    assert r.returncode == 0, r.stderr
    entries = daemon.wait_entries(
        lambda es: [e for e in es if e["kind"] == "policy.loaded" and e.get("outcome") == "ok"],
        after=before, what="policy.loaded ok after opal's reload")
    assert entries
    assert daemon.cli("audit", "list", "--json", user="opal", check=False).returncode == 0
