#!/usr/bin/env bash
# What IoT policy enforcement costs the broker: the same load (bench/mqtt_load.cpp) against a
# fleetkeyd with policies enforced (a typical device policy: Connect, Publish/Receive and
# Subscribe under bench/, one Deny) and one with [mqtt] enforce_policies = false, side by side
# in one run. Each scenario runs twice on each (on, off, off, on); the better run counts.
#   bench/authz_overhead.sh [SECONDS_PER_RUN]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release/bin}
SECS=${1:-5}
work=$(mktemp -d /tmp/fk_authz_XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
ulimit -n 20000 || true
source bench/fleetkeyd.sh

start_fleetkeyd "$work/on" $'[mqtt]\nmax_publishes_per_second = 0\nmax_bytes_per_second = 0'
on_port=$fk_port
bench_device "$work/on"
start_fleetkeyd "$work/off" $'[mqtt]\nmax_publishes_per_second = 0\nmax_bytes_per_second = 0\nenforce_policies = false'
off_port=$fk_port
bench_device "$work/off"

load() {  # dir port args...
  "$BIN/fk_mqtt_load" "$3" --port "$2" --ca "$1/data/ca/root-ca.pem" --cert "$1/dev.pem" \
    --key "$1/dev.key" "${@:4}"
}
best() {  # field json json
  python3 -c "import json,sys;print(max(json.loads(a)['$1'] for a in sys.argv[1:]))" "${@:2}"
}
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, ${SECS}s per run, best of 2"
echo
echo "| scenario | policies enforced | enforcement off | ratio |"
echo "|---|---|---|---|"
row() {
  python3 -c "import sys; a=float(sys.argv[2]); b=float(sys.argv[3]); print('| %s | %.0f | %.0f | %.3f |' % (sys.argv[1], a, b, a/b if b else 0))" "$@"
}
for scenario in "1 1 --seconds" "16 16 --pairs --seconds" "1 100 --seconds"; do
  set -- $scenario
  for qos in 0 1; do
    args=(pubsub --publishers $1 --subscribers $2 --qos $qos --size 64 "${@:3}" "$SECS")
    on1=$(load "$work/on" "$on_port" "${args[@]}")
    off1=$(load "$work/off" "$off_port" "${args[@]}")
    off2=$(load "$work/off" "$off_port" "${args[@]}")
    on2=$(load "$work/on" "$on_port" "${args[@]}")
    row "pub/sub $1->$2 QoS $qos 64 B: messages delivered/s" \
      "$(best received_per_s "$on1" "$on2")" "$(best received_per_s "$off1" "$off2")"
  done
done
for c in 64; do
  on1=$(load "$work/on" "$on_port" connect --concurrency $c --seconds "$SECS" --resume)
  off1=$(load "$work/off" "$off_port" connect --concurrency $c --seconds "$SECS" --resume)
  row "mTLS connects/s, concurrency $c (session resumption)" \
    "$(best connects_per_s "$on1")" "$(best connects_per_s "$off1")"
done
