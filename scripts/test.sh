#!/usr/bin/env bash
# Run every check `make test` promises, in order, and print one summary at the end:
# ruff lint, ruff format check, mypy on the pure cores, and pytest (unit, integration and e2e).
# Every step runs even when an earlier one failed, so one run shows everything that is wrong;
# the exit status is non-zero when any step failed. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=.venv/bin
names=() results=() seconds=()

step() {
    local name="$1"; shift
    printf '\n==> %s: %s\n' "$name" "$*"
    local start=$SECONDS rc=0
    "$@" || rc=$?
    names+=("$name")
    seconds+=($((SECONDS - start)))
    if ((rc == 0)); then results+=(passed); else results+=("FAILED (exit $rc)"); fi
}

step "ruff check" "$BIN/ruff" check src tests bench
step "ruff format" "$BIN/ruff" format --check src tests bench
step "mypy" "$BIN/mypy"
# --durations: the slowest tests are listed, to keep the suite under its 20-minute budget.
# Two workers: root-namespace tests in one, network-namespace tests beside them (tests/conftest.py).
step "pytest" "$BIN/pytest" -n 2 --dist loadgroup --durations=25 "$@"

failed=0
printf '\n==> summary\n'
for i in "${!names[@]}"; do
    printf '    %-12s %-18s %4ss\n' "${names[$i]}" "${results[$i]}" "${seconds[$i]}"
    [[ "${results[$i]}" == passed ]] || failed=1
done
if ((failed)); then
    printf '    make test: FAILED\n'
    exit 1
fi
printf '    make test: all passed\n'
