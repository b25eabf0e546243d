#!/usr/bin/env bash
# Runs the benchmarks with their comparisons and prints the figures for docs/performance.md.
# Usage: bench/run.sh [ca|registry|devices|all]   (after `make build`)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/release/bin
what=${1:-all}
export FK_BENCH=1

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, $(openssl version)"

if [[ $what == all || $what == ca ]]; then
  echo "## openssl speed (the crypto-bound reference)"
  speed=$(openssl speed -seconds 3 ecdsap256 rsa2048 2>/dev/null)
  echo "$speed" | grep -E '^ *(rsa 2048|256 bits ecdsa)'
  rsa_verify=$(echo "$speed" | awk '/^rsa 2048 bits/ {print $NF}')
  ec_sign=$(echo "$speed" | awk '/^ *256 bits ecdsa/ {print $(NF-1)}')
  ec_verify=$(echo "$speed" | awk '/^ *256 bits ecdsa/ {print $NF}')
  echo "## CA: certificates issued per second"
  json=$(mktemp)
  $BIN/fk_ca_bench --benchmark_out="$json" --benchmark_out_format=json \
    --benchmark_min_time=2 >/dev/null
  python3 - "$json" "$ec_sign" "$ec_verify" "$rsa_verify" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
ec_sign, ec_verify, rsa_verify = map(float, sys.argv[2:5])
# Crypto-bound limit of one issuance from a CSR on one core: verify the CSR's signature, then
# sign the certificate with the CA's P-256 key.
bound = {"P256": 1 / (1 / ec_verify + 1 / ec_sign), "RSA2048": 1 / (1 / rsa_verify + 1 / ec_sign)}
print("| benchmark | threads | certs/s | crypto-bound certs/s per core | ratio |")
print("|---|---|---|---|---|")
for b in data["benchmarks"]:
    name = b["name"].split("/")[0].replace("BM_", "")
    threads = b.get("threads", 1)
    rate = b["items_per_second"]
    key = "P256" if name.endswith("P256") else ("RSA2048" if name.endswith("RSA2048") else None)
    if key and name.startswith("IssueFromCsr_"):
        limit = bound[key] * threads
        print(f"| {name} | {threads} | {rate:,.0f} | {limit:,.0f} | {rate / limit:.2f} |")
    else:
        print(f"| {name} | {threads} | {rate:,.0f} | - | - |")
PY
  rm -f "$json"
fi

if [[ $what == all || $what == registry ]]; then
  echo "## Registry: provisioning transactions per second on SQLite, durable (synchronous=FULL)"
  json=$(mktemp)
  $BIN/fk_registry_bench --benchmark_out="$json" --benchmark_out_format=json >/dev/null
  python3 - "$json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
print("| benchmark | txn/s | txn per commit (fsync) |")
print("|---|---|---|")
for b in data["benchmarks"]:
    print(f"| {b['name'].replace('BM_', '')} | {b['items_per_second']:,.0f} | {b.get('txn_per_commit', 0):.1f} |")
PY
  rm -f "$json"
fi

if [[ $what == all || $what == devices ]]; then
  echo "## fleetkey create-devices: devices per minute"
  ./bench/create_devices.sh | tail -n +2
fi
