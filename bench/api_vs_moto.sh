#!/usr/bin/env bash
# Control-plane requests/s, fleetkeyd vs moto's server (python3 -m moto.server), same client
# (bench/api_load.cpp: keep-alive, SigV4, one connection per thread), same operations.
# Usage: bench/api_vs_moto.sh   (after `make build`; N=2000 THREADS="1 4")
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/fleetkeyd.sh
LOAD=${LOAD:-build/release/bin/fk_api_load}
N=${N:-2000}
THREADS=${THREADS:-"1 4"}
work=$(mktemp -d /tmp/fk_bench_api.XXXXXX)
moto_port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
python3 -m moto.server -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
trap 'kill $fk_pid $moto_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
start_fleetkeyd "$work"
key=$(awk -F' = ' '/aws_access_key_id/ {print $2}' "$work/data/credentials")
secret=$(awk -F' = ' '/aws_secret_access_key/ {print $2}' "$work/data/credentials")
for _ in $(seq 50); do curl -s "http://127.0.0.1:$moto_port/" >/dev/null && break; sleep 0.2; done

rate() {  # endpoint op n threads [key secret]
  "$LOAD" "$@" | sed -E 's/.* = ([0-9]+)\/s.*/\1/'
}
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; moto $(python3 -c 'import moto; print(moto.__version__)'); N=$N"
echo "| operation | threads | fleetkeyd req/s | moto req/s | ratio |"
echo "|---|---|---|---|---|"
for op in create-thing describe-thing create-keys; do
  for t in $THREADS; do
    n=$N
    [[ $op == create-keys ]] && n=$((N / 4))  # moto makes RSA keys slowly
    fk=$(rate "$fk_api" "$op" "$n" "$t" "$key" "$secret")
    mo=$(rate "http://127.0.0.1:$moto_port" "$op" "$n" "$t")
    echo "| $op | $t | $fk | $mo | $(python3 -c "print(f'{$fk / $mo:.1f}x')") |"
  done
done
