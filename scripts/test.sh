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
# pytest in two processes side by side (scripts/split_tests.py): the root-namespace modules one
# after another in one, the network-namespace modules and the unit tests in the other. The first
# runs in a network namespace of its own (scripts/own_netns.sh), so that the other's lab legs
# coming and going in the root namespace never reach its Chromium. With
# arguments (a file, -k, -m ...) one plain pytest run. --durations lists the slowest tests, to
# keep the suite under its 20-minute budget.
pytest_split() {
    local side_log rc_root=0 rc_side=0
    side_log=$(mktemp)
    mapfile -t root < <("$BIN/python" scripts/split_tests.py root)
    mapfile -t side < <("$BIN/python" scripts/split_tests.py side)
    "$BIN/pytest" -p no:cacheprovider --durations=15 "${side[@]}" >"$side_log" 2>&1 &
    local side_pid=$!
    scripts/own_netns.sh "$BIN/pytest" -p no:cacheprovider --durations=25 "${root[@]}" || rc_root=$?
    wait "$side_pid" || rc_side=$?
    printf '\n==> pytest, network namespaces and unit tests (run beside the above)\n'
    cat "$side_log"
    rm -f "$side_log"
    ((rc_root == 0 && rc_side == 0))
}
if (($#)); then
    step "pytest" "$BIN/pytest" --durations=25 "$@"
else
    step "pytest" pytest_split
fi

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
