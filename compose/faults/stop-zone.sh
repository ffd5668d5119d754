#!/bin/sh
# Fault: a zone control plane stops (its ingress and sidecars keep running).
#   faults/stop-zone.sh [zone-1|zone-2]      (default zone-2)
# The global marks the zone Offline; the proxies keep their last config, so the cross-zone
# call keeps working. Then the zone starts again and the lab must recover.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
zone="${1:-zone-2}"

before_fault
log "FAULT: stopping the control plane of $zone"
$compose stop "$zone" >/dev/null 2>&1
wait_for "the global marks $zone Offline" zone_offline "$zone"
holds "cross-zone call answered from zone-2 with $zone's control plane down" 5 call_ok
log "UNDO: starting $zone"
$compose start "$zone" >/dev/null 2>&1
wait_for "$zone healthy" healthy "$zone"
recovered
