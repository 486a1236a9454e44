"""Just-in-time approval on real sessions: svc-ci's unchanged psql (or psycopg) waits inside its
session while approvers (dana and dylan, group dba) decide with the real CLI over the control
socket. Approve, deny, time out, withdraw by disconnect or cancel, who may decide, two approvers,
the binding of an approval to one statement, grant windows, transactions and the extended protocol,
and the evidence of each step."""

import json
import os
import signal
import subprocess
import time

import pytest

from harness import PYTHON, REMOTE4, run, wait_until
from pgtest import admin_sql, credentials_yaml, end_of, of_kind, statements

RULE = """\
  - name: prod-writes-need-approval
    identities: [user:svc-ci]
    resources: [orders-db]
    approve:
      statements: [DELETE, UPDATE]
      approvers: [group:dba]
      required: {required}
      timeout: {timeout}
      grant: 10m
"""

ACCOUNTS = """
DROP TABLE IF EXISTS accounts;
CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance int);
INSERT INTO accounts SELECT g, 'owner' || g, 100 FROM generate_series(1, 20) g;
"""


@pytest.fixture
def accounts(world):
    admin_sql(world, ACCOUNTS)


def start(make_daemon, required: int = 1, timeout: str = "2m"):
    d = make_daemon(start=False)
    d.write_config(orders_db=credentials_yaml(d), rules=RULE.format(required=required, timeout=timeout))
    return d.start()


def exists(world, id: int) -> bool:
    return admin_sql(world, f"SELECT count(*) FROM accounts WHERE id = {id}").strip() == "1"


class Client:
    """A captured client running in the background (psql unless `argv` says otherwise)."""

    def __init__(self, world, sql: str | None = None, *, argv: list[str] | None = None, stdin: str | None = None,
                 user: str = "svc-ci"):
        cmd = argv or (["psql", "-X", "-At", "-v", "VERBOSITY=verbose", "-h", REMOTE4, "-d", "orders",
                        "-U", "postgres"] + (["-c", sql] if sql is not None else []))
        self.proc = subprocess.Popen(world.as_user_cmd(user, cmd), stdin=subprocess.PIPE if stdin else None,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PGCONNECT_TIMEOUT": "5"}, start_new_session=True)
        if stdin:
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()
            self.proc.stdin = None  # communicate() must not touch it again
        self.out = self.err = ""

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = 20) -> int:
        try:
            self.out, self.err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the client did not finish within {timeout} s")
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL to the wrapper and the client under it (their own process group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.out, self.err = self.proc.communicate(timeout=10)


def pending(d, user: str = "dana") -> list[dict]:
    p = d.cli("approvals", "list", "--json", user=user)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def wait_pending(d, count: int = 1, user: str = "dana", timeout: float = 15) -> list[dict]:
    found: list[dict] = []

    def check():
        nonlocal found
        found = pending(d, user)
        return len(found) >= count

    assert wait_until(check, timeout=timeout, interval=0.2), (
        f"expected {count} pending request(s), found {found}\n{d.stderr(40)}")
    return found


def approvals(d, *args: str, user: str = "dana", check: bool = True):
    return d.cli("approvals", *args, user=user, check=check)


# ---- the basic decisions


def test_an_approved_statement_runs_in_the_waiting_session_and_every_step_is_evidence(world, make_daemon, accounts):
    d = start(make_daemon)
    before = d.last_index()
    c = Client(world, "DELETE FROM accounts WHERE id = 1")
    [req] = wait_pending(d)
    assert req["requester"]["user"] == "svc-ci"
    assert req["resource"] == "orders-db" and req["rule"] == "prod-writes-need-approval"
    assert req["statement"] == "DELETE FROM accounts WHERE id = 1"
    assert req["approvers"] == "group:dba" and req["required"] == 1 and req["may_decide"] is True
    assert 0 < req["seconds_left"] <= 120
    time.sleep(0.5)
    assert c.running(), "the client waits while the statement is held"
    assert exists(world, 1), "nothing ran before the approval"

    p = approvals(d, "approve", req["id"], "--reason", "ticket OPS-12")
    assert "runs now" in p.stdout
    assert c.wait() == 0, c.err
    assert c.out.strip() == "DELETE 1"
    assert req["id"] in c.err and "interlock approvals approve " + req["id"] in c.err, c.err
    assert not exists(world, 1)

    entries = d.wait_entries(lambda es: of_kind(es, "approval.executed"), after=before, what="approval.executed")
    [st] = [s for s in statements(entries) if s["text"] == "DELETE FROM accounts WHERE id = 1"]
    assert st["decision"] == "approve" and st["rule"] == "prod-writes-need-approval"
    [requested] = of_kind(entries, "approval.requested")
    assert requested["request"] == req["id"] and requested["statement"] == st["statement"]
    assert requested["session"] == st["session"] and requested["digest"] == req["digest"]
    assert requested["requester"]["user"] == "svc-ci"
    [approved] = of_kind(entries, "approval.approved")
    assert approved["approver"]["user"] == "dana" and approved["complete"] is True
    assert approved["reason"] == "ticket OPS-12"
    [executed] = of_kind(entries, "approval.executed")
    assert executed["request"] == req["id"] and executed["result"] == "completed"
    assert requested["index"] < approved["index"], "the request is recorded before its decision"
    end = d.wait_entries(lambda es: end_of(es, st), after=before, what="statement.end")
    assert end_of(end, st)["command_tag"] == "DELETE 1"


def test_a_denied_statement_fails_with_42501_naming_the_approver_and_reason(world, make_daemon, accounts):
    d = start(make_daemon)
    before = d.last_index()
    c = Client(world, "UPDATE accounts SET balance = 0 WHERE id = 2")
    [req] = wait_pending(d)
    p = approvals(d, "deny", req["id"], "--reason", "use the migration job")
    assert "denied" in p.stdout
    assert c.wait() != 0
    assert "42501" in c.err and "denied by dana: use the migration job" in c.err, c.err
    assert admin_sql(world, "SELECT balance FROM accounts WHERE id = 2").strip() == "100"
    entries = d.wait_entries(lambda es: of_kind(es, "approval.denied") and of_kind(es, "statement.end"),
                             after=before, what="denial evidence")
    [denied] = of_kind(entries, "approval.denied")
    assert denied["approver"]["user"] == "dana" and denied["reason"] == "use the migration job"
    [st] = [s for s in statements(entries) if s["decision"] == "approve"]
    e = end_of(entries, st)
    assert e["result"] == "not_approved" and e["approval"] == "denied"
    assert pending(d) == [], "a decided request is gone from the list"


def test_a_statement_nobody_decides_times_out_with_an_error(world, make_daemon, accounts):
    d = start(make_daemon, timeout="2s")
    before = d.last_index()
    started = time.monotonic()
    c = Client(world, "DELETE FROM accounts WHERE id = 3")
    assert c.wait(timeout=20) != 0
    assert time.monotonic() - started >= 1.5
    assert "57014" in c.err and "timed out" in c.err, c.err
    assert exists(world, 3)
    entries = d.wait_entries(lambda es: of_kind(es, "approval.timed_out"), after=before, what="approval.timed_out")
    [req] = of_kind(entries, "approval.requested")
    assert of_kind(entries, "approval.timed_out")[0]["request"] == req["request"]
    late = approvals(d, "approve", req["request"], "--digest", req["digest"], check=False)
    assert late.returncode != 0 and "timed out" in late.stderr, late.stderr


def test_a_client_that_disconnects_while_waiting_withdraws_its_request(world, make_daemon, accounts):
    d = start(make_daemon)
    before = d.last_index()
    c = Client(world, "DELETE FROM accounts WHERE id = 4")
    [req] = wait_pending(d)
    c.kill()
    entries = d.wait_entries(lambda es: of_kind(es, "approval.withdrawn"), after=before, what="approval.withdrawn")
    assert of_kind(entries, "approval.withdrawn")[0]["request"] == req["id"]
    assert pending(d) == []
    late = approvals(d, "approve", req["id"], "--digest", req["digest"], check=False)
    assert late.returncode != 0 and "withdrawn" in late.stderr, late.stderr
    assert exists(world, 4)


def test_a_cancel_while_waiting_withdraws_the_request_and_the_session_goes_on(world, make_daemon, accounts):
    d = start(make_daemon)
    before = d.last_index()
    # A driver that cancels its own held statement, then keeps using the connection.
    code = r"""
import json, sys, threading, time, psycopg2, psycopg2.extensions
c = psycopg2.connect(host=sys.argv[1], dbname="orders", user="postgres", connect_timeout=5)
c.autocommit = True
notices = []
timer = threading.Timer(3.0, c.cancel)
timer.start()
cur = c.cursor()
try:
    cur.execute("DELETE FROM accounts WHERE id = 5")
    out = {"ran": True}
except psycopg2.Error as e:
    out = {"ran": False, "sqlstate": e.pgcode, "error": str(e)}
cur.execute("SELECT count(*) FROM accounts WHERE id = 5")
out["after"] = cur.fetchone()[0]
print(json.dumps(out))
"""
    c = Client(world, argv=[PYTHON, "-c", code, REMOTE4])
    wait_pending(d)
    assert c.wait(timeout=30) == 0, c.err
    out = json.loads(c.out.strip().splitlines()[-1])
    assert out["ran"] is False and out["sqlstate"] == "57014", out
    assert out["after"] == 1, "the session stays usable after the cancelled hold"
    entries = d.wait_entries(lambda es: of_kind(es, "approval.withdrawn"), after=before, what="approval.withdrawn")
    cancel = of_kind(entries, "postgres.cancel")[0]
    assert cancel["decision"] == "allow" and cancel["forwarded"] is False, cancel
    st = [s for s in statements(entries) if s["decision"] == "approve"][0]
    assert end_of(entries, st)["approval"] == "cancelled"


# ---- who may decide


def test_only_the_rules_approvers_may_decide_and_never_the_requester(world, make_daemon, accounts):
    d = start(make_daemon)
    c = Client(world, "DELETE FROM accounts WHERE id = 6")
    [req] = wait_pending(d)
    # alice is not in dba: she does not even see it, and cannot approve it with its digest.
    assert pending(d, user="alice") == []
    p = approvals(d, "approve", req["id"], "--digest", req["digest"], user="alice", check=False)
    assert p.returncode != 0 and "[not_an_approver]" in p.stderr, p.stderr
    # svc-ci is in dba, but it is the requester.
    own = pending(d, user="svc-ci")
    assert own and own[0]["may_decide"] is False
    p = approvals(d, "approve", req["id"], user="svc-ci", check=False)
    assert p.returncode != 0 and "[own_request]" in p.stderr, p.stderr
    p = approvals(d, "deny", req["id"], "--reason", "no", user="svc-ci", check=False)
    assert p.returncode != 0 and "[own_request]" in p.stderr, p.stderr
    assert c.running() and exists(world, 6), "refused decisions change nothing"
    approvals(d, "deny", req["id"], "--reason", "test over")
    assert c.wait() != 0


def test_two_approvers_are_needed_when_the_rule_says_two(world, make_daemon, accounts):
    d = start(make_daemon, required=2)
    c = Client(world, "DELETE FROM accounts WHERE id = 7")
    [req] = wait_pending(d)
    p = approvals(d, "approve", req["id"])
    assert "needs 2" in p.stdout
    again = approvals(d, "approve", req["id"], check=False)
    assert again.returncode != 0 and "[already_approved]" in again.stderr
    time.sleep(0.5)
    assert c.running() and exists(world, 7), "one approval of two runs nothing"
    [still] = pending(d, user="dylan")
    assert still["approved_by"] == ["dana"]
    approvals(d, "approve", req["id"], user="dylan")
    assert c.wait() == 0, c.err
    assert not exists(world, 7)


def test_an_approval_is_bound_to_its_statement_and_releases_no_other(world, make_daemon, accounts):
    d = start(make_daemon)
    a = Client(world, "DELETE FROM accounts WHERE id = 8")
    wait_pending(d, 1)
    b = Client(world, "DELETE FROM accounts WHERE id = 9")
    reqs = wait_pending(d, 2)
    ra = next(r for r in reqs if "id = 8" in r["statement"])
    rb = next(r for r in reqs if "id = 9" in r["statement"])
    assert ra["digest"] != rb["digest"]
    p = approvals(d, "approve", ra["id"], "--digest", rb["digest"], check=False)
    assert p.returncode != 0 and "[digest_mismatch]" in p.stderr, p.stderr
    approvals(d, "approve", rb["id"])
    assert b.wait() == 0 and not exists(world, 9)
    time.sleep(0.5)
    assert a.running() and exists(world, 8), "approving B released only B"
    approvals(d, "deny", ra["id"], "--reason", "not this one")
    assert a.wait() != 0 and exists(world, 8)


# ---- grant windows


def test_a_grant_window_lets_later_statements_through_until_revoked(world, make_daemon, accounts):
    d = start(make_daemon)
    before = d.last_index()
    c = Client(world, "DELETE FROM accounts WHERE id = 10")
    [req] = wait_pending(d)
    too_long = approvals(d, "approve", req["id"], "--grant", "2h", check=False)
    assert too_long.returncode != 0 and "[grant_too_long]" in too_long.stderr, too_long.stderr
    p = approvals(d, "approve", req["id"], "--grant", "5m")
    assert "grant window grt-" in p.stdout
    assert c.wait() == 0
    # Within the window: no request, the statement runs at once.
    c2 = Client(world, "DELETE FROM accounts WHERE id = 11")
    assert c2.wait(timeout=10) == 0, c2.err
    assert not exists(world, 11)
    [g] = [json.loads(line) for line in approvals(d, "grants", "--json").stdout.splitlines()]
    assert g["holder"]["user"] == "svc-ci" and g["uses"] == 1 and g["request"] == req["id"]
    approvals(d, "revoke", g["id"])
    assert json.loads(approvals(d, "grants", "--json").stdout or "null") is None
    c3 = Client(world, "DELETE FROM accounts WHERE id = 12")
    [again] = wait_pending(d)
    approvals(d, "deny", again["id"], "--reason", "window closed")
    assert c3.wait() != 0 and exists(world, 12)
    entries = d.wait_entries(lambda es: of_kind(es, "grant.revoked"), after=before, what="grant evidence")
    [opened] = of_kind(entries, "grant.opened")
    assert opened["grant"] == g["id"] and opened["holder"]["user"] == "svc-ci"
    assert [u["grant"] for u in of_kind(entries, "grant.used")] == [g["id"]]
    assert of_kind(entries, "grant.revoked")[0]["by"]["user"] == "dana"
    executed = of_kind(entries, "approval.executed")
    assert [e.get("request") for e in executed if "request" in e] == [req["id"]]
    assert [e.get("grant") for e in executed if "grant" in e] == [g["id"]]


def test_a_grant_window_expires(world, make_daemon, accounts):
    d = start(make_daemon)
    before = d.last_index()
    c = Client(world, "DELETE FROM accounts WHERE id = 13")
    [req] = wait_pending(d)
    approvals(d, "approve", req["id"], "--grant", "2s")
    assert c.wait() == 0
    d.wait_entries(lambda es: of_kind(es, "grant.expired"), after=before, timeout=10, what="grant.expired")
    c2 = Client(world, "DELETE FROM accounts WHERE id = 14")
    [again] = wait_pending(d)
    approvals(d, "deny", again["id"], "--reason", "expired window")
    assert c2.wait() != 0 and exists(world, 14)


# ---- transactions and the extended protocol


def test_a_held_statement_inside_a_transaction_then_commit(world, make_daemon, accounts):
    d = start(make_daemon)
    script = ("BEGIN;\nINSERT INTO accounts VALUES (100, 'new', 1);\nDELETE FROM accounts WHERE id = 15;\n"
              "COMMIT;\n")
    c = Client(world, None, stdin=script)
    [req] = wait_pending(d)
    assert not exists(world, 100), "the transaction is open, nothing committed yet"
    approvals(d, "approve", req["id"])
    assert c.wait() == 0, c.err
    assert exists(world, 100) and not exists(world, 15), "both statements committed together"


def test_a_denied_statement_inside_a_transaction_leaves_the_session_consistent(world, make_daemon, accounts):
    d = start(make_daemon)
    script = ("BEGIN;\nUPDATE accounts SET balance = 1 WHERE id = 16;\nSELECT 'still here';\nROLLBACK;\n"
              "SELECT count(*) FROM accounts WHERE id = 16;\n")
    c = Client(world, None, stdin=script)
    [req] = wait_pending(d)
    approvals(d, "deny", req["id"], "--reason", "no")
    c.wait()
    assert "still here" in c.out and c.out.strip().endswith("1"), (c.out, c.err)
    assert "denied by dana" in c.err
    assert admin_sql(world, "SELECT balance FROM accounts WHERE id = 16").strip() == "100"


def test_the_extended_protocol_holds_executes_with_their_parameters(world, make_daemon, accounts):
    d = start(make_daemon)
    before = d.last_index()
    code = r"""
import json, sys, psycopg
with psycopg.connect(host=sys.argv[1], dbname="orders", user="postgres", connect_timeout=5) as c:
    c.autocommit = True
    n = c.execute("DELETE FROM accounts WHERE id = %s", (17,), prepare=True).rowcount
    m = c.execute("SELECT count(*) FROM accounts WHERE id = %s", (18,)).fetchone()[0]
    print(json.dumps({"deleted": n, "other": m}))
"""
    c = Client(world, argv=[PYTHON, "-c", code, REMOTE4])
    [req] = wait_pending(d)
    # Approvers read the statement with the values it runs with (psycopg binds an int as binary int2).
    assert req["statement"] == "DELETE FROM accounts WHERE id = $1  [$1 = '\\x0011']", req["statement"]
    approvals(d, "approve", req["id"])
    assert c.wait() == 0, c.err
    assert json.loads(c.out.strip().splitlines()[-1]) == {"deleted": 1, "other": 1}
    entries = d.wait_entries(lambda es: of_kind(es, "approval.executed"), after=before, what="approval.executed")
    [requested] = of_kind(entries, "approval.requested")
    # psycopg 3 binds an int as binary int2: evidence shows binary values in hex.
    assert requested["parameters"] == ["\\x0011"]
    # Another value is another statement: a new request, not covered by the first approval.
    c2 = Client(world, argv=[PYTHON, "-c", code.replace("(17,)", "(19,)"), REMOTE4])
    [again] = wait_pending(d)
    assert again["digest"] != req["digest"]
    approvals(d, "deny", again["id"], "--reason", "one at a time")
    assert c2.wait() != 0 and exists(world, 19)


# ---- watching, restart


def test_watch_follows_requests_and_decisions_live(world, make_daemon, accounts):
    d = start(make_daemon)
    from harness import bin_path
    w = subprocess.Popen(world.as_user_cmd("dylan", [str(bin_path("interlock")), "approvals", "watch", "--json",
                                                     "--count", "2", "--seconds", "30", "--socket", str(d.socket)]),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    c = Client(world, "DELETE FROM accounts WHERE id = 20")
    [req] = wait_pending(d)
    approvals(d, "approve", req["id"])
    assert c.wait() == 0
    out, err = w.communicate(timeout=30)
    assert w.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [e["event"] for e in events] == ["requested", "approved"]
    assert events[0]["request"]["id"] == req["id"] and events[1]["by"] == "dana"
    # alice may watch too, but sees nothing of dba's requests.
    p = approvals(d, "watch", "--json", "--seconds", "1", user="alice")
    assert p.stdout.strip() == ""


def test_pending_requests_lost_at_a_restart_are_recorded(world, make_daemon, accounts):
    d = start(make_daemon)
    c = Client(world, "DELETE FROM accounts WHERE id = 2")
    [req] = wait_pending(d)
    d.signal(signal.SIGKILL)
    d.proc.wait(timeout=10)
    c.wait()
    assert c.proc.returncode != 0
    d.start()
    entries = d.wait_entries(lambda es: of_kind(es, "approval.lost"), what="approval.lost")
    assert of_kind(entries, "approval.lost")[0]["requests"] == [req["id"]]
    assert exists(world, 2)


# ---- webhook

HOOK_SERVER = r"""
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open(sys.argv[2], "a") as f:
            f.write(json.dumps({"path": self.path, "headers": dict(self.headers), "body": body.decode()}) + "\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def webhook_rule(d, port: int) -> str:
    key = d.dir / "webhook.key"
    key.write_text("hook-secret\n")
    import pwd
    pw = pwd.getpwnam("interlock")
    os.chown(key, pw.pw_uid, pw.pw_gid)
    os.chmod(key, 0o600)
    return RULE.format(required=1, timeout="2m") + (
        f"      webhook: {{ url: \"http://127.0.0.1:{port}/hooks/interlock?team=dba\", secret_file: {key} }}\n")


def test_a_webhook_tells_approvers_signed_and_a_dead_one_blocks_nothing(world, make_daemon, accounts, tmp_path):
    import hashlib
    import hmac
    log = tmp_path / "hooks.jsonl"
    server = subprocess.Popen(world.netns(world.host) + [PYTHON, "-c", HOOK_SERVER, "18099", str(log)])
    try:
        d = make_daemon(start=False)
        d.write_config(orders_db=credentials_yaml(d), rules=webhook_rule(d, 18099))
        d.start()
        before = d.last_index()
        c = Client(world, "DELETE FROM accounts WHERE id = 3")
        [req] = wait_pending(d)
        assert wait_until(lambda: log.exists() and log.read_text().strip(), timeout=10), "no webhook delivery"
        hook = json.loads(log.read_text().splitlines()[0])
        assert hook["path"] == "/hooks/interlock?team=dba"
        body = json.loads(hook["body"])
        assert body["event"] == "approval.requested" and body["request"]["id"] == req["id"]
        assert body["approve"] == f"interlock approvals approve {req['id']}"
        headers = {k.lower(): v for k, v in hook["headers"].items()}
        mac = hmac.new(b"hook-secret", f"{headers['x-interlock-timestamp']}.{hook['body']}".encode(),
                       hashlib.sha256).hexdigest()
        assert headers["x-interlock-signature"] == f"sha256={mac}"
        approvals(d, "approve", req["id"])
        assert c.wait() == 0
        entries = d.wait_entries(lambda es: of_kind(es, "approval.notified"), after=before, what="approval.notified")
        n = of_kind(entries, "approval.notified")[0]
        assert n["delivered"] is True and n["attempts"] == 1 and n["http_status"] == 204
    finally:
        server.kill()
        server.wait(timeout=5)
    # Nobody listens any more: the request is still held and decided at once; delivery keeps retrying.
    c = Client(world, "DELETE FROM accounts WHERE id = 4")
    [req] = wait_pending(d)
    started = time.monotonic()
    approvals(d, "approve", req["id"])
    assert c.wait() == 0 and time.monotonic() - started < 5


def test_a_held_session_is_not_idle_however_long_approvers_take(world, make_daemon, accounts):
    d = make_daemon(start=False)
    d.write_config(orders_db=credentials_yaml(d), rules=RULE.format(required=1, timeout="1m"),
                   daemon={"idle_timeout": "2s"})
    d.start()
    c = Client(world, "DELETE FROM accounts WHERE id = 5")
    [req] = wait_pending(d)
    time.sleep(4)
    assert c.running(), "the idle timeout must not end a session whose statement waits for approvers"
    approvals(d, "approve", req["id"])
    assert c.wait() == 0, c.err
    assert not exists(world, 5)


def test_a_graceful_stop_withdraws_what_waits_and_the_client_is_told(world, make_daemon, accounts):
    d = start(make_daemon)
    c = Client(world, "DELETE FROM accounts WHERE id = 6")
    [req] = wait_pending(d)
    assert d.stop() == 0
    assert c.wait() != 0
    assert "57P01" in c.err and "shutting down" in c.err, c.err
    d.start()
    entries = d.audit()
    withdrawn = of_kind(entries, "approval.withdrawn")
    assert [(w["request"], w["reason"]) for w in withdrawn] == [(req["id"], "shutdown")]
    assert of_kind(entries, "approval.lost") == [], "a withdrawn request is not lost"
    assert exists(world, 6)
