#!/bin/sh
# Run every GB/T 28181 fuzz harness for RUNS inputs (default 1,000,000) with atheris, two at a
# time, corpora under ${OUT:-/tmp/vmesh-fuzz}; each harness's libFuzzer log is OUT/<name>.log.
# Usage: fuzz/run_all.sh [RUNS]   (needs: pip install -e '.[fuzz]')
set -eu
RUNS=${1:-1000000}
OUT=${OUT:-/tmp/vmesh-fuzz}
HERE=$(dirname "$0")
PY=${PY:-python}
mkdir -p "$OUT"
run() {
    mkdir -p "$OUT/corpus-$1"
    /usr/bin/time -f "$1 wall=%es cpu=%Us maxrss=%MkB" \
        "$PY" "$HERE/fuzz_$1.py" -runs="$RUNS" -timeout=5 -rss_limit_mb=2048 \
        -artifact_prefix="$OUT/$1-" "$OUT/corpus-$1" "$HERE/seeds/$1" >"$OUT/$1.log" 2>&1
}
run sip & run manscdp & wait
run sdp & run ps & wait
run rtp
tail -n 3 "$OUT"/*.log
