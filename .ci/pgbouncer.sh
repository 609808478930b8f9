#!/usr/bin/env bash
# Starts Debian's PgBouncer on 127.0.0.1:6432 in front of the local PostgreSQL (127.0.0.1:5432) in
# transaction pooling, the mode a deployment of many replicas runs it in, for the PgBouncer tests
# (ONSALE_TEST_PGBOUNCER_URL). Any database name passes through; user postgres, no password (trust,
# as the CI PostgreSQL). PgBouncer refuses to run as root, so it runs as postgres. Idempotent: a
# PgBouncer already answering on 6432 is left alone.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
answers() { psql "postgres://postgres@127.0.0.1:6432/test" -Atc 'select 1' >/dev/null 2>&1; }
if port_open 6432; then
  if answers; then echo "pgbouncer: already on 127.0.0.1:6432"; exit 0; fi
  # Debian's own service (started by the package where systemd runs) has no databases: stop it.
  echo "pgbouncer: 6432 is taken by a PgBouncer that does not pass database test through; stopping it"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO systemctl stop pgbouncer 2>/dev/null || $SUDO service pgbouncer stop 2>/dev/null || true
  for _ in $(seq 1 50); do port_open 6432 || break; sleep 0.1; done
  if port_open 6432; then echo "pgbouncer: 6432 is still taken" >&2; exit 1; fi
fi
bin=$(command -v pgbouncer) || { echo "pgbouncer is not installed (apt-get install pgbouncer)" >&2; exit 1; }

dir=${PGBOUNCER_DIR:-/var/lib/onsale-pgbouncer}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO mkdir -p "$dir"
# The pool sizes are the tests' (several test databases at once under one PostgreSQL with
# max_connections 100): at most 20 server connections a database, 50 in all.
$SUDO tee "$dir/pgbouncer.ini" >/dev/null <<INI
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 6432
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 2000
default_pool_size = 20
max_user_connections = 50
server_idle_timeout = 30
ignore_startup_parameters = extra_float_digits
admin_users = postgres
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
echo '"postgres" ""' | $SUDO tee "$dir/userlist.txt" >/dev/null
$SUDO chown -R postgres: "$dir"
if [ "$(id -u)" = 0 ]; then
  "$bin" -d -u postgres "$dir/pgbouncer.ini"
else
  sudo -u postgres "$bin" -d "$dir/pgbouncer.ini"
fi
for _ in $(seq 1 100); do
  if port_open 6432 && answers; then
    echo "pgbouncer: $("$bin" --version | head -1) on 127.0.0.1:6432, transaction pooling in front of 127.0.0.1:5432"
    exit 0
  fi
  sleep 0.1
done
echo "pgbouncer did not start; its log:" >&2
$SUDO tail -n 20 "$dir/pgbouncer.log" >&2 || true
exit 1
