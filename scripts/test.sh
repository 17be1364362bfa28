#!/usr/bin/env bash
# Run the whole test suite twice: on SQLite, then on a throwaway PostgreSQL server that this
# script starts (scripts/pg-test.sh) and always stops. Extra arguments go to both pytest runs.
# Exits non-zero if either run fails. Expects `make test` to have installed everything first.
set -euo pipefail

cd "$(dirname "$0")/.."
py=.venv/bin/python
mkdir -p .tmp
rm -f .tmp/junit-*.xml

started=$SECONDS
timings=()
status=0

# Tests run in as many processes as there are cores (pytest-xdist; PYTEST_WORKERS changes it),
# each with a database of its own; those marked "serial" (a PostgreSQL restart cuts every
# connection) run afterwards, alone.
workers=${PYTEST_WORKERS:-auto}

run_suite() {
    local name=$1
    shift
    local t0=$SECONDS rc=0 rc_serial=0
    echo "==> pytest on $name ($workers workers)"
    "$py" -m pytest -p no:cacheprovider -n "$workers" -m "not serial" \
        --junitxml=".tmp/junit-$name.xml" "$@" || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "pytest on $name collected no tests" >&2
    fi
    echo "==> pytest on $name: the tests that run alone"
    "$py" -m pytest -p no:cacheprovider -m serial \
        --junitxml=".tmp/junit-$name-serial.xml" "$@" || rc_serial=$?
    if [ "$rc_serial" -eq 5 ]; then
        rc_serial=0 # none selected (a run of some tests only)
    fi
    timings+=("pytest on $name: $((SECONDS - t0)) s (exit $rc, alone: exit $rc_serial)")
    if [ "$rc" -ne 0 ] || [ "$rc_serial" -ne 0 ]; then
        status=1
    fi
}

cleanup() {
    scripts/pg-test.sh stop || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run_suite sqlite "$@"

t0=$SECONDS
eval "$(scripts/pg-test.sh start)"
timings+=("PostgreSQL start: $((SECONDS - t0)) s")
run_suite postgresql "$@"
unset COMPANION_TEST_DATABASE_URL
cleanup
trap - EXIT

echo "==> timings"
for line in "${timings[@]}"; do
    echo "  $line"
done
echo "  all test runs: $((SECONDS - started)) s"
# One closing line for both runs together.
"$py" - <<'PY'
import glob
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
for path in sorted(glob.glob(".tmp/junit-*.xml")):
    for suite in ET.parse(path).getroot().iter("testsuite"):
        tests = int(suite.get("tests", 0))
        bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skip = int(suite.get("skipped", 0))
        passed += tests - bad - skip
        failed += bad
        skipped += skip
print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
PY
exit "$status"
