#!/usr/bin/env bash
# One build, three settings, alternating runs (as bench/ab.sh does for two builds, so that slow drifts of
# a shared VM hit all alike): the gateway's throughput and CPU per request with
#   none         no key limits, no response cache (nothing shared, nothing asked of Redis)
#   limit-mem    a key with a requests-per-minute limit, counted in this process's memory
#   limit-redis  the same limit counted in Redis (redis_url; a key prefix of the run's own, deleted after)
#   memory       the limit and the response cache on, in this process's memory
#   redis        the limit and the response cache in Redis
# and then two replicas side by side on one Redis (each pinned to its own core, each loaded by its own
# loadgen at half the concurrency), their summed req/s.
#
#   bench/shared_state.sh [CONCURRENCY] [--stream] [ROUNDS]      e.g. bench/shared_state.sh 32 --stream 3
#   BENCH_SETTINGS="limit-mem limit-redis" bench/shared_state.sh 32 --stream 3   (some of them only)
#
# The response cache is on with response_cache_nondeterministic (loadgen's body has no temperature), so
# after the first request every answer is a hit: "memory" and "redis" compare a hit in memory with a hit
# in Redis, plus the limiter's count in each. Needs Redis at BENCH_REDIS_URL (redis://127.0.0.1:6379/0).
set -euo pipefail
C=${1:-32}; MODE=${2:-}; ROUNDS=${3:-3}
[ "$MODE" = "--stream" ] || MODE=""
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/0}
PREFIX="bench-shared-$$:"
WORK=$(mktemp -d)
MOCK_PORT=${AB_MOCK_PORT:-18981}; GW_PORT=${AB_GW_PORT:-18982}; GW2_PORT=$((GW_PORT + 1))
MOCK_PID=""
cleanup() {  # by pid: never another run's processes
  [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null || true
  "$PY" -c "import redis, sys; r = redis.Redis.from_url(sys.argv[1]); n = list(r.scan_iter(match=sys.argv[2] + '*')); n and r.unlink(*n)" \
    "$REDIS_URL" "$PREFIX" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
taskset -c 1 "$PY" "$REPO/bench/mock_upstream.py" --port "$MOCK_PORT" > "$WORK/mock.log" 2>&1 &
MOCK_PID=$!
sleep 1

settings() {  # $1 = none | limit-mem | limit-redis | memory | redis: the environment of that setting
  echo ANTHROPIC_GATEWAY_UPSTREAM_KEY=bench-key ANTHROPIC_GATEWAY_DATABASE_URL="$WORK/gateway.db"
  [ "$1" = none ] && return
  echo BENCH_KEY=anything 'ANTHROPIC_GATEWAY_KEYS={"bench":{"key_env":"BENCH_KEY","requests_per_minute":100000000}}'
  case "$1" in memory|redis)
    echo ANTHROPIC_GATEWAY_RESPONSE_CACHE=true ANTHROPIC_GATEWAY_RESPONSE_CACHE_NONDETERMINISTIC=true;; esac
  case "$1" in *redis) echo ANTHROPIC_GATEWAY_REDIS_URL="$REDIS_URL" ANTHROPIC_GATEWAY_REDIS_PREFIX="$PREFIX";; esac
  return 0
}

start_gw() {  # $1 = setting, $2 = port, $3 = core; prints the pid
  # shellcheck disable=SC2046
  env $(settings "$1") PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" taskset -c "$3" "$PY" -m anthropic_gateway serve \
    --port "$2" --upstream-url "http://127.0.0.1:$MOCK_PORT/v1" > "$WORK/gw-$2.log" 2>&1 &
  local gw=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/" > /dev/null 2>&1 && break; sleep 0.1; done
  echo "$gw"
}

load() {  # $1 = port, $2 = concurrency, $3 = seconds, $4 = output
  taskset -c 1 "$PY" "$REPO/bench/loadgen.py" --url "http://127.0.0.1:$1" --target anthropic $MODE \
    --concurrency "$2" --duration "$3" --warmup 0 > "$4"
}

report() {  # $1 = label, $2.. = run.json files, then: cpu ticks
  "$PY" - "$@" "$(getconf CLK_TCK)" <<'PY'
import json, sys
label, *rest = sys.argv[1:]
files, ticks, hz = rest[:-2], int(rest[-2]), int(rest[-1])
runs = [json.load(open(f)) for f in files]
rps = sum(r["rps"] for r in runs); started = sum(r["total_started"] for r in runs)
errors = sum(r["errors"] for r in runs)
kinds = {k: v for r in runs for k, v in r["error_kinds"].items()}
print(f"{label:>11}  {rps:8.1f} req/s  errors {errors}  gateway CPU {1000 * ticks / hz / max(started, 1):.3f} ms/req"
      + (f"  {kinds}" if errors else ""))
PY
}

cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }

run() {  # $1 = setting
  rm -f "$WORK/gateway.db"*
  local gw; gw=$(start_gw "$1" "$GW_PORT" 0)
  load "$GW_PORT" "$C" 2 /dev/null
  local c0 c1; c0=$(cpu "$gw")
  load "$GW_PORT" "$C" 5 "$WORK/run.json"
  c1=$(cpu "$gw")
  kill "$gw"; wait "$gw" 2>/dev/null || true
  report "$1" "$WORK/run.json" $((c1 - c0))
}

two() {  # two replicas on one Redis, side by side
  rm -f "$WORK/gateway.db"*
  local a b; a=$(start_gw redis "$GW_PORT" 0); b=$(start_gw redis "$GW2_PORT" 1)
  load "$GW_PORT" $((C / 2)) 2 /dev/null & local w=$!
  load "$GW2_PORT" $((C / 2)) 2 /dev/null; wait "$w"
  local a0 b0 a1 b1; a0=$(cpu "$a"); b0=$(cpu "$b")
  load "$GW_PORT" $((C / 2)) 5 "$WORK/a.json" & w=$!
  load "$GW2_PORT" $((C / 2)) 5 "$WORK/b.json"; wait "$w"
  a1=$(cpu "$a"); b1=$(cpu "$b")
  kill "$a" "$b"; wait "$a" "$b" 2>/dev/null || true
  report "2x redis" "$WORK/a.json" "$WORK/b.json" $((a1 - a0 + b1 - b0))
}

echo "c=$C ${MODE:-non-streaming}, $ROUNDS rounds, one replica pinned to core 0 (mock and loadgen on core 1)"
SETTINGS=${BENCH_SETTINGS:-none limit-mem limit-redis memory redis}
for _ in $(seq "$ROUNDS"); do for s in $SETTINGS; do run "$s"; done; done
echo "two replicas on one Redis (cores 0 and 1, sharing core 1 with the mock and both loadgens), c=$C in all"
for _ in $(seq "$ROUNDS"); do two; done
