"""Helpers of the PostgreSQL gateway tests: the database's own view (as the superuser, on its Unix
socket, never through Interlock), credentials files, and driver scripts run as captured accounts."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

from harness import APP_PASSWORD, APP_USER, PYTHON, REMOTE4, run

PGRAW = (Path(__file__).resolve().parent / "pgraw.py").read_text()


def admin_sql(world, sql: str) -> str:
    """Runs `sql` as the superuser on the server's Unix socket (not captured, not proxied)."""
    p = run(["runuser", "-u", "postgres", "--", "psql", "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1",
             "-h", str(world.workdir / "pg"), "-U", "postgres", "-d", "orders", "-c", sql], timeout=60)
    assert p.returncode == 0, f"admin SQL failed: {sql}\n{p.stderr}"
    return p.stdout


def credentials_yaml(daemon, password: str = APP_PASSWORD, user: str = APP_USER) -> str:
    """The `credentials:` of orders-db, with the password in a file only the daemon can read."""
    path = daemon.dir / "orders-db.password"
    path.write_text(password + "\n")
    pw = pwd.getpwnam("interlock")
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, 0o600)
    return f"credentials: {{ user: {user}, password_file: {path} }}"


def psql(world, user: str, sql: str, *, db_user: str = "postgres", password: str | None = None,
         extra: list[str] | None = None, timeout: float = 30, host: str = REMOTE4,
         input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """psql as `user` (captured or not) with its usual options; `password` None keeps the world's."""
    e = {"PGCONNECT_TIMEOUT": "5"}
    if password is not None:
        e["PGPASSWORD"] = password
    e.update(env or {})
    cmd = ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-h", host, "-d", "orders",
           "-U", db_user] + (extra or []) + (["-c", sql] if sql else [])
    return world.as_user(user, cmd, timeout=timeout, env=e, input=input)


def py(world, user: str, code: str, *args: str, timeout: float = 60,
       env: dict | None = None) -> subprocess.CompletedProcess:
    return world.as_user(user, [PYTHON, "-c", code] + list(args), timeout=timeout, env=env)


def py_json(world, user: str, code: str, *args: str, timeout: float = 60, env: dict | None = None):
    p = py(world, user, code, *args, timeout=timeout, env=env)
    assert p.returncode == 0, f"python as {user} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def raw(world, user: str, mode: str, *args: str, timeout: float = 30, env: dict | None = None):
    return py_json(world, user, PGRAW, mode, REMOTE4, "5432", *args, timeout=timeout, env=env)


def of_kind(entries: list[dict], kind: str, **match) -> list[dict]:
    return [e for e in entries if e.get("kind") == kind and all(e.get(k) == v for k, v in match.items())]


def statements(entries: list[dict], session: str | None = None) -> list[dict]:
    return [e for e in of_kind(entries, "statement") if session is None or e["session"] == session]


def end_of(entries: list[dict], statement: dict) -> dict | None:
    for e in of_kind(entries, "statement.end", session=statement["session"]):
        if e["statement"] == statement["statement"]:
            return e
    return None
