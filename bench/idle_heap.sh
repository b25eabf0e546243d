#!/usr/bin/env bash
# Where fleetkeyd's memory per idle mTLS connection goes: fleetkeyd under heaptrack holding N
# idle connections (bench/mqtt_load.cpp idle), then the heap at its peak split into OpenSSL's
# allocations and the rest. heaptrack sees malloc but not jemalloc's operator new, so this
# measures a fleetkeyd built with the system allocator (build/heap, made here when missing).
#   bench/idle_heap.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
work=$(mktemp -d /tmp/fk_idleheap_XXXX)
trap '[[ -n "${KEEP:-}" ]] || rm -rf "$work"' EXIT
ulimit -n 20000
source bench/fleetkeyd.sh
if [[ ! -x build/heap/bin/fleetkeyd ]]; then
  cmake -S . -B build/heap -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLEETKEY_JEMALLOC=OFF \
    -DFLEETKEY_BENCH=OFF -DFLEETKEY_BIN_DIR="$PWD/build/heap/bin" >/dev/null
  cmake --build build/heap --target fleetkeyd >/dev/null
fi
printf '[mqtt]\nmax_publishes_per_second = 0\n%s\n' "${EXTRA_TOML:-}" >"$work/fleetkeyd.toml"
heaptrack -o "$work/ht" build/heap/bin/fleetkeyd --config "$work/fleetkeyd.toml" --data-dir "$work/data" \
  --mqtt-port 0 --api-port 0 --alpn-port -1 --quiet --log-level warn 2>"$work/fleetkeyd.log" >/dev/null &
for _ in $(seq 300); do [[ -f "$work/data/endpoints.json" ]] && break; sleep 0.2; done
fk_port=$(python3 -c "import json;print(json.load(open('$work/data/endpoints.json'))['mqtt']['port'])")
fk_api=$(python3 -c "import json;print(json.load(open('$work/data/endpoints.json'))['api']['url'])")
export AWS_SHARED_CREDENTIALS_FILE=$work/data/credentials AWS_CONFIG_FILE=$work/data/aws-config
bench_device "$work"
build/release/bin/fk_mqtt_load idle --port "$fk_port" --ca "$work/data/ca/root-ca.pem" \
  --cert "$work/dev.pem" --key "$work/dev.key" --connections "$N" --seconds 4 >"$work/idle.json" &
lp=$!
for _ in $(seq 600); do [[ -s "$work/idle.json" ]] && break; sleep 0.1; done
cat "$work/idle.json"
wait $lp || true
# heaptrack's wrapper and fleetkeyd share the command line: stop every match, wait for all.
pattern="build/heap/bin/fleetkeyd --config $work"
pkill -TERM -f "$pattern" || true
for _ in $(seq 100); do pgrep -f "$pattern" >/dev/null || break; sleep 0.2; done
sleep 2
heaptrack_print -f "$work/ht.zst" --print-peaks 1 --print-allocators 0 --print-leaks 0 \
  --print-temporary 0 --peak-limit 1000 --sub-peak-limit 0 2>/dev/null |
  sed -n '/PEAK MEMORY CONSUMERS/,$p' |
  awk '/peak memory consumed over/ {s=$1; getline; print s, $1}' >"$work/peaks.txt"
python3 - "$N" "$work/peaks.txt" <<'PY'
import sys
n = int(sys.argv[1])
unit = {"K": 1e3, "M": 1e6, "G": 1e9}
def size(s):
    s = s.rstrip("B")
    return float(s[:-1]) * unit[s[-1]] if s[-1] in unit else float(s)
total = ossl = 0.0
for line in open(sys.argv[2]):
    sz, fn = line.split()[:2]
    v = size(sz)
    total += v
    # OpenSSL's allocators, and its frames without symbols (Debian's libssl/libcrypto)
    if fn.startswith(("CRYPTO_", "BUF_MEM", "OPENSSL_", "ASN1_", "BN_", "EVP_", "0x7")):
        ossl += v
print("heap at peak: %.1f MB = %.1f KB per connection: OpenSSL %.1f KB, the rest %.1f KB"
      % (total / 1e6, total / n / 1e3, ossl / n / 1e3, (total - ossl) / n / 1e3))
PY
