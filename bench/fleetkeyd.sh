# Sourced by the MQTT benchmarks: start a fleetkeyd and make the load client's device.
#   start_fleetkeyd DIR [TOML]     sets fk_pid, fk_port, fk_api (AWS_* exported for the aws CLI)
#   new_certificate DIR NAME POLICY   an ACTIVE certificate with POLICY: DIR/NAME.pem, .key, .arn
#   bench_device DIR               a certificate with the benchmark policy: DIR/dev.pem, dev.key
#   cpu_ticks PID                  the process's CPU so far (utime+stime, in getconf CLK_TCK)
#   bench_ca_and_device DIR        a CA and the load client's device in DIR/data, no server left
#   start_tls_fleetkeyd DIR ENGINE TICKETS LOG   a fleetkeyd on DIR/data with that TLS engine and
#                                  ticket setting: sets fk_pid, fk_port
#   start_mosquitto DIR [EXTRA]    Debian's Mosquitto with fleetkey's CA and server certificate,
#                                  require_certificate, TCP_NODELAY (EXTRA: more config lines):
#                                  sets mq_pid, mq_port
FLEETKEYD=${FLEETKEYD:-build/bin/fleetkeyd}

# A typical device policy: connect, publish/receive/subscribe under bench/, and a Deny the
# evaluation has to pass.
BENCH_POLICY='{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/*"},
 {"Effect":"Deny","Action":"iot:*","Resource":"arn:aws:iot:*:*:topic/$aws/things/*/shadow/delete"},
 {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:aws:iot:*:*:topic/bench/*"},
 {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/bench/*"}]}'

start_fleetkeyd() {  # dir [toml]
  local dir=$1
  mkdir -p "$dir"
  printf '%s\n' "${2:-}" >"$dir/fleetkeyd.toml"
  "$FLEETKEYD" --config "$dir/fleetkeyd.toml" --data-dir "$dir/data" --mqtt-port 0 --api-port 0 \
    --alpn-port -1 --quiet --log-level warn 2>"$dir/fleetkeyd.log" &
  fk_pid=$!
  for _ in $(seq 100); do [[ -f "$dir/data/endpoints.json" ]] && break; sleep 0.1; done
  fk_port=$(python3 -c "import json;print(json.load(open('$dir/data/endpoints.json'))['mqtt']['port'])")
  fk_api=$(python3 -c "import json;print(json.load(open('$dir/data/endpoints.json'))['api']['url'])")
  export AWS_SHARED_CREDENTIALS_FILE=$dir/data/credentials AWS_CONFIG_FILE=$dir/data/aws-config
}

new_certificate() {  # dir name policy: an ACTIVE certificate with POLICY attached, written as
                     # DIR/NAME.pem, NAME.key, NAME.arn
  local dir=$1 name=$2 policy=$3
  aws iot create-keys-and-certificate --set-as-active --endpoint-url "$fk_api" --output json \
    >"$dir/$name.json"
  python3 - "$dir" "$name" <<'PY'
import json, sys
w, n = sys.argv[1], sys.argv[2]
d = json.load(open("%s/%s.json" % (w, n)))
open("%s/%s.pem" % (w, n), "w").write(d["certificatePem"])
open("%s/%s.key" % (w, n), "w").write(d["keyPair"]["PrivateKey"])
open("%s/%s.arn" % (w, n), "w").write(d["certificateArn"])
PY
  aws iot attach-policy --policy-name "$policy" --target "$(cat "$dir/$name.arn")" \
    --endpoint-url "$fk_api"
}

bench_device() {  # dir (after start_fleetkeyd on it)
  local dir=$1
  aws iot create-policy --policy-name bench --policy-document "$BENCH_POLICY" \
    --endpoint-url "$fk_api" >/dev/null
  new_certificate "$dir" dev bench
}

cpu_ticks() {  # pid
  awk '{print $14 + $15}' "/proc/$1/stat"
}

bench_ca_and_device() {  # dir: one fleetkeyd makes the CA and the device, then stops
  start_fleetkeyd "$1" ""
  bench_device "$1"
  kill "$fk_pid"
  wait "$fk_pid" 2>/dev/null || true
  cat "$1/data/ca/root-ca.pem" "$1/data/ca/issuing-ca.pem" >"$1/ca-bundle.pem"
}

start_tls_fleetkeyd() {  # dir engine tickets log
  local dir=$1
  printf '[mqtt]\ntls_engine = "%s"\ntls_session_tickets = %s\n' "$2" "$3" >"$dir/fk.toml"
  "$FLEETKEYD" --config "$dir/fk.toml" --data-dir "$dir/data" --mqtt-port 0 --api-port 0 \
    --alpn-port -1 --quiet --log-level warn 2>"$4" &
  fk_pid=$!
  for _ in $(seq 100); do
    python3 -c "import json,sys;sys.exit(0 if json.load(open('$dir/data/endpoints.json'))['pid']==$fk_pid else 1)" 2>/dev/null && break
    sleep 0.1
  done
  fk_port=$(python3 -c "import json;print(json.load(open('$dir/data/endpoints.json'))['mqtt']['port'])")
}

start_mosquitto() {  # dir [extra config lines]
  local dir=$1 ca=$1/data/ca
  mq_port=$(python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
  cat >"$dir/mosquitto.conf" <<CONF
per_listener_settings false
user root
persistence false
log_dest none
allow_anonymous true
set_tcp_nodelay true
${2:-}
listener $mq_port 127.0.0.1
cafile $dir/ca-bundle.pem
certfile $ca/server.pem
keyfile $ca/server.key
require_certificate true
CONF
  mosquitto -c "$dir/mosquitto.conf" 2>"$dir/mosquitto.log" &
  mq_pid=$!
  sleep 1
}
