#!/usr/bin/env bash
# Three nats-server 2.9 processes with JetStream, clustered on loopback (docs/cluster.md):
#   scripts/nats.sh start DIR     starts them (files in DIR/n1..n3), prints their client URLs
#                                 comma-separated, writes DIR/nats.json; waits (60 s at most)
#                                 until JetStream has a meta leader
#   scripts/nats.sh stop DIR      stops all three
#   scripts/nats.sh kill DIR N    kill -9 of server N (tests); `start-one DIR N` starts it again
# Ports are chosen free at the first start and kept in DIR/ports, so a restarted server comes
# back where its peers expect it.
set -euo pipefail
cmd=${1:?start|stop|kill|start-one}
dir=$(realpath -m "${2:?DIR}")

free_port() { "$(dirname "$0")/free-port"; }

ports() {  # client, cluster and monitoring port of each server, chosen once
  if [[ ! -f "$dir/ports" ]]; then
    mkdir -p "$dir"
    for n in 1 2 3; do echo "$n $(free_port) $(free_port) $(free_port)"; done >"$dir/ports"
  fi
  cat "$dir/ports"
}

start_one() {
  local n=$1 client cluster http routes=""
  read -r _ client cluster http < <(ports | awk -v n="$n" '$1 == n')
  while read -r m _ c _; do
    routes+="${routes:+, }nats-route://127.0.0.1:$c"
  done < <(ports)
  mkdir -p "$dir/n$n"
  cat >"$dir/n$n/nats.conf" <<EOF
server_name: n$n
listen: 127.0.0.1:$client
http: 127.0.0.1:$http
max_payload: 1MB
jetstream {
  store_dir: "$dir/n$n/js"
  max_memory_store: 64MB
  max_file_store: 2GB
}
cluster {
  name: fleetkey
  listen: 127.0.0.1:$cluster
  routes: [$routes]
}
EOF
  nats-server -c "$dir/n$n/nats.conf" -l "$dir/n$n/nats.log" -P "$dir/n$n/pid" </dev/null >/dev/null 2>&1 &
  disown
}

wait_ready() {  # until every running server says JetStream is healthy
  for _ in $(seq 600); do
    local ok=1
    while read -r n _ _ http; do
      [[ -f "$dir/n$n/pid" ]] && kill -0 "$(cat "$dir/n$n/pid")" 2>/dev/null || continue
      curl -sf "http://127.0.0.1:$http/healthz" >/dev/null 2>&1 || ok=0
    done < <(ports)
    [[ $ok == 1 ]] && return 0
    sleep 0.1
  done
  echo "nats.sh: JetStream did not become ready; see $dir/n*/nats.log" >&2
  return 1
}

urls() {
  ports | awk '{printf "%snats://127.0.0.1:%s", (NR > 1 ? "," : ""), $2}'
}

stop_one() {
  local n=$1 sig=${2:-TERM}
  [[ -f "$dir/n$n/pid" ]] || return 0
  local pid
  pid=$(cat "$dir/n$n/pid")
  kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$dir/n$n/pid"
}

case "$cmd" in
  start)
    command -v nats-server >/dev/null || { echo "nats.sh: nats-server is missing (scripts/install-deps.sh)" >&2; exit 1; }
    for n in 1 2 3; do stop_one "$n"; done
    for n in 1 2 3; do start_one "$n"; done
    wait_ready
    echo "{\"urls\": \"$(urls)\"}" >"$dir/nats.json"
    urls
    echo
    ;;
  start-one)
    start_one "${3:?N}"
    wait_ready
    ;;
  kill)
    stop_one "${3:?N}" KILL
    ;;
  stop)
    for n in 1 2 3; do stop_one "$n"; done
    ;;
  *)
    echo "nats.sh: start|stop|kill|start-one DIR [N]" >&2
    exit 2
    ;;
esac
