#!/usr/bin/env bash
# Devices per minute made by `fleetkey create-devices` (plain key files, and PKCS#12 bundles),
# against the article's way: a shell loop around the aws CLI (create-thing,
# create-keys-and-certificate, attach-policy, attach-thing-principal) on the same fleetkeyd.
# Usage: bench/create_devices.sh   (after `make build`; N=2000 PARALLEL=4 AWS_LOOP_N=20)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/fleetkeyd.sh
FLEETKEY=${FLEETKEY:-build/bin/fleetkey}
N=${N:-2000}
PARALLEL=${PARALLEL:-4}
AWS_LOOP_N=${AWS_LOOP_N:-20}
work=$(mktemp -d /tmp/fk_bench_devices.XXXXXX)
trap 'kill $fk_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
start_fleetkeyd "$work"
export FLEETKEY_DATA_DIR=$work/data

per_minute() {  # count seconds
  python3 -c "import sys; print(f'{int(sys.argv[1]) / float(sys.argv[2]) * 60:,.0f}')" "$1" "$2"
}
run_batch() {  # label extra-args...
  local label=$1
  shift
  local t0 t1
  t0=$(date +%s.%N)
  "$FLEETKEY" create-devices --prefix "$label-" --from 1 --to "$N" --out "$work/$label" \
    --parallel "$PARALLEL" --no-progress "$@" >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; N=$N, --parallel $PARALLEL"
plain=$(run_batch plain)
bundle=$(run_batch bundle --bundle pkcs12)
# The article's factory script: one aws CLI process per call, four calls per device.
aws iot create-policy --endpoint-url "$fk_api" --policy-name loop-device \
  --policy-document "$BENCH_POLICY" >/dev/null
t0=$(date +%s.%N)
for i in $(seq 1 "$AWS_LOOP_N"); do
  aws iot create-thing --endpoint-url "$fk_api" --thing-name "loop-$i" >/dev/null
  arn=$(aws iot create-keys-and-certificate --set-as-active --endpoint-url "$fk_api" \
    --query certificateArn --output text)
  aws iot attach-policy --endpoint-url "$fk_api" --policy-name loop-device --target "$arn"
  aws iot attach-thing-principal --endpoint-url "$fk_api" --thing-name "loop-$i" --principal "$arn"
done
t1=$(date +%s.%N)
loop=$(python3 -c "print(f'{$t1 - $t0:.2f}')")

echo "| how | devices | seconds | devices/min | vs aws CLI loop |"
echo "|---|---|---|---|---|"
loop_rate=$(python3 -c "print($AWS_LOOP_N / $loop * 60)")
for row in "fleetkey create-devices:$N:$plain" "fleetkey create-devices --bundle pkcs12:$N:$bundle" \
  "aws CLI loop (the article's script):$AWS_LOOP_N:$loop"; do
  IFS=: read -r how n secs <<<"$row"
  ratio=$(python3 -c "print(f'{$n / $secs * 60 / $loop_rate:.1f}x')")
  echo "| $how | $n | $secs | $(per_minute "$n" "$secs") | $ratio |"
done
