#!/bin/sh
# Fault: the global control plane is killed (SIGKILL) and started again.
#   faults/restart-global.sh
# While it is down the zones keep serving their proxies and the cross-zone call keeps
# working; once it is back the zones reconnect and the lab must recover.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

before_fault
log "FAULT: killing the global (SIGKILL)"
$compose kill global >/dev/null 2>&1
holds "cross-zone call answered from zone-2 while the global is down" 5 call_ok
log "UNDO: starting the global"
$compose start global >/dev/null 2>&1
wait_for "the global healthy" healthy global
recovered
