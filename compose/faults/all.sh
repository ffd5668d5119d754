#!/bin/sh
# Runs every fault script in turn against a running lab; stops at the first that does not
# recover. `./check.sh` first is a good idea.
#   faults/all.sh
set -eu
dir="$(dirname "$0")"
start=$(date +%s)
for fault in partition-zone restart-global restart-postgres stop-zone stop-ingress; do
	echo "===== $fault"
	s=$(date +%s)
	"$dir/$fault.sh"
	echo "===== $fault: recovered ($(($(date +%s) - s))s)"
done
echo "all faults recovered in $(($(date +%s) - start))s"
