#!/usr/bin/env bash
# The whole check suite, as CI runs it: install what is missing (scripts/setup.sh --dev),
# then ruff check, ruff format --check, mypy --strict and pytest (all tiers). Every step
# runs even when an earlier one fails; the exit status is non-zero if any failed.
#
#   scripts/test.sh                      everything
#   scripts/test.sh -m pure              tier 1 only (arguments go to pytest)
#   scripts/test.sh tests/real -k outbox paths are relative to the repository root
#
# ARETE_TEST_TIMEOUT (seconds, default 2700) bounds the pytest run as a whole; each test
# also has pytest-timeout's own limit (pyproject.toml). ARETE_TEST_WORKERS (default 4)
# sets how many pytest workers run tests side by side (0: a single process).
set -euo pipefail

# CI closes stdin: give children /dev/null rather than a reused file descriptor 0.
[ -t 0 ] || exec </dev/null

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

./scripts/setup.sh --dev

BIN="$ROOT/.venv/bin"
failed=()

banner() { printf '\n===== %s =====\n' "$*"; }

banner "ruff check"
"$BIN/ruff" check . || failed+=("ruff check")

banner "ruff format --check"
"$BIN/ruff" format --check . || failed+=("ruff format")

banner "mypy --strict (files from pyproject.toml)"
"$BIN/mypy" || failed+=("mypy")

banner "dashboard unit tests (vitest)"
npm --prefix "$ROOT/dashboards/web" test || failed+=("vitest")

# Most tests wait on real processes (brokers, agents, outages) rather than compute, so
# they run in parallel: ARETE_TEST_WORKERS pytest workers (default 4; 0 = one process),
# a whole test file per worker (files share session fixtures such as one Xvfb screen).
workers=${ARETE_TEST_WORKERS:-4}
banner "pytest${*:+ $*} (workers: $workers)"
pytest=("$BIN/python" -m pytest --durations=25)
if [ "$workers" != 0 ]; then pytest+=(-n "$workers" --dist loadfile); fi
pytest+=("$@")
if command -v timeout >/dev/null 2>&1; then
    # SIGINT first so that fixtures stop the brokers and agents they started.
    pytest=(timeout --foreground -s INT -k 60 "${ARETE_TEST_TIMEOUT:-2700}" "${pytest[@]}")
fi
status=0
"${pytest[@]}" || status=$?
case "$status" in
    0) ;;
    5)
        echo "test.sh: pytest collected no tests: that counts as a failure (check the paths, -m and -k)" >&2
        failed+=("pytest: no tests collected")
        ;;
    124) failed+=("pytest: timed out after ${ARETE_TEST_TIMEOUT:-2700} s") ;;
    *) failed+=("pytest (exit $status)") ;;
esac

echo
if [ "${#failed[@]}" -eq 0 ]; then
    echo "test.sh: OK: ruff check, ruff format, mypy and pytest all succeeded"
else
    joined=$(printf '%s; ' "${failed[@]}")
    echo "test.sh: FAILED: ${joined%; }" >&2
    exit 1
fi
