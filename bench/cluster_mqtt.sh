#!/usr/bin/env bash
# Issue 17's benchmarks, on this machine (loopback; the load generator, three fleetkeyd nodes,
# three nats-servers, PostgreSQL and haproxy share the cores):
#   1. pub/sub QoS 0 and QoS 1 (one publisher, one subscriber, 64 B): a single node (no
#      [cluster]) vs three nodes with publisher and subscriber on the same node and on different
#      nodes: delivered msg/s, p50/p99 latency, the publisher's PUBACK p50/p99, and the servers'
#      CPU per delivered message (all fleetkeyd and nats-server processes, from /proc);
#   2. CLIENTS (default 3,000) devices held through haproxy, node 1 killed with SIGKILL: the
#      time until 99% are connected again (jittered 0-1 s reconnects; mqtt_load hold);
#   3. the revocation delay across nodes (node 2's 200 -> the close on node 3) while a QoS 1
#      cross-node pub/sub load runs.
#   bench/cluster_mqtt.sh [SECONDS_PER_RUN] [CLIENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release/bin}
SECS=${1:-5}
CLIENTS=${2:-3000}
work=$(mktemp -d /tmp/fk_clustermqtt_XXXX)
chmod 0755 "$work"
trap 'kill $(jobs -p) 2>/dev/null || true; scripts/cluster.sh down "$work/cluster" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
ulimit -n 20000 || true
hz=$(getconf CLK_TCK)
source bench/fleetkeyd.sh
NOLIMITS=$'max_publishes_per_second = 0\nmax_bytes_per_second = 0'

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, ${SECS}s per run"
echo
echo "## 1. Pub/sub: single node vs three nodes (same node / different nodes)"
echo
echo "| setup | QoS | delivered msg/s | p50 ms | p99 ms | PUBACK p50 ms | PUBACK p99 ms | server CPU us per message |"
echo "|---|---|---|---|---|---|---|---|"
ticks() { local t=0; for p in "$@"; do [[ -r /proc/$p/stat ]] && t=$((t + $(cpu_ticks "$p"))); done; echo $t; }
pubsub() {  # name pub_port sub_port qos pids...
  local name=$1 pp=$2 sp=$3 q=$4
  shift 4
  local before after
  before=$(ticks "$@")
  "$BIN/fk_mqtt_load" pubsub --port "$pp" --sub-port "$sp" --ca "$ca" --cert "$dev.pem" \
    --key "$dev.key" --publishers 1 --subscribers 1 --pairs --qos "$q" --size 64 \
    --seconds "$SECS" >"$work/pubsub.json"
  after=$(ticks "$@")
  python3 - "$work/pubsub.json" "$name" "$q" "$((after - before))" "$hz" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
cpu_us = int(sys.argv[4]) / int(sys.argv[5]) * 1e6 / max(r["received"], 1)
ack = ("%.2f | %.2f" % (r["puback_p50_ms"], r["puback_p99_ms"])) if r["qos"] == 1 else "- | -"
print("| %s | %s | %.0f | %.2f | %.2f | %s | %.1f |" % (sys.argv[2], sys.argv[3],
      r["received_per_s"], r["p50_ms"], r["p99_ms"], ack, cpu_us))
PY
}

start_fleetkeyd "$work/single" "[mqtt]"$'\n'"$NOLIMITS"
bench_device "$work/single"
ca="$work/single/data/ca/root-ca.pem"
dev="$work/single/dev"
for q in 0 1; do pubsub "single node" "$fk_port" "$fk_port" "$q" "$fk_pid"; done
kill "$fk_pid"
wait "$fk_pid" 2>/dev/null || true

MQTT_TOML=$NOLIMITS scripts/cluster.sh up "$work/cluster" >/dev/null
ep() { python3 -c "import json;print(json.load(open('$work/cluster/node-$1/data/endpoints.json'))$2)"; }
fk_api=$(ep 1 "['api']['url']")
export AWS_SHARED_CREDENTIALS_FILE=$(ep 1 "['credentials_file']") AWS_CONFIG_FILE=$(ep 1 "['aws_config_file']")
bench_device "$work/cluster"
ca=$(ep 1 "['root_ca']")
dev="$work/cluster/dev"
servers() {
  for n in 1 2 3; do cat "$work/cluster/node-$n/pid" "$work/cluster/nats/n$n/pid" 2>/dev/null; done
}
for q in 0 1; do
  pubsub "3 nodes, same node" "$(ep 1 "['mqtt']['port']")" "$(ep 1 "['mqtt']['port']")" "$q" $(servers)
  pubsub "3 nodes, different nodes" "$(ep 1 "['mqtt']['port']")" "$(ep 2 "['mqtt']['port']")" "$q" $(servers)
done

echo
echo "## 2. Node 1 killed with $CLIENTS devices connected through haproxy"
echo
lb=$(python3 -c "import json;print(json.load(open('$work/cluster/cluster.json'))['mqtt']['port'])")
"$BIN/fk_mqtt_load" hold --port "$lb" --ca "$ca" --cert "$dev.pem" --key "$dev.key" \
  --connections "$CLIENTS" --seconds 120 >"$work/hold.jsonl" &
hold=$!
for _ in $(seq 1200); do
  last=$(tail -1 "$work/hold.jsonl" 2>/dev/null || true)
  [[ -n "$last" ]] && [[ $(python3 -c "import json,sys;print(json.loads(sys.argv[1])['connected'])" "$last") -ge $CLIENTS ]] && break
  sleep 0.1
done
sleep 1
kill_line=$(wc -l <"$work/hold.jsonl")
kill -KILL "$(cat "$work/cluster/node-1/pid")"
sleep 30
kill "$hold" 2>/dev/null || true
wait "$hold" 2>/dev/null || true
python3 - "$work/hold.jsonl" "$kill_line" "$CLIENTS" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
k, n = int(sys.argv[2]), int(sys.argv[3])
t_kill = lines[k - 1]["t_ms"]
low = min(l["connected"] for l in lines[k:])
back = next((l["t_ms"] for l in lines[k:] if l["connected"] >= 0.99 * n and
             any(m["connected"] < 0.99 * n for m in lines[k:] if m["t_ms"] <= l["t_ms"])), None)
print("| devices | connected after the kill (lowest) | dropped | time until 99% connected again |")
print("|---|---|---|---|")
print("| %d | %d | %d | %s |" % (n, low, n - low,
      "%.1f s" % ((back - t_kill) / 1000.0) if back is not None else "not within 30 s"))
PY

echo
echo "## 3. Revocation on node 2 -> close on node 3, under a cross-node QoS 1 load"
echo
n=${REVOCATIONS:-50}
FLEETKEY=${FLEETKEY:-build/bin/fleetkey}
"$FLEETKEY" --data-dir "$work/cluster/node-2/data" create-devices --prefix rev- --from 1 \
  --to "$n" --out "$work/rev" --no-progress --parallel 4 >/dev/null
"$BIN/fk_mqtt_load" pubsub --port "$(ep 2 "['mqtt']['port']")" --sub-port "$(ep 3 "['mqtt']['port']")" \
  --ca "$ca" --cert "$dev.pem" --key "$dev.key" --publishers 2 --subscribers 2 --pairs --qos 1 \
  --size 64 --seconds 600 >"$work/bg.json" 2>/dev/null &
bg=$!
sleep 2
/usr/bin/python3 bench/revocation_delay.py "$work" "$n" "$(ep 3 "['mqtt']['port']")" \
  "$(ep 2 "['api']['url']")" "$ca" "$FLEETKEY"
kill "$bg" 2>/dev/null || true
