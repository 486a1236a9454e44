#!/usr/bin/env bash
# Interlock in five minutes, on one machine, with nothing reconfigured.
#
#   sudo scripts/demo.sh
#
# Builds Interlock, creates two network namespaces (a "host" where service accounts run and a
# "remote" with a real PostgreSQL), starts interlockd capturing the account svc-ci, and shows that
# svc-ci's unchanged `psql -h 198.18.0.10` is captured, tied to the account and its systemd unit,
# forwarded and recorded, while alice (not captured) connects directly and leaves no record.
# Everything is removed at the end, also when interrupted. Safe to run again.
#
# Environment: INTERLOCK_BIN_DIR (use these binaries, skip the build), DEMO_PAUSE=1 (wait for Enter
# between steps).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
# shellcheck source=scripts/lib/world.sh
source "$REPO/scripts/lib/world.sh"

HOST_NS=ilh-demo
REMOTE_NS=ilr-demo
DEMO_DIR=/tmp/interlock-demo
SLICE=interlock-demo.slice
UNIT=ci-nightly.service
BIN_DIR=${INTERLOCK_BIN_DIR:-$REPO/.build/debug}
SOCK=$DEMO_DIR/state/control.sock
DAEMON_PID=

if [ -t 1 ]; then B=$'\e[1m' D=$'\e[2m' G=$'\e[32m' R=$'\e[0m'; else B= D= G= R=; fi
say() { printf '\n%s==> %s%s\n' "$B" "$*" "$R"; }
note() { printf '%s    %s%s\n' "$D" "$*" "$R"; }
show() { # show CMD...: print the command as the reader would type it, then run it
    printf '%s    $ %s%s\n' "$G" "$*" "$R"
    "$@" 2>&1 | sed 's/^/    /'
}
pause() { if [ "${DEMO_PAUSE:-0}" = 1 ]; then read -r -p "    (Enter to continue)" _; fi; }
# show_cli ARGS...: `interlock ARGS` against the demo daemon, shown as an operator would type it.
show_cli() {
    printf '%s    $ interlock %s%s\n' "$G" "$*" "$R"
    cli "$@" 2>&1 | sed 's/^/    /'
}
cli() { timeout 20 nsenter --net="/run/netns/$HOST_NS" "$BIN_DIR/interlock" "$@" --socket "$SOCK"; }
as_user() { # as_user USER in-unit|- CMD...
    local user=$1 cg=
    [ "$2" = in-unit ] && cg=$(il_cgroup2_mount)/$SLICE/$UNIT
    shift 2
    timeout 30 bash -c "source '$REPO/scripts/lib/world.sh' && il_run_as \"\$@\"" run-as "$HOST_NS" "$user" "$cg" "$@"
}

cleanup() ( # a subshell: errors here never stop the teardown, and `set -e` outside stays on
    set +e
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"
        for _ in $(seq 1 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null
    fi
    if [ -e "/run/netns/$HOST_NS" ]; then
        timeout 15 nsenter --net="/run/netns/$HOST_NS" "$BIN_DIR/interlock" uninstall --socket "$SOCK" >/dev/null 2>&1
        nsenter --net="/run/netns/$HOST_NS" nft delete table inet interlock >/dev/null 2>&1
    fi
    il_pg_stop "$DEMO_DIR/pg"
    il_world_down "$HOST_NS" "$REMOTE_NS"
    il_cgroup_remove "$SLICE"
    rm -rf "$DEMO_DIR"
)

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (namespaces, nftables, accounts)" >&2; exit 1; }
command -v swift >/dev/null 2>&1 || PATH=/opt/swift/usr/bin:$PATH

# A previous run that was killed hard may have left its world behind: remove it first.
DAEMON_PID=
cleanup >/dev/null 2>&1
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------------------------------------------
say "Build"
if [ -z "${INTERLOCK_BIN_DIR:-}" ]; then
    show swift build -c debug
fi
[ -x "$BIN_DIR/interlockd" ] && [ -x "$BIN_DIR/interlock" ] || { echo "no binaries in $BIN_DIR" >&2; exit 1; }

say "The world: a host namespace ($HOST_NS) and a remote one ($REMOTE_NS) on 198.18.0.0/24"
il_world_up "$HOST_NS" "$REMOTE_NS"
note "host   198.18.0.1     2001:db8:18::1     (interlockd, nftables, the service accounts)"
note "remote 198.18.0.10    2001:db8:18::10    (PostgreSQL 15)"

say "Accounts"
il_accounts_test
note "svc-ci  $(id svc-ci)      <- captured by name"
note "svc-bot $(id svc-bot)     <- captured through the group bots"
note "alice   $(id alice)       <- not captured"
note "dana    $(id dana)        <- an approver (group dba)"

say "A real PostgreSQL 15 in the remote namespace, database 'orders'"
mkdir -p "$DEMO_DIR"
chmod 0755 "$DEMO_DIR"
il_pg_start "$REMOTE_NS" "$DEMO_DIR/pg"
note "listening on 198.18.0.10:5432 and [2001:db8:18::10]:5432 (passwords required: SCRAM-SHA-256)"
runuser -u postgres -- psql -X -q -h "$DEMO_DIR/pg" -U postgres -d orders -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
CREATE TABLE customers (id int PRIMARY KEY, name text, email text UNIQUE, card text, note text);
INSERT INTO customers VALUES
  (1, 'Ada Lovelace', 'ada@example.com', '4111111111111111', 'prefers e-mail'),
  (2, 'Alan Turing', 'alan@example.org', '5555555555554444', 'card on file: 4012 8888 8888 1881');
SQL
note "table customers: names, e-mails, card numbers (some inside free text)"
pause

# --------------------------------------------------------------------------------------------------
say "The policy: capture svc-ci and the group bots; orders-db with injected credentials, a block and a mask rule"
mkdir -p "$DEMO_DIR/state" "$DEMO_DIR/secrets"
chown interlock:interlock "$DEMO_DIR/state" "$DEMO_DIR/secrets"
chmod 0755 "$DEMO_DIR/state"
chmod 0700 "$DEMO_DIR/secrets"
printf '%s\n' "$IL_PG_APP_PASSWORD" >"$DEMO_DIR/secrets/orders-db"
chown interlock:interlock "$DEMO_DIR/secrets/orders-db"
chmod 0600 "$DEMO_DIR/secrets/orders-db"
cat >"$DEMO_DIR/interlock.yaml" <<EOF
daemon:
  user: interlock
  listen_port: 15001
  control_socket: $SOCK
audit:
  database: $DEMO_DIR/state/audit.db
capture:
  users: [svc-ci]
  groups: [bots]
  unregistered: deny
  dns: allow
resources:
  - name: orders-db
    protocol: postgres
    address: "198.18.0.10:5432"
    credentials: { user: $IL_PG_APP_USER, password_file: $DEMO_DIR/secrets/orders-db }
rules:
  - name: no-ddl-from-automation
    resources: [orders-db]
    block:
      statements: [DROP, TRUNCATE, ALTER]
      unbounded_writes: true
      message: "schema changes go through the migration pipeline"
  - name: customer-pii
    resources: [orders-db]
    mask:
      columns: [customers.email, customers.card]
      detectors: [credit_card, email]
      with: partial
  - name: prod-writes-need-approval
    identities: [user:svc-ci]
    resources: [orders-db]
    approve:
      statements: [DELETE, UPDATE]
      approvers: [group:dba]
      timeout: 10m
      grant: 30m
EOF
sed 's/^/    /' "$DEMO_DIR/interlock.yaml"
show "$BIN_DIR/interlock" policy check "$DEMO_DIR/interlock.yaml"

say "Start interlockd in the host namespace (as root; it drops to user 'interlock' with CAP_NET_ADMIN)"
nsenter --net="/run/netns/$HOST_NS" "$BIN_DIR/interlockd" --config "$DEMO_DIR/interlock.yaml" \
    2>"$DEMO_DIR/interlockd.log" &
DAEMON_PID=$!
ready=0
for _ in $(seq 1 100); do
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    if cli status >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.2
done
if [ $ready = 0 ]; then
    echo "interlockd did not become ready within 20 s; its log:" >&2
    sed 's/^/    /' "$DEMO_DIR/interlockd.log" >&2
    exit 1
fi
show_cli status
pause

say "The rules it installed in the kernel (nftables, one atomic batch)"
show_cli rules show
pause

# --------------------------------------------------------------------------------------------------
say "svc-ci runs its unchanged client, from a systemd-like unit ($UNIT), with no password at all"
note "nothing is configured on the client side: it connects to the real address; interlockd logs in"
il_cgroup_make "$SLICE" "$UNIT" >/dev/null
printf '%s    $ PGPASSWORD= psql -h 198.18.0.10 -d orders -U svc_ci -c "SELECT * FROM customers"    (as svc-ci)%s\n' "$G" "$R"
out=$(as_user svc-ci in-unit env PGPASSWORD= psql -X -h 198.18.0.10 -d orders -U svc_ci \
    -c "SELECT id, name, email, card, note FROM customers ORDER BY id" 2>&1) || true
printf '%s\n' "$out" | sed 's/^/    /'
case $out in
*ada@example.com* | *4111111111111111* | *"4012 8888 8888 1881"*)
    echo "demo: an original value reached the client" >&2; exit 1 ;;
*"a***@example.com"*) note "e-mails and cards are masked by source column, the card inside 'note' by its detector" ;;
*) echo "demo: svc-ci's query did not return the masked rows; interlockd's log:" >&2
   tail -n 40 "$DEMO_DIR/interlockd.log" | sed 's/^/    /' >&2; exit 1 ;;
esac
printf '%s    $ psql ... -c "SELECT email AS contact FROM customers WHERE id = 1"    (an alias changes nothing)%s\n' "$G" "$R"
as_user svc-ci in-unit env PGPASSWORD= psql -X -At -h 198.18.0.10 -d orders -U svc_ci \
    -c "SELECT email AS contact FROM customers WHERE id = 1" 2>&1 | sed 's/^/    /' || true
pause

say "svc-ci tries a DROP TABLE: blocked with a PostgreSQL error, never sent to the server"
printf '%s    $ psql ... -c "DrOp/**/TABLE customers"%s\n' "$G" "$R"
as_user svc-ci in-unit env PGPASSWORD= psql -X -h 198.18.0.10 -d orders -U svc_ci -v VERBOSITY=verbose \
    -c "DrOp/**/TABLE customers" 2>&1 | sed 's/^/    /' || true
left=$(runuser -u postgres -- psql -X -At -h "$DEMO_DIR/pg" -U postgres -d orders -c "SELECT count(*) FROM customers")
note "customers still has $left rows"
[ "$left" = 2 ] || { echo "demo: the table changed" >&2; exit 1; }
recorded=0
for _ in $(seq 1 20); do
    if cli audit list --user svc-ci --kind session.open --json 2>/dev/null | grep -q "$UNIT"; then recorded=1; break; fi
    sleep 0.25
done
if [ $recorded = 0 ]; then
    echo "demo: svc-ci's connection was not recorded with its unit; interlockd's log:" >&2
    tail -n 40 "$DEMO_DIR/interlockd.log" | sed 's/^/    /' >&2
    exit 1
fi
pause

say "The evidence: who (account, unit), where, each statement before it ran, its result, what was masked"
show_cli audit list --user svc-ci
note "one statement and its end as JSON (counts of masked values, never the values):"
cli audit list --user svc-ci --kind statement --json --limit 1 2>&1 | sed 's/^/    /'
cli audit list --user svc-ci --kind statement.end --json --limit 1 2>&1 | sed 's/^/    /'
pause

say "alice is not captured: she connects directly, and nothing is recorded"
printf '%s    $ psql -h 198.18.0.10 -d orders -U postgres -c "SELECT count(*) FROM items"    (as alice)%s\n' "$G" "$R"
as_user alice - psql -X -h 198.18.0.10 -d orders -U postgres -c "SELECT count(*) FROM items" 2>&1 |
    sed 's/^/    /' || true
sleep 0.5
n=$(cli audit list --user alice --json | grep -c . || true)
note "entries for alice: $n"
[ "$n" = 0 ] || { echo "demo: alice was recorded, but she is not captured" >&2; exit 1; }

# --------------------------------------------------------------------------------------------------
say "svc-ci deletes a customer: the statement is held inside its session until an approver says yes"
printf '%s    $ psql ... -c "DELETE FROM customers WHERE id = 2"    (as svc-ci; it waits)%s\n' "$G" "$R"
as_user svc-ci in-unit env PGPASSWORD= psql -X -h 198.18.0.10 -d orders -U svc_ci \
    -c "DELETE FROM customers WHERE id = 2" >"$DEMO_DIR/held.out" 2>&1 &
HELD_PID=$!
request=
for _ in $(seq 1 50); do
    request=$(as_user dana - "$BIN_DIR/interlock" approvals list --json --socket "$SOCK" 2>/dev/null |
        sed -n 's/.*"id":"\(apr-[0-9a-z]*\)".*/\1/p' | head -n 1)
    [ -n "$request" ] && break
    sleep 0.2
done
[ -n "$request" ] || { echo "demo: no pending approval request appeared" >&2; exit 1; }
note "what the waiting client was told (psql prints notices while it waits):"
sed 's/^/    /' "$DEMO_DIR/held.out"
printf '%s    $ interlock approvals list    (as dana, group dba)%s\n' "$G" "$R"
as_user dana - "$BIN_DIR/interlock" approvals list --socket "$SOCK" 2>&1 | sed 's/^/    /'
printf '%s    $ interlock approvals approve %s    (as svc-ci itself: refused)%s\n' "$G" "$request" "$R"
as_user svc-ci - "$BIN_DIR/interlock" approvals approve "$request" --socket "$SOCK" 2>&1 | sed 's/^/    /' || true
printf '%s    $ interlock approvals approve %s --reason "ticket OPS-42"    (as dana)%s\n' "$G" "$request" "$R"
as_user dana - "$BIN_DIR/interlock" approvals approve "$request" --reason "ticket OPS-42" --socket "$SOCK" 2>&1 |
    sed 's/^/    /'
wait "$HELD_PID" || true
note "svc-ci's psql, which simply waited:"
sed 's/^/    /' "$DEMO_DIR/held.out"
grep -q "DELETE 1" "$DEMO_DIR/held.out" || { echo "demo: the approved DELETE did not run" >&2; exit 1; }
note "the approval trail:"
show_cli audit list --user svc-ci --kind approval.requested
show_cli audit list --user svc-ci --kind approval.approved
show_cli audit list --user svc-ci --kind approval.executed
pause

# --------------------------------------------------------------------------------------------------
say "The auditor replays svc-ci's held session as its psql saw it: the notice, the wait, the result"
held_session=$(cli audit list --user svc-ci --kind approval.requested --json --limit 1 |
    sed -n 's/.*"session":"\([0-9a-f]*\)".*/\1/p')
[ -n "$held_session" ] || { echo "demo: no session for the held statement" >&2; exit 1; }
for _ in $(seq 1 20); do
    cli sessions list --user svc-ci --json 2>/dev/null | grep "\"$held_session\"" | grep -q '"recording_complete":true' && break
    sleep 0.25
done
printf '%s    $ interlock sessions list --user svc-ci    (as audra)%s\n' "$G" "$R"
as_user audra - "$BIN_DIR/interlock" sessions list --user svc-ci --socket "$SOCK" 2>&1 | sed 's/^/    /'
printf '%s    $ interlock sessions replay %s    (as audra)%s\n' "$G" "$held_session" "$R"
as_user audra - "$BIN_DIR/interlock" sessions replay "$held_session" --socket "$SOCK" >"$DEMO_DIR/replay.out" 2>&1 || true
sed 's/^/    /' "$DEMO_DIR/replay.out"
grep -q "NOTICE" "$DEMO_DIR/replay.out" && grep -q "DELETE 1" "$DEMO_DIR/replay.out" ||
    { echo "demo: the replay does not show the notice and the result" >&2; exit 1; }
pause

say "An auditor (audra, in interlock-auditors, not root) exports the evidence and verifies it offline"
mkdir -p "$DEMO_DIR/auditor"
chown audra "$DEMO_DIR/auditor"
cli audit public-key >"$DEMO_DIR/auditor/interlock.pub"
note "the appliance's public key (handed to the auditor once): $(cat "$DEMO_DIR/auditor/interlock.pub")"
printf '%s    $ interlock audit export --out bundle    (as audra)%s\n' "$G" "$R"
as_user audra - "$BIN_DIR/interlock" audit export --out "$DEMO_DIR/auditor/bundle" --socket "$SOCK" 2>&1 |
    sed 's/^/    /'
ls "$DEMO_DIR/auditor/bundle" | sed 's/^/      /'
printf '%s    $ interlock audit verify bundle --key interlock.pub    (as audra; no daemon needed)%s\n' "$G" "$R"
as_user audra - "$BIN_DIR/interlock" audit verify "$DEMO_DIR/auditor/bundle" --key "$DEMO_DIR/auditor/interlock.pub" \
    2>&1 | sed 's/^/    /'
cp -r "$DEMO_DIR/auditor/bundle" "$DEMO_DIR/auditor/tampered"
chown -R audra "$DEMO_DIR/auditor/tampered"
sed -i '0,/DELETE FROM customers WHERE id = 2/s//DELETE FROM customers WHERE id = 1/' "$DEMO_DIR/auditor/tampered/entries.jsonl"
printf '%s    $ interlock audit verify tampered --key interlock.pub    (one entry changed: id = 2 -> id = 1)%s\n' "$G" "$R"
if as_user audra - "$BIN_DIR/interlock" audit verify "$DEMO_DIR/auditor/tampered" \
    --key "$DEMO_DIR/auditor/interlock.pub" >"$DEMO_DIR/auditor/tampered.out" 2>&1; then
    echo "demo: a tampered bundle verified" >&2
    exit 1
fi
sed 's/^/    /' "$DEMO_DIR/auditor/tampered.out" | head -n 12
pause

say "Fail closed: stop the daemon, and svc-ci's connection is refused (not sent direct)"
kill -TERM "$DAEMON_PID"
for _ in $(seq 1 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
DAEMON_PID=
printf '%s    $ psql -h 198.18.0.10 ...    (as svc-ci, daemon stopped)%s\n' "$G" "$R"
as_user svc-ci - env PGCONNECT_TIMEOUT=5 psql -X -h 198.18.0.10 -d orders -U postgres -c "SELECT 1" 2>&1 |
    sed 's/^/    /' || true

say "Tear down (interlock uninstall removes the table; namespaces, PostgreSQL and files go too)"
cleanup
trap - EXIT
note "done"
