#!/usr/bin/env bash
# A local fleetkey cluster in one command (docs/cluster.md), everything on loopback:
#   scripts/cluster.sh up DIR [NODES]   PostgreSQL (/tmp/fk_cluster_pg_<hash of DIR>), three
#                                       nats-servers with JetStream (DIR/nats), NODES fleetkeyd
#                                       nodes (default 3; DIR/node-N) sharing its registry and
#                                       one MQTT service over NATS, and haproxy 2.6 in TCP mode
#                                       in front of their MQTT ports; writes DIR/cluster.json
#                                       and prints the endpoints
#   scripts/cluster.sh down DIR         stops all of it (fleetkeyd nodes, haproxy, NATS,
#                                       PostgreSQL)
# The nodes share the CA and the admin key of node 1 (copied before they start) and each
# other's registry changes (outbox + LISTEN/NOTIFY). FLEETKEYD overrides build/bin/fleetkeyd;
# EXTRA_TOML is appended to every node's [storage] table, MQTT_TOML to its [mqtt] table and
# CLUSTER_TOML to its [cluster]
# table; NATS=0 leaves NATS out (nodes share the registry only, each its own MQTT broker).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
cmd=${1:?up|down}
dir=$(realpath -m "${2:?DIR}")
nodes=${3:-3}
fleetkeyd=$(realpath "${FLEETKEYD:-build/bin/fleetkeyd}")
# PostgreSQL's files go where the postgres user can reach them whatever DIR's permissions are
# (as root the server runs as `postgres`): a folder under /tmp named after DIR.
pgdir="/tmp/fk_cluster_pg_$(echo -n "$dir" | md5sum | cut -c1-16)"

free_port() { "$repo/scripts/free-port"; }

wait_endpoints() {  # node-dir pid: until its endpoints.json names the pid (60 s at most)
  local f="$1/data/endpoints.json" pid=$2
  for _ in $(seq 600); do
    if [[ -f "$f" ]] && python3 -c "import json,sys; sys.exit(json.load(open('$f'))['pid'] != $pid)" 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "cluster.sh: a node exited; see $1/fleetkeyd.log" >&2; tail -5 "$1/fleetkeyd.log" >&2; return 1; }
    sleep 0.1
  done
  echo "cluster.sh: a node did not become ready; see $1/fleetkeyd.log" >&2
  return 1
}

down() {
  for pidfile in "$dir"/node-*/pid "$dir/haproxy.pid"; do
    [[ -f "$pidfile" ]] || continue
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
  [[ -d "$pgdir" ]] && "$repo/scripts/postgres.sh" stop "$pgdir" || true
  [[ -d "$dir/nats" ]] && "$repo/scripts/nats.sh" stop "$dir/nats" || true
  rm -f "$dir/cluster.json"
}

case "$cmd" in
  down)
    down
    echo "cluster.sh: stopped $dir"
    ;;
  up)
    command -v haproxy >/dev/null || { echo "cluster.sh: haproxy is missing (scripts/install-deps.sh)" >&2; exit 1; }
    [[ -x "$fleetkeyd" ]] || { echo "cluster.sh: $fleetkeyd is missing (make build)" >&2; exit 1; }
    mkdir -p "$dir"
    trap 'down' ERR
    url=$("$repo/scripts/postgres.sh" start "$pgdir")
    nats_urls=""
    [[ "${NATS:-1}" == 1 ]] && nats_urls=$("$repo/scripts/nats.sh" start "$dir/nats")
    for n in $(seq "$nodes"); do
      nd="$dir/node-$n"
      mkdir -p "$nd"
      cat >"$nd/fleetkeyd.toml" <<EOF
[mqtt]
bind = "127.0.0.1"
port = 0
alpn_port = 0
${MQTT_TOML:-}
[api]
port = 0
[storage]
backend = "postgres"
url = "$url"
node_id = "node-$n"
${EXTRA_TOML:-}
EOF
      if [[ -n "$nats_urls" ]]; then
        printf '[cluster]\nnats = "%s"\n%s\n' "$nats_urls" "${CLUSTER_TOML:-}" >>"$nd/fleetkeyd.toml"
      fi
      if [[ $n -gt 1 && ! -d "$nd/data/ca" ]]; then
        # One CA and one admin key for the whole cluster: node 1's.
        mkdir -p "$nd/data" && chmod 0700 "$nd/data"
        cp -a "$dir/node-1/data/ca" "$nd/data/ca"
        cp -a "$dir/node-1/data/credentials" "$dir/node-1/data/aws-config" "$nd/data/"
      fi
      "$fleetkeyd" --config "$nd/fleetkeyd.toml" --data-dir "$nd/data" --quiet \
        >"$nd/fleetkeyd.out" 2>"$nd/fleetkeyd.log" &
      echo $! >"$nd/pid"
      wait_endpoints "$nd" "$(cat "$nd/pid")"
    done
    lb_port=$(free_port)
    {
      echo "global"
      echo "  maxconn 9000"  # two descriptors per connection within the 20,000 allowed
      echo "defaults"
      echo "  mode tcp"
      echo "  option redispatch  # a connect to a node that died goes to another"
      echo "  retries 3"
      echo "  timeout connect 5s"
      echo "  timeout client 1h"
      echo "  timeout server 1h"
      echo "frontend mqtt"
      echo "  bind 127.0.0.1:$lb_port"
      echo "  default_backend nodes"
      echo "backend nodes"
      echo "  balance roundrobin"
      for n in $(seq "$nodes"); do
        port=$(python3 -c "import json; print(json.load(open('$dir/node-$n/data/endpoints.json'))['mqtt']['port'])")
        echo "  server node-$n 127.0.0.1:$port check inter 1s"
      done
    } >"$dir/haproxy.cfg"
    haproxy -f "$dir/haproxy.cfg" -D -p "$dir/haproxy.pid"
    python3 - "$dir" "$nodes" "$lb_port" "$url" "$pgdir" "$nats_urls" <<'EOF'
import json, sys
d, n, port, url, pgdir, nats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
nodes = []
for i in range(1, n + 1):
    e = "%s/node-%d/data/endpoints.json" % (d, i)
    nodes.append({"id": "node-%d" % i, "pid": json.load(open(e))["pid"], "endpoints": e})
out = {"mqtt": {"host": "127.0.0.1", "port": port}, "postgres": url, "postgres_dir": pgdir,
       "nats": nats, "nats_dir": d + "/nats" if nats else "", "nodes": nodes}
open(d + "/cluster.json", "w").write(json.dumps(out, indent=2) + "\n")
print("cluster.sh: %d nodes up; MQTT through haproxy on 127.0.0.1:%d" % (n, port))
for x in nodes:
    e = json.load(open(x["endpoints"]))
    print("  %s  pid %d  MQTT %d  API %s" % (x["id"], x["pid"], e["mqtt"]["port"], e["api"]["url"]))
print("  registry: %s" % url)
if nats:
    print("  NATS (JetStream, 3 servers): %s" % nats)
print("  root CA, admin credentials: see any node's endpoints.json (they share them)")
print("cluster.sh: %s/cluster.json; stop with scripts/cluster.sh down %s" % (d, d))
EOF
    ;;
  *)
    echo "cluster.sh: up|down DIR" >&2
    exit 2
    ;;
esac
