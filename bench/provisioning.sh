#!/usr/bin/env bash
# Complete fleet provisionings per second, end to end (bench/provision_load.cpp: device key and
# CSR, claim connect, CreateCertificateFromCsr, RegisterThing, reconnect with the new
# certificate), at concurrency 1, 32 and 256, against a fleetkeyd on the same machine, with the
# crypto-bound limit computed from `openssl speed` on this machine.
#   bench/provisioning.sh [SECONDS_PER_RUN]      (LOADERS=N: N load-generator processes)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release/bin}
SECS=${1:-10}
work=$(mktemp -d /tmp/fk_provbench_XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
ulimit -n 20000 || true
source bench/fleetkeyd.sh

# The per-claim rate limit is lifted (one claim certificate carries the whole load).
start_fleetkeyd "$work" "$(printf '[provisioning]\nmax_requests_per_second = 0\nmax_server_keys_per_second = 0\nmax_requests_per_client_per_second = 0\nworkers = %s' "${WORKERS:-2}")"
claim_policy='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"},
 {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":["arn:aws:iot:*:*:topic/$aws/certificates/create-from-csr/*","arn:aws:iot:*:*:topic/$aws/provisioning-templates/LockerTemplate/provision/*"]},
 {"Effect":"Allow","Action":"iot:Subscribe","Resource":["arn:aws:iot:*:*:topicfilter/$aws/certificates/create-from-csr/*","arn:aws:iot:*:*:topicfilter/$aws/provisioning-templates/LockerTemplate/provision/*"]}]}'
device_policy='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"}]}'
template='{"Parameters":{"SerialNumber":{"Type":"String"}},"Resources":{
 "thing":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Fn::Join":["",["dev-",{"Ref":"SerialNumber"}]]}}},
 "certificate":{"Type":"AWS::IoT::Certificate","Properties":{"CertificateId":{"Ref":"AWS::IoT::Certificate::Id"},"Status":"ACTIVE"}},
 "policy":{"Type":"AWS::IoT::Policy","Properties":{"PolicyName":"device"}}}}'
a() { aws iot "$@" --endpoint-url "$fk_api" --output json; }
a create-policy --policy-name claim --policy-document "$claim_policy" >/dev/null
a create-policy --policy-name device --policy-document "$device_policy" >/dev/null
a create-provisioning-template --template-name LockerTemplate --template-body "$template" \
  --provisioning-role-arn arn:aws:iam::123456789012:role/p --enabled >/dev/null
new_certificate "$work" claim claim

# The crypto-bound limit on the server's side of one provisioning: two TLS handshakes (each an
# ECDHE P-256 key exchange, an ECDSA P-256 signature by the server, and ECDSA verifications of
# the client certificate and of its signature over the handshake), the CSR's signature check
# and the certificate's signature. Both cores count.
speed=$(openssl speed -seconds 2 ecdsap256 ecdhp256 2>/dev/null)
sign=$(echo "$speed" | awk '/^ *256 bits ecdsa/ {print $(NF-1)}')
verify=$(echo "$speed" | awk '/^ *256 bits ecdsa/ {print $NF}')
ecdh=$(echo "$speed" | awk '/^ *256 bits ecdh/ {print $NF}')
bound=$(python3 -c "
s,v,e=$sign,$verify,$ecdh
per=2*(1/e+1/s+2/v)+1/v+1/s
print(round($(nproc)/per))")
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, ${SECS}s per run; load generator on the same machine"
echo "# openssl speed: ECDSA P-256 sign $sign/s, verify $verify/s, ECDH P-256 $ecdh/s per core"
echo
echo "| concurrency | provisionings/s | p50 ms | p99 ms | errors | crypto-bound/s (server side, $(nproc) cores) | ratio | server CPU ms per provisioning | server capacity/s ($(nproc) cores / CPU) | load generator CPU ms per provisioning |"
echo "|---|---|---|---|---|---|---|---|---|---|"
# LOADERS load-generator processes share each concurrency level (default 1).
loaders=${LOADERS:-1}
for c in ${CONCURRENCY:-1 32 256}; do
  per=$(( c / loaders > 0 ? c / loaders : 1 ))
  pids=()
  # fleetkeyd's own CPU (utime+stime ticks) over the run: what one provisioning costs the
  # server, whatever the load generator on the same cores costs.
  ticks_before=$(cpu_ticks "$fk_pid")
  for i in $(seq "$loaders"); do
    /usr/bin/time -f "%U %S" -o "$work/time-$c-$i" \
      "$BIN/fk_provision_load" --port "$fk_port" --ca "$work/data/ca/root-ca.pem" \
      --cert "$work/claim.pem" --key "$work/claim.key" --template LockerTemplate \
      --concurrency $per --seconds "$SECS" >"$work/load-$c-$i.json" &
    pids+=($!)
  done
  wait "${pids[@]}"
  ticks=$(( $(cpu_ticks "$fk_pid") - ticks_before ))
  loader_s=$(cat "$work"/time-$c-* | awk '{s += $1 + $2} END {print s}')
  python3 - "$bound" "$c" "$ticks" "$(getconf CLK_TCK)" "$(nproc)" "$loader_s" "$work"/load-$c-*.json <<'PY'
import json, sys
b = float(sys.argv[1]); c = int(sys.argv[2])
cpu_s = int(sys.argv[3]) / int(sys.argv[4]); cores = int(sys.argv[5]); loader_s = float(sys.argv[6])
runs = [json.load(open(f)) for f in sys.argv[7:]]
rate = sum(r["completed_per_s"] for r in runs)
done = max(sum(r["completed"] for r in runs), 1)
p50 = max(r["p50_ms"] for r in runs); p99 = max(r["p99_ms"] for r in runs)
errors = sum(r["errors"] for r in runs)
per_ms = cpu_s * 1000 / done
print("| %d | %.0f | %.1f | %.1f | %d | %.0f | %.2f | %.2f | %.0f | %.2f |" % (
    c, rate, p50, p99, errors, b, rate / b, per_ms, cores * 1000 / per_ms, loader_s * 1000 / done))
PY
done

# The same flow as devices run it: the SDK's fleet simulator (state machine, credential
# records, backoff; one connection per step as on a device), N devices powering on together.
sim=${SIM:-build/bin/fleetkey-fleet-sim}
mkdir -p "$work/claim-bundle"
cp "$work/claim.pem" "$work/claim-bundle/claim.cert.pem"
cp "$work/claim.key" "$work/claim-bundle/claim.private.key"
cat "$work/data/ca/root-ca.pem" "$work/data/ca/issuing-ca.pem" >"$work/claim-bundle/root-ca.pem"
echo
echo "fleetkey-fleet-sim (the device SDK), devices powering on together:"
echo
echo "| devices | at once | provisioned/s | p50 ms | p90 ms | p99 ms | max ms | failed | connects/device |"
echo "|---|---|---|---|---|---|---|---|---|"
for spec in ${STORMS:-1000:32 1000:256}; do
  n=${spec%%:*}
  c=${spec##*:}
  "$sim" --port "$fk_port" --claim-dir "$work/claim-bundle" --template LockerTemplate \
    --devices "$n" --concurrency "$c" --prefix "storm-$n-$c-" --json >"$work/sim-$n-$c.json" || true
  python3 - "$work/sim-$n-$c.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("| %d | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %d | %.2f |" % (
    r["devices"], r["concurrency"], r["provisioned_per_s"], r["p50_ms"], r["p90_ms"],
    r["p99_ms"], r["max_ms"], sum(r["failed"].values()), r["connects_per_device"]))
PY
done
