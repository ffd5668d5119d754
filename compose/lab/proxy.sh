#!/bin/sh
# Starts kuma-dp for a sidecar or a zone ingress of the lab (image kuma-rs/kuma-dp) against
# the zone control plane named by $ZONE_CP; the arguments are passed on to `kuma-dp run`.
#
# - The template variable `address` is this container's IP address on the lab network, so a
#   Dataplane or ZoneIngress file can say `address: {{ address }}`.
# - Envoy dials xDS on the host kuma-dp reached the bootstrap server on ($ZONE_CP), as the
#   zone's bootstrap says.
set -eu
: "${ZONE_CP:?ZONE_CP must name the zone control plane}"
address="$(hostname -i | awk '{ print $1 }')"
echo "proxy.sh: address $address; control plane $ZONE_CP"
exec kuma-dp run --cp-address "http://$ZONE_CP:5682" --dataplane-var "address=$address" "$@"
