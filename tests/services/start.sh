#!/usr/bin/env bash
# Starts the real database servers the forum tests need, as plain processes
# on loopback in a scratch directory: MariaDB and PostgreSQL, each with a user
# `flarum` (password `fl@rum pass`, special characters on purpose) allowed to
# create databases. Prints the variables the tests read; `source` its output
# or let tests/run-all.sh do it (a server that fails to start stops the run
# with the end of its log). Stop them with tests/services/stop.sh.
set -euo pipefail

DIR="${TEST_SERVICES_DIR:-/tmp/flarum-ws-services}"
MYSQL_PORT="${TEST_DB_MYSQL_PORT:-33061}"
PG_PORT="${TEST_DB_PG_PORT:-54321}"
PASSWORD='fl@rum pass'

command -v mariadbd >/dev/null || { echo "mariadb-server is not installed (tests/services/packages.sh installs it)" >&2; exit 1; }
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$PG_BIN/initdb" ] || { echo "postgresql is not installed (tests/services/packages.sh installs it)" >&2; exit 1; }

"$(dirname "$0")/stop.sh" >/dev/null 2>&1 || true
rm -rf "$DIR"
mkdir -p "$DIR/mysql" "$DIR/pg" "$DIR/pgsock"

# A server that does not come up stops the run here, with the end of its log.
fail() {
  echo "$1 did not start; the end of $2:" >&2
  tail -n 20 "$2" >&2 || true
  exit 1
}

# MariaDB
mariadb-install-db --datadir="$DIR/mysql" --user=root --auth-root-authentication-method=socket >"$DIR/mysql-install.log" 2>&1 \
  || fail "mariadb-install-db" "$DIR/mysql-install.log"
mariadbd --datadir="$DIR/mysql" --socket="$DIR/mysql.sock" --port="$MYSQL_PORT" \
  --bind-address=127.0.0.1 --user=root --pid-file="$DIR/mysql.pid" >"$DIR/mysql.log" 2>&1 &
for _ in $(seq 1 60); do
  mariadb -S "$DIR/mysql.sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
  sleep 0.5
done
mariadb -S "$DIR/mysql.sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 || fail "MariaDB" "$DIR/mysql.log"
mariadb -S "$DIR/mysql.sock" -uroot <<SQL
CREATE USER 'flarum'@'127.0.0.1' IDENTIFIED BY '$PASSWORD';
CREATE USER 'flarum'@'localhost' IDENTIFIED BY '$PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO 'flarum'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'flarum'@'localhost' WITH GRANT OPTION;
SQL

# PostgreSQL (refuses to run as root: hand the directories to postgres)
chown -R postgres "$DIR/pg" "$DIR/pgsock"
printf '%s\n' "$PASSWORD" >"$DIR/pgpass"
chown postgres "$DIR/pgpass"
su postgres -c "$PG_BIN/initdb -D $DIR/pg -A md5 -U flarum --pwfile=$DIR/pgpass" >"$DIR/pg-init.log" 2>&1 \
  || fail "initdb" "$DIR/pg-init.log"
su postgres -c "$PG_BIN/pg_ctl -D $DIR/pg -o '-p $PG_PORT -k $DIR/pgsock -c listen_addresses=127.0.0.1' -l $DIR/pg/server.log start" >/dev/null \
  || fail "PostgreSQL" "$DIR/pg/server.log"
for _ in $(seq 1 60); do
  PGPASSWORD="$PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U flarum -d postgres -c 'SELECT 1' >/dev/null 2>&1 && break
  sleep 0.5
done
PGPASSWORD="$PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U flarum -d postgres -c 'SELECT 1' >/dev/null 2>&1 \
  || fail "PostgreSQL" "$DIR/pg/server.log"

cat <<VARS
export TEST_DB_MYSQL_PORT=$MYSQL_PORT
export TEST_DB_MYSQL_SOCKET=$DIR/mysql.sock
export TEST_DB_PG_PORT=$PG_PORT
export TEST_DB_PASSWORD='$PASSWORD'
VARS
