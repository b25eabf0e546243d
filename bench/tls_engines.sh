#!/usr/bin/env bash
# Issue 18: the TLS engine and the session-ticket policy chosen by measurement. In one run,
# Debian's Mosquitto 2.0 (OpenSSL 3.0, its default tickets) and fleetkeyd on each engine with
# tickets off and on, the same load client (bench/mqtt_load.cpp, OpenSSL client side):
#   - resident memory per idle mutual-TLS connection (IDLE connections held, fresh processes);
#   - server CPU per full mTLS connect (TCP + TLS + CONNECT/CONNACK + authorization) at
#     concurrency 64, and per resumed connect, from /proc utime+stime (the load client shares
#     the 2 cores, so the rate is mostly the client's).
# Prints a markdown table with each figure's ratio to Mosquitto's, for docs/performance.md.
#   bench/tls_engines.sh [SECONDS_PER_RUN] [IDLE_CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release/bin}
SECS=${1:-5}
IDLE=${2:-5000}
CONC=${CONC:-64}
work=$(mktemp -d /tmp/fk_tlsbench_XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
ulimit -n 20000 || true
source bench/fleetkeyd.sh
hz=$(getconf CLK_TCK)

# One fleetkeyd makes the CA and the device; every fleetkeyd below shares its data folder.
bench_ca_and_device "$work"
ca="$work/data/ca"

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
load() {  # port mode args...
  "$BIN/fk_mqtt_load" "$2" --port "$1" --ca "$ca/root-ca.pem" --cert "$work/dev.pem" \
    --key "$work/dev.key" "${@:3}"
}
idle_bytes() {  # pid port: bytes of RSS per idle connection
  local before after out
  before=$(rss_kb "$1")
  load "$2" idle --connections "$IDLE" --seconds 3 >"$work/idle.json" &
  local lp=$!
  for _ in $(seq 600); do [[ -s "$work/idle.json" ]] && break; sleep 0.1; done
  sleep 1
  after=$(rss_kb "$1")
  wait $lp || true
  python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['connected']; print((int(sys.argv[3])-int(sys.argv[2]))*1024//max(c,1), c)" \
    "$work/idle.json" "$before" "$after"
}
connect_us() {  # pid port [--resume]: server CPU us per connect, connects/s, resumed share
  local before out
  before=$(cpu_ticks "$1")
  out=$(load "$2" connect --concurrency "$CONC" --seconds "$SECS" ${3:-})
  python3 -c "import json,sys; d=json.loads(sys.argv[1]); t=int(sys.argv[3])-int(sys.argv[2]); n=max(d['connects'],1); print(round(t*1e6/int(sys.argv[4])/n), d['connects_per_s'], round(100*d['resumed']/n))" \
    "$out" "$before" "$(cpu_ticks "$1")" "$hz"
}
measure() {  # name pid port: one table row's figures into $work/NAME.txt
  read -r bytes held < <(idle_bytes "$2" "$3")
  read -r full rate _ < <(connect_us "$2" "$3")
  read -r resumed rrate share < <(connect_us "$2" "$3" --resume)
  echo "$bytes $held $full $rate $resumed $rrate $share" >"$work/$1.txt"
}

start_mosquitto "$work"
measure mosquitto "$mq_pid" "$mq_port"
kill "$mq_pid"

configs=("openssl false" "openssl true" "gnutls false" "gnutls true")
for cfg in "${configs[@]}"; do
  set -- $cfg
  start_tls_fleetkeyd "$work" "$1" "$2" "$work/fk-$1-$2.log"
  pid=$fk_pid
  measure "fk-$1-$2" "$pid" "$fk_port"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(mosquitto -h | head -1), ${SECS}s per connect run, concurrency $CONC, $IDLE idle connections"
echo
echo "| server | bytes per idle mTLS connection | ratio | CPU per full connect (us) | ratio | connects/s | CPU per resumed connect (us) | ratio | resumed | connects/s |"
echo "|---|---|---|---|---|---|---|---|---|---|"
python3 - "$work" "${configs[@]}" <<'PY'
import sys
w = sys.argv[1]
def read(name):
    return [float(x) for x in open("%s/%s.txt" % (w, name)).read().split()]
mq = read("mosquitto")
rows = [("mosquitto 2.0 (OpenSSL, its default tickets)", mq)]
for cfg in sys.argv[2:]:
    engine, tickets = cfg.split()
    rows.append(("fleetkeyd %s, tickets %s" % (engine, "on" if tickets == "true" else "off"),
                 read("fk-%s-%s" % (engine, tickets))))
for name, r in rows:
    b, held, full, rate, res, rrate, share = r
    print("| %s | %d (%d held) | %.2f | %d | %.2f | %d | %d | %.2f | %d%% | %d |" % (
        name, b, held, b / mq[0], full, full / mq[2], rate, res, res / mq[4], share, rrate))
PY
