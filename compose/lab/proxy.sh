#!/bin/sh
# Starts kuma-dp for a sidecar or a zone ingress of the lab (image kuma-rs/kuma-dp) against
# the zone control plane named by $ZONE_CP; the arguments are passed on to `kuma-dp run`.
#
# - The template variable `address` is this container's IP address on the lab network, so a
#   Dataplane or ZoneIngress file can say `address: {{ address }}`.
# - 127.0.0.1:5678 is relayed to the zone's xDS server: the zone's bootstrap tells Envoy to
#   dial 127.0.0.1 for xDS. (Remove the relay once the zone advertises a reachable xDS host.)
set -eu
: "${ZONE_CP:?ZONE_CP must name the zone control plane}"
address="$(hostname -i | awk '{ print $1 }')"
socat "TCP-LISTEN:5678,bind=127.0.0.1,fork,reuseaddr" "TCP:$ZONE_CP:5678" &
echo "proxy.sh: address $address; relaying 127.0.0.1:5678 to $ZONE_CP:5678"
exec kuma-dp run --cp-address "http://$ZONE_CP:5682" --dataplane-var "address=$address" "$@"
