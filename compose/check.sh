#!/bin/sh
# Checks a running lab (after `docker-compose up -d` in this directory): waits until every
# service with a health check is healthy, then until the cross-zone call
# frontend (zone-1) -> backend (zone-2) answers from zone-2 over mTLS. Each wait has a deadline;
# exits 1, with the state of the services, when one is missed.
#
#   ./check.sh                 # deadlines: HEALTH_DEADLINE=180 s, CALL_DEADLINE=60 s
#   COMPOSE="docker compose" ./check.sh   # with the Compose plugin instead of docker-compose
set -eu
cd "$(dirname "$0")"
compose="${COMPOSE:-docker-compose}"
health_deadline="${HEALTH_DEADLINE:-180}"
call_deadline="${CALL_DEADLINE:-60}"
start=$(date +%s)

elapsed() { echo $(($(date +%s) - start)); }

# The services whose containers report a health state other than healthy.
unhealthy() {
	for id in $($compose ps -q); do
		docker inspect --format '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} {{.State.Status}}' "$id"
	done | awk '$2 != "healthy" && $2 != "-" { sub("^/", "", $1); print $1 "(" $2 ")" }'
}

echo "check: waiting for every service to be healthy (deadline ${health_deadline}s)"
while :; do
	waiting="$(unhealthy)"
	[ -z "$waiting" ] && break
	if [ "$(elapsed)" -ge "$health_deadline" ]; then
		echo "check: FAILED: not healthy after ${health_deadline}s: $(echo "$waiting" | tr '\n' ' ')" >&2
		$compose ps >&2
		exit 1
	fi
	sleep 1
done
echo "check: all services healthy after $(elapsed)s"

call_start=$(date +%s)
echo "check: calling backend from frontend: curl http://127.0.0.1:10002/ in frontend (deadline ${call_deadline}s)"
while :; do
	if answer="$($compose exec -T frontend curl -sS -m 5 http://127.0.0.1:10002/ 2>&1)" \
		&& printf '%s' "$answer" | grep -q 'hello from backend in zone-2'; then
		break
	fi
	if [ $(($(date +%s) - call_start)) -ge "$call_deadline" ]; then
		echo "check: FAILED: no answer from zone-2 within ${call_deadline}s; last: $answer" >&2
		exit 1
	fi
	sleep 1
done
echo "$answer" | sed 's/^/  /'
if ! printf '%s' "$answer" | grep -q 'URI=spiffe://default/frontend'; then
	echo "check: FAILED: the backend did not see the frontend's mTLS identity" >&2
	exit 1
fi
echo "check: cross-zone call OK after $(elapsed)s"

# The GUI of the global (published on 127.0.0.1:5681) shows both zones online and the
# cross-zone path, as a user opening it would see.
if command -v curl >/dev/null 2>&1; then
	gui_start=$(date +%s)
	echo "check: the GUI at http://127.0.0.1:5681/gui shows both zones online and the cross-zone path (deadline ${call_deadline}s)"
	while :; do
		page="$(curl -fsS -m 5 http://127.0.0.1:5681/gui 2>&1 || true)"
		if printf '%s' "$page" | grep -q 'data-name="zone-1" data-status="online"' \
			&& printf '%s' "$page" | grep -q 'data-name="zone-2" data-status="online"' \
			&& printf '%s' "$page" | grep -q '<tr data-path="frontend-backend">'; then
			break
		fi
		if [ $(($(date +%s) - gui_start)) -ge "$call_deadline" ]; then
			echo "check: FAILED: the GUI does not show both zones online and the path within ${call_deadline}s" >&2
			printf '%s\n' "$page" | grep -E 'data-status|data-path' >&2 || true
			exit 1
		fi
		sleep 1
	done
	echo "check: GUI OK"
else
	echo "check: curl not found on this host: GUI check skipped"
fi
