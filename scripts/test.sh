#!/usr/bin/env bash
# Interlock's test command: prerequisites, build, unit tests, integration tests.
#
#   sudo scripts/test.sh                 # everything (as root, on Debian 12 with Swift on PATH)
#   sudo scripts/test.sh -k ipv6         # extra arguments go to pytest
#
# Environment:
#   CI=true                 a missing prerequisite or a skipped integration test is a failure
#   INTERLOCK_SKIP_UNIT=1   do not run `swift test`
#   INTERLOCK_NO_APT=1      never call apt-get (report what is missing instead)
#   INTERLOCK_BIN_DIR       binaries the integration tests use (default .build/debug)
#
# Exit status is non-zero when any stage fails. The last line is `N passed, N failed`.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
CI=${CI:-false}
PY=/usr/bin/python3 # Debian's python3 (python3-pytest, python3-psycopg2), whatever else is on PATH

PACKAGES=(
    nftables libnftnl-dev libmnl-dev libsqlite3-dev pkg-config
    postgresql postgresql-client pgbouncer haproxy
    python3 python3-pytest python3-psycopg2 python3-psycopg
    curl iproute2 util-linux procps openssl
)

RESULTS=$(mktemp -d /tmp/interlock-test-results.XXXXXX)
trap 'rm -rf "$RESULTS"' EXIT
declare -a SUMMARY=()
FAILED_STAGES=0

stage() { printf '\n==== %s ====\n' "$*"; }
record() { # record NAME ok|FAILED [detail]
    SUMMARY+=("$(printf '%-22s %s%s' "$1" "$2" "${3:+  ($3)}")")
    [ "$2" = ok ] || FAILED_STAGES=$((FAILED_STAGES + 1))
}

# ---------------------------------------------------------------------------------------------------
stage "prerequisites"
prereq_ok=1
if [ "$(id -u)" != 0 ]; then
    echo "test.sh: run as root (the integration tests create namespaces and nftables tables)" >&2
    prereq_ok=0
fi
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    PATH=/opt/swift/usr/bin:$PATH
fi
if ! command -v swift >/dev/null 2>&1; then
    echo "test.sh: swift is not on PATH (install the Swift 6 toolchain first)" >&2
    prereq_ok=0
fi

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "all ${#PACKAGES[@]} packages installed; apt not needed"
elif [ "${INTERLOCK_NO_APT:-0}" = 1 ] || [ "$(id -u)" != 0 ]; then
    echo "missing packages: ${missing[*]}" >&2
    prereq_ok=0
else
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; }; then
        echo "apt-get install failed" >&2
        prereq_ok=0
    fi
fi
if [ $prereq_ok = 1 ]; then record prerequisites ok; else record prerequisites FAILED; fi
if [ $prereq_ok = 0 ] && [ "$CI" = true ]; then
    printf '%s\n' "${SUMMARY[@]}"
    echo "0 passed, 1 failed"
    exit 1
fi

# ---------------------------------------------------------------------------------------------------
stage "swift build"
build_ok=0
if swift build -c debug; then
    build_ok=1
    record build ok
else
    record build FAILED
fi

# ---------------------------------------------------------------------------------------------------
stage "format (swift format, .swift-format)"
# The tree must be what `swift format` makes of it: reformat each file to stdout and diff.
unformatted=()
while IFS= read -r -d '' f; do
    if ! swift format format "$f" 2>/dev/null | cmp -s - "$f"; then
        unformatted+=("$f")
    fi
done < <(git ls-files -z 'Sources/*.swift' 'Tests/*.swift' 'Package.swift')
if [ ${#unformatted[@]} -eq 0 ]; then
    record format ok
else
    printf 'not formatted (run: swift format format -i -r Sources Tests):\n' >&2
    printf '  %s\n' "${unformatted[@]}" >&2
    record format FAILED "${#unformatted[@]} file(s)"
fi

# Count test cases in JUnit/xUnit XML files: prints "passed failed skipped".
count_xml() {
    "$PY" - "$@" <<'EOF'
import sys, xml.etree.ElementTree as ET
p = f = s = 0
for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        continue
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            f += 1
        elif "skipped" in tags:
            s += 1
        else:
            p += 1
print(p, f, s)
EOF
}

TOTAL_PASSED=0
TOTAL_FAILED=0

# ---------------------------------------------------------------------------------------------------
if [ "${INTERLOCK_SKIP_UNIT:-0}" = 1 ]; then
    stage "swift test (skipped: INTERLOCK_SKIP_UNIT=1)"
elif [ $build_ok = 1 ]; then
    stage "swift test"
    swift test --xunit-output "$RESULTS/unit.xml"
    rc=$?
    read -r upass ufail uskip < <(count_xml "$RESULTS"/unit*.xml)
    TOTAL_PASSED=$((TOTAL_PASSED + upass))
    TOTAL_FAILED=$((TOTAL_FAILED + ufail))
    if [ $rc = 0 ]; then
        record "unit tests" ok "$upass passed, $ufail failed"
    else
        [ "$ufail" -gt 0 ] || TOTAL_FAILED=$((TOTAL_FAILED + 1)) # a crash or build failure counts once
        record "unit tests" FAILED "exit $rc; $upass passed, $ufail failed"
    fi
else
    record "unit tests" FAILED "not run: build failed"
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
fi

# ---------------------------------------------------------------------------------------------------
if [ $build_ok = 1 ]; then
    stage "integration tests"
    CI=$CI "$PY" -m pytest -v -rs --junitxml="$RESULTS/integration.xml" Tests/Integration "$@"
    rc=$?
    read -r ipass ifail iskip < <(count_xml "$RESULTS/integration.xml")
    TOTAL_PASSED=$((TOTAL_PASSED + ipass))
    TOTAL_FAILED=$((TOTAL_FAILED + ifail))
    detail="$ipass passed, $ifail failed, $iskip skipped"
    if [ "$CI" = true ] && [ "$iskip" -gt 0 ]; then
        TOTAL_FAILED=$((TOTAL_FAILED + iskip))
        record "integration tests" FAILED "$detail; skips are failures under CI"
    elif [ $rc = 0 ]; then
        record "integration tests" ok "$detail"
    else
        [ "$ifail" -gt 0 ] || TOTAL_FAILED=$((TOTAL_FAILED + 1))
        record "integration tests" FAILED "exit $rc; $detail"
    fi
else
    record "integration tests" FAILED "not run: build failed"
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
fi

# ---------------------------------------------------------------------------------------------------
stage "summary"
printf '%s\n' "${SUMMARY[@]}"
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ $FAILED_STAGES = 0 ]
