#!/usr/bin/env bash
# Scale-out figures (BENCHMARKS.md, "Scale-out"): the same ingest and SMS
# fan-out on one Redis and on a three-master Redis Cluster (both AOF,
# appendfsync always), with 1 and 3 gateway instances, every figure beside
# the ceiling from the same run (bare net/http for ingest, bare twilio-go
# for fan-out). Everything runs on this machine's cores: read the figures
# as the cost per alert and per delivery, not as capacity.
#
#   bash loadtest/scaleout.sh [RECIPIENTS] [DURATION]   (defaults 100000, 10s)
set -euo pipefail
cd "$(dirname "$0")/.."
people=${1:-100000}
dur=${2:-10s}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
command -v redis-server >/dev/null || { echo "scaleout: sudo apt-get install -y redis-server redis-tools" >&2; exit 1; }
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
waitport() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "scaleout: nothing on port $1" >&2; exit 1; }
redis() { # port dir [extra args]
  local p=$1 d=$2; shift 2; mkdir -p "$d"
  redis-server --port "$p" --bind 127.0.0.1 --dir "$d" --appendonly yes --appendfsync always --save "" --daemonize no "$@" >/dev/null &
  pids+=($!); waitport "$p"
}

cat > "$tmp/row.py" <<'PY'
import json, sys
what, topo = sys.argv[1], sys.argv[2]
if what == "ingest":
    t, b = json.loads(sys.argv[3]), json.loads(sys.argv[4])
    print(f"| {topo} | ingest, 16 senders, one principal | {t['accepted_per_second']:,.0f} alerts/s, p99 {t['latency']['p99_ms']:.1f} ms | bare net/http {b['accepted_per_second']:,.0f}/s |")
elif what == "multi":
    rs = [json.load(open(f)) for f in sys.argv[3:]]
    print(f"| {topo} | ingest, 4 principals × 4 senders | {sum(r['accepted_per_second'] for r in rs):,.0f} alerts/s, worst p99 {max(r['latency']['p99_ms'] for r in rs):.1f} ms | (bare net/http above) |")
else:
    f, n, people = json.loads(sys.argv[3])["figures"], sys.argv[4], int(sys.argv[5])
    print(f"| {topo} | {people:,} SMS, {n} instance(s) | {f['handed_per_s']:,.0f} SMS/s ({f['handed']:,.0f} handed), {f['redis_bytes_per_delivery']:.0f} B/delivery in Redis | bare twilio-go {f['bare_twilio_go_per_s']:,.0f}/s |")
PY
go build -o "$tmp/tocsin" ./cmd/tocsin
(cd loadtest/asynqpeer && go build -o "$tmp/asynqpeer" .)
key=bench-dispatch-key-000000001
mp=$(port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n' "$mp" > "$tmp/mosq.conf"
"$mosq" -c "$tmp/mosq.conf" >/dev/null 2>&1 & pids+=($!)
waitport "$mp"

single=$(port); redis "$single" "$tmp/single"
cluster=()
# A cluster node also listens on its port + 10000: keep ports below 55536.
lowport() { local p; p=$(port); while [ "$p" -gt 55000 ]; do p=$(port); done; echo "$p"; }
for i in 1 2 3; do p=$(lowport); redis "$p" "$tmp/c$i" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000; cluster+=("127.0.0.1:$p"); done
redis-cli --cluster create "${cluster[@]}" --cluster-yes >/dev/null
until redis-cli -p "${cluster[0]#*:}" cluster info | grep -q cluster_state:ok; do sleep 0.2; done
bp=$(port); "$tmp/asynqpeer" --bare --listen "127.0.0.1:$bp" 2>/dev/null & pids+=($!); waitport "$bp"

printf '| topology | run | figure | ceiling, same run |\n| --- | --- | --- | --- |\n'
for topo in single cluster; do
  if [ $topo = single ]; then addrs="127.0.0.1:$single"; yaddrs="\"127.0.0.1:$single\""; else addrs=$(IFS=,; echo "${cluster[*]}"); yaddrs=$(printf '"%s", ' "${cluster[@]}"); yaddrs=${yaddrs%, }; fi
  tp=$(port)
  cat > "$tmp/$topo.yaml" <<YAML
listen: 127.0.0.1:$tp
redis: {addrs: [$yaddrs], key_prefix: ingest$topo}
mqtt: {broker: "tcp://127.0.0.1:$mp", client_id: tocsin-scaleout-$topo}
zones: [{id: town}]
sirens: [{id: s1, zone: town}, {id: s2, zone: town}, {id: s3, zone: town}]
principals:
  - {id: ils, kind: dispatch, key_env: BENCH_KEY, scopes: {zones: ["*"]}, rate: 100000, burst: 1000000}
  - {id: ils-2, kind: dispatch, key_env: BENCH_KEY2, scopes: {zones: ["*"]}, rate: 100000, burst: 1000000}
  - {id: ils-3, kind: dispatch, key_env: BENCH_KEY3, scopes: {zones: ["*"]}, rate: 100000, burst: 1000000}
  - {id: ils-4, kind: dispatch, key_env: BENCH_KEY4, scopes: {zones: ["*"]}, rate: 100000, burst: 1000000}
YAML
  BENCH_KEY=$key BENCH_KEY2=${key}2 BENCH_KEY3=${key}3 BENCH_KEY4=${key}4 "$tmp/tocsin" serve --no-workers --config "$tmp/$topo.yaml" >"$tmp/$topo.log" 2>&1 & tpid=$!; pids+=($tpid)
  waitport "$tp"
  t=$("$tmp/tocsin" loadtest ingest --url "http://127.0.0.1:$tp" --key "$key" --zones town --senders 16 --duration "$dur" --json)
  b=$("$tmp/tocsin" loadtest ingest --url "http://127.0.0.1:$bp" --key "$key" --zones town --senders 16 --duration "$dur" --json)
  python3 "$tmp/row.py" ingest "$topo" "$t" "$b"
  # Four senders' principals at once (their alerts in four homes: on the
  # cluster, shards on different masters), 4 connections each.
  gens=()
  for i in 1 2 3 4; do
    k=$key; [ $i = 1 ] || k=$key$i
    "$tmp/tocsin" loadtest ingest --url "http://127.0.0.1:$tp" --key "$k" --zones town --senders 4 --duration "$dur" --json > "$tmp/multi$i.json" &
    gens+=($!)
  done
  wait "${gens[@]}"
  python3 "$tmp/row.py" multi "$topo" "$tmp"/multi?.json
  kill "$tpid"; wait "$tpid" 2>/dev/null || true
  # The fan-outs start from an empty Redis with a rewritten AOF: the ingest's
  # alerts and an AOF rewrite in the middle of a fan-out would be measured too.
  if [ $topo = single ]; then ports=("$single"); else ports=("${cluster[@]##*:}"); fi
  for n in 1 3; do
    for p in "${ports[@]}"; do
      redis-cli -p "$p" flushall >/dev/null; redis-cli -p "$p" bgrewriteaof >/dev/null
      until redis-cli -p "$p" info persistence | grep -q 'aof_rewrite_in_progress:0'; do sleep 0.2; done
    done
    f=$("$tmp/tocsin" loadtest fanout --redis "$addrs" --mqtt "tcp://127.0.0.1:$mp" --recipients "$people" --instances $n --send-for 60s --json)
    python3 "$tmp/row.py" fanout "$topo" "$f" "$n" "$people"
  done
done
echo
echo "$(nproc) cores, $(go version | cut -d' ' -f3), redis $(redis-server --version | cut -d' ' -f3 | cut -d= -f2), commit $(git rev-parse --short HEAD), $(date -u +%F)"
