#!/usr/bin/env bash
# Issue 16's benchmarks, on this machine (loopback; the load generator shares the cores):
#   1. registry transactions/s (the provisioning transaction) on SQLite and PostgreSQL at 1, 8,
#      64 and 256 concurrent callers (bench/registry_bench.cpp);
#   2. complete fleet provisionings/s through one node vs through haproxy in front of three
#      (scripts/cluster.sh), with the servers' CPU per provisioning (all fleetkeyd nodes,
#      PostgreSQL and haproxy, from /proc) beside the rate;
#   3. the delay from a revocation's HTTP 200 on node 2 to the TCP close of the device's
#      session on node 3, p50/p99 over REVOCATIONS (default 200).
#   bench/cluster.sh [SECONDS_PER_RUN]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release/bin}
SECS=${1:-10}
work=$(mktemp -d /tmp/fk_clusterbench_XXXX)
chmod 0755 "$work"
trap 'scripts/cluster.sh down "$work/cluster" >/dev/null 2>&1 || true; scripts/postgres.sh stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
ulimit -n 20000 || true
hz=$(getconf CLK_TCK)
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, ${SECS}s per provisioning run"

echo
echo "## 1. Registry transactions/s (thing + certificate + policy attachment + principal, durable)"
echo
url=$(scripts/postgres.sh fresh "$work/pg")
FK_BENCH_POSTGRES_URL=$url "$BIN/fk_registry_bench" --benchmark_format=json \
  >"$work/registry.json" 2>/dev/null
scripts/postgres.sh stop "$work/pg" >/dev/null
python3 - "$work/registry.json" <<'PY'
import json, re, sys
rows = {}
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    m = re.match(r"BM_RegistryTxn_(\w+)/(\w+)(?:/(\d+))?", b["name"])
    callers = 1 if m.group(1) == "Sequential" else int(m.group(3))
    rows.setdefault(callers, {})[m.group(2)] = (b["items_per_second"], b.get("txn_per_commit", 0))
print("| callers | SQLite txn/s | per commit | PostgreSQL txn/s | per commit | PostgreSQL / SQLite |")
print("|---|---|---|---|---|---|")
for c in sorted(rows):
    s, p = rows[c].get("sqlite", (0, 0)), rows[c].get("postgres", (0, 0))
    print("| %d | %.0f | %.1f | %.0f | %.1f | %.2f |" % (c, s[0], s[1], p[0], p[1],
                                                      p[0] / s[0] if s[0] else 0))
PY

echo
echo "## 2. Fleet provisionings/s: one node vs haproxy in front of three"
echo
EXTRA_TOML=$'[provisioning]\nmax_requests_per_second = 0\nmax_requests_per_client_per_second = 0\nmax_server_keys_per_second = 0' \
  scripts/cluster.sh up "$work/cluster" >/dev/null
ep() { python3 -c "import json;print(json.load(open('$work/cluster/node-$1/data/endpoints.json'))$2)"; }
export AWS_SHARED_CREDENTIALS_FILE=$(ep 1 "['credentials_file']") AWS_CONFIG_FILE=$(ep 1 "['aws_config_file']")
api1=$(ep 1 "['api']['url']")
a() { aws iot "$@" --endpoint-url "$api1" --output json; }
a create-policy --policy-name claim --policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}' >/dev/null
a create-policy --policy-name device --policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}' >/dev/null
a create-provisioning-template --template-name LockerTemplate --template-body '{"Parameters":{"SerialNumber":{"Type":"String"}},"Resources":{"thing":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Fn::Join":["",["dev-",{"Ref":"SerialNumber"}]]}}},"certificate":{"Type":"AWS::IoT::Certificate","Properties":{"CertificateId":{"Ref":"AWS::IoT::Certificate::Id"},"Status":"ACTIVE"}},"policy":{"Type":"AWS::IoT::Policy","Properties":{"PolicyName":"device"}}}}' \
  --provisioning-role-arn arn:aws:iam::123456789012:role/p --enabled >/dev/null
a create-keys-and-certificate --set-as-active >"$work/claim.json"
python3 -c "
import json; d=json.load(open('$work/claim.json'))
open('$work/claim.pem','w').write(d['certificatePem']); open('$work/claim.key','w').write(d['keyPair']['PrivateKey'])"
a attach-policy --policy-name claim --target "$(python3 -c "import json;print(json.load(open('$work/claim.json'))['certificateArn'])")"
pgdir=$(python3 -c "import json;print(json.load(open('$work/cluster/cluster.json'))['postgres_dir'])")
server_pids() {  # the three nodes, haproxy, the postmaster and its backends
  for n in 1 2 3; do cat "$work/cluster/node-$n/pid"; done
  cat "$work/cluster/haproxy.pid"
  local pm
  pm=$(head -1 "$pgdir/data/postmaster.pid")
  echo "$pm"
  pgrep -P "$pm" || true
}
ticks() { local t=0; for p in $(server_pids | sort -u); do [[ -r /proc/$p/stat ]] && t=$(( t + $(awk '{print $14+$15}' /proc/$p/stat) )); done; echo $t; }
echo "| target | concurrency | provisionings/s | p50 ms | p99 ms | errors | server CPU ms per provisioning (3 nodes + PostgreSQL + haproxy) |"
echo "|---|---|---|---|---|---|---|"
lb=$(python3 -c "import json;print(json.load(open('$work/cluster/cluster.json'))['mqtt']['port'])")
for target in "node-1:$(ep 1 "['mqtt']['port']")" "haproxy (3 nodes):$lb"; do
  name=${target%%:*}
  port=${target##*:}
  for c in ${CONCURRENCY:-32}; do
    before=$(ticks)
    "$BIN/fk_provision_load" --port "$port" --ca "$(ep 1 "['root_ca']")" --cert "$work/claim.pem" \
      --key "$work/claim.key" --template LockerTemplate --concurrency "$c" --seconds "$SECS" \
      >"$work/load.json"
    after=$(ticks)
    python3 - "$work/load.json" "$name" "$c" "$((after - before))" "$hz" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
cpu_ms = int(sys.argv[4]) / int(sys.argv[5]) * 1000 / max(r["completed"], 1)
print("| %s | %s | %.0f | %.1f | %.1f | %d | %.2f |" % (sys.argv[2], sys.argv[3],
      r["completed_per_s"], r["p50_ms"], r["p99_ms"], r["errors"], cpu_ms))
PY
  done
done

echo
echo "## 3. Revocation on node 2 -> TCP close on node 3"
echo
n=${REVOCATIONS:-200}
FLEETKEY=${FLEETKEY:-build/bin/fleetkey}
"$FLEETKEY" --data-dir "$work/cluster/node-1/data" create-devices --prefix rev- --from 1 \
  --to "$n" --out "$work/rev" --no-progress --parallel 4 >/dev/null
/usr/bin/python3 bench/revocation_delay.py "$work" "$n" "$(ep 3 "['mqtt']['port']")" \
  "$(ep 2 "['api']['url']")" "$(ep 1 "['root_ca']")" "$FLEETKEY"
