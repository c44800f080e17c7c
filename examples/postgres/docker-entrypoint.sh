#!/bin/sh
# First start on an empty volume: initdb into $PGDATA (a folder on the volume:
# its root holds lost+found, which initdb refuses). Then the server, as PID 1's child.
# POSTGRES_PASSWORD set: clients from the network need it (scram-sha-256); unset: trust.
set -e
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "docker-entrypoint: initializing a new database in $PGDATA"
  auth=trust
  pwfile=
  if [ -n "$POSTGRES_PASSWORD" ]; then
    auth=scram-sha-256
    pwfile=/tmp/pgpass
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  fi
  rm -rf "$PGDATA.init"
  initdb -D "$PGDATA.init" --username=postgres --encoding=UTF8 --locale=C --auth-local=trust --auth-host="$auth" \
    ${pwfile:+--pwfile="$pwfile"} --no-instructions >/dev/null
  rm -f /tmp/pgpass
  cat >> "$PGDATA.init/postgresql.conf" <<CONF
listen_addresses = '*'
unix_socket_directories = '/tmp'
max_connections = 50
shared_buffers = 32MB
dynamic_shared_memory_type = posix
CONF
  echo "host all all 0.0.0.0/0 $auth" >> "$PGDATA.init/pg_hba.conf"
  sync
  # Renamed into place only once complete: a VM killed during initdb starts over.
  mv "$PGDATA.init" "$PGDATA"
  sync
fi
exec "$@" -D "$PGDATA"
