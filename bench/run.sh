#!/usr/bin/env bash
# Interlock's speed benchmark (issues 2 and 3, "Speed"): pgbench (-S simple and prepared, -C) and a
# COPY out against a real PostgreSQL in the remote namespace, directly, through pgbouncer, through
# haproxy and through interlockd (with a block rule, a column mask and per-statement evidence),
# interleaved in one run, plus the memory held per idle captured connection, the connection-setup
# probe and the content detectors' throughput per core (interlock-bench). Writes a Markdown report
# to stdout and to $BENCH_OUT (default /tmp/interlock-bench/latest.md). See docs/benchmarks.md.
#
#   sudo bench/run.sh
#
# Environment:
#   INTERLOCK_BIN_DIR  use these binaries: interlockd, interlock, interlock-bench (default
#                      .build-release/release, built if missing with
#                      `swift build -c release --scratch-path .build-release`)
#   BENCH_REPS=5       rounds; each round runs every workload on every variant once (round-robin)
#   BENCH_SECONDS=15   pgbench -T per run
#   BENCH_IDLE=1000    idle connections held for the memory measurement
#   BENCH_COPY_ROWS=3000000  rows of the COPY table (0: no COPY runs)
#   BENCH_CONNECT=1    0: skip issue 2's connection figures (-C runs, idle memory, connect probe)
#   BENCH_DETECTOR_SECONDS=3  interlock-bench time per case
#   BENCH_RECORDING    full or off: the daemon's audit.recording (default: full, the product default)
#   BENCH_PROFILE=0    1: after the rounds, `perf record` interlockd during one extra -S run
#   BENCH_OUT          where the report is written
#
# Runs as root (namespaces, nftables, setpriv). Everything it starts is stopped and its namespaces,
# PostgreSQL and files are removed at the end, also when interrupted. Every traffic stays on loopback
# or inside the two namespaces it creates (198.18.0.0/24). Every run is bounded in time.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
[ "$(id -u)" = 0 ] || { echo "bench/run.sh: run as root (namespaces, nftables, setpriv)" >&2; exit 1; }
command -v swift >/dev/null 2>&1 || PATH=/opt/swift/usr/bin:$PATH

missing=
for t in pgbench pgbouncer haproxy psql nsenter setpriv nft ip; do
    command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
[ -x /usr/bin/python3 ] || missing="$missing /usr/bin/python3"
if [ -n "$missing" ]; then
    echo "bench/run.sh: missing:$missing (apt-get install postgresql postgresql-contrib pgbouncer haproxy)" >&2
    exit 1
fi

BIN_DIR=${INTERLOCK_BIN_DIR:-$REPO/.build-release/release}
if [ ! -x "$BIN_DIR/interlockd" ] || [ ! -x "$BIN_DIR/interlock" ]; then
    if [ -n "${INTERLOCK_BIN_DIR:-}" ]; then
        echo "bench/run.sh: no interlockd/interlock in $BIN_DIR" >&2
        exit 1
    fi
    echo "bench/run.sh: building the release binaries (swift build -c release --scratch-path .build-release)" >&2
    swift build -c release --scratch-path "$REPO/.build-release" --product interlockd >&2
    swift build -c release --scratch-path "$REPO/.build-release" --product interlock >&2
fi
if [ ! -x "$BIN_DIR/interlock-bench" ] && [ -z "${INTERLOCK_BIN_DIR:-}" ]; then
    echo "bench/run.sh: building interlock-bench (swift build -c release --scratch-path .build-release)" >&2
    swift build -c release --scratch-path "$REPO/.build-release" --product interlock-bench >&2
fi
export INTERLOCK_BIN_DIR=$BIN_DIR
exec /usr/bin/python3 "$REPO/bench/bench.py" "$@"
