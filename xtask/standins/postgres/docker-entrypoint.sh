#!/usr/bin/env bash
# Entry point of the `postgres:15` stand-in: the parts of the official
# image's docker-entrypoint.sh this project relies on.
#
# - runs as root only long enough to prepare PGDATA, then as `postgres`;
# - on an empty PGDATA: initdb with POSTGRES_USER and POSTGRES_PASSWORD (the
#   password reaches initdb through a file descriptor, never argv), plus
#   POSTGRES_INITDB_ARGS; remote connections use POSTGRES_HOST_AUTH_METHOD
#   (default scram-sha-256); POSTGRES_DB is created and the scripts in
#   /docker-entrypoint-initdb.d run on a temporary server that listens on a
#   private socket only (so a health check cannot pass before it is done);
# - then `exec "$@"`: `postgres` with the `command:` arguments.
set -Eeuo pipefail

if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	chmod 2777 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	: "${POSTGRES_USER:=postgres}"
	: "${POSTGRES_DB:=$POSTGRES_USER}"
	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
		echo 'error: the database is uninitialized and POSTGRES_PASSWORD is not set' >&2
		exit 1
	fi
	eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "${POSTGRES_PASSWORD:-}") '"${POSTGRES_INITDB_ARGS:-}"
	printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$PGDATA/pg_hba.conf"

	shopt -s nullglob
	scripts=(/docker-entrypoint-initdb.d/*)
	if [ "$POSTGRES_DB" != postgres ] || [ "${#scripts[@]}" -gt 0 ]; then
		socket="$(mktemp -d)"
		pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=$socket" -w start
		export PGHOST="$socket" PGUSER="$POSTGRES_USER" PGPASSWORD="${POSTGRES_PASSWORD:-}"
		if [ "$POSTGRES_DB" != postgres ]; then
			printf 'CREATE DATABASE :"db";\n' | psql -v ON_ERROR_STOP=1 -d postgres --set db="$POSTGRES_DB"
		fi
		for script in "${scripts[@]}"; do
			case "$script" in
				*.sh) echo "running $script"; . "$script" ;;
				*.sql) echo "running $script"; psql -v ON_ERROR_STOP=1 -d "$POSTGRES_DB" -f "$script" ;;
				*) echo "ignoring $script" ;;
			esac
		done
		pg_ctl -D "$PGDATA" -m fast -w stop
		unset PGHOST PGUSER PGPASSWORD
		rmdir "$socket"
	fi
	echo 'PostgreSQL init process complete; ready for start up.'
fi

exec "$@"
