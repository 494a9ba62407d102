#!/usr/bin/env bash
# Starts the real servers the tests share, as plain processes on loopback in
# a scratch directory: MariaDB and PostgreSQL, each with a user `flarum`
# (password `fl@rum pass`, special characters on purpose) allowed to create
# databases, and a Redis Cluster of three masters and three replicas (the
# cluster tests give each run its own channel prefix). Prints the variables
# the tests read; `source` its output or let tests/run-all.sh do it (a server
# that fails to start stops the run with the end of its log). Stop them with
# tests/services/stop.sh.
set -euo pipefail

DIR="${TEST_SERVICES_DIR:-/tmp/flarum-ws-services}"
MYSQL_PORT="${TEST_DB_MYSQL_PORT:-33061}"
PG_PORT="${TEST_DB_PG_PORT:-54321}"
PASSWORD='fl@rum pass'
# Six Redis Cluster ports; each also takes its port + 10000 (the cluster bus).
CLUSTER_PORTS="${TEST_REDIS_CLUSTER_PORTS:-7101 7102 7103 7104 7105 7106}"

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

# A Redis Cluster: six redis-servers, joined by redis-cli as three masters
# with a replica each. A master silent for 2 s is failed over (operators
# usually keep Redis's 15 s; the failover tests would only wait longer).
# Each node also speaks TLS on its port + 100, asking TLS clients for a
# certificate of the same test CA, and the nodes talk TLS among themselves
# (tls-cluster): a TLS client is told the TLS ports of the others.
command -v redis-cli >/dev/null || { echo "redis-server is not installed (tests/services/packages.sh installs it)" >&2; exit 1; }
tls="$DIR/redis-cluster/tls"
mkdir -p "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tls/ca.key" -out "$tls/ca.pem" -days 30 -subj "/CN=flarum-ws test CA" 2>/dev/null
for name in redis client; do
  openssl req -newkey rsa:2048 -nodes -keyout "$tls/$name.key" -out "$tls/$name.csr" -subj "/CN=$name" 2>/dev/null
  openssl x509 -req -in "$tls/$name.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 30 \
    -out "$tls/$name.pem" -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n') 2>/dev/null
done
cluster_nodes=()
tls_nodes=()
for port in $CLUSTER_PORTS; do
  node="$DIR/redis-cluster/$port"
  mkdir -p "$node"
  # A file of its own, so a test that kills it can start it again as it was
  # (redis-server "$node/redis.conf"); nodes.conf keeps its cluster identity.
  cat >"$node/redis.conf" <<CONF
port $port
bind 127.0.0.1
save ""
appendonly no
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 2000
tls-port $((port + 100))
tls-cert-file $tls/redis.pem
tls-key-file $tls/redis.key
tls-ca-cert-file $tls/ca.pem
tls-auth-clients yes
tls-cluster yes
tls-replication yes
daemonize yes
dir $node
pidfile $node/redis.pid
logfile $node/redis.log
CONF
  redis-server "$node/redis.conf" || fail "redis-server (cluster port $port)" "$node/redis.log"
  cluster_nodes+=("127.0.0.1:$port")
  tls_nodes+=("127.0.0.1:$((port + 100))")
done
for port in $CLUSTER_PORTS; do
  for _ in $(seq 1 40); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.25
  done
done
redis-cli --cluster create "${cluster_nodes[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/redis-cluster/create.log" 2>&1 \
  || fail "redis-cli --cluster create" "$DIR/redis-cluster/create.log"
for port in $CLUSTER_PORTS; do
  for _ in $(seq 1 80); do
    redis-cli -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
    sleep 0.25
  done
  redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok' || fail "the Redis Cluster (port $port)" "$DIR/redis-cluster/$port/redis.log"
done

cat <<VARS
export TEST_DB_MYSQL_PORT=$MYSQL_PORT
export TEST_DB_MYSQL_SOCKET=$DIR/mysql.sock
export TEST_DB_PG_PORT=$PG_PORT
export TEST_DB_PASSWORD='$PASSWORD'
export TEST_REDIS_CLUSTER=$(IFS=,; echo "${cluster_nodes[*]}")
export TEST_REDIS_CLUSTER_DIR=$DIR/redis-cluster
export TEST_REDIS_CLUSTER_TLS=$(IFS=,; echo "${tls_nodes[*]}")
VARS
