#!/bin/sh
# The lab's init step (service `init`, image kuma-rs/kumactl, run as root). It runs in the
# network namespace of the global, so kumactl's default control plane, http://localhost:5681,
# is the global and treats it as the admin. It writes into the `lab-secrets` volume, mounted
# at /lab/secrets, what the zones and proxies need, and turns on mTLS:
#   kds-ca.crt                  the CA of the global's KDS certificate (from its work dir)
#   zone-N.token                zone tokens, scope cp, for the zone control planes
#   ingress-zone-N.token        zone tokens, scope ingress, for the zone ingresses
#   frontend.token, backend.token   dataplane tokens of the demo sidecars
# Nothing here is baked into an image; `docker-compose down -v` removes it all.
set -eu
secrets=/lab/secrets
umask 077

# `write FILE COMMAND...`: the command's output into FILE, replaced at once.
write() {
	file="$secrets/$1"
	shift
	"$@" > "$file.tmp"
	mv "$file.tmp" "$file"
	echo "init: wrote $file"
}

write kds-ca.crt cat /global/kds-ca.crt
kumactl apply -f /lab/scripts/mesh.yaml
for zone in zone-1 zone-2; do
	write "$zone.token" kumactl generate zone-token --zone "$zone" --scope cp --valid-for 8760h
	write "ingress-$zone.token" kumactl generate zone-token --zone "$zone" --scope ingress --valid-for 8760h
done
for proxy in frontend backend; do
	write "$proxy.token" kumactl generate dataplane-token --mesh default --name "$proxy" --valid-for 8760h
done
# The control planes and proxies run as uid 5678 (user kuma of our images).
chown -R 5678:5678 "$secrets"
chmod 644 "$secrets/kds-ca.crt"
echo "init: done"
