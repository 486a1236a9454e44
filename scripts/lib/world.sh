# shellcheck shell=bash
# The one definition of Interlock's test world, shared by scripts/demo.sh, scripts/install.sh and the
# integration tests (Tests/Integration/conftest.py calls these functions through `bash -c`).
#
#   host namespace   (ilh-*)  198.18.0.1/24   2001:db8:18::1/64    interlockd, nftables, the accounts' clients
#   remote namespace (ilr-*)  198.18.0.10/24  198.18.0.11/24  2001:db8:18::10/64   real servers
#
# Every loop here is bounded in count and time. Nothing here sends traffic outside the namespaces it
# creates. Functions print what they do on stderr only when IL_VERBOSE=1.

IL_NET4=198.18.0
IL_HOST4=198.18.0.1
IL_REMOTE4=198.18.0.10
IL_REMOTE4_HTTP=198.18.0.11
IL_HOST6=2001:db8:18::1
IL_REMOTE6=2001:db8:18::10

il_log() { if [ "${IL_VERBOSE:-0}" = 1 ]; then printf '  [world] %s\n' "$*" >&2; fi; }
il_die() { printf 'world: %s\n' "$*" >&2; return 1; }

# ---------------------------------------------------------------------------------------------------
# Accounts (global to the machine; created idempotently and left in place).

# The daemon's own account and the two control-socket groups: what a real install needs.
il_accounts_system() {
    getent group interlock-admin >/dev/null || groupadd --system interlock-admin
    getent group interlock-auditors >/dev/null || groupadd --system interlock-auditors
    if ! id -u interlock >/dev/null 2>&1; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --comment "Interlock daemon" interlock
    fi
}

# One login account with its own primary group; idempotent.
il_user() {
    local name=$1
    if ! id -u "$name" >/dev/null 2>&1; then
        useradd --user-group --no-create-home --home-dir /nonexistent --shell /bin/sh "$name"
    fi
}

# The people and bots of the tests and the demo:
#   svc-ci   captured by name            svc-bot  captured through the group `bots` (supplementary)
#   alice    never captured              audra    interlock-auditors (may read evidence)
#   opal     interlock-admin (may reload)    svc-late  joins bots during a test (group re-expansion)
#   dana, dylan  approvers (group dba)       svc-ci is in dba too: it must still never approve its own
il_accounts_test() {
    il_accounts_system
    getent group bots >/dev/null || groupadd bots
    getent group dba >/dev/null || groupadd dba
    local u
    for u in svc-ci svc-bot svc-late alice audra opal dana dylan; do il_user "$u"; done
    usermod -a -G bots svc-bot
    usermod -a -G interlock-auditors audra
    usermod -a -G interlock-admin opal
    usermod -a -G dba dana
    usermod -a -G dba dylan
    usermod -a -G dba svc-ci
}

# ---------------------------------------------------------------------------------------------------
# Namespaces.

# il_world_up HOST REMOTE: two namespaces joined by a veth pair, addresses ready to use.
il_world_up() {
    local h=$1 r=$2
    [ -n "$h" ] && [ -n "$r" ] || il_die "usage: il_world_up HOSTNS REMOTENS" || return 1
    il_log "namespaces $h (host) and $r (remote)"
    ip netns add "$h" || return 1
    ip netns add "$r" || return 1
    # Created directly inside the namespaces, so the root namespace never sees the interface names.
    ip link add name veth0 netns "$h" type veth peer name veth0 netns "$r" || return 1
    ip -n "$h" link set lo up
    ip -n "$r" link set lo up
    ip -n "$h" addr add "$IL_HOST4/24" dev veth0
    ip -n "$h" -6 addr add "$IL_HOST6/64" dev veth0 nodad
    ip -n "$r" addr add "$IL_REMOTE4/24" dev veth0
    ip -n "$r" addr add "$IL_REMOTE4_HTTP/24" dev veth0
    ip -n "$r" -6 addr add "$IL_REMOTE6/64" dev veth0 nodad
    ip -n "$h" link set veth0 up
    ip -n "$r" link set veth0 up
    il_world_wait "$h" "$r"
}

# Wait (at most ~10 s) until both ends are up and no address is tentative.
il_world_wait() {
    local h=$1 r=$2 i
    for i in $(seq 1 100); do
        if ip -n "$h" link show veth0 | grep -q 'state UP' &&
            ip -n "$r" link show veth0 | grep -q 'state UP' &&
            [ -z "$(ip -n "$h" -6 addr show tentative)" ] &&
            [ -z "$(ip -n "$r" -6 addr show tentative)" ]; then
            return 0
        fi
        sleep 0.1
    done
    il_die "veth pair between $h and $r did not come up within 10 s"
}

# il_world_down HOST REMOTE: stop whatever still runs in the namespaces, then delete them.
il_world_down() {
    local ns pids i
    for ns in "$@"; do
        [ -e "/run/netns/$ns" ] || continue
        pids=$(ip netns pids "$ns" 2>/dev/null)
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill -TERM $pids 2>/dev/null
            for i in $(seq 1 50); do
                [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
                sleep 0.1
            done
            pids=$(ip netns pids "$ns" 2>/dev/null)
            # shellcheck disable=SC2086
            [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
        fi
        ip netns del "$ns" 2>/dev/null || true
        il_log "namespace $ns removed"
    done
    return 0
}

# ---------------------------------------------------------------------------------------------------
# PostgreSQL 15 in the remote namespace, as the `postgres` user, in a private directory.

IL_PG_BIN=${IL_PG_BIN:-/usr/lib/postgresql/15/bin}
# Network logins need a password (SCRAM-SHA-256; md5 and cleartext for the roles made to test them).
# Clients run by il_run_as get this one in PGPASSWORD unless the caller sets PGPASSWORD itself (set
# it empty for a client that knows no password).
IL_PG_PASSWORD=${IL_PG_PASSWORD:-orders-postgres-pw}
# The role Interlock logs in as when a resource has credentials (the client never learns it).
IL_PG_APP_USER=orders_app
IL_PG_APP_PASSWORD=${IL_PG_APP_PASSWORD:-orders-app-pw}

# il_pg_start REMOTE DIR: initdb in DIR/data, listen on the remote addresses, database `orders`.
il_pg_start() {
    local r=$1 dir=$2
    local data=$dir/data
    id -u postgres >/dev/null 2>&1 || il_die "no postgres user (apt-get install postgresql)" || return 1
    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    chmod 0755 "$dir"
    il_log "initdb $data"
    runuser -u postgres -- "$IL_PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 \
        --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '$IL_REMOTE4,$IL_REMOTE6'
port = 5432
unix_socket_directories = '$dir'
log_connections = on
log_disconnections = on
log_line_prefix = '%m [%p] %r '
fsync = off
max_connections = 200
EOF
    if [ "${IL_PG_SSL:-0}" = 1 ]; then
        il_pg_tls "$dir" || return 1
        cat >>"$data/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = '$dir/tls/server.crt'
ssl_key_file = '$dir/tls/server.key'
EOF
    fi
    # md5 uses SCRAM for roles whose password is stored as SCRAM (all but legacy_md5).
    cat >"$data/pg_hba.conf" <<EOF
local all all                trust
host  all all 127.0.0.1/32   trust
host  all legacy_clear $IL_NET4.0/24 password
host  all all $IL_NET4.0/24  md5
host  all all 2001:db8:18::/64 md5
EOF
    il_log "pg_ctl start in $r"
    nsenter --net="/run/netns/$r" runuser -u postgres -- "$IL_PG_BIN/pg_ctl" -D "$data" \
        -l "$dir/postgresql.log" -w -t 30 start >/dev/null || { cat "$dir/postgresql.log" >&2; return 1; }
    runuser -u postgres -- psql -X -q -h "$dir" -U postgres -d postgres -c "CREATE DATABASE orders" ||
        return 1
    runuser -u postgres -- psql -X -q -h "$dir" -U postgres -d orders -v ON_ERROR_STOP=1 <<'EOF' || return 1
CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, price numeric(10, 2) NOT NULL);
INSERT INTO items VALUES (1, 'widget', 9.99), (2, 'gadget', 24.50), (3, 'gizmo', 3.00);
EOF
    runuser -u postgres -- psql -X -q -h "$dir" -U postgres -d orders -v ON_ERROR_STOP=1 \
        -v pw="$IL_PG_PASSWORD" -v app="$IL_PG_APP_USER" -v apppw="$IL_PG_APP_PASSWORD" <<'EOF' || return 1
ALTER ROLE postgres PASSWORD :'pw';
CREATE ROLE :"app" LOGIN PASSWORD :'apppw';
GRANT ALL ON SCHEMA public TO :"app";
GRANT ALL ON ALL TABLES IN SCHEMA public TO :"app";
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO :"app";
SET password_encryption = 'md5';
CREATE ROLE legacy_md5 LOGIN PASSWORD 'legacy-md5-pw';
RESET password_encryption;
CREATE ROLE legacy_clear LOGIN PASSWORD 'legacy-clear-pw';
GRANT SELECT ON items TO legacy_md5, legacy_clear;
EOF
}

# il_pg_tls DIR: a CA of the "remote site" (DIR/tls/ca.crt) and a server certificate for the remote
# addresses, so the upstream leg can be tested with TLS (require, verify-full). Not the appliance CA.
il_pg_tls() {
    local t=$1/tls
    mkdir -p "$t"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=remote site CA" \
        -keyout "$t/ca.key" -out "$t/ca.crt" -addext basicConstraints=critical,CA:true \
        -addext keyUsage=critical,keyCertSign >/dev/null 2>&1 || return 1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$IL_REMOTE4" \
        -keyout "$t/server.key" -out "$t/server.csr" >/dev/null 2>&1 || return 1
    printf 'subjectAltName=IP:%s,IP:%s\nextendedKeyUsage=serverAuth\n' "$IL_REMOTE4" "$IL_REMOTE6" >"$t/ext.cnf"
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial -days 2 \
        -extfile "$t/ext.cnf" -out "$t/server.crt" >/dev/null 2>&1 || return 1
    chown postgres:postgres "$t/server.key" "$t/server.crt"
    chmod 0600 "$t/server.key"
    chmod 0644 "$t/ca.crt" "$t/server.crt"
    chmod 0755 "$t"
}

# il_pg_stop DIR
il_pg_stop() {
    local dir=$1
    [ -f "$dir/data/postmaster.pid" ] || return 0
    runuser -u postgres -- "$IL_PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------------------------------------------
# cgroup v2: where the unified hierarchy is mounted, and a unit-named cgroup for a client.

il_cgroup2_mount() {
    # mountinfo: ... mount-point(5th) ... - fstype source options
    awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' \
        /proc/self/mountinfo
}

# il_cgroup_make SLICE UNIT → prints the directory (created if needed).
il_cgroup_make() {
    local mnt
    mnt=$(il_cgroup2_mount)
    [ -n "$mnt" ] || il_die "no cgroup2 mount in /proc/self/mountinfo" || return 1
    mkdir -p "$mnt/$1/$2" && printf '%s\n' "$mnt/$1/$2"
}

# il_cgroup_remove SLICE: move stragglers out and remove the slice and its children.
il_cgroup_remove() {
    local mnt d p
    mnt=$(il_cgroup2_mount)
    [ -n "$mnt" ] && [ -d "$mnt/$1" ] || return 0
    for d in "$mnt/$1"/*/; do
        [ -d "$d" ] || continue
        while read -r p; do [ -n "$p" ] && echo "$p" >"$mnt/cgroup.procs" 2>/dev/null; done <"$d/cgroup.procs"
        rmdir "$d" 2>/dev/null
    done
    rmdir "$mnt/$1" 2>/dev/null || true
}

# il_run_as NS USER CGROUPDIR CMD...: run CMD in namespace NS as USER (its groups included), inside
# CGROUPDIR when it is not empty. The client is unchanged: it only sees its own uid and the real address.
il_run_as() {
    local ns=$1 user=$2 cg=$3
    shift 3
    # shellcheck disable=SC2016
    env HOME=/tmp PGPASSWORD="${PGPASSWORD-$IL_PG_PASSWORD}" nsenter --net="/run/netns/$ns" sh -c '
        cg=$1; shift
        if [ -n "$cg" ]; then echo $$ > "$cg/cgroup.procs" || exit 125; fi
        exec "$@"' sh "$cg" setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"
}
