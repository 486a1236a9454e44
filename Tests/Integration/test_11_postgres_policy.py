"""The PostgreSQL gateway's policy on real results: block rules answer 42501 and never reach the
server, column masks follow the source column through aliases, detectors catch computed values and
error details, and every mask method is shown. Injected credentials let a client that knows no
password in; malformed and oversized messages end only their own session."""

import json
import os
import re
import subprocess
import time

import pytest

from harness import APP_PASSWORD, APP_USER, PYTHON, REMOTE4, bin_path
from pgtest import PGRAW, admin_sql, credentials_yaml, end_of, of_kind, psql, py_json, raw, statements

BLOCK_RULES = """\
  - name: no-ddl-from-ci
    identities: [user:svc-ci]
    resources: [orders-db]
    block:
      statements: [DROP, TRUNCATE, ALTER]
      functions: [pg_read_file]
      unbounded_writes: true
      message: "schema changes go through the migration pipeline"
"""

MASK_RULES = """\
  - name: customer-contact
    resources: [orders-db]
    mask: { columns: [customers.email, "*.ssn"], with: partial }
  - name: customer-phone
    resources: [orders-db]
    mask: { columns: [public.customers.phone], with: hash }
  - name: customer-card
    resources: [orders-db]
    mask: { columns: [customers.card], with: "null" }
  - name: content
    mask: { detectors: [credit_card, email, iban, us_ssn, secret], with: redact }
"""

CUSTOMERS = """
DROP TABLE IF EXISTS customers;
CREATE TABLE customers (id int PRIMARY KEY, name text, email text UNIQUE, phone text, ssn text, card text,
                        note text);
INSERT INTO customers VALUES
  (1, 'Ada', 'ada@example.com', '+14155550101', '123-45-6789', '4111111111111111',
   'paid with 5500 0000 0000 0004 on file'),
  (2, 'Bob', 'bob@example.org', '+442071838750', '987-65-4321', '5555555555554444',
   'refund to DE89370400440532013000'),
  (3, 'Cy', 'cy@example.net', '+14155550101', '111-22-3333', NULL, 'nothing to see');
"""


@pytest.fixture
def customers(world):
    admin_sql(world, CUSTOMERS)


def sqlstate(stderr: str) -> str | None:
    m = re.search(r"ERROR:\s+([0-9A-Z]{5}):", stderr)
    return m.group(1) if m else None


# ---- blocking


def test_block_rules_answer_42501_naming_the_rule_and_the_statement_never_runs(world, make_daemon):
    d = make_daemon(rules=BLOCK_RULES)
    admin_sql(world, "DROP TABLE IF EXISTS victim; CREATE TABLE victim (id int); INSERT INTO victim VALUES (1), (2)")
    before = d.last_index()
    cases = {
        "DROP TABLE victim": "DROP",
        "DrOp/**/TABLE victim": "DROP",
        "drop\n-- hidden\n table \"victim\"": "DROP",
        "TRUNCATE victim": "TRUNCATE",
        "ALTER TABLE victim ADD COLUMN x int": "ALTER",
        "SELECT pg_read_file('/etc/passwd')": "function",
        "SELECT * FROM pg_catalog.PG_READ_FILE('/etc/hostname')": "function",
        "DELETE FROM victim": "unbounded",
        "UPDATE victim SET id = 3": "unbounded",
        "SELECT 1; DROP TABLE victim": "DROP",
    }
    for sql in cases:
        p = psql(world, "svc-ci", sql)
        assert p.returncode != 0, f"{sql!r} was not blocked: {p.stdout}"
        assert sqlstate(p.stderr) == "42501", (sql, p.stderr)
        assert "no-ddl-from-ci" in p.stderr and "migration pipeline" in p.stderr, (sql, p.stderr)
    assert admin_sql(world, "SELECT count(*) FROM victim").strip() == "2"
    # A bounded write and a plain read are fine.
    p = psql(world, "svc-ci", "DELETE FROM victim WHERE id = 2")
    assert p.returncode == 0, p.stderr
    assert admin_sql(world, "SELECT count(*) FROM victim").strip() == "1"
    # The rule is for svc-ci: svc-bot may (its own statements are recorded as allowed).
    p = psql(world, "svc-bot", "TRUNCATE victim")
    assert p.returncode == 0, p.stderr

    entries = d.audit(before)
    blocked = [s for s in statements(entries) if s["decision"] == "block"]
    # One entry per statement: the two-statement query gives two, both blocked.
    assert len(blocked) == len(cases) + 1, [b["text"] for b in blocked]
    assert all(b["rule"] == "no-ddl-from-ci" and b["user"] == "svc-ci" for b in blocked)
    assert not any(end_of(entries, b) for b in blocked), "a blocked statement has an outcome: it ran?"
    # The multi-statement query was blocked whole: its SELECT 1 is not recorded as allowed either.
    multi = [s for s in statements(entries) if "SELECT 1; DROP" in s["text"] or s["text"] == "SELECT 1"]
    assert all(s["decision"] == "block" for s in multi), multi


BLOCK_IN_TX = r"""
import json, sys, psycopg2, psycopg2.errors
c = psycopg2.connect(host=sys.argv[1], dbname="orders", user="postgres", connect_timeout=5)
cur = c.cursor()
out = {}
cur.execute("SELECT count(*) FROM victim")
out["before"] = cur.fetchone()[0]
try:
    cur.execute("DROP TABLE victim")
except psycopg2.Error as e:
    out["code"] = e.pgcode
c.rollback()
cur.execute("INSERT INTO victim VALUES (7)")
c.commit()
cur.execute("SELECT count(*) FROM victim")
out["after"] = cur.fetchone()[0]
print(json.dumps(out))
"""

BLOCK_EXTENDED = r"""
import json, sys, psycopg
out = {}
with psycopg.connect(host=sys.argv[1], dbname="orders", user="postgres", connect_timeout=5, autocommit=True) as c:
    try:
        c.execute("DELETE FROM victim WHERE id = %s", (999,))
        out["bounded"] = "ran"
    except psycopg.Error as e:
        out["bounded"] = e.sqlstate
    for sql in ("TRUNCATE victim", "DELETE FROM victim"):
        try:
            c.execute(sql, prepare=True)
            out[sql] = "ran"
        except psycopg.Error as e:
            out[sql] = e.sqlstate
    out["after"] = c.execute("SELECT count(*) FROM victim WHERE id > %s", (0,)).fetchone()[0]
    try:
        with c.pipeline():
            a = c.execute("SELECT 1")
            c.execute("DROP TABLE victim")
            c.execute("SELECT 2")
    except psycopg.Error as e:
        out["pipeline_error"] = e.sqlstate
    out["pipeline_first"] = a.fetchone()[0]
    out["still"] = c.execute("SELECT count(*) FROM victim").fetchone()[0]
print(json.dumps(out))
"""


def test_a_blocked_statement_leaves_the_session_usable_in_a_transaction_and_in_the_extended_protocol(
        world, make_daemon):
    make_daemon(rules=BLOCK_RULES)
    admin_sql(world, "DROP TABLE IF EXISTS victim; CREATE TABLE victim (id int); INSERT INTO victim VALUES (1)")
    r = py_json(world, "svc-ci", BLOCK_IN_TX, REMOTE4)
    assert r == {"before": 1, "code": "42501", "after": 2}, r
    r = py_json(world, "svc-ci", BLOCK_EXTENDED, REMOTE4)
    assert r["TRUNCATE victim"] == "42501" and r["DELETE FROM victim"] == "42501", r
    assert r["bounded"] == "ran" and r["after"] == 2, r
    assert r.get("pipeline_error") == "42501" and r["pipeline_first"] == 1 and r["still"] == 2, r
    assert admin_sql(world, "SELECT count(*) FROM victim").strip() == "2"


# ---- masking

MASKED_QUERY = r"""
import json, sys, psycopg2
c = psycopg2.connect(host=sys.argv[1], dbname="orders", user=sys.argv[2], connect_timeout=5)
c.autocommit = True
cur = c.cursor()
out = {}
for name, sql in json.loads(sys.argv[3]).items():
    try:
        cur.execute(sql)
        out[name] = [list(r) for r in cur.fetchall()]
    except psycopg2.Error as e:
        out[name] = {"error": e.pgcode, "message": e.pgerror, "detail": e.diag.message_detail}
print(json.dumps(out))
"""


def masked(world, user, queries: dict, db_user="postgres", env=None):
    return py_json(world, user, MASKED_QUERY, REMOTE4, db_user, json.dumps(queries), env=env)


def test_column_masks_follow_the_source_column_and_detectors_catch_computed_values(
        world, make_daemon, customers):
    d = make_daemon(start=False)
    d.write_config(rules=MASK_RULES, orders_db=credentials_yaml(d))
    d.start()
    before = d.last_index()
    r = masked(world, "svc-ci", {
        "plain": "SELECT id, name, email, phone, ssn, card FROM customers ORDER BY id",
        "alias": "SELECT c.email AS e, c.ssn AS x FROM customers c WHERE id = 1",
        "computed": "SELECT lower(email), email || '' , 'ssn ' || ssn FROM customers WHERE id = 1",
        "note": "SELECT note FROM customers ORDER BY id",
        "join": "SELECT a.phone = b.phone FROM customers a, customers b WHERE a.id = 1 AND b.id = 3",
    }, env={"PGPASSWORD": ""})
    rows = r["plain"]
    assert [row[1] for row in rows] == ["Ada", "Bob", "Cy"]  # name: no rule
    emails = [row[2] for row in rows]
    assert emails[0] != "ada@example.com" and emails[0].startswith("a") and emails[0].endswith("@example.com")
    assert all("***" in e for e in emails), emails
    ssns = [row[4] for row in rows]
    assert ssns[0].endswith("6789") and "123-45" not in ssns[0], ssns
    phones = [row[3] for row in rows]
    assert phones[0].startswith("h:") and phones[0] == phones[2] != phones[1], phones  # hash: joinable
    assert [row[5] for row in rows] == [None, None, None]  # card: null
    assert r["alias"][0][0].endswith("@example.com") and r["alias"][0][0] != "ada@example.com"
    assert r["alias"][0][1].endswith("6789") and "123-45" not in r["alias"][0][1]
    for v in r["computed"][0]:
        assert "ada@example.com" not in v and "123-45-6789" not in v, r["computed"]
    notes = [row[0] for row in r["note"]]
    assert "5500 0000 0000 0004" not in notes[0] and "[REDACTED]" in notes[0], notes
    assert "DE89370400440532013000" not in notes[1], notes
    assert notes[2] == "nothing to see"

    entries = d.wait_entries(lambda es: len(of_kind(es, "statement.end")) >= 5, after=before, what="5 ends")
    plain = [s for s in statements(entries) if s["text"].startswith("SELECT id, name, email")][0]
    end = end_of(entries, plain)
    cols = end["masking"]["columns"]
    assert cols == {"public.customers.email": 3, "public.customers.ssn": 3, "public.customers.phone": 3,
                    "public.customers.card": 2}, cols
    note_end = end_of(entries, [s for s in statements(entries) if s["text"].startswith("SELECT note")][0])
    det = note_end["masking"]["detectors"]
    assert det["matches"].get("credit_card") == 1 and det["matches"].get("iban") == 1, det
    text = json.dumps(entries)
    for secret in ("ada@example.com", "123-45-6789", "4111111111111111", "DE89370400440532013000"):
        assert secret not in text, f"{secret} reached the evidence log"


def test_every_detector_on_real_rows(world, make_daemon):
    admin_sql(world, """
DROP TABLE IF EXISTS notes;
CREATE TABLE notes (id int PRIMARY KEY, body text);
INSERT INTO notes VALUES
  (1, 'card 4111 1111 1111 1111 on file'),
  (2, 'write to dana@example.net'),
  (3, 'ssn 078-05-1120 per form'),
  (4, 'call +14155550123 after 5'),
  (5, 'iban GB82WEST12345698765432 for refunds'),
  (6, 'key AKIAIOSFODNN7EXAMPLE leaked'),
  (7, 'nothing sensitive here');
""")
    d = make_daemon(rules="""\
  - name: all-detectors
    resources: [orders-db]
    mask: { detectors: [credit_card, email, us_ssn, phone, iban, secret], with: redact }
""")
    before = d.last_index()
    p = psql(world, "svc-ci", "SELECT body FROM notes ORDER BY id")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    originals = ["4111 1111 1111 1111", "dana@example.net", "078-05-1120", "+14155550123",
                 "GB82WEST12345698765432", "AKIAIOSFODNN7EXAMPLE"]
    for n, original in enumerate(originals):
        assert original not in lines[n] and "[REDACTED]" in lines[n], (original, lines[n])
    assert lines[6] == "nothing sensitive here"
    entries = d.wait_entries(lambda es: of_kind(es, "statement.end"), after=before, what="the end")
    matches = of_kind(entries, "statement.end")[0]["masking"]["detectors"]["matches"]
    assert matches == {"credit_card": 1, "email": 1, "us_ssn": 1, "phone": 1, "iban": 1, "secret": 1}, matches


def test_a_unique_violation_detail_is_masked(world, make_daemon, customers):
    d = make_daemon(start=False)
    d.write_config(rules=MASK_RULES, orders_db=credentials_yaml(d))
    d.start()
    r = masked(world, "svc-ci", {"dup": "INSERT INTO customers (id, email) VALUES (9, 'ada@example.com')"},
               env={"PGPASSWORD": ""})
    err = r["dup"]
    assert err["error"] == "23505", err
    assert "ada@example.com" not in json.dumps(err), err
    assert "already exists" in (err["detail"] or ""), err


def test_copy_out_is_scanned_by_detectors(world, make_daemon, customers):
    d = make_daemon(start=False)
    d.write_config(rules="""\
  - name: content
    mask: { detectors: [credit_card, iban], with: partial }
""")
    d.start()
    p = psql(world, "svc-ci", "COPY (SELECT id, note FROM customers ORDER BY id) TO STDOUT WITH (FORMAT csv)")
    assert p.returncode == 0, p.stderr
    assert "5500 0000 0000 0004" not in p.stdout and "0004" in p.stdout, p.stdout
    assert "DE89370400440532013000" not in p.stdout and "3000" in p.stdout, p.stdout
    assert "nothing to see" in p.stdout


def test_copy_out_masks_fields_by_source_column(world, make_daemon, customers):
    d = make_daemon(start=False)
    d.write_config(rules=MASK_RULES, orders_db=credentials_yaml(d))
    d.start()
    before = d.last_index()
    p = psql(world, "svc-ci", "COPY customers (id, email, ssn, card) TO STDOUT", password="")
    assert p.returncode == 0, p.stderr
    rows = [line.split("\t") for line in p.stdout.splitlines()]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert rows[0][1].startswith("a") and rows[0][1].endswith("@example.com") and rows[0][1] != "ada@example.com"
    assert rows[0][2].endswith("6789") and "123-45" not in rows[0][2]
    assert [r[3] for r in rows] == ["\\N"] * 3  # card: null
    p = psql(world, "svc-ci", "COPY (SELECT name, email AS e FROM customers ORDER BY id) TO STDOUT "
             "WITH (FORMAT csv, HEADER true)", password="")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "name,e" and lines[1].startswith("Ada,a") and "ada@example.com" not in p.stdout, lines
    # psql's \copy is COPY ... TO STDOUT on the wire.
    p = psql(world, "svc-ci", "\\copy customers to stdout with csv", password="")
    assert p.returncode == 0, p.stderr
    assert "ada@example.com" not in p.stdout and "4111111111111111" not in p.stdout and "Bob" in p.stdout
    # A layout the gateway cannot split is refused rather than copied unmasked.
    p = psql(world, "svc-ci", "COPY customers TO STDOUT WITH (DELIMITER ';')", password="")
    assert p.returncode != 0 and sqlstate(p.stderr) == "42501", p.stderr
    entries = d.wait_entries(lambda es: len(of_kind(es, "statement.end")) >= 3, after=before, what="COPY ends")
    first = end_of(entries, [s for s in statements(entries) if s["text"].startswith("COPY customers (id")][0])
    assert first["command_tag"] == "COPY 3" and first["masking"]["columns"]["public.customers.email"] == 3


# ---- credentials


def test_a_client_that_knows_no_password_reaches_a_resource_with_injected_credentials(world, make_daemon):
    d = make_daemon(start=False)
    d.write_config(orders_db=credentials_yaml(d))
    d.start()
    before = d.last_index()
    p = psql(world, "svc-ci", "SELECT current_user, session_user", db_user="whoever", password="")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"{APP_USER}|{APP_USER}"
    p = psql(world, "svc-ci", "SELECT 1", db_user="postgres", password="a-wrong-one-is-ignored")
    assert p.returncode == 0, p.stderr
    entries = d.wait_entries(lambda es: len(of_kind(es, "postgres.login")) >= 2, after=before, what="logins")
    assert all(e["credentials"] == "injected" and e["upstream_user"] == APP_USER
               for e in of_kind(entries, "postgres.login"))
    assert APP_PASSWORD not in json.dumps(entries) and APP_PASSWORD not in d.stderr(1000)


def test_md5_and_cleartext_servers_are_answered_with_injected_credentials(world, make_daemon):
    for user, password in (("legacy_md5", "legacy-md5-pw"), ("legacy_clear", "legacy-clear-pw")):
        d = make_daemon(start=False)
        d.write_config(orders_db=credentials_yaml(d, password=password, user=user))
        d.start()
        p = psql(world, "svc-ci", "SELECT current_user, count(*) FROM items", password="")
        assert p.returncode == 0, (user, p.stderr)
        assert p.stdout.strip() == f"{user}|3"
        d.stop()
        d.cleanup()


def test_wrong_injected_credentials_give_the_client_a_clear_error(world, make_daemon):
    d = make_daemon(start=False)
    d.write_config(orders_db=credentials_yaml(d, password="not-the-password"))
    d.start()
    p = psql(world, "svc-ci", "SELECT 1", password="")
    assert p.returncode != 0
    assert "password authentication failed" in p.stderr and APP_USER in p.stderr, p.stderr
    assert "not-the-password" not in p.stderr


def test_a_policy_with_column_masks_on_a_resource_without_credentials_is_refused(world, make_daemon):
    d = make_daemon(start=False)
    d.write_config(rules=MASK_RULES)
    check = world.in_host([str(bin_path("interlock")), "policy", "check", str(d.config)])
    assert check.returncode != 0
    assert "column masks need them" in check.stderr + check.stdout, check.stderr


# ---- bad input


def test_malformed_and_oversized_messages_end_only_their_own_session(world, make_daemon):
    d = make_daemon(start=False)
    d.write_config(orders_db=credentials_yaml(d) + ", max_message_size: 64KiB")
    d.start()
    holder = subprocess.Popen(world.as_user_cmd("svc-ci", [PYTHON, "-c", PGRAW, "key",
                                                           REMOTE4, "5432"]),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PGPASSWORD": ""})
    try:
        key = json.loads(holder.stdout.readline())
        assert key["pid"] > 0
        r = raw(world, "svc-ci", "malformed")
        assert r["closed"] and r["sqlstate"] == "08P01" and r["severity"] == "FATAL", r
        r = raw(world, "svc-ci", "oversized", str(200 * 1024))
        assert r["closed"] and r["sqlstate"] in ("08P01", "54000"), r
        assert "65536" in (r.get("message") or "") or "too large" in (r.get("message") or ""), r
        # The other session is untouched.
        holder.stdin.write("SELECT count(*) FROM items\n")
        holder.stdin.flush()
        line = json.loads(holder.stdout.readline())
        assert line == {"rows": [["3"]], "error": None}, line
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert d.running()


def test_a_cancel_request_for_another_accounts_session_is_refused_and_recorded(world, make_daemon):
    d = make_daemon(start=False)
    d.write_config(orders_db=credentials_yaml(d))
    d.start()
    holder = subprocess.Popen(world.as_user_cmd("svc-ci", [PYTHON, "-c", PGRAW, "key",
                                                           REMOTE4, "5432"]),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PGPASSWORD": ""})
    try:
        key = json.loads(holder.stdout.readline())
        before = d.last_index()
        r = raw(world, "svc-bot", "cancel", str(key["pid"]), str(key["secret"]))
        assert r["closed"]
        r = raw(world, "svc-ci", "cancel", str(key["pid"]), str(key["secret"] ^ 1))
        assert r["closed"]
        entries = d.wait_entries(lambda es: len(of_kind(es, "postgres.cancel")) >= 2, after=before,
                                 what="two cancel entries")
        by_user = {e["user"]: e for e in of_kind(entries, "postgres.cancel")}
        assert by_user["svc-bot"]["decision"] == "deny" and "another account" in by_user["svc-bot"]["reason"]
        assert by_user["svc-ci"]["decision"] == "deny" and "no live session" in by_user["svc-ci"]["reason"]
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
