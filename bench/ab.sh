#!/usr/bin/env bash
# A/B two builds of the gateway on this machine, alternating runs so that slow drifts of a shared VM
# hit both alike (full-matrix runs minutes apart can differ by ±50% here).
#
#   bench/ab.sh REV_A REV_B [CONCURRENCY] [--stream] [ROUNDS]
#   bench/ab.sh HEAD~1 HEAD 32 --stream 3
#   AB_DATABASE_URL_B=postgresql://postgres@127.0.0.1:5432/gw_ab bench/ab.sh HEAD HEAD 32 --stream 3
#                                  # one build, its store on SQLite (A) against PostgreSQL (B)
#   AB_BODY=cc bench/ab.sh main HEAD 16 "" 3   # loadgen's body: small (default), cc (Claude Code, 76 KB), tool
#   AB_ENV_B="LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2" bench/ab.sh HEAD HEAD 32 --stream 3
#                                  # one build, B's gateway (only) with extra environment (AB_ENV_A for A)
#
# Each round starts each build's gateway pinned to core 0 against one mock upstream (core 1), warms it
# for 2 s, measures 5 s with bench/loadgen.py (core 1), and prints req/s and the gateway's CPU per
# request from /proc. Loopback only; every run is bounded by loadgen's duration.
set -euo pipefail
A=${1:?revision A}; B=${2:?revision B}; C=${3:-32}; MODE=${4:-}; ROUNDS=${5:-2}
[ "$MODE" = "--stream" ] || MODE=""
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
WORK=$(mktemp -d)
# Ports of one's own (AB_MOCK_PORT / AB_GW_PORT) let two developers run it at once on a shared machine.
# AB_MOCK_ARGS goes to the mock (e.g. "--delay 0.002": chunks spaced like tokens, one socket read each).
MOCK_PORT=${AB_MOCK_PORT:-18971}; GW_PORT=${AB_GW_PORT:-18972}
MOCK_PID=""
cleanup() {  # by pid: never another run's processes
  [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null || true
  for rev in a b; do git -C "$REPO" worktree remove --force "$WORK/$rev" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
git -C "$REPO" worktree add -q "$WORK/a" "$A"
git -C "$REPO" worktree add -q "$WORK/b" "$B"
# A revision with the compiled token counter (setup.py) gets it built, as `pip install` would: without
# it the gateway counts with tiktoken (another tokenizer, ~40 MB more RSS) and is not what users run.
for rev in a b; do
  if [ -f "$WORK/$rev/setup.py" ]; then
    "$PY" -m pip install -q --no-deps --no-compile --target "$WORK/$rev-ext" "$WORK/$rev" >/dev/null 2>&1 \
      && cp "$WORK/$rev-ext"/anthropic_gateway/tokens/_o200k*.so "$WORK/$rev/src/anthropic_gateway/tokens/" \
      || echo "ab.sh: the compiled counter did not build for $rev; it counts with tiktoken" >&2
    # ... and the streamed path's extensions (httpclient/_chunks.c, translate/_run.c) where the revision has them
    for ext in httpclient/_chunks translate/_run; do
      if [ -f "$WORK/$rev/src/anthropic_gateway/$ext.c" ]; then
        cp "$WORK/$rev-ext"/anthropic_gateway/$ext*.so "$WORK/$rev/src/anthropic_gateway/$(dirname $ext)/" \
          || echo "ab.sh: $ext.c did not build for $rev; the gateway uses its Python path" >&2
      fi
    done
  fi
done
taskset -c 1 "$PY" "$REPO/bench/mock_upstream.py" --port $MOCK_PORT ${AB_MOCK_ARGS:-} > "$WORK/mock.log" 2>&1 &
MOCK_PID=$!
sleep 1
run() {  # $1 = worktree, $2 = label, $3 = database URL (empty: a SQLite file), $4 = extra KEY=VALUE words
  # The store (ledger) in the work directory: not the user's, nor shared with another run.
  rm -f "$WORK/gateway.db"*
  PYTHONPATH="$1/src" ANTHROPIC_GATEWAY_UPSTREAM_KEY=bench-key ANTHROPIC_GATEWAY_DATABASE_URL="${3:-$WORK/gateway.db}" \
    env ${4:-} taskset -c 0 "$PY" -m anthropic_gateway serve \
    --port $GW_PORT --upstream-url "http://127.0.0.1:$MOCK_PORT/v1" > "$WORK/gw.log" 2>&1 &
  local gw=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$GW_PORT/" > /dev/null 2>&1 && break; sleep 0.1; done
  taskset -c 1 "$PY" "$REPO/bench/loadgen.py" --url "http://127.0.0.1:$GW_PORT" --target anthropic $MODE \
    --body "${AB_BODY:-small}" --concurrency "$C" --duration 2 --warmup 0 > /dev/null
  local c0 c1; c0=$(awk '{print $14","$15}' "/proc/$gw/stat")
  taskset -c 1 "$PY" "$REPO/bench/loadgen.py" --url "http://127.0.0.1:$GW_PORT" --target anthropic $MODE \
    --body "${AB_BODY:-small}" --concurrency "$C" --duration 5 --warmup 0 > "$WORK/run.json"
  c1=$(awk '{print $14","$15}' "/proc/$gw/stat")
  kill "$gw"; wait "$gw" 2>/dev/null || true
  "$PY" - "$WORK/run.json" "$2" "$c0" "$c1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
(u0, s0), (u1, s1) = (map(int, a.split(",")) for a in sys.argv[3:5])
per = 1000 / int(sys.argv[5]) / max(d['total_started'], 1)  # ms per request per tick
print(f"{sys.argv[2]:>8}  {d['rps']:8.1f} req/s  p50 {d['latency_ms']['p50']:.3f} ms  errors {d['errors']}"
      f"  gateway CPU {(u1 - u0 + s1 - s0) * per:.3f} ms/req"
      f"  (user {(u1 - u0) * per:.3f}, system {(s1 - s0) * per:.3f})")
PY
}
echo "c=$C ${MODE:-non-streaming}, body ${AB_BODY:-small}, $ROUNDS rounds: A=$A B=$B"
for _ in $(seq "$ROUNDS"); do
  run "$WORK/a" "A" "${AB_DATABASE_URL_A:-}" "${AB_ENV_A:-}"; run "$WORK/b" "B" "${AB_DATABASE_URL_B:-}" "${AB_ENV_B:-}"
done
