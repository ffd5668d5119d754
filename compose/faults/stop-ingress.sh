#!/bin/sh
# Fault: zone-2's ingress stops.
#   faults/stop-ingress.sh
# The backend runs only in zone-2, so the cross-zone call fails while no ingress leads into
# zone-2 (expected). Then the ingress starts again (with a new address, maybe) and the lab
# must recover.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
ingress=zone-2-ingress

before_fault
log "FAULT: stopping $ingress"
$compose stop "$ingress" >/dev/null 2>&1
wait_for "cross-zone call failing (expected: no way into zone-2)" call_fails
log "UNDO: starting $ingress"
$compose start "$ingress" >/dev/null 2>&1
wait_for "$ingress healthy" healthy "$ingress"
recovered
