#!/usr/bin/env bash
# Issue 18: a reconnect storm. DEVICES devices (default 19,000: this machine allows 20,000
# descriptors per process) connect with mutual TLS; then every connection is cut at once (RST,
# as a network drop or a load balancer restart does) and each device reconnects after a uniform
# 0..JITTER s delay, retrying a failure with exponential backoff (1, 2, 4 ... 30 s, jittered),
# offering its TLS session (tickets) as device SDKs do. For each server: the time until 50, 90,
# 99 and 100% are back, every failure the devices saw (by kind), the server's peak RSS during
# the storm and its own CPU for it (/proc), and what the server logged as refused or timed out.
#   bench/reconnect_storm.sh [DEVICES] [JITTER_SECONDS]
#   SERVERS="fk-gnutls-true fk-openssl-false mosquitto" (the default) picks the servers.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release/bin}
DEVICES=${1:-19000}
JITTER=${2:-10}
work=$(mktemp -d /tmp/fk_storm_XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
ulimit -n 20000
source bench/fleetkeyd.sh
hz=$(getconf CLK_TCK)

bench_ca_and_device "$work"
ca="$work/data/ca"

storm() {  # name pid port: runs the storm, samples the server, writes $work/NAME.json
  local name=$1 pid=$2 port=$3
  "$BIN/fk_mqtt_load" storm --port "$port" --ca "$ca/root-ca.pem" --cert "$work/dev.pem" \
    --key "$work/dev.key" --connections "$DEVICES" --jitter "$JITTER" --resume --seconds 120 \
    >"$work/$name.out" 2>"$work/$name.err" &
  local lp=$! peak=0 rss cpu0="" cpu1
  while kill -0 $lp 2>/dev/null; do
    if [[ -z "$cpu0" ]] && grep -q "cutting" "$work/$name.err" 2>/dev/null; then
      cpu0=$(cpu_ticks "$pid")
      peak=0
    fi
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    ((rss > peak)) && peak=$rss
    sleep 0.1
  done
  cpu1=$(cpu_ticks "$pid")
  grep "storm:" "$work/$name.err" | sed "s/^/# $name: /" >&2
  python3 - "$work/$name.out" "$peak" "${cpu0:-$cpu1}" "$cpu1" "$hz" "$DEVICES" >"$work/$name.json" <<'PY'
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
d["peak_rss_mb"] = round(int(sys.argv[2]) / 1024, 1)
d["server_cpu_s"] = round((int(sys.argv[4]) - int(sys.argv[3])) / int(sys.argv[5]), 2)
d["server_cpu_us_per_reconnect"] = round(d["server_cpu_s"] * 1e6 / max(d["back"], 1))
print(json.dumps(d))
PY
}

run_fleetkeyd() {  # engine tickets
  start_tls_fleetkeyd "$work" "$1" "$2" "$work/fk-$1-$2.log"
  local pid=$fk_pid
  storm "fk-$1-$2" "$pid" "$fk_port"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  # What the server refused or cut, by log event.
  python3 - "$work/fk-$1-$2.log" >"$work/fk-$1-$2.refused" <<'PY'
import collections, json, sys
c = collections.Counter()
for line in open(sys.argv[1], errors="replace"):
    for ev in ("tls.handshake_timeout", "tls.handshake_failed", "broker.connection_refused",
               "broker.connect_throttled"):
        if ev in line:
            c[ev] += 1
print(json.dumps(dict(c)))
PY
}

SERVERS=${SERVERS:-fk-gnutls-true fk-openssl-false mosquitto}
for s in $SERVERS; do
  [[ $s == fk-* ]] || continue
  IFS=- read -r _ engine tickets <<<"$s"
  run_fleetkeyd "$engine" "$tickets"
done

if [[ " $SERVERS " == *" mosquitto "* ]]; then
start_mosquitto "$work" "max_keepalive 1200"
storm mosquitto "$mq_pid" "$mq_port"
echo "{}" >"$work/mosquitto.refused"
fi

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $DEVICES devices, reconnect jitter 0-${JITTER} s, load client on the same cores"
echo
echo "| server | back | resumed | 50% / 90% / 99% / 100% back (s) | failures seen by devices | refused or cut (server log) | peak RSS in the storm (MB) | server CPU per reconnect (us) |"
echo "|---|---|---|---|---|---|---|---|"
for name in $SERVERS; do
  python3 - "$work/$name.json" "$work/$name.refused" "$name" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
r = json.load(open(sys.argv[2]))
name = sys.argv[3]
if name == "mosquitto":
    label = "mosquitto 2.0"
else:
    _, engine, tickets = name.split("-")
    label = "fleetkeyd (%s, tickets %s)" % ({"gnutls": "GnuTLS", "openssl": "OpenSSL"}[engine],
                                           "on" if tickets == "true" else "off")
print("| %s | %d of %d | %d | %.1f / %.1f / %.1f / %.1f | %s | %s | %.0f | %d |" % (
    label, d["back"], d["devices"], d["resumed"], d["t50_s"], d["t90_s"], d["t99_s"],
    d["t100_s"], json.dumps(d["failures"]) if d["failures"] else "none",
    json.dumps(r) if r else "none", d["peak_rss_mb"], d["server_cpu_us_per_reconnect"]))
PY
done
