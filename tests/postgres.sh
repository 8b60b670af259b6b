#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the registry tests (RECIPES.md):
#   postgres.sh start DIR   initdb + start in DIR on a free port; prints the URL
#   postgres.sh stop DIR    stops that server (pg_ctl, by its data dir) and removes DIR
#   postgres.sh run CMD...  start, run CMD with $SW_TEST_PG_URL set, stop; CMD's exit code
# A missing PostgreSQL is an error, never a skip. Never touches the system cluster.
set -euo pipefail
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
  echo "postgres.sh: no PostgreSQL server binaries under /usr/lib/postgresql (install 'postgresql')" >&2
  exit 1
fi
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start() {
  local d=$1
  mkdir -p "$d/sock"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$d"; fi
  chmod 700 "$d"
  as_pg "$PGBIN/initdb" -D "$d/data" -U postgres --auth-local=trust --auth-host=trust -E UTF8 --locale=C.UTF-8 -N \
    >"$d/initdb.log" 2>&1 || { cat "$d/initdb.log" >&2; return 1; }
  local port tries=0
  while :; do
    port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if as_pg "$PGBIN/pg_ctl" -D "$d/data" -l "$d/log" -w -t 30 \
      -o "-p $port -k $d/sock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100" start >/dev/null; then
      break
    fi
    tries=$((tries + 1))
    if [ $tries -ge 5 ]; then cat "$d/log" >&2; return 1; fi
  done
  echo "$port" >"$d/port"
  psql -q -h "$d/sock" -p "$port" -U postgres -c "CREATE DATABASE slipway_test" >/dev/null
  echo "postgres://postgres@127.0.0.1:$port/slipway_test"
}

stop() {
  local d=$1
  if [ -d "$d/data" ]; then as_pg "$PGBIN/pg_ctl" -D "$d/data" -m immediate -w stop >/dev/null 2>&1 || true; fi
  rm -rf "$d"
}

case "${1:-}" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  run)
    shift
    d=$(mktemp -d /tmp/slipway-pg.XXXXXX)
    trap 'stop "$d"' EXIT
    SW_TEST_PG_URL=$(start "$d")
    export SW_TEST_PG_URL
    set +e
    "$@"
    rc=$?
    exit $rc
    ;;
  *) echo "usage: postgres.sh start DIR | stop DIR | run CMD..." >&2; exit 2 ;;
esac
