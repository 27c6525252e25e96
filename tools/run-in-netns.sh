#!/usr/bin/env bash
# Run a command inside network namespace NETNS, creating it (with lo up) if missing and
# deleting it when the command ends, Ctrl-C included.
#   usage: tools/run-in-netns.sh NETNS COMMAND [ARG...]
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 NETNS COMMAND [ARG...]" >&2
    exit 2
fi
ns=$1
shift
if [ "$(id -u)" != 0 ]; then
    echo "ustcp: creating network namespace '$ns' needs root (CAP_NET_ADMIN): try sudo make run" >&2
    exit 1
fi

if ! ip netns list | grep -q "^$ns\( \|$\)"; then
    ip netns add "$ns"
fi
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" "$@"
