#!/usr/bin/env bash
# Footprint of the shipped agent (run on demand; not part of CI, takes ~3 min plus corpus generation):
#   - stripped agent size per target (dist/, made by scripts/dist.sh)
#   - idle RSS of an agent connected to a hub, after IDLE_SECS (default 60)
#   - peak RSS (VmHWM) of the agent process over a WordCount job on a
#     256 MiB corpus (tests/corpus.py 256M --seed 1), with the default budget and
#     with `--memory-mb 32` on the agent, for `--native wordcount` and for the
#     Python executor (the Python child's peak is reported separately)
#   - peak RSS of `ipdc-submit run` against the hub (not --local)
# Agents run the x86_64 static musl binary from dist/ (the one the amd64 .deb
# ships) with SLOTS task slots (default 1: one task's footprint).
# Usage: bench/footprint.sh      (env: IDLE_SECS, SLOTS, CORPUS_SIZE, CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
IDLE_SECS=${IDLE_SECS:-60}
SLOTS=${SLOTS:-1}
CORPUS_SIZE=${CORPUS_SIZE:-256M}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DIST=$ROOT/dist

AGENT=$DIST/ipdc-agent-x86_64-linux-musl
SUBMIT=$DIST/ipdc-submit-x86_64-linux-gnu
# Always through dist.sh (incremental when nothing changed): binaries left in
# dist/ by an older checkout would measure old code.
scripts/dist.sh

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

kb() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$2/status" 2>/dev/null || true; }
mib() { awk -v x="$1" 'BEGIN { printf "%.1f MiB", x / 1024 }'; }
mb_bytes() { awk -v x="$1" 'BEGIN { printf "%.2f MB (%d bytes)", x / 1e6, x }'; }
ROWS=()
row() { ROWS+=("$(printf '%-62s %s' "$1" "$2")"); echo "  $1: $2" >&2; }

# --- sizes ---------------------------------------------------------------
for f in "$DIST"/ipdc-agent-*-linux-musl; do
  info=$(file -b "$f" 2>/dev/null | grep -o 'stripped\|not stripped' || echo "?")
  row "agent size, $(basename "$f") ($info)" "$(mb_bytes "$(stat -c %s "$f")")"
done
if [ -x "$TARGET_DIR/release/ipdc-agent" ]; then
  strip -o "$WORK/agent-release" "$TARGET_DIR/release/ipdc-agent"
  row "agent size, x86_64 glibc profile release, stripped (comparison)" "$(mb_bytes "$(stat -c %s "$WORK/agent-release")")"
fi
row "submitter size, $(basename "$SUBMIT")" "$(mb_bytes "$(stat -c %s "$SUBMIT")")"

# --- hub ---------------------------------------------------------------------
RUST_LOG=warn,rumqttd=off "$SUBMIT" hub --mqtt 127.0.0.1:0 --ipfs 127.0.0.1:0 --data "$WORK/hub-data" >"$WORK/hub.out" 2>"$WORK/hub.err" &
PIDS+=($!)
MQTT= IPFS=
for _ in $(seq 100); do
  MQTT=$(sed -n 's/^MQTT=//p' "$WORK/hub.out") IPFS=$(sed -n 's/^IPFS=//p' "$WORK/hub.out")
  [ -n "$MQTT" ] && [ -n "$IPFS" ] && break
  sleep 0.1
done
[ -n "$MQTT" ] && [ -n "$IPFS" ] || { echo "the hub did not start:" >&2; cat "$WORK/hub.err" >&2; exit 1; }
echo "hub: $MQTT $IPFS" >&2

AGENT_PID=
start_agent() { # NAME [extra flags]
  local name=$1; shift
  RUST_LOG=info "$AGENT" --broker "$MQTT" --ipfs "$IPFS" --name "$name" \
    --slots "$SLOTS" --work-dir "$WORK/work-$name" "$@" >"$WORK/agent-$name.log" 2>&1 &
  AGENT_PID=$!
  PIDS+=("$AGENT_PID")
  for _ in $(seq 100); do grep -q 'connected to broker' "$WORK/agent-$name.log" && return 0; sleep 0.1; done
  echo "agent $name did not connect:" >&2; cat "$WORK/agent-$name.log" >&2; exit 1
}
stop_agent() { kill "$AGENT_PID" 2>/dev/null || true; wait "$AGENT_PID" 2>/dev/null || true; }

# --- idle ----------------------------------------------------------------------
start_agent idle
echo "idle agent: waiting ${IDLE_SECS}s" >&2
sleep "$IDLE_SECS"
row "agent idle RSS after ${IDLE_SECS}s (VmRSS / VmHWM)" "$(mib "$(kb VmRSS "$AGENT_PID")") / $(mib "$(kb VmHWM "$AGENT_PID")")"
stop_agent

# --- jobs on the 256 MiB corpus ---------------------------------------------------
# Cached under a name with a hash of the generator (a changed one makes a new file).
mkdir -p "$TARGET_DIR/test-data"
CORPUS=$TARGET_DIR/test-data/corpus-$CORPUS_SIZE-seed1-$(sha256sum <"$ROOT/tests/corpus.py" | cut -c1-12).txt
if [ ! -f "$CORPUS" ]; then
  echo "generating $CORPUS" >&2
  python3 "$ROOT/tests/corpus.py" "$CORPUS_SIZE" --seed 1 >"$CORPUS.tmp"
  mv "$CORPUS.tmp" "$CORPUS"
fi

# Samples the peak VmHWM of the agent's children (Python runners) while PID $1 lives.
watch_children() {
  local parent=$1 out=$2 peak=0 c v
  while kill -0 "$parent" 2>/dev/null; do
    for c in $(pgrep -P "$AGENT_PID" 2>/dev/null); do
      v=$(kb VmHWM "$c"); [ -n "$v" ] && [ "$v" -gt "$peak" ] && peak=$v
    done
    echo "$peak" >"$out"
    sleep 0.1
  done
}

run_job() { # LABEL AGENT_FLAGS JOB_FLAGS
  local label=$1 aflags=$2 jflags=$3 n=$(( ${#ROWS[@]} ))
  # shellcheck disable=SC2086
  start_agent "job$n" $aflags
  local t0=$SECONDS
  # The submitter, with its own exact peak RSS from getrusage(RUSAGE_CHILDREN).
  # shellcheck disable=SC2086
  python3 -c '
import resource, subprocess, sys
r = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=open(sys.argv[1], "w"))
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
' "$WORK/submit$n.log" env RUST_LOG=warn "$SUBMIT" run "$ROOT/examples/wordcount" --broker "$MQTT" --ipfs "$IPFS" \
    --input "$CORPUS" --workers 1 --reducers 1 --out "$WORK/out$n" $jflags >"$WORK/submit$n.rc" &
  local spid=$!
  watch_children "$spid" "$WORK/children$n" &
  local wpid=$!
  wait "$spid"; wait "$wpid" || true
  local rc sub_kb
  read -r rc sub_kb <"$WORK/submit$n.rc"
  if [ "$rc" != 0 ]; then echo "job failed:" >&2; cat "$WORK/submit$n.log" >&2; exit 1; fi
  local hwm; hwm=$(kb VmHWM "$AGENT_PID")
  local py; py=$(cat "$WORK/children$n" 2>/dev/null || echo 0)
  local secs=$((SECONDS - t0))
  row "agent peak RSS, $label (${secs}s)" "$(mib "$hwm")"
  [ "$py" -gt 0 ] && row "  Python runner peak RSS (separate process), $label" "$(mib "$py")"
  row "  submitter peak RSS (ipdc-submit run), $label" "$(mib "$sub_kb")"
  rm -rf "$WORK/out$n"
  stop_agent
}

run_job "native wordcount, default budget" "" "--native wordcount"
run_job "native wordcount, agent --memory-mb 32" "--memory-mb 32" "--native wordcount"
run_job "Python executor, default budget" "" ""
run_job "Python executor, agent --memory-mb 32" "--memory-mb 32" ""

echo
echo "IPDC footprint — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, agent: $("$AGENT" --version)"
echo "jobs: WordCount on $CORPUS_SIZE (tests/corpus.py --seed 1), 1 worker, 1 reducer, agent --slots $SLOTS;"
echo "default budget = the job's 64 MiB (agent cap 256 MiB); peaks cover the whole job (map, then reduce)"
printf '%s\n' "${ROWS[@]}"
