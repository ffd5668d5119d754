#!/bin/sh
# The docker-compose lab from start to end, as `cargo xtask test` (and so CI) runs it after
# `cargo xtask images`: up, ./check.sh (healthy, cross-zone call), every fault script with its
# recovery (./faults/all.sh), and down -v, also when a step fails (then with the services'
# logs). Exits non-zero when a step failed.
#   compose/ci.sh              # COMPOSE="docker compose" for the Compose plugin
set -eu
cd "$(dirname "$0")"
compose="${COMPOSE:-}"
if [ -z "$compose" ]; then
	if command -v docker-compose >/dev/null 2>&1; then
		compose=docker-compose
	else
		compose="docker compose"
	fi
fi
down() { $compose down -v --remove-orphans >/dev/null 2>&1 || true; }
trap down EXIT
down
status=0
$compose up -d || status=$?
if [ "$status" = 0 ]; then
	COMPOSE="$compose" ./check.sh && COMPOSE="$compose" ./faults/all.sh || status=$?
fi
if [ "$status" != 0 ]; then
	echo "ci: the lab failed (exit $status); the last lines of every service:" >&2
	$compose logs --tail 80 >&2 || true
fi
exit "$status"
