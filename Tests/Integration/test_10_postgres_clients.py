"""The PostgreSQL gateway with no rule matching: real clients (psql, pgbench, psycopg 2 and 3) work
through Interlock exactly as they do directly, against PostgreSQL 15 with SCRAM authentication,
and every statement is recorded before it runs, with its outcome afterwards."""

import subprocess
import time

from harness import REMOTE4, sessions
from pgtest import admin_sql, end_of, of_kind, psql, py, py_json, statements


def test_psql_select_through_the_gateway_records_the_statement_and_its_result(world, daemon):
    before = daemon.last_index()
    p = psql(world, "svc-ci", "SELECT name FROM items ORDER BY id")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["widget", "gadget", "gizmo"]

    entries = daemon.wait_entries(
        lambda es: [s for s in statements(es) if s["text"] == "SELECT name FROM items ORDER BY id" and end_of(es, s)],
        after=before, what="the statement and its end")
    s = [s for s in statements(entries) if s["text"] == "SELECT name FROM items ORDER BY id"][0]
    assert s["user"] == "svc-ci" and s["resource"] == "orders-db"
    assert s["kinds"] == ["SELECT"] and s["decision"] == "allow" and s["origin"] == "query"
    end = end_of(entries, s)
    assert end["result"] == "completed" and end["command_tag"] == "SELECT 3"
    assert end["row_count"] == 3 and end["rows_sent"] == 3
    assert end["duration_us"] >= 0
    # The statement entry is written before the statement runs: it precedes its end in the log.
    assert s["index"] < end["index"]
    login = of_kind(entries, "postgres.login", session=s["session"])
    assert login and login[0]["credentials"] == "client" and login[0]["upstream_user"] == "postgres"
    assert login[0]["database"] == "orders" and login[0]["server_version"].startswith("15")
    opened = sessions(entries, user="svc-ci", destination=(REMOTE4, 5432))
    assert [o["session"] for o in opened] == [s["session"]]


def test_a_multi_statement_query_is_one_entry_per_statement(world, daemon):
    before = daemon.last_index()
    p = psql(world, "svc-ci", "SELECT 1; SELECT count(*) FROM items; SELECT 'a;b'")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["1", "3", "a;b"]
    entries = daemon.wait_entries(lambda es: len([s for s in statements(es) if end_of(es, s)]) >= 3,
                                  after=before, what="three statements")
    texts = [s["text"] for s in statements(entries)]
    assert texts == ["SELECT 1", "SELECT count(*) FROM items", "SELECT 'a;b'"], texts
    assert [s["query_index"] for s in statements(entries)] == [0, 1, 2]


def test_a_failing_statement_is_recorded_with_its_sqlstate_and_the_session_goes_on(world, daemon):
    before = daemon.last_index()
    # Without ON_ERROR_STOP psql goes on after the error, on the same session.
    p = world.as_user("svc-ci", ["psql", "-X", "-At", "-h", REMOTE4, "-d", "orders", "-U", "postgres", "-f", "-"],
                      input="SELECT * FROM no_such_table;\nSELECT 42;\n")
    assert "42" in p.stdout.split(), (p.stdout, p.stderr)
    assert "no_such_table" in p.stderr
    entries = daemon.wait_entries(
        lambda es: any(e.get("sqlstate") == "42P01" for e in of_kind(es, "statement.end")),
        after=before, what="a failed statement end")
    failed = [e for e in of_kind(entries, "statement.end") if e.get("sqlstate") == "42P01"]
    assert failed[0]["result"] == "failed"


def test_psql_copy_both_ways(world, daemon):
    admin_sql(world, "DROP TABLE IF EXISTS copy_t; CREATE TABLE copy_t (id int, label text)")
    src = world.workdir / "copy-in.csv"  # readable by svc-ci (pytest's tmp_path is not)
    src.write_text("".join(f"{i},label {i}\n" for i in range(1, 1001)))
    src.chmod(0o644)
    before = daemon.last_index()
    p = psql(world, "svc-ci", f"\\copy copy_t FROM '{src}' WITH (FORMAT csv)")
    assert p.returncode == 0, p.stderr
    assert admin_sql(world, "SELECT count(*), sum(id) FROM copy_t").strip() == "1000|500500"
    p = world.as_user("svc-ci", ["psql", "-X", "-At", "-h", REMOTE4, "-d", "orders", "-U", "postgres", "-c",
                                 "COPY (SELECT * FROM copy_t ORDER BY id) TO STDOUT WITH (FORMAT csv)"])
    assert p.returncode == 0, p.stderr
    assert p.stdout == src.read_text()
    entries = daemon.wait_entries(lambda es: len(of_kind(es, "statement.end")) >= 2, after=before,
                                  what="both COPY statements end")
    tags = [e.get("command_tag") for e in of_kind(entries, "statement.end")]
    assert tags.count("COPY 1000") == 2, tags


def test_pgbench_initializes_and_runs_in_every_query_mode(world, daemon):
    common = ["-h", REMOTE4, "-U", "postgres", "orders"]
    p = world.as_user("svc-ci", ["pgbench", "-i", "-q", "-s", "1", "--unlogged-tables"] + common, timeout=180)
    assert p.returncode == 0, p.stderr
    for mode in ("simple", "extended", "prepared"):
        p = world.as_user("svc-ci", ["pgbench", "-n", "-M", mode, "-c", "2", "-j", "1", "-t", "30"] + common,
                          timeout=180)
        assert p.returncode == 0, f"pgbench -M {mode}: {p.stderr}"
        assert "number of transactions actually processed: 60/60" in p.stdout, p.stdout
        assert "number of failed transactions: 0" in p.stdout, p.stdout


PSYCOPG2 = r"""
import json, sys, psycopg2
c = psycopg2.connect(host=sys.argv[1], dbname="orders", user="postgres", connect_timeout=5)
cur = c.cursor()
cur.execute("SELECT name, price FROM items WHERE id = %s", (2,))
one = cur.fetchone()
cur.execute("CREATE TEMP TABLE t (n int, s text)")
cur.executemany("INSERT INTO t VALUES (%s, %s)", [(i, f"row {i}") for i in range(50)])
cur.execute("SELECT count(*), max(n) FROM t")
agg = cur.fetchone()
c.commit()
named = c.cursor("server_side")
named.itersize = 7
named.execute("SELECT n FROM t ORDER BY n")
streamed = [r[0] for r in named]
named.close()
c.close()
print(json.dumps({"one": [one[0], str(one[1])], "agg": list(agg), "streamed": len(streamed)}))
"""


def test_psycopg2_works_unchanged(world, daemon):
    r = py_json(world, "svc-ci", PSYCOPG2, REMOTE4)
    assert r == {"one": ["gadget", "24.50"], "agg": [50, 49], "streamed": 50}


PSYCOPG3 = r"""
import json, sys, psycopg
with psycopg.connect(host=sys.argv[1], dbname="orders", user="postgres", connect_timeout=5) as c:
    out = {}
    # Server-side parameters: Parse/Bind/Execute.
    out["param"] = c.execute("SELECT name FROM items WHERE id = %s", (3,)).fetchone()[0]
    out["prepared"] = [c.execute("SELECT %s::int * 2", (i,), prepare=True).fetchone()[0] for i in range(5)]
    out["binary"] = c.cursor(binary=True).execute("SELECT name, id FROM items ORDER BY id").fetchall()
    with c.pipeline():
        cur1 = c.execute("SELECT 1")
        cur2 = c.execute("SELECT %s::text", ("pipelined",))
    out["pipeline"] = [cur1.fetchone()[0], cur2.fetchone()[0]]
    try:
        c.execute("SELECT 1/0")
    except psycopg.errors.DivisionByZero:
        out["error"] = "22012"
    c.rollback()
    out["after"] = c.execute("SELECT count(*) FROM items").fetchone()[0]
print(json.dumps(out))
"""


def test_psycopg3_extended_protocol_prepared_binary_and_pipeline(world, daemon):
    before = daemon.last_index()
    r = py_json(world, "svc-ci", PSYCOPG3, REMOTE4)
    assert r == {"param": "gizmo", "prepared": [0, 2, 4, 6, 8],
                 "binary": [["widget", 1], ["gadget", 2], ["gizmo", 3]],
                 "pipeline": [1, "pipelined"], "error": "22012", "after": 3}, r
    entries = daemon.wait_entries(lambda es: any(s.get("parameters") == ["pipelined"] for s in statements(es)),
                                  after=before, what="an executed portal with its parameter")
    ex = [s for s in statements(entries) if s.get("parameters") == ["pipelined"]][0]
    assert ex["origin"] == "execute" and ex["text"] == "SELECT $1::text"
    # psycopg sends integers in binary: evidence shows them as hex, never dropped.
    by_id = [s for s in statements(entries) if s["text"] == "SELECT name FROM items WHERE id = $1"][0]
    assert by_id["parameters"] == ["\\x0003"], by_id
    prepared = [s for s in statements(entries) if s.get("prepared") == "_pg3_0"]
    assert len(prepared) == 5 and all(s["text"] == "SELECT $1::int * 2" for s in prepared)


def test_a_cancelled_long_query_is_cancelled_and_recorded(world, daemon):
    code = r"""
import json, sys, threading, time, psycopg2, psycopg2.errors
c = psycopg2.connect(host=sys.argv[1], dbname="orders", user="postgres", connect_timeout=5)
threading.Timer(1.0, c.cancel).start()
t = time.monotonic()
try:
    c.cursor().execute("SELECT pg_sleep(30)")
    print(json.dumps({"cancelled": False}))
except psycopg2.errors.QueryCanceled:
    print(json.dumps({"cancelled": True, "seconds": time.monotonic() - t}))
"""
    before = daemon.last_index()
    r = py_json(world, "svc-ci", code, REMOTE4, timeout=60)
    assert r["cancelled"] and r["seconds"] < 15, r
    entries = daemon.wait_entries(lambda es: of_kind(es, "postgres.cancel"), after=before, what="cancel entry")
    cancel = of_kind(entries, "postgres.cancel")[0]
    assert cancel["decision"] == "allow" and cancel["user"] == "svc-ci"
    target = cancel["target_session"]
    sleeper = [s for s in statements(entries) if s["text"] == "SELECT pg_sleep(30)"][0]
    assert sleeper["session"] == target
    end = daemon.wait_entries(lambda es: [e for e in of_kind(es, "statement.end", session=target)
                                          if e.get("sqlstate") == "57014"], after=before, what="cancelled end")
    assert end


def test_sessions_of_other_accounts_and_uncaptured_clients_still_work(world, daemon):
    # alice is not captured: she reaches the server directly with the same password.
    p = psql(world, "alice", "SELECT count(*) FROM items")
    assert p.returncode == 0 and p.stdout.strip() == "3", p.stderr
    p = psql(world, "svc-bot", "SELECT count(*) FROM items")
    assert p.returncode == 0 and p.stdout.strip() == "3", p.stderr


def test_a_wrong_password_is_the_servers_error_and_is_not_recorded_as_a_statement(world, daemon):
    before = daemon.last_index()
    p = psql(world, "svc-ci", "SELECT 1", password="wrong")
    assert p.returncode != 0
    assert "password authentication failed" in p.stderr, p.stderr
    time.sleep(0.5)
    assert not statements(daemon.audit(before))
