#!/usr/bin/env bash
# Run a command in a network namespace of its own: loopback up, and one veth pair with
# 10.254.77.1/24 on vmiso0, because Janus and Chromium gather ICE candidates only on an interface
# that is not loopback. scripts/test.sh runs the root-namespace pytest process this way.
#
# Why: the other pytest process builds network-namespace labs, and each lab's leg into the root
# namespace adds and removes an interface and an address there. Chromium watches the namespace it
# runs in (netlink) and, on every such change, fails the requests still waiting for a connection
# with net::ERR_NETWORK_CHANGED: a console page whose module did not arrive stays blank. Inside
# a namespace of its own, nothing another process does to the machine's interfaces reaches it.
#
# Needs root (unshare --net); without it, or where unshare or ip is missing, the command runs
# in the current namespace and a line on stderr says so.
set -euo pipefail
if (($# == 0)); then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi
if [[ ${EUID:-$(id -u)} -ne 0 ]] || ! command -v unshare >/dev/null || ! command -v ip >/dev/null \
    || ! unshare --net true 2>/dev/null; then
    echo "own_netns: cannot make a network namespace here (needs root, unshare and ip);" \
        "running in the current one" >&2
    exec "$@"
fi
exec unshare --net -- bash -c '
    set -e
    ip link set lo up
    ip link add vmiso0 type veth peer name vmiso1
    ip addr add 10.254.77.1/24 dev vmiso0
    ip link set vmiso1 up
    ip link set vmiso0 up
    exec "$@"' own_netns "$@"
