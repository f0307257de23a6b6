#!/usr/bin/env bash
# IPDC WordCount benchmark: bench/run.sh [SIZES...]   (default: 64M 256M 1G)
# Extra options go to bench.py after `--`, e.g. bench/run.sh 64M -- --runs 1 --systems ipdc-native,native-2t
# Environment: CARGO_TARGET_DIR (default: ROOT/target), BENCH_PYTHON (default: python3).
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$BENCH")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

sizes=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do sizes+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#sizes[@]} -eq 0 ] && sizes=(64M 256M 1G)
IFS=, ; sizes_csv="${sizes[*]}" ; unset IFS

# The real interpreter (not a pyenv shim), put first on PATH for IPDC's agents.
PY="$(${BENCH_PYTHON:-python3} -c 'import sys; print(sys.executable)')"
mkdir -p "$BENCH/.pybin" "$BENCH/data" "$BENCH/work" "$BENCH/results"
ln -sf "$PY" "$BENCH/.pybin/python3"

# The peers live in the benchmark's own virtualenv; they are not IPDC's dependencies.
if [ ! -x "$BENCH/.venv/bin/python" ] || ! "$BENCH/.venv/bin/python" -c 'import pyspark, dask.bag, mrjob, matplotlib' 2>/dev/null; then
    echo "== virtualenv bench/.venv (pyspark, dask[bag], mrjob, matplotlib)"
    "$PY" -m venv "$BENCH/.venv"
    "$BENCH/.venv/bin/pip" install -q --upgrade pip
    "$BENCH/.venv/bin/pip" install -q pyspark 'dask[bag]' mrjob matplotlib
fi
command -v java >/dev/null || echo "warning: no java on PATH: the PySpark systems will fail" >&2

echo "== cargo build --release (IPDC)"
(cd "$ROOT" && cargo build --release -q -p ipdc-submit -p ipdc-tests --bins)
echo "== cargo build --release (bench/native_wc)"
(cd "$BENCH/native_wc" && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/native_wc" cargo build --release -q)

exec "$BENCH/.venv/bin/python" "$BENCH/bench.py" --sizes "$sizes_csv" "$@"
