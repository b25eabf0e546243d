#!/usr/bin/env bash
# A throw-away PostgreSQL 15 server for tests and the local cluster, on loopback only.
#   scripts/postgres.sh start DIR [PORT]   initdb (first time) and start; prints its URL and
#                                          writes it to DIR/url (PORT 0 or absent: a free port)
#   scripts/postgres.sh fresh DIR [PORT]   the same from an empty DIR (a stale server there is
#                                          stopped first): what the tests use
#   scripts/postgres.sh stop DIR           stop it (fast shutdown), waiting at most 30 s
#   scripts/postgres.sh restart DIR        pg_ctl restart -m immediate (crash-like), same port
# initdb refuses root: as root the server runs as the `postgres` user (the package makes it).
set -euo pipefail
cmd=${1:?start|fresh|stop|restart}
dir=$(realpath -m "${2:?DIR}")
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x "$bin/initdb" ]] || { echo "postgres.sh: no PostgreSQL server (apt-get install postgresql)" >&2; exit 1; }
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [[ "$cmd" == fresh ]]; then
  if [[ -f "$dir/data/postmaster.pid" ]]; then
    as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  cmd=start
fi
case "$cmd" in
  start)
    port=${3:-0}
    if [[ "$port" == 0 ]]; then
      port=$("$(dirname "$0")/free-port")
    fi
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]]; then chown postgres: "$dir"; chmod 0700 "$dir"; fi
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
      as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --locale=C.UTF-8 \
        --encoding=UTF8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 30 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on" \
      start >/dev/null
    url="postgresql://postgres@127.0.0.1:$port/postgres"
    echo "$url" >"$dir/url"
    echo "$url"
    ;;
  stop)
    [[ -f "$dir/data/postmaster.pid" ]] || exit 0
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null
    ;;
  restart)
    as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 restart >/dev/null
    ;;
  *)
    echo "postgres.sh: start|fresh|stop|restart DIR" >&2
    exit 2
    ;;
esac
