#!/usr/bin/env bash
# Stops the servers tests/services/start.sh started.
DIR="${TEST_SERVICES_DIR:-/tmp/flarum-ws-services}"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -S "$DIR/mysql.sock" ] && mariadb-admin -S "$DIR/mysql.sock" -uroot shutdown 2>/dev/null
[ -d "$DIR/pg" ] && su postgres -c "$PG_BIN/pg_ctl -D $DIR/pg -m fast stop" >/dev/null 2>&1
for pidfile in "$DIR"/redis-cluster/*/redis.pid; do
  [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null
done
exit 0
