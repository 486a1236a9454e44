#!/usr/bin/env bash
# Install Interlock on this host, for real.
#
#   sudo scripts/install.sh
#
# Builds release binaries, installs them to /usr/local/bin, creates the `interlock` system user and
# the groups `interlock-admin` and `interlock-auditors`, writes /etc/interlock/interlock.yaml from the
# example (an existing file is never overwritten), creates the appliance CA in /etc/interlock/tls
# (`interlock tls init`; an existing one is kept), installs the systemd unit and reloads systemd when
# it is running. It does not start anything: capture begins when you start the service.
#
# Environment: PREFIX (default /usr/local), INTERLOCK_SKIP_BUILD=1 (install .build/release as is).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
# shellcheck source=scripts/lib/world.sh
source "$REPO/scripts/lib/world.sh"

PREFIX=${PREFIX:-/usr/local}
CONF_DIR=/etc/interlock
CONF=$CONF_DIR/interlock.yaml
UNIT_SRC=$REPO/systemd/interlockd.service
UNIT_DST=/etc/systemd/system/interlockd.service

say() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
command -v swift >/dev/null 2>&1 || PATH=/opt/swift/usr/bin:$PATH

# Runtime packages the daemon links against or needs next to it.
need=()
for p in nftables libnftnl11 libmnl0 libsqlite3-0; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if [ "${INTERLOCK_SKIP_BUILD:-0}" != 1 ]; then
    command -v swift >/dev/null 2>&1 || die "swift is not on PATH"
    say "building release binaries"
    # A static Swift standard library makes the installed binaries independent of the toolchain.
    if [ -d "$(dirname "$(dirname "$(command -v swift)")")/lib/swift_static" ]; then
        swift build -c release --static-swift-stdlib
    else
        swift build -c release
    fi
fi
BIN=$(swift build -c release --show-bin-path 2>/dev/null || echo "$REPO/.build/release")
[ -x "$BIN/interlockd" ] && [ -x "$BIN/interlock" ] || die "no release binaries in $BIN"

say "installing binaries to $PREFIX/bin"
install -d "$PREFIX/bin"
install -m 0755 "$BIN/interlockd" "$PREFIX/bin/interlockd"
install -m 0755 "$BIN/interlock" "$PREFIX/bin/interlock"

say "accounts: user interlock, groups interlock-admin and interlock-auditors"
il_accounts_system

say "configuration in $CONF_DIR"
install -d -m 0755 "$CONF_DIR"
if [ -e "$CONF" ]; then
    echo "    $CONF exists; left unchanged"
else
    # A fresh host has none of the example's accounts: start from a policy that captures nobody,
    # with the documented example beside it.
    cat >"$CONF" <<'EOF'
# Interlock policy; every key is documented in interlock.example.yaml beside this file.
# Name the service accounts to capture, check with `interlock policy check FILE`, then
# `interlock reload` (or `systemctl reload interlockd`).
daemon:
  user: interlock
  listen_port: 15001
  control_socket: /run/interlock/control.sock
  admin_group: interlock-admin
  auditor_group: interlock-auditors
audit:
  database: /var/lib/interlock/audit.db
capture:
  users: []
  groups: []
  unregistered: deny
  dns: allow
resources: []
EOF
    chmod 0644 "$CONF"
    echo "    $CONF written (captures nobody yet)"
fi
install -m 0644 "$REPO/examples/interlock.yaml" "$CONF_DIR/interlock.example.yaml"
echo "    $CONF_DIR/interlock.example.yaml: every key, documented"
"$PREFIX/bin/interlock" policy check "$CONF" || die "$CONF does not validate; fix it before starting the service"

# The appliance CA, which signs the certificates shown to clients of `tls: { client: offer }`
# resources. Created once; an existing CA is kept (rotate it with `interlock tls init --force`).
if [ -e "$CONF_DIR/tls/ca.crt" ]; then
    echo "    $CONF_DIR/tls/ca.crt exists; left unchanged"
else
    say "appliance CA in $CONF_DIR/tls"
    "$PREFIX/bin/interlock" tls init --dir "$CONF_DIR/tls"
fi

# State and runtime directories (systemd's StateDirectory/RuntimeDirectory do the same under systemd).
install -d -m 0750 -o interlock -g interlock /var/lib/interlock
install -d -m 0755 -o interlock -g interlock /run/interlock

# The key that signs the evidence log's checkpoints: created once, the daemon's own (mode 0600); its
# public half (checkpoint.pub) is what auditors verify exports with. An existing key is kept.
say "checkpoint signing key"
"$PREFIX/bin/interlock" audit init-key --config "$CONF"

if [ -f "$UNIT_SRC" ]; then
    say "systemd unit → $UNIT_DST"
    install -m 0644 "$UNIT_SRC" "$UNIT_DST"
    if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
        systemctl daemon-reload
        echo "    start capturing with: systemctl enable --now interlockd"
    else
        echo "    systemd is not PID 1 here; run interlockd yourself: interlockd --config $CONF"
    fi
else
    echo "warning: $UNIT_SRC missing in this checkout; no unit installed" >&2
fi

say "installed. Next: name the accounts to capture in $CONF; docs/operators.md explains the rest."
echo "    To remove the capture rules at any time: interlock uninstall"
