# shellcheck shell=sh
# Shared by the fault scripts (sourced, not run). Each script injects one fault into a
# running lab, shows what keeps working meanwhile, undoes the fault, and waits until the lab
# has recovered: every wait is a poll with a deadline (DEADLINE seconds, 120 by default),
# and a missed deadline ends the script with exit 1 and the last state seen.
#
# Recovered means: both zones Online on the global with both sync lags at 0; the same
# meshes, zone ingresses and dataplanes (and their Online status) on the global as before
# the fault; a policy written on the global reaching both zones (and its deletion too); and
# the cross-zone call frontend (zone-1) -> backend (zone-2) answering from zone-2.
set -eu
cd "$(dirname "$0")/.."
compose="${COMPOSE:-docker-compose}"
deadline="${DEADLINE:-120}"
tag="${KUMA_RS_TAG:-latest}"
t0=$(date +%s)

log() { printf '%s [%4ss] %s\n' "$(date +%H:%M:%S)" "$(($(date +%s) - t0))" "$*"; }
fail() {
	log "FAILED: $*" >&2
	$compose ps >&2 || true
	exit 1
}

# The container id of a service ("" when it has none).
cid() { $compose ps -q "$1" 2>/dev/null; }

# The lab's compose project name (prefix of its networks).
project() {
	docker inspect --format '{{index .Config.Labels "com.docker.compose.project"}}' "$(cid global)"
}

# kumactl as the global's admin: in the global's network namespace, like the `kumactl`
# service, but faster than `compose run`. Fails while the global's container is not running.
kumactl() {
	id="$(cid global)"
	[ -n "$id" ] || return 1
	docker run --rm -i --network "container:$id" "kuma-rs/kumactl:$tag" "$@"
}

# The answer of the cross-zone call (curl's error when there is none).
call() {
	$compose exec -T frontend curl -sS -m 5 http://127.0.0.1:10002/ 2>&1 | head -n 1
}
call_ok() { call | grep -q '^hello from backend in zone-2$'; }
call_fails() { ! call_ok; }

# `zone_synced ZONE`: Online on the global with both lags at 0.
zone_synced() {
	kumactl inspect zones 2>/dev/null | grep -Eq "^$1 +Online .* 0 \([0-9.]+s\) +0 \([0-9.]+s\) *\$"
}
zone_offline() { kumactl inspect zones 2>/dev/null | grep -Eq "^$1 +Offline "; }
healthy() {
	[ "$(docker inspect --format '{{.State.Health.Status}}' "$(cid "$1")" 2>/dev/null)" = healthy ]
}

# What must survive a fault: the meshes and their mTLS backend, the zone ingresses and the
# dataplanes on the global, each with its status (empty while the global cannot be read).
census() {
	{
		kumactl get meshes | awk 'NR > 1 { print "mesh", $1, $2 }'
		kumactl inspect zoneingresses | awk 'NR > 1 { print "zoneingress", $1, $2 }'
		kumactl inspect dataplanes --mesh default \
			| awk 'NR > 1 { s = "?"; for (i = 1; i <= NF; i++) if ($i == "Online" || $i == "Offline") s = $i; print "dataplane", $2, s }'
	} 2>/dev/null | sort
}
census_is() { [ "$(census)" = "$1" ]; }

# `policy_in ZONE NAME` / `policy_not_in ZONE NAME`: whether the zone's API lists the
# TrafficPermission NAME of the global (a zone stores it under a hashed name, with NAME as
# its kuma.io/display-name label). policy_not_in needs an answer from the zone.
zone_policies() {
	$compose exec -T "$1" curl -fsS "http://127.0.0.1:5681/meshes/default/traffic-permissions?size=1000" 2>/dev/null
}
policy_in() { zone_policies "$1" | grep -q "\"kuma.io/display-name\":\"$2\""; }
policy_not_in() {
	list="$(zone_policies "$1")" || return 1
	! printf '%s' "$list" | grep -q "\"kuma.io/display-name\":\"$2\""
}

# `wait_for WHAT COMMAND...`: runs COMMAND every second until it succeeds; logs how long that
# took, or fails after the deadline.
wait_for() {
	what="$1"
	shift
	start=$(date +%s)
	while ! "$@"; do
		if [ $(($(date +%s) - start)) -ge "$deadline" ]; then
			fail "$what: not within ${deadline}s"
		fi
		sleep 1
	done
	log "ok: $what (after $(($(date +%s) - start))s)"
}

# `holds WHAT COUNT COMMAND...`: COMMAND succeeds COUNT times in a row, a second apart.
holds() {
	what="$1"
	count="$2"
	shift 2
	i=0
	while [ "$i" -lt "$count" ]; do
		"$@" || fail "$what: failed at check $((i + 1)) of $count"
		i=$((i + 1))
		sleep 1
	done
	log "ok: $what ($count checks in a row)"
}

# Call before the fault: the lab is whole now, and what the global shows is recorded.
before_fault() {
	log "checking the lab before the fault"
	wait_for "zone-1 online with no lag" zone_synced zone-1
	wait_for "zone-2 online with no lag" zone_synced zone-2
	wait_for "cross-zone call answered from zone-2" call_ok
	baseline="$(census)"
	if [ "$(printf '%s\n' "$baseline" | grep -c '^dataplane .* Online$')" != 2 ] \
		|| [ "$(printf '%s\n' "$baseline" | grep -c '^zoneingress .* Online$')" != 2 ]; then
		fail "the global does not show 2 online dataplanes and 2 online zone ingresses: $baseline"
	fi
	log "the global shows: $(printf '%s' "$baseline" | tr '\n' ';')"
}

# Call after undoing the fault: waits until everything has recovered.
recovered() {
	log "waiting for the recovery"
	wait_for "zone-1 online with no lag" zone_synced zone-1
	wait_for "zone-2 online with no lag" zone_synced zone-2
	wait_for "the global shows what it showed before the fault" census_is "$baseline"
	probe="fault-probe-$(date +%s)"
	printf 'type: TrafficPermission\nmesh: default\nname: %s\nsources:\n  - match:\n      kuma.io/service: frontend\ndestinations:\n  - match:\n      kuma.io/service: backend\n' "$probe" \
		| kumactl apply -f - >/dev/null || fail "applying TrafficPermission $probe on the global"
	wait_for "TrafficPermission $probe from the global in zone-1" policy_in zone-1 "$probe"
	wait_for "TrafficPermission $probe from the global in zone-2" policy_in zone-2 "$probe"
	kumactl delete traffic-permission "$probe" --mesh default >/dev/null || fail "deleting $probe"
	wait_for "its deletion in zone-1" policy_not_in zone-1 "$probe"
	wait_for "its deletion in zone-2" policy_not_in zone-2 "$probe"
	wait_for "cross-zone call answered from zone-2" call_ok
	log "RECOVERED in $(($(date +%s) - t0))s"
}
