#!/usr/bin/env bash
# Run the whole test suite twice: on SQLite and on a throwaway PostgreSQL server that this
# script starts (scripts/pg-test.sh) and always stops. Extra arguments go to every pytest run.
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

# One pass of pytest over the tests that may run beside others, on one database; its output goes
# to a log of its own (printed when it ends) so that two passes can run at once.
run_pass() {
    local name=$1
    shift
    local log=".tmp/pytest-$name.log" rc=0
    echo "==> pytest on $name ($workers workers)"
    "$py" -m pytest -p no:cacheprovider -n "$workers" -m "not serial" \
        --basetemp=".tmp/pytest-$name" --junitxml=".tmp/junit-$name.xml" "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "pytest on $name collected no tests" >>"$log"
    fi
    return "$rc"
}

# The tests marked "serial" run afterwards, alone.
run_serial() {
    local name=$1
    shift
    local rc=0
    echo "==> pytest on $name: the tests that run alone"
    "$py" -m pytest -p no:cacheprovider -m serial --basetemp=".tmp/pytest-$name-serial" \
        --junitxml=".tmp/junit-$name-serial.xml" "$@" || rc=$?
    if [ "$rc" -eq 5 ]; then
        rc=0 # none selected (a run of some tests only)
    fi
    return "$rc"
}

show_pass() {
    local name=$1 rc=$2 took=$3
    echo "==> pytest on $name: output"
    cat ".tmp/pytest-$name.log"
    timings+=("pytest on $name: $took s (exit $rc)")
    if [ "$rc" -ne 0 ]; then
        status=1
    fi
}

cleanup() {
    scripts/pg-test.sh stop || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
eval "$(scripts/pg-test.sh start)"
pg_url=$COMPANION_TEST_DATABASE_URL
unset COMPANION_TEST_DATABASE_URL
timings+=("PostgreSQL start: $((SECONDS - t0)) s")

# One database's pass after the other. TEST_DATABASES_AT_ONCE=1 runs both at once (four workers
# on two cores): measured, it was no faster here (the suite is CPU-bound, 712 s for both against
# about 430 s in turn) and made the timing tests' margins thinner, so it is not the default.
t0=$SECONDS
if [ "${TEST_DATABASES_AT_ONCE:-0}" != 1 ]; then
    rc_sqlite=0
    run_pass sqlite "$@" || rc_sqlite=$?
    show_pass sqlite "$rc_sqlite" $((SECONDS - t0))
    t1=$SECONDS
    rc_pg=0
    COMPANION_TEST_DATABASE_URL=$pg_url run_pass postgresql "$@" || rc_pg=$?
    show_pass postgresql "$rc_pg" $((SECONDS - t1))
else
    run_pass sqlite "$@" &
    sqlite_pid=$!
    COMPANION_TEST_DATABASE_URL=$pg_url run_pass postgresql "$@" &
    pg_pid=$!
    rc_sqlite=0
    wait "$sqlite_pid" || rc_sqlite=$?
    took_sqlite=$((SECONDS - t0))
    rc_pg=0
    wait "$pg_pid" || rc_pg=$?
    show_pass sqlite "$rc_sqlite" "$took_sqlite"
    show_pass postgresql "$rc_pg" $((SECONDS - t0))
fi

t0=$SECONDS
rc=0
run_serial sqlite "$@" || rc=$?
COMPANION_TEST_DATABASE_URL=$pg_url run_serial postgresql "$@" || rc=$?
timings+=("tests that run alone, both databases: $((SECONDS - t0)) s (exit $rc)")
if [ "$rc" -ne 0 ]; then
    status=1
fi
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
