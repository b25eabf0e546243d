#!/usr/bin/env bash
# Where fleetkeyd's memory per idle mTLS connection goes: fleetkeyd under heaptrack holding N1,
# then N2 idle connections (bench/mqtt_load.cpp idle); the heap at its peak, per allocation
# stack. The difference between the two runs divided by N2 - N1 is the cost of one connection
# (what the process holds whatever the count, e.g. the registry's caches, cancels out), split
# into the TLS library's allocations (frames of libgnutls, libssl, libcrypto) and fleetkeyd's
# own, with the largest of fleetkeyd's own by the function that made them.
# heaptrack sees malloc but not jemalloc's operator new, so this measures a fleetkeyd built with
# the system allocator (build/heap, made here when missing).
#   bench/idle_heap.sh [N1] [N2]        (default 1000 3000; EXTRA_TOML adds to the config)
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${1:-1000}
N2=${2:-3000}
top=$(mktemp -d /tmp/fk_idleheap_XXXX)
trap '[[ -n "${KEEP:-}" ]] || rm -rf "$top"' EXIT
ulimit -n 20000
source bench/fleetkeyd.sh
if [[ ! -x build/heap/bin/fleetkeyd ]]; then
  cmake -S . -B build/heap -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLEETKEY_JEMALLOC=OFF \
    -DFLEETKEY_BENCH=OFF -DFLEETKEY_BIN_DIR="$PWD/build/heap/bin" >/dev/null
  cmake --build build/heap --target fleetkeyd >/dev/null
fi

hold() {  # n: fleetkeyd under heaptrack holding n idle connections; leaves $top/n/stacks.txt
  local n=$1 work=$top/$1
  mkdir -p "$work"
  printf '[mqtt]\nmax_publishes_per_second = 0\n%s\n' "${EXTRA_TOML:-}" >"$work/fleetkeyd.toml"
  heaptrack -o "$work/ht" build/heap/bin/fleetkeyd --config "$work/fleetkeyd.toml" --data-dir "$work/data" \
    --mqtt-port 0 --api-port 0 --alpn-port -1 --quiet --log-level warn 2>"$work/fleetkeyd.log" >/dev/null &
  for _ in $(seq 300); do [[ -f "$work/data/endpoints.json" ]] && break; sleep 0.2; done
  fk_port=$(python3 -c "import json;print(json.load(open('$work/data/endpoints.json'))['mqtt']['port'])")
  fk_api=$(python3 -c "import json;print(json.load(open('$work/data/endpoints.json'))['api']['url'])")
  export AWS_SHARED_CREDENTIALS_FILE=$work/data/credentials AWS_CONFIG_FILE=$work/data/aws-config
  bench_device "$work"
  build/release/bin/fk_mqtt_load idle --port "$fk_port" --ca "$work/data/ca/root-ca.pem" \
    --cert "$work/dev.pem" --key "$work/dev.key" --connections "$n" --seconds 4 >"$work/idle.json" &
  lp=$!
  for _ in $(seq 600); do [[ -s "$work/idle.json" ]] && break; sleep 0.1; done
  cat "$work/idle.json"
  wait $lp || true
  # heaptrack's wrapper and fleetkeyd share the command line: stop every match, wait for all.
  pattern="build/heap/bin/fleetkeyd --config $work"
  pkill -TERM -f "$pattern" || true
  for _ in $(seq 100); do pgrep -f "$pattern" >/dev/null || break; sleep 0.2; done
  sleep 2
  heaptrack_print -f "$work/ht.zst" --print-flamegraph "$work/stacks.txt" \
    --flamegraph-cost-type peak >/dev/null 2>&1
}

hold "$N1"
hold "$N2"
python3 - "$N1" "$top/$N1/stacks.txt" "$N2" "$top/$N2/stacks.txt" <<'PY'
import collections, sys

def by_site(path):
    """Peak bytes by who allocated: the TLS library, or fleetkeyd's nearest own frame."""
    out = collections.Counter()
    for line in open(path):
        stack, _, cost = line.rstrip("\n").rpartition(" ")
        if not cost.isdigit():
            continue
        site = "other"
        for frame in reversed([f for f in stack.split(";") if f]):
            low = frame.lower()
            if "gnutls" in low or "libssl" in low or "libcrypto" in low or frame.startswith(
                    ("SSL_", "CRYPTO_", "EVP_", "OPENSSL_", "BUF_MEM")):
                site = "TLS library"
                break
            if "fk::" in frame or (".cpp" in frame and "/usr/include" not in frame):
                site = frame.split(" (")[0][:100]
                break
        out[site] += int(cost)
    return out

n1, a, n2, b = int(sys.argv[1]), by_site(sys.argv[2]), int(sys.argv[3]), by_site(sys.argv[4])
per = {k: (b[k] - a[k]) / (n2 - n1) for k in set(a) | set(b)}
total, tls = sum(per.values()), per.get("TLS library", 0.0)
print("heap per idle connection (peak, %d -> %d connections): %.0f B = TLS library %.0f B"
      " + fleetkeyd's own %.0f B" % (n1, n2, total, tls, total - tls))
for site, v in sorted(per.items(), key=lambda kv: -kv[1])[:16]:
    if site != "TLS library" and v >= 16:
        print("  %6.0f B  %s" % (v, site))
PY
