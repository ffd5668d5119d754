#!/bin/sh
# Entrypoint of the lab's PostgreSQL image, compatible with the official image's:
# `docker run IMAGE [-c setting=value ...]` starts `postgres`; on the first start an empty
# $PGDATA gets a cluster with superuser $POSTGRES_USER (default postgres) and password
# $POSTGRES_PASSWORD, database $POSTGRES_DB (default: the user's name), password
# authentication (scram-sha-256, or $POSTGRES_HOST_AUTH_METHOD) for TCP clients from
# anywhere, and the *.sql and *.sh of /docker-entrypoint-initdb.d run once.
set -eu

# Options alone mean options for postgres.
if [ "${1#-}" != "$1" ]; then
	set -- postgres "$@"
fi

if [ "$1" != postgres ]; then
	exec "$@"
fi

# As root: own the data directory, then run this script again as postgres.
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA"
	chown postgres:postgres "$PGDATA"
	chmod 700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	user="${POSTGRES_USER:-postgres}"
	db="${POSTGRES_DB:-$user}"
	auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
		echo "error: the database is not initialised and POSTGRES_PASSWORD is not set" >&2
		echo "  (set it, or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without one)" >&2
		exit 1
	fi
	pwfile="$(mktemp)"
	printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
	initdb --pgdata="$PGDATA" --username="$user" --pwfile="$pwfile" \
		--encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host="$auth" >/dev/null
	rm -f "$pwfile"
	printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"
	printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"

	# A server on the socket only, for the database and the init scripts.
	pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
	if [ "$db" != postgres ]; then
		# The name as an SQL identifier, double quotes doubled.
		ident="$(printf '%s' "$db" | sed 's/"/""/g')"
		psql --quiet --no-psqlrc --set ON_ERROR_STOP=1 --username="$user" --dbname=postgres \
			--command="CREATE DATABASE \"$ident\""
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
			*.sql) echo "running $f"; psql --quiet --no-psqlrc --set ON_ERROR_STOP=1 --username="$user" --dbname="$db" --file="$f" ;;
			*.sh)
				echo "running $f"
				# shellcheck source=/dev/null
				. "$f"
				;;
			*) ;;
		esac
	done
	pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
	echo "PostgreSQL cluster initialised in $PGDATA (user $user, database $db)"
fi

exec "$@"
