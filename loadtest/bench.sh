#!/usr/bin/env bash
# The load-generator half of `make bench`, everything on loopback, every
# figure beside a ceiling or a peer from the same run. For each Redis mode —
# as deploy/ ships it (AOF, appendfsync always) and with persistence off:
#
#  1. ingest: Tocsin (`tocsin serve --no-workers`: accept and store, like the
#     asynq peer, whose tasks nobody consumes either), the asynq peer (same
#     HTTP contract, asynq.Unique) against the same Redis, and a bare net/http
#     handler (the ceiling), through the same generator;
#  2. fanout: one SMS alert to 1,000,000 people, beside bare twilio-go;
#  and with AOF only (the production mode):
#  3. latency against offered load (senders 1..64), Tocsin and asynq;
#  4. siren-under-load (trigger -> siren command, idle and during a 1M fan-out),
#     retract (100,000 reached) and recover (an instance killed mid-fan-out).
#
#   bash loadtest/bench.sh [DURATION]      (default 10s per ingest run)
# Prints Markdown; BENCH_SMALL=1 runs everything at a tenth of the size.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10s}
senders=16
people=1000000
retract_people=100000
if [ -n "${BENCH_SMALL:-}" ]; then people=100000; retract_people=10000; fi
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
field() { python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(*[eval(e, {}, r) for e in sys.argv[2:]])' "$@"; }

go build -o "$tmp/tocsin" ./cmd/tocsin
(cd loadtest/asynqpeer && go build -o "$tmp/asynqpeer" .)
key=bench-dispatch-key-000000001
results="$tmp/results.jsonl"

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
  - {id: ils, kind: dispatch, key_env: BENCH_KEY, scopes: {zones: ["*"]}, rate: 100000, burst: 1000000}
YAML
  BENCH_KEY=$key "$tmp/tocsin" serve --no-workers --config "$tmp/$mode/tocsin.yaml" >"$tmp/$mode/tocsin.log" 2>&1 &
  tpid=$!
  pids+=($tpid)
  "$tmp/asynqpeer" --listen "127.0.0.1:$ap" --redis "127.0.0.1:$rp" --key "$key" 2>/dev/null &
  pids+=($!)
  "$tmp/asynqpeer" --bare --listen "127.0.0.1:$bp" 2>/dev/null &
  pids+=($!)
  waitport "$tp"; waitport "$ap"; waitport "$bp"
  for run in tocsin asynq bare; do
    case $run in tocsin) u=$tp ;; asynq) u=$ap ;; bare) u=$bp ;; esac
    out=$("$tmp/tocsin" loadtest ingest --url "http://127.0.0.1:$u" --key "$key" --zones town --senders $senders --duration "$dur" --json)
    echo "{\"mode\":\"$mode\",\"run\":\"$run\",\"senders\":$senders,\"r\":$out}" >> "$results"
  done
  if [ "$mode" = aof-always ]; then
    for n in 1 4 16 64; do
      for run in tocsin asynq; do
        case $run in tocsin) u=$tp ;; asynq) u=$ap ;; esac
        out=$("$tmp/tocsin" loadtest ingest --url "http://127.0.0.1:$u" --key "$key" --zones town --senders $n --duration 3s --json)
        echo "{\"mode\":\"$mode\",\"run\":\"curve-$run\",\"senders\":$n,\"r\":$out}" >> "$results"
      done
    done
  fi
  kill "$tpid"; wait "$tpid" 2>/dev/null || true
  stack=(--redis "127.0.0.1:$rp" --mqtt "tcp://127.0.0.1:$mp" --json)
  out=$("$tmp/tocsin" loadtest fanout "${stack[@]}" --recipients $people --send-for 30s)
  echo "{\"mode\":\"$mode\",\"run\":\"fanout\",\"r\":$out}" >> "$results"
  if [ "$mode" = aof-always ]; then
    "$tmp/tocsin" loadtest siren-under-load "${stack[@]}" --recipients $people --count 100 | while read -r line; do
      echo "{\"mode\":\"$mode\",\"run\":\"siren\",\"r\":$line}" >> "$results"
    done
    out=$("$tmp/tocsin" loadtest retract "${stack[@]}" --recipients $retract_people)
    echo "{\"mode\":\"$mode\",\"run\":\"retract\",\"r\":$out}" >> "$results"
    out=$("$tmp/tocsin" loadtest recover "${stack[@]}" --recipients $retract_people)
    echo "{\"mode\":\"$mode\",\"run\":\"recover\",\"r\":$out}" >> "$results"
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
done
python3 loadtest/benchtable.py "$results"
echo
echo "$(nproc) cores, $(go version | cut -d' ' -f3), $(redis-server --version | cut -d' ' -f3), commit $(git rev-parse --short HEAD), $(date -u +%F)"
