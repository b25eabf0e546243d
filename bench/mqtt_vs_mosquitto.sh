#!/usr/bin/env bash
# fleetkeyd vs Debian's Mosquitto 2.0, side by side in one run, with the same TLS setup
# (mutual TLS with fleetkey's CA, require_certificate, TCP_NODELAY) and the same load client
# (bench/mqtt_load.cpp). Prints a markdown table of figures and ratios for docs/performance.md.
# QoS 0 runs are saturation runs (publishers send as fast as the broker takes them), so their
# latency is queueing time; QoS 1 keeps 100 messages in flight per publisher.
#   bench/mqtt_vs_mosquitto.sh [SECONDS_PER_RUN] [IDLE_CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release/bin}
SECS=${1:-5}
IDLE=${2:-5000}
work=$(mktemp -d /tmp/fk_bench_XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
ulimit -n 20000 || true

source bench/fleetkeyd.sh
# AWS's per-connection limits (100 publishes/s, 512 KiB/s) are lifted: Mosquitto has none. IoT policies are
# enforced, as shipped (bench/authz_overhead.sh measures what they cost).
start_fleetkeyd "$work" $'[mqtt]\nmax_publishes_per_second = 0\nmax_bytes_per_second = 0'
bench_device "$work"
ca="$work/data/ca"
cat "$ca/root-ca.pem" "$ca/issuing-ca.pem" >"$work/ca-bundle.pem"
start_mosquitto "$work" "max_keepalive 1200
max_inflight_messages 100"

load() {  # port args...
  local port=$1
  shift
  "$BIN/fk_mqtt_load" "$1" --port "$port" --ca "$ca/root-ca.pem" --cert "$work/dev.pem" \
    --key "$work/dev.key" "${@:2}"
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
field() { python3 -c "import json,sys;print(json.loads(sys.argv[1])['$2'])" "$1"; }

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(mosquitto -h | head -1), ${SECS}s per run"
echo
echo "| scenario | fleetkeyd | mosquitto | ratio |"
echo "|---|---|---|---|"
row() {  # name fk mq
  python3 -c "import sys; f=float(sys.argv[2]); m=float(sys.argv[3]); print('| %s | %s | %s | %.2f |' % (sys.argv[1], sys.argv[2], sys.argv[3], f/m if m else 0))" "$@"
}
# Idle connections first, on fresh processes: resident memory per connection.
for name in fleetkeyd mosquitto; do
  if [[ $name == fleetkeyd ]]; then pid=$fk_pid; port=$fk_port; else pid=$mq_pid; port=$mq_port; fi
  before=$(rss_kb $pid)
  load "$port" idle --connections "$IDLE" --seconds 3 >"$work/idle-$name.json" &
  lp=$!
  for _ in $(seq 600); do [[ -s "$work/idle-$name.json" ]] && break; sleep 0.1; done
  sleep 1
  after=$(rss_kb $pid)
  wait $lp || true
  connected=$(field "$(cat "$work/idle-$name.json")" connected)
  eval "${name}_per_conn=\$(( (after - before) * 1024 / (connected > 0 ? connected : 1) ))"
  eval "${name}_connected=$connected"
done
row "idle TLS connections held (of $IDLE)" "$fleetkeyd_connected" "$mosquitto_connected"
row "memory per idle TLS connection (bytes, lower is better)" "$fleetkeyd_per_conn" "$mosquitto_per_conn"
# Connects: the rate, and the server's own CPU per connect (utime+stime from /proc, in us):
# the load client runs OpenSSL's client side on the same 2 cores and costs more per connect
# than either server, so the rate is mostly the client's; CPU per connect is what the server
# spends.
hz=$(getconf CLK_TCK)
connects() {  # pid port args...: prints "connects/s us-per-connect"
  local pid=$1 port=$2 before out
  before=$(cpu_ticks "$pid")
  out=$(load "$port" connect "${@:3}")
  python3 -c "import json,sys; d=json.loads(sys.argv[1]); t=int(sys.argv[3])-int(sys.argv[2]); print(d['connects_per_s'], round(t*1e6/int(sys.argv[4])/max(d['connects'],1)))" \
    "$out" "$before" "$(cpu_ticks "$pid")" "$hz"
}
for c in 1 64 256; do
  for resume in "" "--resume"; do
    read -r fk_rate fk_us < <(connects "$fk_pid" "$fk_port" --concurrency $c --seconds "$SECS" $resume)
    read -r mq_rate mq_us < <(connects "$mq_pid" "$mq_port" --concurrency $c --seconds "$SECS" $resume)
    label="concurrency $c${resume:+ (session resumption)}"
    row "mTLS connects/s, $label" "$fk_rate" "$mq_rate"
    row "  server CPU per connect (us, lower is better), $label" "$fk_us" "$mq_us"
  done
done
for scenario in "1 1 --seconds" "16 16 --pairs --seconds" "1 100 --seconds"; do
  set -- $scenario
  for qos in 0 1; do
    for size in 64 1024; do
      fk=$(load "$fk_port" pubsub --publishers $1 --subscribers $2 --qos $qos --size $size ${@:3} "$SECS")
      mq=$(load "$mq_port" pubsub --publishers $1 --subscribers $2 --qos $qos --size $size ${@:3} "$SECS")
      row "pub/sub $1->$2 QoS $qos ${size} B: messages delivered/s" \
        "$(field "$fk" received_per_s)" "$(field "$mq" received_per_s)"
      echo "|   latency p50 / p99 (ms) | $(field "$fk" p50_ms) / $(field "$fk" p99_ms) | $(field "$mq" p50_ms) / $(field "$mq" p99_ms) | |"
    done
  done
done
