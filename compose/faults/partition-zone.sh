#!/bin/sh
# Fault: a zone cut off from the global by the network while both keep running.
#   faults/partition-zone.sh [zone-1|zone-2]      (default zone-1)
# The zone's container leaves the `control` network (KDS to the global); it stays on `mesh`,
# so its proxies keep their control plane. Meanwhile the global marks the zone Offline and
# the cross-zone call keeps working (it needs no control plane). Then the network is
# reconnected and the lab must recover.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
zone="${1:-zone-1}"
network="$(project)_control"

before_fault
log "FAULT: disconnecting $zone from network $network (zone and global keep running)"
docker network disconnect "$network" "$(cid "$zone")"
wait_for "the global marks $zone Offline" zone_offline "$zone"
holds "cross-zone call answered from zone-2 during the partition" 5 call_ok
log "UNDO: reconnecting $zone to $network"
docker network connect --alias "$zone" "$network" "$(cid "$zone")"
recovered
