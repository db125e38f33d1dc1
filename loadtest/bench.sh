#!/usr/bin/env bash
# Ingest side by side, through the same load generator in the same run:
# Tocsin (`tocsin serve --no-workers`: accept and store, like the asynq peer,
# whose tasks nobody consumes either), the asynq peer (same HTTP contract,
# asynq.Unique enqueue) against the same Redis, and a bare net/http handler
# (the ceiling).
# Once with Redis as deploy/ ships it (AOF, appendfsync always), once with
# persistence off. Everything on loopback; prints a Markdown table.
#
#   bash loadtest/bench.sh [DURATION]      (default 10s per run)
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10s}
senders=16
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { echo "bench: $1 is missing; install it with: sudo apt-get install -y $2 (or make deps)" >&2; exit 1; }; }
need redis-server redis-server
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || { echo "bench: mosquitto is missing; sudo apt-get install -y mosquitto" >&2; exit 1; }
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
waitport() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "bench: nothing on port $1" >&2; exit 1; }

go build -o "$tmp/tocsin" ./cmd/tocsin
(cd loadtest/asynqpeer && go build -o "$tmp/asynqpeer" .)
key=bench-dispatch-key-000000001

echo "| Redis | run | accepted/s | p50 ms | p99 ms | errors | vs ceiling |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for mode in aof-always no-persistence; do
  rp=$(port); mp=$(port); tp=$(port); ap=$(port); bp=$(port)
  mkdir -p "$tmp/$mode"
  if [ "$mode" = aof-always ]; then persist=(--appendonly yes --appendfsync always --save ""); else persist=(--appendonly no --save ""); fi
  redis-server --port "$rp" --bind 127.0.0.1 --dir "$tmp/$mode" "${persist[@]}" --daemonize no >/dev/null &
  pids+=($!)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n' "$mp" > "$tmp/$mode/mosq.conf"
  "$mosq" -c "$tmp/$mode/mosq.conf" >/dev/null 2>&1 &
  pids+=($!)
  waitport "$rp"; waitport "$mp"
  cat > "$tmp/$mode/tocsin.yaml" <<YAML
listen: 127.0.0.1:$tp
redis: {addrs: ["127.0.0.1:$rp"]}
mqtt: {broker: "tcp://127.0.0.1:$mp", client_id: tocsin-bench}
zones: [{id: town}]
sirens: [{id: s1, zone: town}, {id: s2, zone: town}, {id: s3, zone: town}]
principals:
  - {id: ils, kind: dispatch, key_env: BENCH_KEY, scopes: {zones: ["*"]}}
YAML
  BENCH_KEY=$key "$tmp/tocsin" serve --no-workers --config "$tmp/$mode/tocsin.yaml" >"$tmp/$mode/tocsin.log" 2>&1 &
  pids+=($!)
  "$tmp/asynqpeer" --listen "127.0.0.1:$ap" --redis "127.0.0.1:$rp" --key "$key" 2>/dev/null &
  pids+=($!)
  "$tmp/asynqpeer" --bare --listen "127.0.0.1:$bp" 2>/dev/null &
  pids+=($!)
  waitport "$tp"; waitport "$ap"; waitport "$bp"
  declare -A rate p50 p99 errs
  for run in tocsin asynq bare; do
    case $run in tocsin) u=$tp ;; asynq) u=$ap ;; bare) u=$bp ;; esac
    out=$("$tmp/tocsin" loadtest ingest --url "http://127.0.0.1:$u" --key "$key" --zones town --senders $senders --duration "$dur" --json)
    read -r rate[$run] p50[$run] p99[$run] errs[$run] < <(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(round(r["accepted_per_second"]), r["latency"]["p50_ms"], r["latency"]["p99_ms"], r["errors"])' "$out")
  done
  for run in tocsin asynq bare; do
    pct=$(python3 -c "print(round(100*${rate[$run]}/max(${rate[bare]},1)))")
    echo "| $mode | $run | ${rate[$run]} | ${p50[$run]} | ${p99[$run]} | ${errs[$run]} | $pct % |"
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
done
echo
echo "$senders senders, $dur per run, $(nproc) cores, $(go version | cut -d' ' -f3), commit $(git rev-parse --short HEAD)"
