#!/bin/sh
# Fault: the global's PostgreSQL restarts under it.
#   faults/restart-postgres.sh
# The global's connections break; it must reconnect without a restart of its own and keep
# everything it stored.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

before_fault
log "FAULT: restarting PostgreSQL"
$compose restart postgres >/dev/null 2>&1
wait_for "PostgreSQL healthy" healthy postgres
holds "cross-zone call answered from zone-2" 3 call_ok
recovered
